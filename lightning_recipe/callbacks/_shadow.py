"""Shadow training, the Lightning part: a detached copy of the user's module that sees a read-only trainer.

Checks such as "overfit one batch" and "input-independent baseline" must train *a copy* of the
model with exactly what the user wrote (their ``training_step`` computes the loss, their
``configure_optimizers`` builds the optimizer) while leaving the real module, optimizer, trainer,
logger and random state untouched. Training the copy is pure torch
(:class:`~lightning_recipe.core.shadow.ShadowSteps`); this module builds it:

* :func:`detached_copy` deep-copies the module without copying the trainer it is attached to.
* :func:`build_optimizer` calls the copy's ``configure_optimizers`` and returns its first optimizer
  (and the schedulers built on it, never stepped).
* :class:`ShadowTrainer` is a :class:`~lightning_recipe.core.shadow.ShadowSteps` on such a copy.
  The copy sees a :class:`TrainerView` as ``self.trainer``: reads (``current_epoch``,
  ``global_step``, ``estimated_stepping_batches``, ``world_size``, ``precision_plugin``...) go to
  the real trainer, except ``optimizers`` / ``lr_scheduler_configs`` / ``strategy._lightning_optimizers``
  (the copy's own, so ``self.optimizers()`` and ``self.lr_schedulers()`` never reach the real ones)
  and the loggers (no-ops); ``self.log`` / ``self.log_dict`` become no-ops; attribute writes stay
  on the view.
* :func:`replay_problem` (from :mod:`lightning_recipe.core.shadow`) says whether a dataloader can be
  iterated by a check without consuming data the real run needs.

Run all of it inside :func:`~lightning_recipe.core.state.preserved_state` (the RNG is shared).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from lightning_recipe.core.shadow import (
    ReadThrough,
    ShadowSteps,
    ShadowUnsupported,
    check_own_parameters,
    first_optimizer,
    replay_problem,
    step_loss,
    use_working_lrs,
)

__all__ = [
    "ShadowTrainer",
    "ShadowUnsupported",
    "TrainerView",
    "build_optimizer",
    "detached_copy",
    "replay_problem",
    "step_loss",
]


class TrainerView(ReadThrough):
    """What a shadow copy sees as ``self.trainer``: the real trainer, read-only, minus its optimizers and loggers.

    ``barebones = True`` makes ``LightningModule.log`` / ``log_dict`` return at once (Lightning's
    own switch for "logging is off"; the warning it emits is silenced by :class:`ShadowTrainer`).
    ``optimizers``, ``lr_scheduler_configs`` and ``strategy._lightning_optimizers`` are the copy's
    own, so ``self.optimizers()`` / ``self.lr_schedulers()`` in the user's step read the copy's
    optimizer and a scheduler nobody steps. ``logger`` / ``loggers`` are no-op loggers (writes to
    ``self.logger.experiment`` go nowhere). Setting an attribute (``self.trainer.should_stop = True``)
    changes the view only.
    """

    barebones = True

    def __init__(self, trainer: Trainer, module: LightningModule) -> None:
        from lightning.pytorch.loggers.logger import DummyLogger

        logger = DummyLogger()
        super().__init__(
            trainer,
            optimizers=[],
            lr_scheduler_configs=[],
            strategy=ReadThrough(
                trainer.strategy, _lightning_optimizers=[], optimizers=[], lr_scheduler_configs=[]
            ),
            logger=logger,
            loggers=[logger],
            lightning_module=module,
            model=module,
        )

    def use(self, optimizer: torch.optim.Optimizer | None, scheduler_configs: list[Any]) -> None:
        """Show the copy's own optimizer and scheduler configs (``[]`` while they are being built)."""
        optimizers = [] if optimizer is None else [optimizer]
        self.optimizers = optimizers
        self.lr_scheduler_configs = list(scheduler_configs)
        strategy = self.strategy
        strategy._lightning_optimizers = optimizers  # plain optimizers: the copy steps them itself
        strategy.optimizers = optimizers
        strategy.lr_scheduler_configs = list(scheduler_configs)


def _attach(module: LightningModule, trainer: Any) -> None:
    """Point ``module`` and every nested ``LightningModule`` at ``trainer`` (a view, or ``None``)."""
    for m in module.modules():
        if isinstance(m, LightningModule):
            m.__dict__["_trainer"] = trainer


@contextmanager
def _without_trainer(module: LightningModule) -> Iterator[None]:
    saved = [(m, m.__dict__.get("_trainer")) for m in module.modules() if isinstance(m, LightningModule)]
    _attach(module, None)
    try:
        yield
    finally:
        for m, trainer in saved:
            m.__dict__["_trainer"] = trainer


