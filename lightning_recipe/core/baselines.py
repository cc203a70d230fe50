"""Dumb baselines: what a predictor that never looks at the input scores on some targets.

The recipe's "dumb baselines": a model must beat the best guess made without the input. Two such
guesses are computed from the *training* target statistics (:class:`~lightning_recipe.core.stats.TargetStats`)
and scored on other (validation) targets:

* classification (``"multiclass"``, ``"binary"``, ``"multilabel"``): the **prior** predictor,
  which always outputs the training class frequencies (its loss is cross-entropy / BCE), and the
  **majority** predictor, which always answers the most frequent class (its accuracy);
* regression: the **mean** predictor, which always outputs the training mean (its loss is MSE,
  L1 or Huber, and its mean absolute error).

A class (or a label value) never seen in training gets half a count, so the loss stays finite.
The scores are sums (:func:`baseline_sums`), so shards (dataloader batches, DDP ranks) merge
exactly by adding them, and :func:`baseline_scores` turns the sums into means.

Example:
    >>> import torch
    >>> train = TargetStats.from_targets(torch.tensor([0, 0, 0, 1]), "multiclass", num_classes=2)
    >>> scores = dumb_baselines(train, torch.tensor([0, 1, 0, 0]))
    >>> scores.loss_name, round(scores.loss, 4), scores.metric_name, scores.metric
    ('cross_entropy', 0.5623, 'accuracy', 0.75)
    >>> scores.tags()
    {'prior_loss': 0.5623..., 'majority_accuracy': 0.75}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from lightning_recipe.core import losses as _losses
from lightning_recipe.core.stats import TargetStats
from lightning_recipe.core.tasks import TaskLiteral

__all__ = [
    "DEFAULT_LOSS",
    "LOSSES",
    "LOSSES_FOR_TASK",
    "BaselineScores",
    "LossName",
    "baseline_scores",
    "baseline_sums",
    "constant_prediction",
    "dumb_baselines",
    "resolve_loss",
]

#: Every loss a dumb baseline can be scored with (the one vocabulary: :mod:`lightning_recipe.core.losses`).
LOSSES = _losses.LOSSES
LOSSES_FOR_TASK = _losses.LOSSES_FOR_TASK
DEFAULT_LOSS = _losses.DEFAULT_LOSS
LossName = _losses.LossName

#: Length of the vector :func:`baseline_sums` returns: count, loss sum, metric sum.
_NUM_SUMS = 3


def resolve_loss(task: TaskLiteral, loss: str = "auto", owner: str = "dumb_baselines") -> LossName:
    """The loss to score ``task`` with (see :func:`lightning_recipe.core.losses.resolve_loss`)."""
    return _losses.resolve_loss(task, loss, owner)


def constant_prediction(stats: TargetStats) -> torch.Tensor:
    """The input-independent prediction learned from training statistics (float64).

    * multiclass: the class priors ``(C,)``; a class never seen gets half a count;
    * binary / multilabel: the frequency of label 1 per label ``(K,)``, kept half a count away from
      0 and 1;
    * regression: the per-output mean ``(D,)``.

    Raises:
        ValueError: when the statistics are empty.
    """
    if stats.count <= 0:
        raise ValueError("constant_prediction: the target statistics are empty (no training target seen).")
    if stats.task == "multiclass":
        assert stats.class_counts is not None
        counts = stats.class_counts.to(torch.float64).clone()
        if counts.numel() == 0:
            raise ValueError("constant_prediction: the target statistics have no class.")
        counts[counts <= 0] = 0.5
        return counts / counts.sum()
    mean = stats.mean().to(torch.float64)
    if stats.task == "regression":
        return mean
    assert stats.num_values is not None
    eps = 0.5 / stats.num_values.to(torch.float64).clamp_min(1.0)
    return torch.minimum(torch.maximum(mean, eps), 1.0 - eps)


def _per_output(values: torch.Tensor) -> torch.Tensor:
    """Reshape targets to ``(N, D, rest)``, the layout :class:`TargetStats` uses for per-output sums."""
    if values.dim() == 0:
        return values.reshape(1, 1, 1)
    if values.dim() == 1:
        return values.reshape(-1, 1, 1)
    n, d = values.shape[0], values.shape[1]
    return values.reshape(n, d, -1)


def baseline_sums(
    prediction: torch.Tensor,
    targets: torch.Tensor,
    task: TaskLiteral,
    loss: str = "auto",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Sums of the constant ``prediction``'s loss and metric over ``targets``: ``[count, loss_sum, metric_sum]``.

    The metric is the accuracy (number of correct answers of the majority predictor) for
    classification and the absolute error for regression. Add the sums of several shards, then
    call :func:`baseline_scores`.

    Args:
        prediction: from :func:`constant_prediction`.
        targets: class indices ``(N, ...)`` (multiclass), 0/1 labels ``(N,)``/``(N, K)``
            (binary/multilabel), values ``(N,)``/``(N, D, ...)`` (regression).
        task: the task.
        loss: a name from :data:`LOSSES` that fits the task, or ``"auto"``.
        ignore_index: multiclass only: a sentinel label to leave out (e.g. ``-100``).

    Raises:
        ValueError: for targets that do not fit the prediction (shape, class range).
    """
    name = resolve_loss(task, loss, "baseline_sums")
    pred = prediction.detach().to(torch.float64).cpu()
    t = targets.detach().cpu()
    if task == "multiclass":
        labels = t.reshape(-1).long()
        if ignore_index is not None:
            labels = labels[labels != ignore_index]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= pred.numel()):
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise ValueError(
                f"baseline_sums: class label {bad} is out of range for {pred.numel()} classes; pass "
                "`num_classes=` (or `ignore_index=` for a sentinel label)."
            )
        log_p = pred.log()
        loss_sum = -log_p[labels].sum()
        correct = (labels == int(pred.argmax())).sum()
        return torch.tensor([float(labels.numel()), float(loss_sum), float(correct)], dtype=torch.float64)

    values = _per_output(t.to(torch.float64))
    if values.shape[1] != pred.numel():
        raise ValueError(
            f"baseline_sums: targets of shape {tuple(t.shape)} have {values.shape[1]} output(s) but the "
            f"baseline predicts {pred.numel()}; the training and validation targets must have the same layout."
        )
    guess = pred.reshape(1, -1, 1).expand_as(values)
    if task in ("binary", "multilabel"):
        loss_sum = F.binary_cross_entropy(guess, values.clamp(0.0, 1.0), reduction="sum")
        correct = ((guess >= 0.5) == (values >= 0.5)).sum()
        return torch.tensor([float(values.numel()), float(loss_sum), float(correct)], dtype=torch.float64)

    err = values - guess
    if name == "mse":
        loss_sum = (err * err).sum()
    elif name == "l1":
        loss_sum = err.abs().sum()
    else:
        loss_sum = F.huber_loss(guess, values, reduction="sum")
    return torch.tensor([float(values.numel()), float(loss_sum), float(err.abs().sum())], dtype=torch.float64)


