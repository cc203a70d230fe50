"""Initial values of the final layer and the loss a well-initialised network must show.

Two recipe steps ("init well" and "verify loss @ init") rest on one observation: with the final
layer's weights drawn with mean zero, the network's prediction at init is, on average, the
constant its final **bias** implies. Hence:

* the best bias is the constant that minimises the loss over the training targets:
  ``log(prior)`` for softmax + cross-entropy (so ``softmax(bias)`` equals the class frequencies),
  ``log(p / (1 - p))`` for sigmoid + BCE (one logit per label), the target mean for regression;
* the loss at step 0 must then be the loss of that constant prediction: ``ln C`` for a zero bias
  and ``H(prior)`` for a prior bias (cross-entropy), ``ln 2`` / the mean binary entropy (BCE),
  ``E[y^2]`` / ``Var[y]`` (MSE), with the L1 and Huber analogues.

:func:`constant_loss` computes that value **exactly** for a batch of targets and any constant
prediction; :func:`init_bias` turns :class:`~lightning_recipe.core.stats.TargetStats` into the
bias; :func:`loss_evidence` gathers the numbers a step-0 diagnosis needs and :func:`diagnose`
turns them into a verdict with a message a person can act on. Pure torch; no Lightning.

Example:
    >>> import math, torch
    >>> from lightning_recipe.core.stats import TargetStats
    >>> y = torch.tensor([0, 0, 0, 1])
    >>> bias = init_bias(TargetStats.from_targets(y, "multiclass", num_classes=2)).bias
    >>> [round(v, 4) for v in torch.softmax(bias, 0).tolist()]
    [0.75, 0.25]
    >>> round(constant_loss("cross_entropy", y, torch.zeros(2)), 4) == round(math.log(2), 4)
    True
    >>> round(constant_loss("cross_entropy", y, bias), 4)   # H(0.75, 0.25)
    0.5623
    >>> round(constant_loss("mse", torch.tensor([1.0, 3.0]), torch.tensor([2.0])), 4)   # Var[y]
    1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from lightning_recipe.core.format import fmt as _fmt
from lightning_recipe.core.losses import LOSS_ALIASES, LOSSES, REGRESSION_LOSSES, LossName, default_loss
from lightning_recipe.core.stats import TargetStats, binary_entropy, entropy

__all__ = [
    "LOSS_KINDS",
    "REGRESSION_LOSSES",
    "SPREAD_RATIO",
    "InitBias",
    "LossKind",
    "Verdict",
    "best_constant",
    "constant_loss",
    "data_losses",
    "default_loss",
    "diagnose",
    "init_bias",
    "loss_evidence",
    "output_rows",
    "resolve_loss",
    "spread_ratio",
    "uninformative_label",
]

#: The losses whose value at init can be derived (``loss=`` of ``LossAtInitCheck``): the one
#: vocabulary of :mod:`lightning_recipe.core.losses`.
LossKind = LossName
LOSS_KINDS: tuple[str, ...] = LOSSES
_ALIASES = LOSS_ALIASES

#: Logits that stray further than this (RMS, in nats) from the bias at init are "far too confident";
#: PyTorch's default initialisation stays well below 1.
LOGIT_SCALE = 2.0

#: Regression: the spread term ``E[(f - b)^2]`` of the outputs ``f`` around the final bias ``b``
#: at init, as a multiple of ``Var(y)``, above which the predictions "spread far too wide". With
#: random final weights the MSE at init is ``E[(y - b)^2] + E[(f - b)^2] - 2 E[(f - b)(y - b)]``;
#: the spread term is ordinary at default initialisation and a fail only when it dominates the
#: targets' variance: beyond 9 (an output RMS over 3x the target std, a loss at init about 10x the
#: constant prediction's). PyTorch's default init of Linear, Conv1d/2d and GRU/LSTM output layers
#: on standardised inputs stays below ~1.1 (median ~0.05); final weights scaled by 100 give
#: thousands. The same ratio is used for L1 and Huber, whose excess also grows with it.
SPREAD_RATIO = 9.0

#: Relative tolerance when a measured loss is compared with a loss recomputed from the very
#: outputs of the same step (float32 round-off, not statistics).
MATCH_RTOL = 2e-3


# ---------------------------------------------------------------------- the bias
@dataclass
class InitBias:
    """The bias :func:`init_bias` computed.

    Attributes:
        bias: float64, one value per output (class, label or regression output).
        floored: the outputs whose prior was 0 (or 1 for a label) and got the finite floor.
        floor: the probability used for them (``0.5 / count``: half a sample).
        task: the task.
    """

    bias: torch.Tensor
    floored: list[int] = field(default_factory=list)
    floor: float = 0.0
    task: str = "multiclass"


def init_bias(stats: TargetStats, floor: float | None = None) -> InitBias:
    """The final bias that makes the constant prediction at init optimal for these targets.

    * multiclass: ``log(prior)``; an absent class gets ``log(floor)`` (finite, never ``-inf``);
    * binary / multilabel: ``log(p / (1 - p))`` per label, ``p`` clamped to ``[floor, 1 - floor]``;
    * regression: the per-output mean.

    Args:
        stats: target statistics of the training data.
        floor: the probability given to an absent class (or a label that is always 0 or 1);
            default ``0.5 / count``, i.e. as if half a sample had it.

    Example:
        >>> import torch
        >>> from lightning_recipe.core.stats import TargetStats
        >>> out = init_bias(TargetStats.from_targets(torch.tensor([0, 0, 2, 2]), "multiclass", num_classes=3))
        >>> out.floored, round(float(out.bias[1]), 3)        # class 1 absent: log(0.5 / 4)
        ([1], -2.079)
    """
    if stats.count <= 0:
        raise ValueError("init_bias: the target statistics are empty (no training targets were seen).")
    fl = float(floor) if floor is not None else 0.5 / max(stats.count, 1)
    if stats.task == "multiclass":
        p = stats.priors().to(torch.float64)
        floored = [int(i) for i in torch.nonzero(p <= 0).flatten()]
        bias = torch.where(p > 0, p.clamp_min(1e-300).log(), torch.full_like(p, math.log(fl)))
        return InitBias(bias, floored, fl, stats.task)
    if stats.task in ("binary", "multilabel"):
        p = stats.mean().to(torch.float64)
        floored = [int(i) for i in torch.nonzero((p < fl) | (p > 1 - fl)).flatten()]
        q = p.clamp(fl, 1 - fl)
        return InitBias(q.log() - (-q).log1p(), floored, fl, stats.task)
    return InitBias(stats.mean().to(torch.float64), [], fl, stats.task)


# ---------------------------------------------------------------------- constant predictions
def _targets_as_rows(kind: str, targets: torch.Tensor, width: int, ignore_index: int | None) -> torch.Tensor:
    """Targets reshaped to ``(M,)`` class indices (cross-entropy) or ``(M, width)`` values."""
    t = targets.detach()
    if kind == "cross_entropy":
        y = t.reshape(-1).long().cpu()
        if ignore_index is not None:
            y = y[y != ignore_index]
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= width):
            raise ValueError(
                f"class labels {int(y.min())}..{int(y.max())} do not fit a prediction of {width} classes."
            )
        return y
    one_hot = kind == "bce" and not t.is_floating_point() and width > 1 and t.dim() <= 1 and t.numel() > 0
    if one_hot and int(t.min()) >= 0 and int(t.max()) < width:
        # integer class indices with several logits: BCE against one-hot rows
        return F.one_hot(t.reshape(-1).long().cpu(), width).to(torch.float64)
    y = t.to(torch.float64).cpu()
    if y.numel() % width:
        raise ValueError(f"{y.numel()} target values do not fit a prediction of {width} outputs.")
    if width > 1 and y.dim() >= 3 and y.shape[1] == width and y.shape[-1] != width:
        y = y.movedim(1, -1)  # channels-first dense targets (N, K, H, W)
    return y.reshape(-1, width)


def output_rows(outputs: torch.Tensor, width: int) -> torch.Tensor | None:
    """The model's outputs as ``(M, width)`` rows (class/label/output last), or ``None`` if they do not fit.

    Linear heads put the outputs last (``(N, K)``, ``(N, T, K)``); convolutional heads put them
    in dimension 1 (``(N, K, H, W)``).
    """
    z = outputs.detach()
    if z.dim() == 0 or width < 1:
        return None
    if width == 1 and (z.dim() == 1 or z.shape[-1] != 1):
        return z.reshape(-1, 1)
    if z.shape[-1] == width:
        return z.reshape(-1, width)
    if z.dim() >= 3 and z.shape[1] == width:
        return z.movedim(1, -1).reshape(-1, width)
    return None


def constant_loss(
    kind: str,
    targets: torch.Tensor,
    constant: torch.Tensor,
    huber_delta: float = 1.0,
    ignore_index: int | None = -100,
) -> float:
    """The exact loss of predicting ``constant`` for every sample of ``targets`` (mean reduction).

    Args:
        kind: ``"cross_entropy"`` (``constant`` = logits of the C classes), ``"bce"`` (one logit
            per label), ``"mse"``, ``"l1"`` or ``"huber"`` (one value per output).
        targets: the targets of a batch (class indices for cross-entropy; integer class indices
            with several logits are one-hot encoded for BCE).
        constant: the constant prediction, one value per output.
        huber_delta: the Huber loss's ``delta``.
        ignore_index: cross-entropy: the label to leave out (PyTorch's default ``-100``).
    """
    kind = _ALIASES.get(kind, kind)
    c = constant.detach().to(torch.float64).cpu().reshape(-1)
    y = _targets_as_rows(kind, targets, c.numel(), ignore_index)
    if y.numel() == 0:
        return float("nan")
    if kind == "cross_entropy":
        return float(torch.logsumexp(c, 0) - c[y].mean())
    if kind == "bce":
        return float((F.softplus(c) - y * c).mean())
    diff = y - c
    if kind == "mse":
        return float((diff * diff).mean())
    if kind == "l1":
        return float(diff.abs().mean())
    if kind == "huber":
        return float(F.huber_loss(c.expand_as(y), y, delta=huber_delta))
    raise ValueError(f"constant_loss: unknown loss {kind!r}; pass one of {list(LOSS_KINDS)}.")


def best_constant(
    kind: str, targets: torch.Tensor, width: int, huber_delta: float = 1.0, ignore_index: int | None = -100
) -> torch.Tensor:
    """The constant prediction with the lowest loss on ``targets``: log frequencies, log-odds,
    mean, median, or the Huber M-estimate (per output)."""
    kind = _ALIASES.get(kind, kind)
    y = _targets_as_rows(kind, targets, width, ignore_index)
    if kind == "cross_entropy":
        counts = torch.bincount(y, minlength=width).to(torch.float64)
        return (counts / counts.sum().clamp_min(1)).clamp_min(1e-12).log()
    if kind == "bce":
        p = y.mean(0).clamp(1e-12, 1 - 1e-12)
        return p.log() - (-p).log1p()
    if kind == "mse":
        return y.mean(0)
    if kind == "l1":
        return y.median(0).values
    lo, hi = y.min(0).values, y.max(0).values
    for _ in range(60):  # bisection on the derivative of the mean Huber loss (monotone)
        mid = (lo + hi) / 2
        grad = (mid - y).clamp(-huber_delta, huber_delta).mean(0)
        hi = torch.where(grad > 0, mid, hi)
        lo = torch.where(grad > 0, lo, mid)
    return (lo + hi) / 2


def data_losses(kind: str, stats: TargetStats, constant: torch.Tensor) -> dict[str, float]:
    """Data-level losses from the training statistics (no sampling noise of one batch).

    Returns ``{"bias": loss of predicting constant, "best": the lowest constant-prediction loss,
    "zero": the loss of a zero bias}``; values that the statistics cannot give (L1, Huber) are NaN.
    """
    kind = _ALIASES.get(kind, kind)
    c = constant.detach().to(torch.float64).cpu().reshape(-1)
    nan = float("nan")
    if kind == "cross_entropy" and stats.task == "multiclass":
        p = stats.priors().to(torch.float64)
        if p.numel() != c.numel():
            return {"bias": nan, "best": nan, "zero": nan}
        return {
            "bias": float(-(p * torch.log_softmax(c, 0)).sum()),
            "best": entropy(p),
            "zero": math.log(c.numel()),
        }
    if kind == "bce" and stats.task in ("binary", "multilabel"):
        p = stats.mean().to(torch.float64)
        if p.numel() != c.numel():
            return {"bias": nan, "best": nan, "zero": nan}
        return {
            "bias": float((F.softplus(c) - p * c).mean()),
            "best": float(binary_entropy(p).mean()),
            "zero": math.log(2.0),
        }
    if kind == "mse" and stats.task == "regression":
        mean, var = stats.mean().to(torch.float64), stats.var().to(torch.float64)
        if mean.numel() != c.numel():
            return {"bias": nan, "best": nan, "zero": nan}
        return {
            "bias": float((var + (mean - c) ** 2).mean()),
            "best": float(var.mean()),
            "zero": float(stats.second_moment().mean()),
        }
    return {"bias": nan, "best": nan, "zero": nan}


def uninformative_label(kind: str, width: int) -> str:
    """How the zero-bias value is written: ``ln 10``, ``ln 2``, ``E[y^2]``, ``E|y|``."""
    kind = _ALIASES.get(kind, kind)
    return {
        "cross_entropy": f"ln {width}",
        "bce": "ln 2",
        "mse": "E[y^2]",
        "l1": "E|y|",
        "huber": "Huber(y)",
    }[kind]


def _best_label(kind: str) -> str:
    return {
        "cross_entropy": "H(prior)",
        "bce": "binary entropy of the label priors",
        "mse": "Var[y]",
        "l1": "E|y - median|",
        "huber": "Huber(y - centre)",
    }[kind]


# ---------------------------------------------------------------------- evidence at step 0
def _output_losses(
    task: str, z: torch.Tensor, targets: torch.Tensor, ignore_index: int | None
) -> dict[str, float]:
    """Losses recomputed from the step's own outputs, used only to recognise what the user's loss is."""
    out: dict[str, float] = {}
    z = z.to(torch.float64)
    width = z.shape[1]
    if task == "multiclass":
        y = targets.detach().reshape(-1).long().cpu()
        if y.numel() != z.shape[0]:
            return out
        keep = y != ignore_index if ignore_index is not None else torch.ones_like(y, dtype=torch.bool)
        zk, yk = z[keep], y[keep]
        if yk.numel() == 0 or int(yk.min()) < 0 or int(yk.max()) >= width:
            return out
        out["cross_entropy"] = float(F.cross_entropy(zk, yk))
        out["nll_raw"] = float(F.nll_loss(zk, yk))
        out["ce_on_probs"] = float(F.cross_entropy(torch.softmax(zk, 1), yk))
        onehot = F.one_hot(yk, width).to(torch.float64)
        out["bce_onehot"] = float(F.binary_cross_entropy_with_logits(zk, onehot))
        out["mse_onehot"] = float(F.mse_loss(zk, onehot))
        return out
    y = targets.detach().to(torch.float64).cpu()
    if y.numel() != z.numel():
        return out
    try:
        y = _targets_as_rows("mse", targets, width, None)
    except ValueError:
        return out
    if task in ("binary", "multilabel"):
        out["bce"] = float(F.binary_cross_entropy_with_logits(z, y))
        out["bce_on_probs"] = float(F.binary_cross_entropy_with_logits(torch.sigmoid(z), y))
        out["mse_on_logits"] = float(F.mse_loss(z, y))
        return out
    out["mse"] = float(F.mse_loss(z, y))
    out["l1"] = float(F.l1_loss(z, y))
    out["huber"] = float(F.huber_loss(z, y))
    return out


#: The names of the numbers :func:`loss_evidence` returns, in a fixed order (for an all-reduce).
EVIDENCE_KEYS: tuple[str, ...] = (
    "measured",
    "width",
    "batch_size",
    "rows",
    "elements",
    "zero",
    "bias",
    "best",
    "data_bias",
    "data_best",
    "spread",
    "deviation",
    "target_std",
    "bias_rms",
    "out_cross_entropy",
    "out_nll_raw",
    "out_ce_on_probs",
    "out_bce_onehot",
    "out_mse_onehot",
    "out_bce",
    "out_bce_on_probs",
    "out_mse_on_logits",
    "out_mse",
    "out_l1",
    "out_huber",
)


def loss_evidence(
    measured: float,
    task: str,
    kind: str,
    targets: torch.Tensor,
    bias: torch.Tensor | None,
    outputs: torch.Tensor | None = None,
    stats: TargetStats | None = None,
    width: int | None = None,
    ignore_index: int | None = -100,
) -> dict[str, float]:
    """The numbers behind a step-0 verdict, all plain floats keyed by :data:`EVIDENCE_KEYS`.

    Args:
        measured: the loss the user's own training step returned at step 0.
        task: the task.
        kind: the loss (one of :data:`LOSS_KINDS`).
        targets: the targets of that step's batch.
        bias: the final layer's bias (its constant prediction), or ``None`` (then zero is assumed).
        outputs: the final layer's output during that step (for recognising the loss and for the
            spread of the logits), or ``None``.
        stats: the training data's statistics, for the data-level expected values (optional).
        width: the number of outputs (default: the bias's, else the outputs' last dimension).
        ignore_index: multiclass: the ignored label.
    """
    kind = _ALIASES.get(kind, kind)
    nan = float("nan")
    ev = dict.fromkeys(EVIDENCE_KEYS, nan)
    ev["measured"] = float(measured)
    t = targets.detach()
    ev["batch_size"] = float(t.shape[0]) if t.dim() else 1.0
    if width is None:
        width = (
            int(bias.numel()) if bias is not None else (int(outputs.shape[-1]) if outputs is not None else 1)
        )
    const = (
        bias.detach().to(torch.float64).cpu().reshape(-1)
        if bias is not None and bias.numel() == width
        else torch.zeros(width, dtype=torch.float64)
    )
    ev["width"] = float(width)
    y = _targets_as_rows(kind, t, width, ignore_index)
    ev["rows"] = float(y.shape[0])
    ev["elements"] = float(y.numel())
    centred = const - const.mean() if kind == "cross_entropy" else const
    ev["bias_rms"] = float(centred.pow(2).mean().sqrt())
    ev["zero"] = constant_loss(kind, t, torch.zeros(width), ignore_index=ignore_index)
    ev["bias"] = constant_loss(kind, t, const, ignore_index=ignore_index)
    ev["best"] = constant_loss(
        kind, t, best_constant(kind, t, width, ignore_index=ignore_index), ignore_index=ignore_index
    )
    if kind in REGRESSION_LOSSES and y.numel():
        # pooled over the outputs (the RMS of the per-output stds), like an MSE averaged over them
        ev["target_std"] = float(y.var(0, unbiased=False).mean().sqrt())
    if stats is not None:
        data = data_losses(kind, stats, const)
        ev["data_bias"], ev["data_best"] = data["bias"], data["best"]
    if outputs is not None:
        z = output_rows(outputs, width)
        if z is not None:
            z = z.to(torch.float64).cpu()
            ev["spread"] = float(z.std(0, unbiased=False).mean()) if z.shape[0] > 1 else 0.0
            dev = z - const
            if kind == "cross_entropy":  # softmax ignores a shift shared by all classes
                dev = dev - dev.mean(1, keepdim=True)
            ev["deviation"] = float(dev.pow(2).mean().sqrt())
            for name, value in _output_losses(task, z, t, ignore_index).items():
                ev[f"out_{name}"] = value
            if task == "multiclass" and kind == "bce":
                ev["out_bce"] = ev["out_bce_onehot"]
    return ev


def resolve_loss(
    loss: str,
    task: str,
    measured: float,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    outputs: torch.Tensor | None = None,
    width: int = 1,
) -> LossKind:
    """The loss to compare with: ``loss`` itself, or for ``"auto"`` the task's loss.

    ``"auto"`` picks cross-entropy for multiclass and BCE with logits for binary/multilabel. For
    regression it picks, among MSE, L1 and Huber (each averaged or summed), the one whose value
    on the step's own outputs (or, without them, on the bias's constant prediction) is nearest
    the measured loss; MSE when none is positive.

    Example:
        >>> import torch
        >>> y = torch.tensor([100.0, 200.0])
        >>> resolve_loss("auto", "regression", 150.0, y, torch.zeros(1))   # E|y| = 150
        'l1'
        >>> resolve_loss("auto", "multiclass", 2.3, torch.tensor([0, 1]))
        'cross_entropy'
    """
    loss = _ALIASES.get(loss, loss)
    if loss != "auto":
        if loss not in LOSS_KINDS:
            raise ValueError(
                f"resolve_loss: unknown loss {loss!r}; pass 'auto' or one of {list(LOSS_KINDS)}."
            )
        return loss  # type: ignore[return-value]
    if task != "regression":
        return default_loss(task)
    if not (math.isfinite(measured) and measured > 0):
        return "mse"
    values: dict[str, float] = {}
    z = output_rows(outputs, width) if outputs is not None else None
    if z is not None:
        values = _output_losses("regression", z.to(torch.float64).cpu(), targets, None)
    if not values:
        const = bias if bias is not None and bias.numel() == width else torch.zeros(width)
        values = {k: constant_loss(k, targets, const) for k in REGRESSION_LOSSES}
    elements = max(int(targets.numel()), 1)
    best, best_gap = "mse", float("inf")
    for name, value in values.items():
        for scale in (1, elements):
            v = value * scale
            if v > 0:
                gap = abs(math.log(measured / v))
                if gap < best_gap:
                    best, best_gap = name, gap
    return best  # type: ignore[return-value]


# ---------------------------------------------------------------------- the verdict
@dataclass
class Verdict:
    """What :func:`diagnose` concluded.

    Attributes:
        status: ``"pass"``, ``"warn"`` or ``"fail"``.
        message: one actionable line.
        expected: the loss a well-initialised network must show on this batch.
        label: how ``expected`` is derived (``"ln 10"``, ``"H(prior)"``, ``"Var[y]"``...).
        cause: a short key for the diagnosis (``"ok"``, ``"summed"``, ``"too_confident"``,
            ``"spread"`` for a regression lifted only by its outputs' ordinary spread...).
    """

    status: str
    message: str
    expected: float
    label: str
    cause: str = "ok"
    numbers: dict[str, Any] = field(default_factory=dict)


def spread_ratio(deviation: float, target_std: float) -> float:
    """The spread term of a regression at init, ``E[(f - b)^2] / Var(y)``.

    Args:
        deviation: the RMS distance of the outputs from the final bias (``ev["deviation"]``).
        target_std: the targets' standard deviation, pooled over outputs (``ev["target_std"]``).

    Returns:
        the ratio; ``inf`` for outputs that vary around constant targets, NaN if either is unknown.

    Example:
        >>> round(spread_ratio(0.520, 0.803), 2)   # ordinary at default init
        0.42
        >>> spread_ratio(52.0, 0.803) > SPREAD_RATIO   # final weights x100
        True
    """
    if not (math.isfinite(deviation) and math.isfinite(target_std)):
        return float("nan")
    if target_std <= 0:
        return 0.0 if deviation <= 0 else float("inf")
    return (deviation / target_std) ** 2


def _close(a: float, b: float, rtol: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rtol * max(abs(a), abs(b)) + 1e-7


_OTHER_FUNCTIONS = {
    # evidence key: (applies to kind, description, fix, status)
    "out_nll_raw": (
        "cross_entropy",
        "nll_loss on raw logits (no log_softmax)",
        "apply log_softmax first or use cross_entropy",
        "fail",
    ),
    "out_ce_on_probs": (
        "cross_entropy",
        "cross_entropy on probabilities (softmax applied twice)",
        "pass the logits, not softmax outputs, to cross_entropy",
        "fail",
    ),
    "out_bce_onehot": (
        "cross_entropy",
        "BCE with logits on one-hot targets",
        "use cross_entropy for one class per sample, or pass loss='bce' if per-class BCE is intended",
        "warn",
    ),
    "out_mse_onehot": (
        "cross_entropy",
        "MSE between logits and one-hot targets",
        "use cross_entropy on the logits",
        "warn",
    ),
    "out_bce_on_probs": (
        "bce",
        "BCE with logits on probabilities (sigmoid applied twice)",
        "pass the logits, not sigmoid outputs, to binary_cross_entropy_with_logits",
        "fail",
    ),
    "out_mse_on_logits": (
        "bce",
        "MSE between logits and 0/1 labels",
        "use binary_cross_entropy_with_logits on the logits",
        "warn",
    ),
    "out_mse": ("regression", "MSE", "pass loss='mse'", "warn"),
    "out_l1": ("regression", "L1", "pass loss='l1'", "warn"),
    "out_huber": ("regression", "Huber", "pass loss='huber'", "warn"),
}


def diagnose(
    ev: dict[str, float],
    task: str,
    kind: str,
    rtol: float = 0.3,
    bias_source: str = "model",
) -> Verdict:
    """Compare the measured loss at step 0 with the value a well-initialised network must show.

    Args:
        ev: numbers from :func:`loss_evidence` (averaged over ranks under DDP).
        task: the task.
        kind: the loss.
        rtol: relative tolerance between the measured loss and the expected one. Random final
            weights add spread to the logits, which raises the loss a little above the constant
            prediction's value; a healthy default initialisation of a classifier stays well within
            30 %. A regression loss above the band is judged by its spread term instead:
            ``E[(f - b)^2] / Var(y)`` up to :data:`SPREAD_RATIO` passes with a note, beyond it fails.
        bias_source: ``"FinalBiasInit"`` when that callback set the bias (labels it ``H(prior)``).

    Returns:
        a :class:`Verdict`.
    """
    kind = _ALIASES.get(kind, kind)
    classification = kind in ("cross_entropy", "bce")
    m = ev["measured"]
    zero, best = ev["zero"], ev["best"]
    implied = ev["bias"] if math.isfinite(ev["bias"]) else zero
    width_label = uninformative_label(kind, round(ev["width"]) if math.isfinite(ev["width"]) else 0)
    rows = max(ev["rows"], 1.0)
    atol = 0.02 if classification else 0.0
    numbers: dict[str, Any] = {k: v for k, v in ev.items() if math.isfinite(v)}

    # --- is the bias itself healthy? (its constant prediction vs the uniform / best one)
    data_bias, data_best = ev["data_bias"], ev["data_best"]
    if classification:
        if math.isfinite(data_bias):
            bias_bad = data_bias > zero * (1 + rtol) + atol
        else:
            bias_bad = implied > zero * (1 + rtol + 3 / math.sqrt(rows)) + atol
    elif math.isfinite(data_bias) and math.isfinite(data_best):
        bias_bad = data_bias > data_best * (1 + rtol)
    else:
        # sampling noise of a batch mean: E[(mean_b - mu)^2] = var / rows
        excess = implied - best
        bias_bad = excess > max(rtol, 9.0 / rows) * max(best, 1e-12) and excess > 0

    if bias_bad:
        expected = data_best if math.isfinite(data_best) else best
        label = _best_label(kind)
    else:
        expected = implied
        if bias_source == "FinalBiasInit":
            label = _best_label(kind)
        elif _close(implied, zero, 0.01) or abs(implied - zero) <= 1e-3:
            label, expected = width_label, zero  # a near-zero bias: report the textbook value
        elif math.isfinite(best) and _close(implied, best, 0.05):
            label = _best_label(kind)
        elif classification and ev["bias_rms"] <= 0.5:
            label = f"~{width_label} with a small random bias"
        else:
            label = "the constant prediction of the final bias"
    numbers["expected"] = expected

    def verdict(status: str, message: str, cause: str) -> Verdict:
        return Verdict(status, message, expected, label, cause, numbers)

    head = f"loss at init {_fmt(m)}, expected {_fmt(expected)} ({label})"
    if not math.isfinite(m):
        return verdict(
            "fail",
            f"loss at init is {m}: look for NaN/inf in the inputs and for log(0) in the loss "
            "(use cross_entropy / binary_cross_entropy_with_logits on logits)",
            "not_finite",
        )

    lo = implied * (1 - rtol) - atol
    hi = implied * (1 + rtol) + atol
    batch = ev["batch_size"]
    elements = ev["elements"]
    out_kind = ev.get(f"out_{kind}", float("nan"))

    def matches_other() -> tuple[str, float, tuple[str, str, str, str]] | None:
        if _close(m, out_kind, MATCH_RTOL):
            return None
        group = "regression" if kind in REGRESSION_LOSSES else kind
        for key, spec in _OTHER_FUNCTIONS.items():
            if spec[0] != group or key == f"out_{kind}":
                continue
            value = ev.get(key, float("nan"))
            if _close(m, value, MATCH_RTOL) and not _close(value, out_kind, 0.02):
                return key, value, spec
        return None

    exact = math.isfinite(out_kind)

    def scaled_by_count(factor: int) -> float | None:
        # exact when the step's outputs are known; otherwise against the expected value
        for count in sorted({batch, rows, elements}):
            if count < 4:
                continue
            scale = count**factor
            if (exact and _close(m, out_kind * scale, MATCH_RTOL)) or (
                not exact and _close(m, implied * scale, rtol / 2)
            ):
                return count
        return None

    def bias_not_mean(note: str = "") -> Verdict:
        what = "Var(y)" if kind == "mse" else label
        return verdict(
            "fail",
            f"regression loss {_fmt(m)} vs {what}={_fmt(expected)}{note}: set the final bias to the target mean "
            "(FinalBiasInit)",
            "bias_not_mean",
        )

    other = matches_other()
    if lo <= m <= hi and other is not None:  # in range, but provably another function of the outputs
        key, value, spec = other
        return verdict(spec[3], f"{head}: it equals {spec[1]} ({_fmt(value)}); {spec[2]}", key[4:])
    if lo <= m <= hi:
        if bias_bad and classification:
            return verdict(
                "fail",
                f"{head}: the final bias predicts worse than uniform ({_fmt(implied)} > {width_label} = "
                f"{_fmt(zero)}); set it to zero or to the log priors (FinalBiasInit)",
                "bad_bias",
            )
        if bias_bad:
            return bias_not_mean()
        return verdict("pass", f"{head}: as expected", "ok")

    if m > hi:
        count = scaled_by_count(1)
        if count is not None:
            what = (
                f"batch of {int(count)}"
                if count == batch
                else f"{int(count)} values in a batch of {int(batch)}"
            )
            return verdict(
                "fail",
                f"{head}: loss is ~{int(count)} times too large ({what}): the loss is summed, not "
                "averaged over the batch; use reduction='mean'",
                "summed",
            )
        if other is not None:
            key, value, spec = other
            return verdict(spec[3], f"{head}: it equals {spec[1]} ({_fmt(value)}); {spec[2]}", key[4:])
        spread, dev = ev["spread"], ev["deviation"]
        if math.isfinite(dev) and (_close(m, out_kind, 0.05) or not math.isfinite(out_kind)):
            # the loss is this function of the outputs: the excess comes from outputs away from the bias
            if classification and dev <= LOGIT_SCALE:
                return verdict(
                    "pass",
                    f"{head}: above it only through small random logits (rms {_fmt(dev)} from the bias), "
                    "which an imbalanced prior makes costly; fine at init",
                    "small_logits",
                )
            if classification:
                return verdict(
                    "fail",
                    f"{head}: logits are far too confident (rms {_fmt(dev)} from the bias, std {_fmt(spread)} "
                    "across samples); scale down the final layer's weights, and check the inputs are "
                    "normalised (BatchInspector)",
                    "too_confident",
                )
            # regression: E[(f - b)^2] is ordinary at init; judge it against Var(y), not the band
            target_std = ev["target_std"]
            ratio = spread_ratio(dev, target_std)
            numbers["spread_ratio"] = ratio
            if math.isfinite(ratio):
                spread_text = f"rms {_fmt(dev)} from the bias, {_fmt(math.sqrt(ratio))}x the target std "
            else:  # constant targets in the batch, or no target std
                spread_text = f"rms {_fmt(dev)} from the bias vs target std "
            spread_text += _fmt(target_std)
            if ratio <= SPREAD_RATIO:
                if bias_bad:
                    return bias_not_mean(f" (plus the outputs' spread around the bias, {spread_text})")
                adds = f", E[(f - b)^2] = {_fmt(dev * dev)}" if kind == "mse" else ""
                note = (
                    "ordinary for a default initialisation; fine at init"
                    if ratio <= 1
                    else "wider than the targets but not dominating them; fine at init, though smaller final "
                    "weights would start closer to it"
                )
                return verdict(
                    "pass",
                    f"{head}: above it through the outputs' spread around the bias ({spread_text}{adds}), {note}",
                    "spread",
                )
            tail = "; and set the final bias to the target mean (FinalBiasInit)" if bias_bad else ""
            return verdict(
                "fail",
                f"{head}: predictions spread far too wide ({spread_text}); "
                "scale down the final layer's weights, and check the inputs are normalised (BatchInspector)"
                + tail,
                "too_confident",
            )
        tail = (
            "; set the final bias to the target mean (FinalBiasInit)"
            if bias_bad and not classification
            else ""
        )
        return verdict(
            "fail",
            f"{head}: {m / implied if implied else float('inf'):.1f}x too large; the loss is not {kind} of "
            "the model's outputs (wrong loss, extra terms, mismatched targets?); pass loss= or raise rtol"
            + tail,
            "too_large",
        )
    # m < lo
    if other is not None and other[0] == "out_nll_raw":
        key, value, spec = other
        return verdict(spec[3], f"{head}: it equals {spec[1]} ({_fmt(value)}); {spec[2]}", key[4:])
    if m < 0:
        return verdict(
            "fail",
            f"{head}: a negative loss cannot be {kind}; the loss is not what you think (nll_loss on raw "
            "logits? a sign error?)",
            "negative",
        )
    count = scaled_by_count(-1)
    if count is not None:
        return verdict(
            "fail",
            f"{head}: loss is ~{int(count)} times too small: it is divided by the batch size ({int(count)}) "
            "twice; average once",
            "averaged_twice",
        )
    if other is not None:
        key, value, spec = other
        return verdict(spec[3], f"{head}: it equals {spec[1]} ({_fmt(value)}); {spec[2]}", key[4:])
    if _close(m, out_kind, 0.05):
        why = (
            "(pretrained weights?)"
            if classification
            # random outputs can correlate with the targets, e.g. when the input nearly is the target
            else "(pretrained weights, or inputs that nearly equal the targets?)"
        )
        return verdict(
            "pass",
            f"{head}: lower than the constant prediction because the outputs already fit the targets {why}",
            "pretrained",
        )
    return verdict(
        "warn",
        f"{head}: lower than any constant prediction at init; the loss is scaled down or is not {kind} "
        "(pass loss=) or the targets leak into it",
        "too_small",
    )