def _no_print(*args: Any, **kwargs: Any) -> None:
    """``self.print`` in a shadow copy: its steps are not the run's, they print nothing."""


def detached_copy(pl_module: LightningModule) -> LightningModule:
    """Deep-copy ``pl_module`` (parameters, buffers, submodules) without its trainer."""
    with _without_trainer(pl_module):
        try:
            clone = copy.deepcopy(pl_module)
        except Exception as err:  # e.g. modules holding open files or locks
            raise ShadowUnsupported(
                f"the module cannot be deep-copied ({type(err).__name__}: {err})"
            ) from err
    _attach(clone, None)
    object.__setattr__(clone, "print", _no_print)
    return clone


def _scheduler_configs(result: Any, optimizer: torch.optim.Optimizer) -> list[Any]:
    """``LRSchedulerConfig`` of every scheduler in ``result`` that drives ``optimizer`` (never stepped)."""
    from lightning.pytorch.utilities.types import LRSchedulerConfig

    found: list[Any] = []

    def add(scheduler: Any, spec: dict[str, Any]) -> None:
        if getattr(scheduler, "optimizer", None) is not optimizer:
            return
        interval = spec.get("interval", "epoch")
        frequency = spec.get("frequency", 1)
        found.append(
            LRSchedulerConfig(
                scheduler,
                name=spec.get("name"),
                interval=interval if interval in ("epoch", "step") else "epoch",
                frequency=frequency if isinstance(frequency, int) else 1,
                reduce_on_plateau=isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau),
                monitor=spec.get("monitor"),
            )
        )

    def walk(item: Any, depth: int = 0) -> None:
        if depth > 4:
            return
        if isinstance(item, torch.optim.lr_scheduler.LRScheduler):
            add(item, {})
        elif isinstance(item, dict):
            if isinstance(item.get("scheduler"), torch.optim.lr_scheduler.LRScheduler):
                add(item["scheduler"], item)
            else:
                walk(item.get("lr_scheduler"), depth + 1)
        elif isinstance(item, (list, tuple)):
            for x in item:
                walk(x, depth + 1)

    walk(result)
    return found


def build_optimizer(
    clone: LightningModule, trainer: Trainer | None = None, view: TrainerView | None = None
) -> torch.optim.Optimizer:
    """The first optimizer ``clone.configure_optimizers()`` returns, built on the clone's parameters.

    Schedulers are not stepped: shadow runs are short and use the schedule's working rate. A
    scheduler built in ``configure_optimizers`` may already have changed the rate (a warm-up from
    ~0, a one-cycle start at ``max_lr / div_factor``): the base rate ``initial_lr``, or the peak
    ``max_lr`` of ``OneCycleLR`` / ``max_lrs`` of ``CyclicLR``, is put back. With a ``view``,
    ``configure_optimizers`` sees it as ``self.trainer`` (modules that read
    ``self.trainer.estimated_stepping_batches``) and the view then shows the built optimizer and
    schedulers; with only a ``trainer``, it sees the real trainer while it runs.
    """
    shown: Any = view if view is not None else trainer
    _attach(clone, shown)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = clone.configure_optimizers()
    except Exception as err:
        raise ShadowUnsupported(
            f"configure_optimizers() failed on a copy of the module ({type(err).__name__}: {err})"
        ) from err
    finally:
        _attach(clone, view)
    optimizer = first_optimizer(result)
    if optimizer is None:
        raise ShadowUnsupported("configure_optimizers() returned no optimizer")
    check_own_parameters(optimizer, clone)
    schedulers = _scheduler_configs(result, optimizer)
    use_working_lrs(optimizer, schedulers)
    if view is not None:
        view.use(optimizer, schedulers)
    return optimizer


class ShadowTrainer(ShadowSteps):
    """Train a detached copy of a ``LightningModule`` with its own ``training_step`` and optimizer.

    Args:
        pl_module: the real module (copied, never modified).
        trainer: the real trainer: the copy sees a read-only :class:`TrainerView` of it as
            ``self.trainer`` (``None``: the copy has no trainer, as outside of ``fit``).

    Raises:
        ShadowUnsupported: manual optimization, no optimizer, a module that cannot be copied.
    """

    def __init__(self, pl_module: LightningModule, trainer: Trainer | None = None) -> None:
        if not pl_module.automatic_optimization:
            raise ShadowUnsupported("the module uses manual optimization (automatic_optimization=False)")
        module = detached_copy(pl_module)
        self.view = TrainerView(trainer, module) if trainer is not None else None
        optimizer = build_optimizer(module, trainer, self.view)
        context = trainer.precision_plugin.forward_context if trainer is not None else None
        super().__init__(module, optimizer, context)
