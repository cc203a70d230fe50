"""The recipe's "squeeze out the juice: ensembles": average several models and measure the gain.

*"Model ensembles are a pretty much guaranteed way to gain 2% of accuracy on anything."*
:func:`evaluate_ensemble` runs every member on the same validation data (eval mode, no grad, each
member's train/eval flags and every RNG restored afterwards), averages their predictions
(probabilities for classification, outputs for regression) and reports the averaged model's loss
and metric against every member's and the gain over the best single one:

=================  ==========================  ==========================  ========================
task               averaged                    loss                        metric (torchmetrics)
=================  ==========================  ==========================  ========================
multiclass         softmax probabilities       cross-entropy (NLL)         accuracy
binary/multilabel  sigmoid probabilities       binary cross-entropy        accuracy
regression         outputs                     mean squared error          mean absolute error
=================  ==========================  ==========================  ========================

Members are any ``nn.Module`` (a ``LightningModule`` is one): the best trials of a study
(:func:`lightning_recipe.tune.best_members`), the same model trained with different seeds, or
checkpoints loaded with ``MyModule.load_from_checkpoint``.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 5, generator=g); y = (x[:, 0] > 0).long()
    >>> def member(noise_feature):             # each member also leans on a different useless feature
    ...     m = torch.nn.Linear(5, 2)
    ...     with torch.no_grad():
    ...         w = torch.zeros(2, 5); w[1, 0] = 3.0; w[1, noise_feature] = 2.0
    ...         m.weight.copy_(w); m.bias.zero_()
    ...     return m
    >>> members = [member(i) for i in (1, 2, 3)]
    >>> result = evaluate_ensemble(members, DataLoader(TensorDataset(x, y), batch_size=50))
    >>> result.task, len(result.members), result.loss_gain > 0
    ('multiclass', 3, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.functional import accuracy, mean_absolute_error

from lightning_recipe.core.batches import KeySpec, split_batch
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tasks import TaskArg, check_task_argument, infer_task

__all__ = ["EnsembleResult", "MemberScore", "evaluate_ensemble", "predictions"]

EnsembleTask = TaskArg


@dataclass
class MemberScore:
    """One model's (or the ensemble's) ``loss`` and ``metric`` on the validation data."""

    name: str
    loss: float
    metric: float


@dataclass
class EnsembleResult:
    """The averaged model against its members.

    Attributes:
        task: the task the predictions were averaged for.
        loss_name, metric_name: what ``loss`` and ``metric`` are (``metric_higher_is_better``).
        members: each member's score; ``ensemble``: the averaged model's.
        best: the index of the best single member (lowest loss).
        loss_gain: best member's loss minus the ensemble's (positive: the ensemble is better).
        metric_gain: the ensemble's metric minus the best member's, signed so that positive is better.
            "The best member" is the one with the lowest loss, for both.
        disagreement: multiclass/binary: mean fraction of samples on which two members predict
            different classes; regression: mean spread (std) of the members' outputs.
        samples: validation samples scored.
    """

    task: str
    loss_name: str
    metric_name: str
    metric_higher_is_better: bool
    members: list[MemberScore]
    ensemble: MemberScore
    best: int
    loss_gain: float
    metric_gain: float
    disagreement: float
    samples: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_gain(self) -> bool:
        """The ensemble beats the best member on the loss (by more than float noise)."""
        return self.loss_gain > 1e-6 * max(abs(self.members[self.best].loss), 1e-12)

    @property
    def message(self) -> str:
        """One line: the gain (or its absence) with the numbers."""
        best, ens = self.members[self.best], self.ensemble
        n = len(self.members)
        if not self.has_gain:
            mean = sum(m.loss for m in self.members) / n
            if self.disagreement < 1e-6:
                why = "the members agree (disagreement 0): they are the same model"
            elif ens.loss < mean:
                why = (
                    f"it beats the average member ({mean:.4g}) but the best is far better than the rest: average "
                    "members of similar quality (the best setting trained with different seeds)"
                )
            else:
                why = f"the members are too alike (disagreement {self.disagreement:.3g})"
            return (
                f"no gain from an ensemble of {n}: {self.loss_name} {ens.loss:.4g} vs {best.loss:.4g} for the best "
                f"member ({best.name}); {why}"
            )
        rel = self.loss_gain / abs(best.loss) if best.loss else math.inf
        metric = f"{self.metric_name} {_fmt(ens.metric, self)} vs {_fmt(best.metric, self)} ({self._metric_delta()})"
        return (
            f"an ensemble of {n} gains over the best member ({best.name}): {self.loss_name} {ens.loss:.4g} vs "
            f"{best.loss:.4g} ({100 * rel:.1f}% lower), {metric}"
        )

    def _metric_delta(self) -> str:
        if self.metric_name == "accuracy":
            return f"{100 * self.metric_gain:+.2f} points"
        return (
            f"{self.metric_gain:+.4g} better" if self.metric_gain >= 0 else f"{-self.metric_gain:.4g} worse"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["has_gain"] = self.has_gain
        out["message"] = self.message
        return out

    def markdown(self) -> str:
        """A Markdown table of the members and the ensemble, for TensorBoard's Text tab."""
        rows = [f"| model | {self.loss_name} | {self.metric_name} |", "| --- | --- | --- |"]
        for i, m in enumerate(self.members):
            mark = " (best)" if i == self.best else ""
            rows.append(f"| {m.name}{mark} | {m.loss:.4g} | {_fmt(m.metric, self)} |")
        rows.append(
            f"| **ensemble of {len(self.members)}** | **{self.ensemble.loss:.4g}** | **{_fmt(self.ensemble.metric, self)}** |"
        )
        return self.message + "\n\n" + "\n".join(rows)

    def figure(self) -> Any:
        """The members' and the ensemble's loss and metric as bars (a matplotlib ``Figure``)."""
        from lightning_recipe.plots.ensemble import ensemble_figure

        return ensemble_figure(
            [m.name for m in self.members],
            [m.loss for m in self.members],
            [m.metric for m in self.members],
            self.ensemble.loss,
            self.ensemble.metric,
            self.loss_name,
            self.metric_name,
            title=f"Ensemble of {len(self.members)}: " + ("gain" if self.has_gain else "no gain"),
        )


