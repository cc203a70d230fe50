"""Shadow training: train a detached copy of the user's module with the user's own step and optimizer.

Checks such as "overfit one batch" and "input-independent baseline" must train *a copy* of the
model with exactly what the user wrote (their ``training_step`` computes the loss, their
``configure_optimizers`` builds the optimizer) while leaving the real module, optimizer, trainer,
logger and random state untouched. This module is the one place that knows how to do that.

* :func:`detached_copy` deep-copies the module without copying the trainer it is attached to.
* :func:`build_optimizer` calls the copy's ``configure_optimizers`` and returns its first optimizer
  (and the schedulers built on it, never stepped).
* :class:`ShadowTrainer` runs steps of ``training_step`` + backward + optimizer step on the copy.
  The copy sees a :class:`TrainerView` as ``self.trainer``: reads (``current_epoch``,
  ``global_step``, ``estimated_stepping_batches``, ``world_size``, ``precision_plugin``...) go to
  the real trainer, except ``optimizers`` / ``lr_scheduler_configs`` / ``strategy._lightning_optimizers``
  (the copy's own, so ``self.optimizers()`` and ``self.lr_schedulers()`` never reach the real ones)
  and the loggers (no-ops); ``self.log`` / ``self.log_dict`` become no-ops; attribute writes stay
  on the view.
* :func:`replay_problem` says whether a dataloader can be iterated by a check without consuming
  data the real run needs (a one-shot ``IterableDataset`` cannot).

Run all of it inside :func:`~lightning_recipe.core.state.preserved_state` (the RNG is shared).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from lightning_recipe.core.stats import is_one_shot

__all__ = [
    "ShadowTrainer",
    "ShadowUnsupported",
    "TrainerView",
    "build_optimizer",
    "detached_copy",
    "replay_problem",
    "step_loss",
]


class ShadowUnsupported(RuntimeError):
    """The module cannot be shadow-trained (the message says why, for a ``skipped`` finding)."""


class _View:
    """Reads go to ``real`` unless overridden; writes stay on the view (the real object is never changed)."""

    def __init__(self, real: Any, **own: Any) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_own", dict(own))

    def __getattr__(self, name: str) -> Any:
        own = object.__getattribute__(self, "_own")
        if name in own:
            return own[name]
        return getattr(object.__getattribute__(self, "_real"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__getattribute__(self, "_own")[name] = value

    def __delattr__(self, name: str) -> None:
        object.__getattribute__(self, "_own").pop(name, None)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # ``isinstance(self.trainer.strategy, DDPStrategy)`` in user code answers as for the real object
        return type(object.__getattribute__(self, "_real"))


class TrainerView(_View):
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
            strategy=_View(
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


def _first_optimizer(result: Any) -> torch.optim.Optimizer | None:
    if isinstance(result, torch.optim.Optimizer):
        return result
    if isinstance(result, dict):
        return _first_optimizer(result.get("optimizer"))
    if isinstance(result, (list, tuple)):
        for item in result:
            found = _first_optimizer(item)
            if found is not None:
                return found
    return None


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


def _working_lrs(optimizer: torch.optim.Optimizer, schedulers: list[Any]) -> list[float | None]:
    """Per param group, the rate the copy trains at: the schedule's working rate, not its warm-up start.

    ``OneCycleLR`` starts at ``max_lr / div_factor`` (its ``initial_lr``) and spends most of the run
    near ``max_lr``; ``CyclicLR`` starts at ``base_lr`` and cycles up to its ``max_lrs``; a warm-up
    (``LambdaLR``, ``LinearLR``) starts near 0 from its base rate ``initial_lr``.
    """
    groups = optimizer.param_groups
    for config in schedulers:
        max_lrs = getattr(config.scheduler, "max_lrs", None)  # CyclicLR
        if (
            isinstance(max_lrs, (list, tuple))
            and len(max_lrs) == len(groups)
            and all(isinstance(v, (int, float)) and v > 0 for v in max_lrs)
        ):
            return [float(v) for v in max_lrs]
    out: list[float | None] = []
    for group in groups:
        value = None
        for key in ("max_lr", "initial_lr"):  # OneCycleLR sets both; other schedulers initial_lr
            candidate = group.get(key)
            if isinstance(candidate, (int, float)) and not isinstance(candidate, bool) and candidate > 0:
                value = float(candidate)
                break
        out.append(value)
    return out


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
    optimizer = _first_optimizer(result)
    if optimizer is None:
        raise ShadowUnsupported("configure_optimizers() returned no optimizer")
    own = {id(p) for p in clone.parameters()}
    for group in optimizer.param_groups:
        if any(id(p) not in own for p in group["params"]):
            raise ShadowUnsupported(
                "configure_optimizers() returned an optimizer over parameters that are not the module's own"
            )
    schedulers = _scheduler_configs(result, optimizer)
    for group, lr in zip(optimizer.param_groups, _working_lrs(optimizer, schedulers)):
        if lr is not None and isinstance(group.get("lr"), (int, float)):
            group["lr"] = lr
    if view is not None:
        view.use(optimizer, schedulers)
    return optimizer


def replay_problem(loader: Any) -> str | None:
    """Why a check must not iterate ``loader`` itself (``None`` when it may).

    A map-style dataset (or a plain iterable such as a list) can be replayed: a fresh iterator
    reads the same data again, and :func:`~lightning_recipe.core.state.preserved_state` with
    ``loaders=`` puts the sampler's generator back. An ``IterableDataset`` is replayed only when
    ``iter(dataset)`` makes a new iterator (a generator ``__iter__``, as Lightning itself needs for
    a second epoch); a one-shot stream (an iterator, a dataset whose ``__iter__`` returns the same
    iterator) is not: reading from it would take batches away from the real run. See
    :func:`~lightning_recipe.core.stats.is_one_shot`.
    """
    if loader is None:
        return "no dataloader"
    if is_one_shot(loader):
        data = getattr(loader, "dataset", loader)
        return (
            f"its data ({type(data).__name__}) is a one-shot stream (`iter()` hands out the same iterator "
            "each time): reading from it would take batches away from the real run"
        )
    return None


def step_loss(output: Any) -> torch.Tensor | None:
    """The loss tensor of a ``training_step`` output (a tensor, or a dict with ``"loss"``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        loss = output.get("loss")
        return loss if isinstance(loss, torch.Tensor) else None
    return None


class ShadowTrainer:
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
        self.module = detached_copy(pl_module)
        self.view = TrainerView(trainer, self.module) if trainer is not None else None
        self.optimizer = build_optimizer(self.module, trainer, self.view)
        self.precision_context = trainer.precision_plugin.forward_context if trainer is not None else None
        self.losses: list[float] = []

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*self\.log.*")
            warnings.filterwarnings("ignore", message=r".*trainer reference is not registered.*")
            yield

    def _forward_context(self) -> AbstractContextManager[Any]:
        if self.precision_context is None:
            return nullcontext()
        return self.precision_context()

    def step(self, batch: Any, batch_idx: int = 0) -> float:
        """One training step on ``batch``; returns the loss before the update."""
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad(), self._quiet(), self._forward_context():
            output = self.module.training_step(batch, batch_idx)
        loss = step_loss(output)
        if loss is None:
            raise ShadowUnsupported("training_step returned no loss (None, or a dict without 'loss')")
        if not loss.requires_grad:
            value = float(loss.detach())
            self.losses.append(value)
            return value
        loss.backward()
        self.optimizer.step()
        value = float(loss.detach())
        self.losses.append(value)
        return value

    def loss(self, batch: Any, batch_idx: int = 0, train_mode: bool = False) -> float:
        """The ``training_step`` loss on ``batch`` without an update (eval mode by default)."""
        self.module.train(train_mode)
        with torch.no_grad(), self._quiet(), self._forward_context():
            output = self.module.training_step(batch, batch_idx)
        loss = step_loss(output)
        if loss is None:
            raise ShadowUnsupported("training_step returned no loss (None, or a dict without 'loss')")
        return float(loss.detach())

    def forward(self, inputs: Any) -> Any:
        """The copy's forward on ``inputs`` in eval mode, without gradients."""
        self.module.eval()
        with torch.no_grad(), self._quiet(), self._forward_context():
            return self.module(inputs)
