"""Infer the learning task from the targets and the model's outputs.

The four tasks and the losses they imply:

* ``"multiclass"``: one integer class index per sample, logits of width C; softmax + cross-entropy.
  A two-logit binary head is multiclass.
* ``"binary"``: one 0/1 label per sample, one logit; sigmoid + BCE with logits.
* ``"multilabel"``: K 0/1 labels per sample, K logits; sigmoid + BCE with logits per label.
* ``"regression"``: real-valued targets; MSE, L1 or Huber.

Example:
    >>> import torch
    >>> infer_task(torch.tensor([0, 2, 1]), torch.zeros(3, 3))
    'multiclass'
    >>> infer_task(torch.tensor([[0.0], [1.0]]), torch.zeros(2, 1))
    'binary'
    >>> infer_task(torch.tensor([151.0, 75.0]), torch.zeros(2, 1))
    'regression'
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

__all__ = [
    "TASKS",
    "Task",
    "TaskLiteral",
    "check_task_argument",
    "class_dim",
    "infer_task",
    "is_binary_valued",
]

TaskLiteral = Literal["multiclass", "binary", "multilabel", "regression"]
Task = TaskLiteral
#: The valid values of every ``task=`` argument (besides ``"auto"``).
TASKS: tuple[str, ...] = get_args(TaskLiteral)


def check_task_argument(task: str, owner: str) -> None:
    """Raise ``ValueError`` naming ``owner(task=...)`` unless ``task`` is ``"auto"`` or one of :data:`TASKS`."""
    if task != "auto" and task not in TASKS:
        raise ValueError(
            f"{owner}(task={task!r}): unknown task; pass one of 'auto', "
            + ", ".join(repr(t) for t in TASKS[:-1])
            + f" or {TASKS[-1]!r}."
        )


def is_binary_valued(t: torch.Tensor) -> bool:
    """True when every element of ``t`` is 0 or 1 (any dtype)."""
    if t.numel() == 0:
        return False
    t = t.detach()
    return bool(((t == 0) | (t == 1)).all())


def class_dim(targets: torch.Tensor, outputs: torch.Tensor) -> int | None:
    """The dimension of multiclass ``outputs`` that holds the classes, for ``targets`` of class indices.

    ``1`` for ``(N, C)`` logits and for dense ``(N, C, ...)`` logits with ``(N, ...)`` targets (the
    layout ``F.cross_entropy`` takes), ``-1`` for ``(N, T, C)`` logits with ``(N, T)`` targets (a
    language model's), ``None`` when the targets fit neither. Both fit (``T == C``): ``1``.

    Example:
        >>> class_dim(torch.zeros(2, 6, dtype=torch.long), torch.zeros(2, 5, 6))
        1
        >>> class_dim(torch.zeros(2, 6, dtype=torch.long), torch.zeros(2, 6, 5))
        -1
    """
    t, o = tuple(targets.shape), tuple(outputs.shape)
    if len(o) == 2:
        return 1
    if len(o) < 2:
        return None
    if t == (o[0], *o[2:]):
        return 1
    if t == o[:-1]:
        return -1
    return None


def _ambiguous(why: str, choices: tuple[str, ...]) -> ValueError:
    listed = " or ".join(f"task={c!r}" for c in choices)
    return ValueError(f"cannot infer the task: {why}; pass {listed}.")


def infer_task(
    targets: torch.Tensor,
    outputs: torch.Tensor | None = None,
    task: str = "auto",
) -> TaskLiteral:
    """Return the task implied by ``targets`` and the model's ``outputs``.

    Rules (``outputs`` of shape ``(N, W, ...)``, ``targets`` of shape ``(N, ...)``):

    * integer targets with one value per sample and ``W >= 2`` logits: ``"multiclass"``;
    * integer (or bool) targets with one logit (``W == 1`` or outputs of shape ``(N,)``):
      ``"binary"`` when they are 0/1, ``"regression"`` otherwise;
    * float 0/1 targets of the outputs' shape: ``"binary"`` for one logit, ``"multilabel"`` for more,
      except one-hot rows, which are ambiguous (cross-entropy with one-hot targets, or multilabel);
    * other float targets: ``"regression"``.

    Without ``outputs``, integer targets with more than two values are multiclass, float targets
    with values other than 0/1 are regression; anything else is ambiguous.

    Args:
        targets: the targets of a batch.
        outputs: the model's outputs for that batch (logits or predictions).
        task: ``"auto"`` to infer, or a task to validate and return as is.

    Raises:
        ValueError: for an unknown ``task`` or an ambiguous case; the message lists the ``task=``
            values that resolve it.
    """
    check_task_argument(task, "infer_task")
    if task != "auto":
        return task  # type: ignore[return-value]
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"infer_task: targets must be a tensor, got {type(targets).__name__}.")
    t = targets.detach()
    n = t.shape[0] if t.dim() else 1
    integer = not t.is_floating_point() and not t.is_complex()
    binary_valued = is_binary_valued(t)

    if outputs is None:
        if integer and t.dim() <= 1 and not binary_valued:
            return "multiclass"
        if t.is_floating_point() and not binary_valued:
            return "regression"
        raise _ambiguous(
            f"0/1 targets of shape {tuple(t.shape)} and no model output to compare with",
            ("binary", "multiclass", "multilabel"),
        )

    o = outputs.detach()
    if o.dim() == 0:
        raise _ambiguous("the model returned a scalar, not one output per sample", TASKS)
    if o.shape[0] != n:
        raise _ambiguous(f"the model's output has {o.shape[0]} rows but the targets have {n}", TASKS)
    width = 1 if o.dim() == 1 else int(o[0].numel()) if o.dim() == 2 else int(o.shape[1])
    per_sample_targets = 1 if t.dim() <= 1 else int(t[0].numel())

    if integer:
        if per_sample_targets == 1:
            if width >= 2:
                return "multiclass"
            return "binary" if binary_valued else "regression"
        dense = o.dim() >= 3 and class_dim(t, o) is not None  # per-position classes: (N, C, ...) or (N, T, C)
        if dense:
            return "multiclass"
        if t.numel() == o.numel():
            return "multilabel" if binary_valued else "regression"
        raise _ambiguous(
            f"integer targets of shape {tuple(t.shape)} do not fit outputs of shape {tuple(o.shape)}",
            TASKS,
        )

    # floating-point targets
    if binary_valued:
        if width == 1 and per_sample_targets == 1:
            return "binary"
        if t.numel() == o.numel():
            flat = t.reshape(n, -1)
            if flat.shape[1] > 1 and bool((flat.sum(dim=1) == 1).all()):
                raise _ambiguous(
                    f"one-hot float targets of shape {tuple(t.shape)} fit both cross-entropy and "
                    "per-label BCE",
                    ("multiclass", "multilabel"),
                )
            return "multilabel"
    return "regression"