@dataclass(frozen=True)
class BaselineScores:
    """A dumb baseline's scores on some targets.

    Attributes:
        task: the task.
        loss_name: the loss (``"cross_entropy"``, ``"bce"``, ``"mse"``, ``"l1"``, ``"huber"``).
        loss: the mean loss of the prior (classification) or mean (regression) predictor.
        metric_name: ``"accuracy"`` (majority predictor) or ``"mae"`` (mean predictor).
        metric: its value.
        count: how many target values were scored.
        tokens: the targets are tokens of a sequence: the prior is the unigram (token-frequency) predictor.
    """

    task: str
    loss_name: str
    loss: float
    metric_name: str
    metric: float
    count: int
    tokens: bool = False

    @property
    def predictor(self) -> str:
        """``"prior"`` for classification, ``"mean"`` for regression (the predictor the loss is of)."""
        return "mean" if self.task == "regression" else "prior"

    @property
    def metric_predictor(self) -> str:
        """``"majority"`` for classification, ``"mean"`` for regression (the predictor the metric is of)."""
        return "mean" if self.task == "regression" else "majority"

    def tags(self) -> dict[str, float]:
        """Scalar names for logging: ``prior_loss``/``majority_accuracy`` or ``mean_loss``/``mean_mae``."""
        return {
            f"{self.predictor}_loss": self.loss,
            f"{self.metric_predictor}_{self.metric_name}": self.metric,
        }

    def value(self, what: str) -> float:
        """The score to compare a model's metric with: ``"loss"``, ``"accuracy"`` or ``"mae"``."""
        if what == "loss":
            return self.loss
        if what == self.metric_name:
            return self.metric
        raise ValueError(
            f"BaselineScores.value({what!r}): a {self.task} baseline has a 'loss' and an "
            f"{self.metric_name!r}, not {what!r}."
        )


def baseline_scores(
    sums: torch.Tensor, task: TaskLiteral, loss: str = "auto", tokens: bool = False
) -> BaselineScores:
    """Turn (merged) :func:`baseline_sums` into :class:`BaselineScores` (``tokens``: of sequence tokens)."""
    name = resolve_loss(task, loss, "baseline_scores")
    flat = sums.detach().to(torch.float64).cpu().reshape(-1)
    if flat.numel() != _NUM_SUMS:
        raise ValueError(f"baseline_scores: expected {_NUM_SUMS} sums, got {flat.numel()}.")
    count = float(flat[0])
    if count <= 0:
        raise ValueError("baseline_scores: no target was scored (count is 0).")
    metric_name = "mae" if task == "regression" else "accuracy"
    loss_value = float(flat[1]) / count
    return BaselineScores(
        task=task,
        loss_name=name,
        loss=loss_value if math.isfinite(loss_value) else math.inf,
        metric_name=metric_name,
        metric=float(flat[2]) / count,
        count=round(count),
        tokens=bool(tokens),
    )


def dumb_baselines(
    train_stats: TargetStats,
    targets: torch.Tensor,
    loss: str = "auto",
    ignore_index: int | None = None,
) -> BaselineScores:
    """Score the dumb predictors learned from ``train_stats`` on ``targets`` (one shard, one call).

    Args:
        train_stats: statistics of the training targets.
        targets: the targets to score on (usually the validation set's).
        loss: ``"auto"`` (cross-entropy, BCE or MSE by task) or a name from :data:`LOSSES`.
        ignore_index: multiclass only: a sentinel label to leave out.
    """
    task = train_stats.task
    prediction = constant_prediction(train_stats)
    sums = baseline_sums(prediction, targets, task, loss, ignore_index=ignore_index)
    return baseline_scores(sums, task, loss)
