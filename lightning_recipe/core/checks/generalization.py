"""The recipe's "regularize" and "leave it training", judged on per-validation loss curves.

Everything here takes plain sequences (one value per validation run: the validation loss and the
mean training loss since the previous validation) and returns verdicts; no Lightning.

* **stage** (:func:`judge_stage`), decided in this order:

  1. **overfitting**: the validation loss turned up. At least ``AFTER_BEST`` validations follow the
     best one, and the level of the last three (their median) is above the level around the best
     (the median of it and its neighbours) by more than ``min_rise`` of that level *and* by more
     than ``RISE_NOISE`` times the curve's jitter, while the training loss did not rise as well.
     The onset is the epoch of the best validation loss.
  2. **diverging**: as above, but the training loss rose too (by more than 2% and 3x its jitter):
     not overfitting, an unstable optimisation.
  3. **underfitting**: the training loss is still above ``underfit_ratio`` of a dumb baseline (the
     loss of a predictor that ignores the input): the model has not learned enough to overfit yet;
     the recipe's step 3, "get a model large enough that it can overfit", comes first. Unless it is
     **still learning**: falling fast enough to reach ``underfit_ratio`` of the baseline within as
     many epochs again as it has run (a pass that says "train longer"; the stage is ``healthy``).
  4. otherwise **healthy**.

* **trend** (:func:`recent_trend`): over the last ``clip(n // 2, 6, 20)`` validations, Spearman's
  rank trend as a z-score (:func:`~lightning_recipe.core.loss_curve.trend_z`) and the Theil-Sen
  slope relative to the current level. "Still improving" needs ``z <= -2`` *and* a relative slope
  of at least ``min_improvement`` per epoch.
* **end of the run** (:func:`end_of_run`): when the budget (``max_epochs``/``max_steps``) ended a
  run that was still improving: "leave it training" (a pass with the advice: a run cut short is not
  a fault). When early stopping ended it: on the onset of
  overfitting, on a plateau (the curve had levelled off: the values after the best sit above the
  continued pre-best trend by more than ``PLATEAU_RESIDUAL`` jitters and half of the progress that
  trend promised, or there was no falling trend before the best) or on noise (the values after the best are on the still-falling trend, within
  the noise: the best was a lucky dip and the patience was too short to see past it).

The jitter of a curve is ``1.4826 * MAD(second differences) / sqrt(6)``: the standard deviation of
white noise around any locally straight curve, blind to a smooth trend and to one kink.

Example:
    >>> import numpy as np
    >>> epochs = np.arange(12)
    >>> train = 1.0 * np.exp(-epochs / 3) + 0.05
    >>> val = np.r_[0.9 * np.exp(-epochs[:6] / 3) + 0.3, 0.42 + 0.06 * np.arange(1, 7)]
    >>> verdict = judge_stage(epochs, epochs, train, val)
    >>> verdict.stage, verdict.onset_epoch
    ('overfitting', 5)
    >>> judge_stage(epochs, epochs, train, train + 0.05).stage
    'healthy'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from torch import nn
from torch.utils.data import Subset, TensorDataset

from lightning_recipe.core.loss_curve import robust_summary, trend_z
from lightning_recipe.findings import ArgumentError

__all__ = [
    "AFTER_BEST",
    "MIN_VALIDATIONS",
    "UNDERFIT_RATIO",
    "RunFacts",
    "Stage",
    "StageVerdict",
    "Trend",
    "Verdict",
    "add_validation",
    "budget_name",
    "describe_data",
    "describe_early_stopping",
    "describe_module",
    "describe_optimizers",
    "end_of_run",
    "ended_by",
    "jitter",
    "judge_run",
    "judge_stage",
    "markdown",
    "no_loss_message",
    "pick_baseline",
    "pick_metric",
    "recent_trend",
    "regularization_advice",
    "run_facts",
    "stop_cause",
    "theil_sen",
    "underfit_ratio_for",
    "validate_arguments",
]

#: "Train longer" is advice only when the loss's pace reaches the target within this many times the
#: epochs already run.
LONGER_AT_MOST = 10

Stage = Literal["overfitting", "diverging", "underfitting", "healthy", "too_short"]

#: The logged training-loss names looked for, in order, when ``train_monitor`` is not given.
TRAIN_KEYS = (
    "train_loss_step",
    "train_loss",
    "train/loss",
    "training_loss",
    "loss/train",
    "loss_step",
    "loss",
)
#: The logged validation-loss names looked for, in order, when ``monitor`` is not given.
VAL_KEYS = ("val_loss", "valid_loss", "validation_loss", "val/loss", "loss/val", "val_loss_epoch")
StopKind = Literal["overfitting", "plateau", "noise"]

#: Fewer validations than this: no verdict.
MIN_VALIDATIONS = 5
#: Validations that must follow the best one before a rise counts.
AFTER_BEST = 3
#: A rise must exceed this many jitters of the curve (and ``min_rise`` of its level).
RISE_NOISE = 3.0
#: The training loss "rose too" beyond this fraction of its level and 3 jitters.
TRAIN_RISE = 0.02
#: ``trend_z`` at or below which the recent validation losses are still falling.
IMPROVING_Z = 2.0
#: Validations in the trend window: ``clip(n // 2, TREND_WINDOW_MIN, TREND_WINDOW_MAX)``.
TREND_WINDOW_MIN = 6
TREND_WINDOW_MAX = 20
#: Early stopping stopped on a plateau when the values after the best sit above the continued
#: pre-best trend by more than this many jitters and by more than half the progress it promised.
PLATEAU_RESIDUAL = 1.0


@dataclass
class Verdict:
    """A verdict ready to become a finding: ``status``, a one-line ``message`` and its ``numbers``."""

    status: Literal["pass", "warn", "skipped"]
    kind: str
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageVerdict(Verdict):
    """The stage the run is in; ``onset_index``/``onset_epoch``: where the validation loss turned up."""

    stage: Stage = "healthy"
    onset_index: int | None = None
    onset_epoch: int | None = None


@dataclass
class Trend:
    """The recent trend of a curve: ``window`` values, rank-trend ``z``, Theil-Sen ``slope`` per x unit,
    ``relative`` (the fraction of the loss lost per x unit, positive while improving: from the Theil-Sen
    slope of the log loss when the values are positive, so it stays below 100%; else ``-slope / level``)."""

    window: int
    z: float
    slope: float
    relative: float
    level: float
    improving: bool


def validate_arguments(
    owner: str,
    monitor: Any,
    train_monitor: Any,
    baseline: Any,
    underfit_ratio: Any,
    min_rise: Any,
    min_improvement: Any,
) -> None:
    """Raise ``TypeError``/``ValueError`` naming ``owner`` and the argument for a bad value."""
    for arg, value in (("monitor", monitor), ("train_monitor", train_monitor)):
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"{owner}({arg}={value!r}): pass the name of a logged loss, or None to infer it.")
    if baseline is not None and not (
        isinstance(baseline, (int, float))
        and not isinstance(baseline, bool)
        and math.isfinite(baseline)
        and baseline > 0
    ):
        raise ValueError(f"{owner}(baseline={baseline!r}): pass a positive loss value, or None.")
    for arg, value in (
        *((("underfit_ratio", underfit_ratio),) if underfit_ratio is not None else ()),
        ("min_rise", min_rise),
        ("min_improvement", min_improvement),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"{owner}({arg}={value!r}): pass a fraction between 0 and 1.")


# ---------------------------------------------------------------------- small robust helpers
def jitter(values: Sequence[float] | np.ndarray) -> float:
    """Noise of a curve: ``1.4826 * MAD(second differences) / sqrt(6)`` (0 for fewer than 4 values)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 4:
        return 0.0
    _, mad = robust_summary(np.diff(x, 2))
    return 1.4826 * mad / math.sqrt(6.0)


