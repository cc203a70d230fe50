"""Shadow training without Lightning: run the user's ``training_step`` on a detached copy.

Checks such as "overfit one batch" and "input-independent baseline" train *a copy* of the model
with exactly what the user wrote (their ``training_step`` computes the loss, their
``configure_optimizers`` builds the optimizer). Building the copy needs Lightning (it is detached
from its trainer and shown a read-only view of it: :mod:`lightning_recipe.callbacks._shadow`);
training it does not, and lives here:

* :class:`ShadowSteps` runs ``training_step`` + backward + optimizer step on the copy, scores it
  with ``training_step`` without an update, and calls its forward through
  :class:`~lightning_recipe.core.model_call.ModelCall` (so ``forward(x)``, ``forward(**batch)``
  and the user's ``forward=`` all work);
* :func:`first_optimizer` / :func:`use_working_lrs` read what ``configure_optimizers`` returned
  and put back the rate a schedule trains at (not its warm-up start);
* :func:`replay_problem` says whether a check may iterate a dataloader itself;
* :class:`ShadowUnsupported` is the :class:`~lightning_recipe.findings.Skip` of all of these.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from torch.nn import functional as F
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = nn.Linear(4, 3)
    ...     def forward(self, x):
    ...         return self.lin(x)
    ...     def training_step(self, batch, batch_idx):
    ...         return F.cross_entropy(self(batch[0]), batch[1])
    >>> _ = torch.manual_seed(0)
    >>> net = Net()
    >>> steps = ShadowSteps(net, torch.optim.SGD(net.parameters(), lr=0.5))
    >>> batch = (torch.randn(8, 4), torch.arange(8) % 3)
    >>> first = steps.step(batch)
    >>> _ = [steps.step(batch) for _ in range(20)]
    >>> steps.loss(batch) < first, tuple(steps.forward(batch).logits.shape)
    (True, (8, 3))
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from lightning_recipe.core.model_call import ModelCall, ModelOutput
from lightning_recipe.core.stats import is_one_shot
from lightning_recipe.findings import Skip

__all__ = [
    "ReadThrough",
    "ShadowSteps",
    "ShadowUnsupported",
    "check_own_parameters",
    "first_optimizer",
    "local_batchnorm",
    "replay_problem",
    "step_loss",
    "use_working_lrs",
    "working_lrs",
]


class ShadowUnsupported(Skip):
    """The module cannot be shadow-trained (the message says why, for a ``skipped`` finding)."""


class ReadThrough:
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


def first_optimizer(result: Any) -> torch.optim.Optimizer | None:
    """The first optimizer in what ``configure_optimizers`` returned (an optimizer, dicts, lists)."""
    if isinstance(result, torch.optim.Optimizer):
        return result
    if isinstance(result, dict):
        return first_optimizer(result.get("optimizer"))
    if isinstance(result, (list, tuple)):
        for item in result:
            found = first_optimizer(item)
            if found is not None:
                return found
    return None


def working_lrs(optimizer: torch.optim.Optimizer, schedulers: list[Any]) -> list[float | None]:
    """Per param group, the rate the copy trains at: the schedule's working rate, not its warm-up start.

    ``schedulers`` are scheduler configs (anything with a ``.scheduler``). ``OneCycleLR`` starts at
    ``max_lr / div_factor`` (its ``initial_lr``) and spends most of the run near ``max_lr``;
    ``CyclicLR`` starts at ``base_lr`` and cycles up to its ``max_lrs``; a warm-up (``LambdaLR``,
    ``LinearLR``) starts near 0 from its base rate ``initial_lr``.
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


def use_working_lrs(optimizer: torch.optim.Optimizer, schedulers: list[Any]) -> None:
    """Set each param group's rate to :func:`working_lrs` (where one is known)."""
    for group, lr in zip(optimizer.param_groups, working_lrs(optimizer, schedulers)):
        if lr is not None and isinstance(group.get("lr"), (int, float)):
            group["lr"] = lr


def check_own_parameters(optimizer: torch.optim.Optimizer, module: nn.Module) -> None:
    """Raise :class:`ShadowUnsupported` unless ``optimizer`` holds only ``module``'s parameters."""
    own = {id(p) for p in module.parameters()}
    for group in optimizer.param_groups:
        if any(id(p) not in own for p in group["params"]):
            raise ShadowUnsupported(
                "configure_optimizers() returned an optimizer over parameters that are not the module's own"
            )


class _LocalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A SyncBatchNorm turned local: the copy trains alone, it must not wait for other ranks."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")


def local_batchnorm(module: nn.Module) -> None:
    """Turn every ``SyncBatchNorm`` of ``module`` (a copy) into a local batch norm, in place."""
    for m in module.modules():
        if isinstance(m, nn.SyncBatchNorm):
            m.__class__ = _LocalBatchNorm


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


class ShadowSteps:
    """Train ``module`` (a detached copy) with its own ``training_step`` and ``optimizer``.

    Args:
        module: the copy; its ``training_step(batch, batch_idx)`` returns the loss.
        optimizer: the copy's optimizer (over the copy's parameters).
        precision_context: a factory of the trainer's precision context
            (``trainer.precision_plugin.forward_context``), or ``None``.

    Attributes:
        losses: the loss of every :meth:`step`, before its update.
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        precision_context: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.module = module
        self.optimizer = optimizer
        self.precision_context = precision_context
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

    def _training_loss(self, batch: Any, batch_idx: int) -> torch.Tensor:
        with self._quiet(), self._forward_context():
            output = self.module.training_step(batch, batch_idx)  # type: ignore[operator]
        loss = step_loss(output)
        if loss is None:
            raise ShadowUnsupported("training_step returned no loss (None, or a dict without 'loss')")
        return loss

    def step(self, batch: Any, batch_idx: int = 0) -> float:
        """One training step on ``batch``; returns the loss before the update."""
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = self._training_loss(batch, batch_idx)
        if loss.requires_grad:
            loss.backward()
            self.optimizer.step()
        value = float(loss.detach())
        self.losses.append(value)
        return value

    def loss(self, batch: Any, batch_idx: int = 0, train_mode: bool = False) -> float:
        """The ``training_step`` loss on ``batch`` without an update (eval mode by default)."""
        self.module.train(train_mode)
        with torch.no_grad():
            return float(self._training_loss(batch, batch_idx).detach())

    def forward(self, batch: Any, call: ModelCall | None = None) -> ModelOutput:
        """The copy's output on ``batch``, called as ``call`` says (eval mode, no gradients).

        ``call`` (default: a fresh :class:`~lightning_recipe.core.model_call.ModelCall`) infers
        how the module is called: ``module(inputs)``, ``module(**batch)``, the user's ``forward=``.
        """
        call = call if call is not None else ModelCall()
        with self._quiet():
            return call(self.module, batch, train=False, context=self._forward_context(), guard=False)