def _fmt(value: float, result: EnsembleResult) -> str:
    return f"{100 * value:.2f}%" if result.metric_name == "accuracy" else f"{value:.4g}"


def predictions(
    member: nn.Module,
    data: Iterable[Any],
    input_key: KeySpec = None,
    target_key: KeySpec = None,
    forward: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(outputs, targets)`` of one member over ``data``, on the CPU, in eval mode and without grad.

    The member's train/eval flags, buffers and every RNG are restored afterwards.
    """
    outputs, targets = [], []
    with preserved_state(member), torch.no_grad():
        member.eval()
        for batch in data:
            parts = split_batch(batch, input_key=input_key, target_key=target_key, require_targets=True)
            inputs = parts.inputs.to(device) if isinstance(parts.inputs, torch.Tensor) else parts.inputs
            out = forward(member, inputs) if forward is not None else member(inputs)
            out = getattr(out, "logits", out)
            outputs.append(out.detach().float().cpu())
            targets.append(parts.targets.detach().cpu())  # type: ignore[union-attr]
    return torch.cat(outputs), torch.cat(targets)


def _score(task: str, pred: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(loss, metric) of averaged predictions: probabilities for classification, outputs for regression."""
    if task == "multiclass":
        loss = F.nll_loss(torch.log(pred.clamp_min(1e-12)), y.long())
        metric = accuracy(pred, y.long(), task="multiclass", num_classes=pred.shape[1])
    elif task in ("binary", "multilabel"):
        target = y.float().reshape(pred.shape)
        loss = F.binary_cross_entropy(pred.clamp(1e-12, 1 - 1e-12), target)
        if task == "binary":
            metric = accuracy(pred.reshape(-1), target.reshape(-1).long(), task="binary")
        else:
            metric = accuracy(pred, target.long(), task="multilabel", num_labels=pred.shape[1])
    else:
        target = y.float().reshape(pred.shape)
        loss = F.mse_loss(pred, target)
        metric = mean_absolute_error(pred, target)
    return float(loss), float(metric)


def _to_average(task: str, out: torch.Tensor) -> torch.Tensor:
    if task == "multiclass":
        return out.softmax(dim=1)
    if task in ("binary", "multilabel"):
        return out.sigmoid()
    return out


def _disagreement(task: str, preds: list[torch.Tensor]) -> float:
    if len(preds) < 2:
        return 0.0
    if task == "regression":
        return float(torch.stack(preds).std(dim=0, unbiased=False).mean())
    labels = [p.argmax(dim=1) if task == "multiclass" else (p > 0.5) for p in preds]
    pairs = [(a != b).float().mean() for i, a in enumerate(labels) for b in labels[i + 1 :]]
    return float(torch.stack(pairs).mean())


def evaluate_ensemble(
    members: Sequence[nn.Module],
    data: Iterable[Any],
    task: EnsembleTask = "auto",
    names: Sequence[str] | None = None,
    input_key: KeySpec = None,
    target_key: KeySpec = None,
    forward: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> EnsembleResult:
    """Average the members' predictions on ``data`` and compare with every member.

    Args:
        members: two or more models with the same output shape.
        data: validation batches (a ``DataLoader``); the same batches, in the same order, go to
            every member (do not shuffle it).
        task: ``"auto"`` (inferred from the targets and the outputs), or ``"multiclass"``,
            ``"binary"``, ``"multilabel"``, ``"regression"``.
        names: a name per member for the report (default ``member 0``, ``member 1``, ...).
        input_key, target_key: where inputs and targets are in a batch (as in every recipe check).
        forward: ``forward(member, inputs) -> outputs`` when a member is not called as ``member(inputs)``.
        device: where the members run (they must already be there).

    Raises:
        ValueError: fewer than two members, names that do not match, or members whose outputs or
            targets differ in shape.
    """
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"evaluate_ensemble(members=<{len(members)} model(s)>): pass two or more models.")
    names = [f"member {i}" for i in range(len(members))] if names is None else list(names)
    if len(names) != len(members):
        raise ValueError(f"evaluate_ensemble(names={names!r}): pass one name per member ({len(members)}).")
    check_task_argument(task, "evaluate_ensemble")
    outs, targets = [], None
    for i, m in enumerate(members):
        out, y = predictions(m, data, input_key, target_key, forward, device)
        if outs and out.shape != outs[0].shape:
            raise ValueError(
                f"evaluate_ensemble: {names[i]} outputs shape {tuple(out.shape)}, {names[0]} {tuple(outs[0].shape)}; "
                "ensemble models with the same head, on the same unshuffled data."
            )
        if targets is not None and not torch.equal(y, targets):
            raise ValueError(
                "evaluate_ensemble: the members saw different targets; pass a dataloader with shuffle=False."
            )
        outs.append(out)
        targets = y
    assert targets is not None
    resolved = infer_task(targets, outs[0], task)
    preds = [_to_average(resolved, o) for o in outs]
    scores = [MemberScore(n, *_score(resolved, p, targets)) for n, p in zip(names, preds)]
    ensemble = MemberScore("ensemble", *_score(resolved, torch.stack(preds).mean(dim=0), targets))
    higher = resolved != "regression"
    best = int(np.argmin([s.loss for s in scores]))
    best_metric = scores[best].metric
    return EnsembleResult(
        task=resolved,
        loss_name={"multiclass": "cross-entropy", "regression": "MSE"}.get(resolved, "BCE"),
        metric_name="accuracy" if higher else "MAE",
        metric_higher_is_better=higher,
        members=scores,
        ensemble=ensemble,
        best=best,
        loss_gain=scores[best].loss - ensemble.loss,
        metric_gain=(ensemble.metric - best_metric) if higher else (best_metric - ensemble.metric),
        disagreement=_disagreement(resolved, preds),
        samples=int(targets.shape[0]),
    )
