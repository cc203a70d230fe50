"""Shadow training: train a detached copy of the user's module with the user's own step and optimizer.

Checks such as "overfit one batch" and "input-independent baseline" must train *a copy* of the
model with exactly what the user wrote (their ``training_step`` computes the loss, their
``configure_optimizers`` builds the optimizer) while leaving the real module, optimizer, trainer,
logger and random state untouched. This module is the one place that knows how to do that.

* :func:`detached_copy` deep-copies the module without copying the trainer it is attached to;
  ``self.log`` calls in the copy become no-ops (they are silenced), so nothing reaches the real
  logger.
* :func:`build_optimizer` calls the copy's ``configure_optimizers`` (with the trainer visible, for
  modules that read ``self.trainer.estimated_stepping_batches``) and returns its first optimizer.
* :class:`ShadowTrainer` runs steps of ``training_step`` + backward + optimizer step on the copy.

Run all of it inside :func:`~lightning_recipe.core.state.preserved_state` (the RNG is shared).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

__all__ = ["ShadowTrainer", "ShadowUnsupported", "build_optimizer", "detached_copy", "step_loss"]


class ShadowUnsupported(RuntimeError):
    """The module cannot be shadow-trained (the message says why, for a ``skipped`` finding)."""


@contextmanager
def _without_trainer(module: LightningModule) -> Iterator[None]:
    saved = module.__dict__.get("_trainer")
    module.__dict__["_trainer"] = None
    try:
        yield
    finally:
        module.__dict__["_trainer"] = saved


def detached_copy(pl_module: LightningModule) -> LightningModule:
    """Deep-copy ``pl_module`` (parameters, buffers, submodules) without its trainer."""
    with _without_trainer(pl_module):
        try:
            clone = copy.deepcopy(pl_module)
        except Exception as err:  # e.g. modules holding open files or locks
            raise ShadowUnsupported(f"the module cannot be deep-copied ({type(err).__name__}: {err})") from err
    clone.__dict__["_trainer"] = None
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


def build_optimizer(clone: LightningModule, trainer: Trainer | None = None) -> torch.optim.Optimizer:
    """The first optimizer ``clone.configure_optimizers()`` returns, built on the clone's parameters.

    Schedulers are ignored: shadow runs are short and use the initial learning rate. A scheduler
    built in ``configure_optimizers`` may already have changed the rate (a warm-up from ~0); its
    base rate (``initial_lr``) is put back.
    """
    clone.__dict__["_trainer"] = trainer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = clone.configure_optimizers()
    except Exception as err:
        raise ShadowUnsupported(
            f"configure_optimizers() failed on a copy of the module ({type(err).__name__}: {err})"
        ) from err
    finally:
        clone.__dict__["_trainer"] = None
    optimizer = _first_optimizer(result)
    if optimizer is None:
        raise ShadowUnsupported("configure_optimizers() returned no optimizer")
    for group in optimizer.param_groups:
        initial = group.get("initial_lr")
        if isinstance(initial, (int, float)) and initial > 0 and isinstance(group.get("lr"), (int, float)):
            group["lr"] = initial
    own = {id(p) for p in clone.parameters()}
    for group in optimizer.param_groups:
        if any(id(p) not in own for p in group["params"]):
            raise ShadowUnsupported(
                "configure_optimizers() returned an optimizer over parameters that are not the module's own"
            )
    return optimizer


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
        trainer: the real trainer (only shown to ``configure_optimizers``).

    Raises:
        ShadowUnsupported: manual optimization, no optimizer, a module that cannot be copied.
    """

    def __init__(self, pl_module: LightningModule, trainer: Trainer | None = None) -> None:
        if not pl_module.automatic_optimization:
            raise ShadowUnsupported("the module uses manual optimization (automatic_optimization=False)")
        self.module = detached_copy(pl_module)
        self.optimizer = build_optimizer(self.module, trainer)
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
            from contextlib import nullcontext

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
        with torch.no_grad(), self._forward_context():
            return self.module(inputs)
