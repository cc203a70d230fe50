"""The one vocabulary of losses: their names, which task each fits, and the task's default.

Every check that takes a ``loss=`` argument (``LossAtInitCheck``, ``DumbBaselines``, ...) speaks
these names and validates them with :func:`resolve_loss`.

Example:
    >>> resolve_loss("regression", "auto"), resolve_loss("binary", "bce_with_logits")
    ('mse', 'bce')
    >>> resolve_loss("multiclass", "mse", owner="DumbBaselines")
    Traceback (most recent call last):
    ...
    ValueError: DumbBaselines(loss='mse'): does not fit a multiclass task; pass 'auto' or one of 'cross_entropy'.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from torch import nn

from lightning_recipe.core.tasks import TASKS

__all__ = [
    "DEFAULT_LOSS",
    "LOSSES",
    "LOSSES_FOR_TASK",
    "LOSS_ALIASES",
    "REGRESSION_LOSSES",
    "LossName",
    "canonical_loss",
    "declared_regression_loss",
    "default_loss",
    "resolve_loss",
]

LossName = Literal["cross_entropy", "bce", "mse", "l1", "huber"]
#: Every loss the checks know (cross-entropy on logits, BCE with logits, MSE, L1, Huber).
LOSSES: tuple[str, ...] = get_args(LossName)
REGRESSION_LOSSES: tuple[str, ...] = ("mse", "l1", "huber")
#: Other spellings users write for the same losses.
LOSS_ALIASES: dict[str, str] = {
    "ce": "cross_entropy",
    "bce_with_logits": "bce",
    "mae": "l1",
    "smooth_l1": "huber",
}
#: The losses that make sense for each task (the first is the default).
LOSSES_FOR_TASK: dict[str, tuple[str, ...]] = {
    "multiclass": ("cross_entropy",),
    "binary": ("bce",),
    "multilabel": ("bce",),
    "regression": REGRESSION_LOSSES,
}
#: The loss a task implies when ``loss="auto"``.
DEFAULT_LOSS: dict[str, str] = {task: losses[0] for task, losses in LOSSES_FOR_TASK.items()}


def canonical_loss(loss: str) -> str:
    """``loss`` with its alias resolved (``"ce"`` -> ``"cross_entropy"``); other values unchanged."""
    return LOSS_ALIASES.get(loss, loss)


def default_loss(task: str) -> LossName:
    """The loss a task implies: cross-entropy, BCE with logits, or MSE for regression."""
    return DEFAULT_LOSS.get(task, "mse")  # type: ignore[return-value]


def declared_regression_loss(module: Any) -> LossName | None:
    """The regression loss a module holds as a submodule, when it is one of :data:`REGRESSION_LOSSES`
    as the baselines compute it: ``nn.L1Loss`` -> ``"l1"``, ``nn.HuberLoss(delta=1)`` /
    ``nn.SmoothL1Loss(beta=1)`` -> ``"huber"``, ``nn.MSELoss`` -> ``"mse"``; ``None`` for none or several.

    Example:
        >>> from torch import nn
        >>> declared_regression_loss(nn.ModuleDict({"loss": nn.HuberLoss()}))
        'huber'
    """
    found: set[str] = set()
    for m in module.modules() if hasattr(module, "modules") else []:
        if isinstance(m, nn.L1Loss):
            found.add("l1")
        elif (isinstance(m, nn.HuberLoss) and float(m.delta) == 1.0) or (
            isinstance(m, nn.SmoothL1Loss) and float(m.beta) == 1.0
        ):
            found.add("huber")
        elif isinstance(m, nn.MSELoss):
            found.add("mse")
        elif isinstance(m, (nn.HuberLoss, nn.SmoothL1Loss)):
            return None  # another delta: none of the baselines' losses
    return found.pop() if len(found) == 1 else None  # type: ignore[return-value]


def resolve_loss(task: str, loss: str = "auto", owner: str = "resolve_loss") -> LossName:
    """The loss to use for ``task``: ``loss`` itself if it fits, the task's default for ``"auto"``.

    Raises:
        ValueError: an unknown task or loss, or a loss that does not fit the task (the message
            names ``owner`` and lists the values that would do).
    """
    if task not in TASKS:
        raise ValueError(f"{owner}(task={task!r}): unknown task; pass one of {list(TASKS)}.")
    if loss == "auto":
        return default_loss(task)
    name = canonical_loss(loss)
    if name not in LOSSES:
        raise ValueError(
            f"{owner}(loss={loss!r}): unknown loss; pass 'auto' or one of {', '.join(repr(x) for x in LOSSES)}."
        )
    fitting = LOSSES_FOR_TASK[task]
    if name not in fitting:
        raise ValueError(
            f"{owner}(loss={loss!r}): does not fit a {task} task; pass 'auto' or one of "
            f"{', '.join(repr(x) for x in fitting)}."
        )
    return name  # type: ignore[return-value]