def theil_sen(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """The Theil-Sen slope of ``y`` against ``x``: the median of the pairwise slopes (0 if none)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(xs.size, k=1)
    dx = xs[j] - xs[i]
    keep = dx > 0
    if not keep.any():
        return 0.0
    return float(np.median((ys[j] - ys[i])[keep] / dx[keep]))


def _level(values: np.ndarray, i: int) -> float:
    """The level of a curve at ``i``: the median of the value and its neighbours."""
    return float(np.median(values[max(i - 1, 0) : i + 2]))


def _late(values: np.ndarray) -> float:
    return float(np.median(values[-3:]))


def _pct(value: float) -> str:
    return f"{100 * value:.2g}%" if abs(value) < 0.1 else f"{100 * value:.0f}%"


def recent_trend(
    x: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, min_improvement: float = 0.002
) -> Trend | None:
    """The trend of the last ``clip(n // 2, 6, 20)`` values (``None`` for fewer than 6 values)."""
    xs, v = np.asarray(x, dtype=np.float64), np.asarray(values, dtype=np.float64)
    n = v.size
    if n < TREND_WINDOW_MIN:
        return None
    w = min(n, max(TREND_WINDOW_MIN, min(TREND_WINDOW_MAX, n // 2)))
    z = trend_z(v[-w:])
    slope = theil_sen(xs[-w:], v[-w:])
    level = _late(v)
    if (v[-w:] > 0).all():  # a positive loss falls geometrically: the fraction lost per epoch, < 100%
        relative = 1.0 - math.exp(theil_sen(xs[-w:], np.log(v[-w:])))
    else:
        relative = -slope / abs(level) if level != 0 else 0.0
    return Trend(w, z, slope, relative, level, bool(z <= -IMPROVING_Z and relative >= min_improvement))


# ---------------------------------------------------------------------- the stage
def judge_stage(
    x: Sequence[float] | np.ndarray,
    epochs: Sequence[int] | np.ndarray,
    train: Sequence[float] | np.ndarray,
    val: Sequence[float] | np.ndarray,
    baseline: float | None = None,
    baseline_name: str = "dumb baseline",
    underfit_ratio: float = 0.5,
    min_rise: float = 0.05,
    min_improvement: float = 0.002,
    names: tuple[str, str] = ("train_loss", "val_loss"),
    restored_epoch: int | None = None,
    advice: Sequence[str] = (),
) -> StageVerdict:
    """Judge the stage of a run from its per-validation losses (see the module docstring).

    Args:
        x: the position of each validation in epochs (``1.0`` at the end of the first epoch).
        epochs: the (0-based) epoch of each validation, for the messages.
        train: the mean training loss since the previous validation.
        val: the validation loss.
        baseline: a dumb baseline's loss (``None``: no underfitting verdict).
        baseline_name: what the baseline is, for the message.
        underfit_ratio: underfitting while the training loss is above this fraction of ``baseline``.
        min_rise: the validation loss must rise by more than this fraction of its best level.
        min_improvement: per-epoch relative fall that counts as "still falling".
        names: the training and validation metric names, for the messages.
        restored_epoch: the epoch whose weights early stopping restored (overfitting then passes).
        advice: what to try when it overfits, in order (appended to the message).
    """
    xs = np.asarray(x, dtype=np.float64)
    ep = np.asarray(epochs, dtype=np.int64)
    t, v = np.asarray(train, dtype=np.float64), np.asarray(val, dtype=np.float64)
    tname, vname = names
    n = v.size
    if n < MIN_VALIDATIONS:
        return StageVerdict(
            "skipped",
            "too_short",
            f"only {n} validation{'s' if n != 1 else ''} of {vname}; the check needs {MIN_VALIDATIONS} "
            "(validate every epoch and train longer)",
            {"validations": n},
            stage="too_short",
        )
    b = int(np.argmin(v))
    level_b, late = _level(v, b), _late(v)
    tb, t_late = _level(t, b), _late(t)
    recent = slice(n // 3, None)  # the early, steeply curved part would inflate the jitter
    sigma_v, sigma_t = jitter(v[recent]), jitter(t[recent])
    numbers: dict[str, Any] = {
        "validations": n,
        "best_epoch": int(ep[b]),
        "best_val": float(v[b]),
        "final_val": float(v[-1]),
        "final_train": float(t[-1]),
        "gap": float(v[-1] - t[-1]),
        "val_jitter": sigma_v,
    }
    after = n - 1 - b
    rise = late - level_b
    if after >= AFTER_BEST and rise > max(min_rise * abs(level_b), RISE_NOISE * sigma_v):
        numbers.update(
            onset_epoch=int(ep[b]),
            rise=rise,
            rise_fraction=rise / abs(level_b) if level_b else math.inf,
            train_change=(t_late - tb) / abs(tb) if tb else 0.0,
            gap_at_onset=float(v[b] - t[b]),
        )
        if t_late - tb > max(TRAIN_RISE * abs(tb), RISE_NOISE * sigma_t):
            return StageVerdict(
                "warn",
                "diverging",
                f"{vname} and {tname} both rose after epoch {ep[b]} ({vname} {level_b:.4g} -> {late:.4g}, "
                f"{tname} {tb:.4g} -> {t_late:.4g}): not overfitting but an unstable optimisation; lower the "
                "learning rate or clip gradients (see TrainingLossCheck)",
                numbers,
                stage="diverging",
                onset_index=b,
                onset_epoch=int(ep[b]),
            )
        fell = (tb - t_late) / abs(tb) if tb else 0.0
        head = (
            f"overfitting from epoch {ep[b]}: {vname} rose {_pct(rise / abs(level_b))} ({level_b:.4g} -> {late:.4g}) "
            f"over the next {after} validations while {tname} "
            + (f"fell {_pct(fell)} ({tb:.4g} -> {t_late:.4g})" if fell > 0 else f"stayed at {t_late:.4g}")
            + f"; the gap {vname} - {tname} grew from {v[b] - t[b]:.3g} to {v[-1] - t[-1]:.3g}"
        )
        status: Literal["pass", "warn"] = "warn"
        if restored_epoch is not None:
            status = "pass"
            head += f"; early stopping caught it and restored the weights of epoch {restored_epoch}"
        if advice:
            numbers["advice"] = list(advice)
            head += "; to regularize, try in the recipe's order: " + "; ".join(
                f"{i}. {a}" for i, a in enumerate(advice, 1)
            )
        return StageVerdict(
            status, "overfitting", head, numbers, stage="overfitting", onset_index=b, onset_epoch=int(ep[b])
        )
    if baseline is not None and math.isfinite(baseline) and baseline > 0:
        ratio = t_late / baseline
        numbers.update(baseline=baseline, train_to_baseline=ratio)
        if ratio > underfit_ratio:
            trend = recent_trend(xs, t, min_improvement)
            falling = trend is not None and trend.improving
            needed = math.inf
            if falling and trend is not None and 0 < trend.relative < 1:
                # at its current rate, would the training loss reach underfit_ratio x baseline within as
                # many epochs again as it has run? Then it is learning, not too small: train longer.
                needed = math.log(ratio / underfit_ratio) / -math.log1p(-trend.relative)
                numbers.update(train_trend_z=trend.z, train_slope_per_epoch=trend.relative)
                if needed <= xs[-1]:
                    numbers["epochs_to_half_baseline"] = needed
                    return StageVerdict(
                        "pass",
                        "still_learning",
                        f"still learning: {tname}={t_late:.4g} is {_pct(ratio)} of the {baseline_name}'s "
                        f"{baseline:.4g} and falling ~{_pct(trend.relative)} per epoch ({vname} {late:.4g}); at "
                        f"that rate it reaches {_pct(underfit_ratio)} of it in ~{math.ceil(needed)} more epochs: train "
                        "longer before judging the model's size or regularizing",
                        numbers,
                        stage="healthy",
                    )
            how = (
                f"still falling ~{_pct(trend.relative)} per epoch"
                if falling and trend is not None
                else "no longer falling much"
            )
            if trend is not None:
                numbers.update(train_trend_z=trend.z, train_slope_per_epoch=trend.relative)
            return StageVerdict(
                "warn",
                "underfitting",
                f"underfitting: {tname}={t_late:.4g} is still {_pct(ratio)} of the {baseline_name}'s "
                f"{baseline:.4g} ({how}), and {vname} follows it ({late:.4g}): get a bigger model first "
                "(recipe step 3: first a model large enough to overfit, then regularize)"
                + (
                    f", or train longer: at this rate it reaches {_pct(underfit_ratio)} of it in "
                    f"~{math.ceil(needed)} more epochs"
                    if math.isfinite(needed) and needed <= LONGER_AT_MOST * xs[-1]
                    else ""
                ),
                numbers,
                stage="underfitting",
            )
    gap = v[-1] - t[-1]
    return StageVerdict(
        "pass",
        "healthy",
        f"healthy: {vname} {v[0]:.4g} -> {v[-1]:.4g} (best {v[b]:.4g} at epoch {ep[b]}), {tname} {t[-1]:.4g}; "
        f"gap {gap:.3g} ({_pct(gap / abs(v[-1])) if v[-1] else 'n/a'} of {vname}); no sign of overfitting",
        numbers,
        stage="healthy",
    )


# ---------------------------------------------------------------------- the whole run
def pick_metric(
    metrics: Any, given: str | None, found: str | None, keys: Sequence[str], arg: str, owner: str
) -> str | None:
    """The logged metric to read: ``given`` (an error naming ``owner(arg=...)`` when it is not logged),
    else the one ``found`` before, else the first of ``keys`` that is logged (``None``: none is)."""
    if given is not None and given not in metrics:
        raise ArgumentError(
            f"{owner}({arg}={given!r}): no such logged metric; the logged metrics are "
            f"{sorted(metrics)}; pass one of them, or {arg}=None to infer it."
        )
    return given or found or next((k for k in keys if k in metrics), None)


#: The default ``underfit_ratio`` against a class-prior baseline (cross-entropy) and against the mean
#: predictor (a regression loss): noisy regression targets leave much of their variance unexplained
#: by any model (a healthy model of sklearn's diabetes keeps ~50% of it), so there only a training loss
#: above 80% of the mean predictor's (R^2 below 0.2) is underfitting.
UNDERFIT_RATIO = {"classification": 0.5, "regression": 0.8}


def add_validation(
    history: dict[str, list[Any]],
    epoch: int,
    batch_idx: int,
    batches: Any,
    step: int,
    train_sum: float,
    train_count: float,
    val_sum: float,
    val_count: float,
) -> float:
    """Append one validation to ``history``: ``x`` (epochs trained: ``epoch`` plus the fraction of its
    ``batches`` done, up to ``batch_idx``), ``epoch``, ``step``, the mean training loss since the previous
    validation (NaN without one) and the validation loss (sums and counts over all ranks).

    Returns the gap, validation minus training loss (NaN without a training loss).
    """
    done = (batch_idx + 1) / batches if isinstance(batches, int) and batches > 0 else 1.0
    history["x"].append(epoch + min(done, 1.0))
    history["epoch"].append(int(epoch))
    history["step"].append(int(step))
    history["train"].append(train_sum / train_count if train_count else math.nan)
    history["val"].append(val_sum / val_count)
    return history["val"][-1] - history["train"][-1]


def pick_baseline(given: float | None, scores: Iterable[Any], initial: Any) -> tuple[float | None, str]:
    """The dumb baseline of the underfitting verdict and what it is: ``given``, else the first finite
    loss of a DumbBaselines' ``scores`` (``None``: not scored), else the loss at init ``initial``."""
    if given is not None:
        return float(given), "given baseline"
    for score in scores:
        if score is not None and math.isfinite(score.loss):
            who = "mean predictor" if score.task == "regression" else "class-prior predictor"
            who = "unigram (token-prior) predictor" if getattr(score, "tokens", False) else who
            return float(score.loss), who
    if initial is not None:
        return float(initial), "loss at init"
    return None, ""


def ended_by(should_stop: bool, stopped_epoch: int | None) -> str | None:
    """What ended the run: ``"budget"`` (``max_epochs``/``max_steps``: nothing asked to stop),
    ``"early_stopping"`` (an early stopping that stopped, ``stopped_epoch > 0``), else ``None``."""
    if not should_stop:
        return "budget"
    if stopped_epoch is not None and stopped_epoch > 0:
        return "early_stopping"
    return None


def underfit_ratio_for(given: float | None, regression: bool) -> float:
    """``given``, else :data:`UNDERFIT_RATIO` for the kind of baseline."""
    return (
        float(given)
        if given is not None
        else UNDERFIT_RATIO["regression" if regression else "classification"]
    )


def no_loss_message(has_validation: bool, metrics: Any) -> str:
    """Why there is no verdict: which loss was never logged, and what to pass."""
    arg, like, what = (
        ("train_monitor", "train_loss", "training")
        if has_validation
        else ("monitor", "val_loss", "validation")
    )
    return f"found no {what} loss: log one named like {like} or pass `{arg}=` one of {sorted(metrics)}"


def run_facts(
    module: nn.Module,
    optimizers: Iterable[Any],
    loader: Any,
    input_shape: tuple[int, ...] | None,
    stop: Any = None,
) -> RunFacts:
    """What the run shows for the regularization advice; ``stop``: the attached early stopping, if any."""
    stopping = None
    if stop is not None:
        stopping = describe_early_stopping(stop.patience, getattr(stop, "restore_best_weights", None))
    return RunFacts(
        input_shape=input_shape or None,
        weight_decay=describe_optimizers(optimizers),
        early_stopping=stopping,
        **describe_data(loader),
        **describe_module(module),
    )


@dataclass
class RunVerdict:
    """:func:`judge_run`'s answer: the finite ``curves`` judged, the ``stage`` and the ``end`` (or ``None``)."""

    curves: dict[str, np.ndarray]
    stage: StageVerdict
    end: Verdict | None


def judge_run(
    history: dict[str, Sequence[float]],
    names: tuple[str, str],
    baseline: tuple[float | None, str],
    stopped_by: Literal["budget", "early_stopping"] | None,
    budget: str,
    patience: int | None,
    restored_epoch: int | None,
    advice: Sequence[str],
    underfit_ratio: float = 0.5,
    min_rise: float = 0.05,
    min_improvement: float = 0.002,
) -> RunVerdict | None:
    """Judge a run's ``history`` (``x``, ``epoch``, ``train``, ``val`` per validation): its stage and, when
    ``stopped_by`` says what ended it, the end of the run. ``None`` when no validation has both losses."""
    h = {k: np.asarray(history[k], dtype=np.float64) for k in ("x", "epoch", "train", "val")}
    keep = np.isfinite(h["train"]) & np.isfinite(h["val"])
    if not keep.any():
        return None
    h = {k: v[keep] for k, v in h.items()}
    curves = {"x": h["x"], "epochs": h["epoch"], "val": h["val"]}
    stage = judge_stage(
        **curves, train=h["train"], baseline=baseline[0], baseline_name=baseline[1], names=names,
        underfit_ratio=underfit_ratio, min_rise=min_rise, min_improvement=min_improvement,
        restored_epoch=restored_epoch, advice=advice,
    )  # fmt: skip
    end = None
    if stopped_by is not None:
        end = end_of_run(
            **curves, stopped_by=stopped_by, stage=stage.stage, budget=budget, patience=patience,
            min_improvement=min_improvement, name=names[1],
        )  # fmt: skip
    return RunVerdict(h, stage, end)


# ---------------------------------------------------------------------- the end of the run
def stop_cause(
    x: Sequence[float] | np.ndarray, val: Sequence[float] | np.ndarray, patience: int
) -> tuple[StopKind, dict[str, Any]]:
    """Why early stopping ended the run: ``"plateau"`` or ``"noise"`` (see the module docstring).

    The caller names ``"overfitting"`` itself, from :func:`judge_stage`.
    """
    xs, v = np.asarray(x, dtype=np.float64), np.asarray(val, dtype=np.float64)
    b = int(np.argmin(v))
    w = min(TREND_WINDOW_MAX, max(10, 3 * patience))
    lo = max(0, b - w + 1)
    pre_x, pre_v = xs[lo : b + 1], v[lo : b + 1]
    sigma = jitter(v[lo:])
    numbers: dict[str, Any] = {"val_jitter": sigma, "pre_best_window": int(pre_v.size)}
    if pre_v.size < 4 or b == v.size - 1:
        return "plateau", numbers
    z = trend_z(pre_v)
    slope = theil_sen(pre_x, pre_v)
    numbers.update(pre_best_trend_z=z, pre_best_slope=slope)
    if z > -IMPROVING_Z or slope >= 0:
        return "plateau", numbers
    intercept = float(np.median(pre_v - slope * pre_x))
    residual = float(np.median(v[b + 1 :] - (intercept + slope * xs[b + 1 :])))
    progress = -slope * float(np.median(xs[b + 1 :] - xs[b]))  # what the trend promised after the best
    numbers.update(post_best_residual=residual, trend_progress=progress)
    if residual > PLATEAU_RESIDUAL * sigma and residual > 0.5 * progress:
        return "plateau", numbers
    return "noise", numbers


def end_of_run(
    x: Sequence[float] | np.ndarray,
    epochs: Sequence[int] | np.ndarray,
    val: Sequence[float] | np.ndarray,
    stopped_by: Literal["budget", "early_stopping"],
    stage: Stage,
    budget: str = "the budget",
    patience: int | None = None,
    min_improvement: float = 0.002,
    name: str = "val_loss",
) -> Verdict | None:
    """What the end of the run says: "leave it training", or why early stopping stopped it (``None``: nothing)."""
    xs, ep, v = (
        np.asarray(x, dtype=np.float64),
        np.asarray(epochs, dtype=np.int64),
        np.asarray(val, dtype=np.float64),
    )
    if stage == "too_short" or v.size < MIN_VALIDATIONS:
        return None
    if stopped_by == "budget":
        if stage in ("overfitting", "diverging"):
            return None
        trend = recent_trend(xs, v, min_improvement)
        if trend is None:
            return None
        numbers = {
            "trend_z": trend.z,
            "slope_per_epoch": trend.relative,
            "window": trend.window,
            "ended_by": budget,
        }
        if trend.improving:  # advice, not a fault: a healthy run cut short is not a bug
            return Verdict(
                "pass",
                "leave_it_training",
                f"{budget} ended the run while {name} was still improving ~{_pct(trend.relative)} per epoch "
                f"(trend z={trend.z:.1f} over the last {trend.window} validations): leave it training",
                numbers,
            )
        return Verdict(
            "pass",
            "levelled_off",
            f"{budget} ended the run after {name} levelled off (trend z={trend.z:.1f}, "
            f"{_pct(-trend.relative)} per epoch over the last {trend.window} validations)",
            numbers,
        )
    p = int(patience) if patience is not None else AFTER_BEST
    last = int(ep[-1])
    if stage == "overfitting":
        return Verdict(
            "pass",
            "stopped_on_overfitting",
            f"early stopping ended the run at epoch {last} as {name} turned up: the recipe's moment to stop",
            {"stopped_epoch": last},
        )
    kind, numbers = stop_cause(xs, v, p)
    numbers["stopped_epoch"] = last
    if kind == "plateau":
        return Verdict(
            "pass",
            "stopped_on_plateau",
            f"early stopping ended the run at epoch {last} on a plateau: {name} had levelled off before its "
            f"best (epoch {ep[int(np.argmin(v))]})",
            numbers,
        )
    per_epoch = -numbers["pre_best_slope"] / abs(_late(v)) if _late(v) else 0.0
    return Verdict(
        "warn",
        "stopped_on_noise",
        f"early stopping ended the run at epoch {last} on noise: {name} was still falling ~{_pct(per_epoch)} per "
        f"epoch and the {v.size - 1 - int(np.argmin(v))} validations after the best sit on that trend, within "
        f"its jitter (±{numbers['val_jitter']:.2g}); the best was a lucky dip: raise patience (e.g. to {2 * p}) "
        "and leave it training",
        numbers,
    )


def markdown(stage: StageVerdict, end: Verdict | None = None) -> str:
    """The verdicts as Markdown for TensorBoard's Text tab: the stage, the advice as a list, the end of the run."""
    lines = [f"**{stage.stage}** ({stage.status}): {stage.message.split('; to regularize')[0]}"]
    advice = stage.numbers.get("advice", [])
    if advice:
        lines.append("\nTo regularize, in the recipe's order:\n")
        lines += [f"{i}. {a}" for i, a in enumerate(advice, 1)]
    if end is not None:
        lines.append(f"\n**end of the run** ({end.status}): {end.message}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- what the run shows
@dataclass
class RunFacts:
    """What a run shows that bears on regularization (``None``: unknown).

    Attributes:
        train_size: training samples; ``batch_size``; ``input_shape``: one sample's shape;
        augmentation: what is known of augmentation (e.g. "a fixed TensorDataset: no augmentation");
        parameters: trainable parameter count; ``dropout``: the ``p`` of each dropout module;
        ``spatial_dropout``; ``batchnorm``; ``conv``; ``weight_decay``: ``(optimizer, value)`` per
        parameter group; ``early_stopping``: a description, ``None`` if none is attached.
    """

    train_size: int | None = None
    batch_size: int | None = None
    input_shape: tuple[int, ...] | None = None
    augmentation: str | None = None
    parameters: int | None = None
    dropout: list[float] = field(default_factory=list)
    spatial_dropout: bool = False
    batchnorm: bool = False
    conv: bool = False
    weight_decay: list[tuple[str, float]] = field(default_factory=list)
    early_stopping: str | None = None


def describe_module(module: nn.Module) -> dict[str, Any]:
    """Trainable parameters, dropout modules (their ``p``), spatial dropout, batch norm, convolutions."""
    dropout: list[float] = []
    spatial = batchnorm = conv = False
    for m in module.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            dropout.append(float(m.p))
            spatial = spatial or isinstance(m, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d))
        batchnorm = batchnorm or isinstance(m, nn.modules.batchnorm._BatchNorm)
        conv = conv or isinstance(m, nn.modules.conv._ConvNd)
    parameters = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {
        "parameters": int(parameters),
        "dropout": dropout,
        "spatial_dropout": spatial,
        "batchnorm": batchnorm,
        "conv": conv,
    }


def describe_optimizers(optimizers: Iterable[Any]) -> list[tuple[str, float]]:
    """``(optimizer class, weight_decay)`` for each parameter group of each optimizer."""
    out: list[tuple[str, float]] = []
    for opt in optimizers:
        inner = getattr(opt, "optimizer", opt)  # Lightning wraps optimizers
        for group in getattr(inner, "param_groups", []):
            out.append((type(inner).__name__, float(group.get("weight_decay", 0.0) or 0.0)))
    return out


def describe_data(loader: Any) -> dict[str, Any]:
    """``train_size``, ``batch_size`` and what is known of augmentation, from a training ``DataLoader``."""
    dataset = getattr(loader, "dataset", None)
    inner = dataset.dataset if isinstance(dataset, Subset) else dataset
    return {
        "train_size": len(dataset) if isinstance(dataset, Sized) else None,
        "batch_size": getattr(loader, "batch_size", None),
        "augmentation": "a fixed TensorDataset: no augmentation"
        if isinstance(inner, TensorDataset)
        else None,
    }


def describe_early_stopping(patience: int, restore_best_weights: bool | None) -> str:
    """How early stopping is set up (``restore_best_weights=None``: the option does not exist)."""
    text = f"EarlyStopping(patience={patience}) attached"
    if restore_best_weights:
        return text + ", best weights restored"
    if restore_best_weights is not None:
        return text + "; pass restore_best_weights=True to end on the best epoch"
    return text


def budget_name(max_steps: int | None, global_step: int, max_epochs: int | None, current_epoch: int) -> str:
    """Which limit ended a run that nothing stopped: ``"max_steps=N"``, ``"max_epochs=N"`` or "the run's limit"."""
    if max_steps is not None and max_steps >= 0 and global_step >= max_steps:
        return f"max_steps={max_steps}"
    if max_epochs is not None and max_epochs >= 0 and current_epoch >= max_epochs:
        return f"max_epochs={max_epochs}"
    return "the run's limit"


def _count(n: int) -> str:
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k" if n >= 1e3 else str(n)


def regularization_advice(facts: RunFacts) -> list[str]:
    """The recipe's regularization tips in its order, each with what the run shows."""

    def with_(text: str, evidence: str | None) -> str:
        return f"{text} ({evidence})" if evidence else text

    items = [with_("more data", f"{facts.train_size} training samples" if facts.train_size else None)]
    items.append(with_("data augmentation", facts.augmentation))
    items.append("a pretrained network")
    shape = facts.input_shape
    items.append(
        with_(
            "smaller input dimensionality",
            f"inputs {'x'.join(map(str, shape))} = {math.prod(shape)} values per sample" if shape else None,
        )
    )
    size = None
    if facts.parameters is not None:
        size = f"{_count(facts.parameters)} parameters"
        if facts.train_size:
            size += f", {facts.parameters / facts.train_size:.3g} per training sample"
    items.append(with_("a smaller model", size))
    batch = None
    if facts.batch_size is not None:
        batch = f"batch size {facts.batch_size}" + (
            "; with batch norm, smaller batches regularize"
            if facts.batchnorm
            else "; no batch norm, so this helps less"
        )
    items.append(with_("a smaller batch", batch))
    if not facts.dropout or max(facts.dropout) == 0:
        drop = "no dropout in the model" + ("; Dropout2d for a ConvNet" if facts.conv else "")
        items.append(with_("dropout", drop))
    else:
        items.append(with_("more dropout", f"p={max(facts.dropout):.2g} in {len(facts.dropout)} module(s)"))
    if facts.weight_decay:
        values = sorted({wd for _, wd in facts.weight_decay})
        name = facts.weight_decay[0][0]
        if max(values) == 0:
            items.append(with_("weight decay", f"weight_decay=0 in {name}"))
        else:
            items.append(with_("more weight decay", f"weight_decay={max(values):.2g} in {name}"))
    else:
        items.append("weight decay")
    items.append(with_("early stopping", facts.early_stopping or "no EarlyStopping attached"))
    items.append("a larger model with early stopping")
    return items
