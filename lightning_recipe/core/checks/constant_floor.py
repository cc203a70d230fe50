"""The lowest validation loss a model trained on zeroed inputs can reach, where it is known for sure.

When the zeroed batch is the same for every sample but its targets (images, feature vectors: the
content is all there is, and it is zeroed; no mask or position tells samples apart), a model
trained on it predicts one constant for every sample, whatever its weights. No constant does
better than the targets' own statistics on the validation batches: their entropy (cross-entropy),
the mean binary entropy of each label (BCE), their variance (MSE). That *floor* holds for the
zeroed copy of ``InputIndependentBaseline`` at every step, so a real copy ``margin`` below it
already passes: the zeroed copy need not be trained. It counts only where the user's loss is
that loss: :func:`floor_terms` compares it, batch by batch, with the one computed here.

Example:
    >>> import torch
    >>> y = torch.tensor([0, 0, 1, 2])
    >>> kind = floor_kind(torch.zeros(4, 3), y)
    >>> kind, round(floor_of(kind, floor_stats(kind, y)), 4)  # the entropy of (1/2, 1/4, 1/4)
    (('multiclass', 3), 1.0397)
    >>> input_free({"pixel_values": torch.zeros(4, 8), "labels": y}, y)
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.nn import functional as F

from lightning_recipe.core.tasks import is_binary_valued

__all__ = [
    "MATCH_RTOL",
    "FloorKind",
    "floor_kind",
    "floor_of",
    "floor_stats",
    "input_free",
    "input_signature",
    "loss_matches",
    "our_loss",
    "same_signature",
]

#: The user's loss and the one computed here agree within this (relative) on every batch: the same loss.
MATCH_RTOL = 1e-3

#: ``(task, width)``: the task and the number of classes, labels or outputs.
FloorKind = tuple[str, int]


def input_signature(batch: Any, targets: torch.Tensor) -> list[Any] | None:
    """What ``batch`` shows a model besides ``targets``, when it is the same for every sample: per
    tensor its first row (a tensor without a batch dimension whole), per plain number its value, in
    order; ``None`` when samples differ or the batch holds values that are neither (strings, objects).
    Batches a model cannot tell apart have equal signatures (:func:`same_signature`)."""
    n = targets.shape[0] if targets.dim() else 1
    out: list[Any] = []

    def walk(obj: Any) -> bool:
        if obj is targets:
            return True
        if isinstance(obj, torch.Tensor):
            if obj.dim() and obj.shape[0] == n:
                if n > 1 and not bool((obj == obj[:1]).all()):
                    return False
                out.append(obj[:1].detach().cpu())
            else:
                out.append(obj.detach().cpu())
            return True
        if obj is None or isinstance(obj, (bool, int, float)):
            out.append(obj)
            return True
        if isinstance(obj, Mapping):
            return all(walk(obj[k]) for k in sorted(obj, key=str))
        if isinstance(obj, (list, tuple)):
            return all(walk(v) for v in obj)
        return False

    return out if walk(batch) else None


def same_signature(a: list[Any], b: list[Any]) -> bool:
    """Whether two :func:`input_signature` lists are equal, tensor by tensor."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
                return False
            if x.shape != y.shape or x.dtype != y.dtype or not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


def input_free(batch: Any, targets: torch.Tensor) -> bool:
    """Whether nothing of ``batch`` but ``targets`` tells one sample from another (see :func:`input_signature`)."""
    return input_signature(batch, targets) is not None


def floor_kind(logits: Any, targets: Any) -> FloorKind | None:
    """The task whose floor is known for these shapes, or ``None``: class indices ``(N,)`` for logits
    ``(N, C)`` (cross-entropy), 0/1 targets of the logits' shape (BCE with logits; ``(N,)``, ``(N, 1)``
    or ``(N, K)``), other float targets of the outputs' shape (MSE)."""
    if not (isinstance(logits, torch.Tensor) and isinstance(targets, torch.Tensor)):
        return None
    if logits.dim() == 0 or targets.dim() == 0 or logits.shape[0] != targets.shape[0] or logits.shape[0] < 2:
        return None
    if not logits.is_floating_point() or targets.is_complex():
        return None
    integer = not targets.is_floating_point()
    if integer and targets.dim() == 1 and logits.dim() == 2 and logits.shape[1] >= 2:
        c = int(logits.shape[1])
        ok = int(targets.min()) >= 0 and int(targets.max()) < c
        return ("multiclass", c) if ok else None
    if logits.dim() > 2 or targets.dim() > 2 or logits.numel() != targets.numel():
        return None
    width = 1 if logits.dim() == 1 else int(logits.shape[1])
    if targets.is_floating_point() and is_binary_valued(targets):
        return ("binary", width)
    if targets.is_floating_point():
        return ("regression", width)
    return None


def _columns(kind: FloorKind, t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64).reshape(t.shape[0], kind[1]).cpu()


def our_loss(kind: FloorKind, logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The mean loss the floor is for (cross-entropy, BCE with logits, MSE) of ``logits``, in float64."""
    task, _ = kind
    z = logits.detach().to(torch.float64).cpu()
    if task == "multiclass":
        return float(F.cross_entropy(z, targets.detach().long().cpu()))
    y = _columns(kind, targets)
    z = z.reshape(y.shape)
    if task == "binary":
        return float(F.binary_cross_entropy_with_logits(z, y))
    return float(F.mse_loss(z, y))


def loss_matches(user: float, ours: float) -> bool:
    """Whether the user's loss on a batch is ours (:data:`MATCH_RTOL`)."""
    return math.isfinite(user) and abs(user - ours) <= MATCH_RTOL * max(abs(ours), 1e-2)


def floor_stats(kind: FloorKind, targets: torch.Tensor) -> list[float]:
    """This batch's sums for :func:`floor_of` (add those of every batch and rank): class counts
    (multiclass); ones per label and the count (binary); sums, sums of squares and the count (MSE)."""
    task, width = kind
    if task == "multiclass":
        return torch.bincount(targets.detach().long().reshape(-1).cpu(), minlength=width).double().tolist()
    y = _columns(kind, targets)
    if task == "binary":
        return [*y.sum(0).tolist(), float(y.shape[0])]
    return [*y.sum(0).tolist(), *(y * y).sum(0).tolist(), float(y.shape[0])]


def floor_of(kind: FloorKind, stats: list[float]) -> float:
    """The lowest mean loss any constant prediction reaches on targets with these summed ``stats``."""
    task, width = kind
    s = torch.tensor(stats, dtype=torch.float64)
    if task == "multiclass":
        p = s / s.sum()
        p = p[p > 0]
        return float(-(p * p.log()).sum())
    n = float(s[-1])
    if task == "binary":
        p = (s[:width] / n).clamp(1e-12, 1 - 1e-12)
        return float((-(p * p.log()) - (1 - p) * (1 - p).log()).mean())
    mean = s[:width] / n
    return float((s[width : 2 * width] / n - mean * mean).clamp_min(0.0).mean())
