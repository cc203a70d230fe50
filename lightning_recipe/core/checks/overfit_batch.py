"""Overfit one batch, without Lightning: train a copy on a few examples and judge how low its loss went.

:func:`overfit` drives a :class:`~lightning_recipe.core.shadow.ShadowSteps` (the copy, trained
with the user's own ``training_step``) until the loss reaches the lowest achievable value, plateaus
above it or runs out of steps, and returns an :class:`OverfitOutcome`: the verdict
``(status, message, numbers)``, the loss curve and the data of the summary figure. The pieces
(targets, plateau test, label-smoothing floors, hints) are plain functions on numbers and tensors.

Example:
    >>> round(smoothing_floor(0.1, 10), 4)          # the lowest cross-entropy with label smoothing 0.1
    0.5003
    >>> target_loss_for(OverfitConfig(), "classification", 2.3)
    0.05
    >>> plateaued([1.0] * 60, patience=50), plateaued([0.5 ** k for k in range(60)], patience=50)
    (True, False)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_recipe.core.batches import batch_size_of, map_tensors, split_batch
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.robust import moving_average
from lightning_recipe.core.shadow import ShadowSteps, ShadowUnsupported
from lightning_recipe.core.tasks import (
    float_targets_fit,
    infer_sequence_objective,
    infer_task,
    is_binary_valued,
    is_token_targets,
)
from lightning_recipe.findings import Status

__all__ = [
    "CLASSIFICATION_TARGET",
    "DIVERGED",
    "R2_TARGET",
    "RELATIVE_TARGET",
    "SMOOTHING_SLACK",
    "OverfitConfig",
    "OverfitOutcome",
    "OverfitRun",
    "are_probabilities",
    "batch_examples",
    "class_view",
    "conflict_floor",
    "declared_smoothing",
    "kind_of",
    "overfit",
    "plateaued",
    "plot_data",
    "predict",
    "r2_score",
    "smoothing_floor",
    "smoothing_for_floor",
    "smoothing_from_outputs",
    "static_hints",
    "steps_to_target",
    "take",
    "target_loss_for",
    "target_text",
    "verdict",
]

#: Classification reaches "near zero" at this loss (or 2% of the initial loss, if larger).
CLASSIFICATION_TARGET = 0.05
#: Regression (and batches without targets) must lose this fraction of the initial loss...
RELATIVE_TARGET = 0.01
#: ...or explain this fraction of the targets' variance with its predictions (R²).
R2_TARGET = 0.99
#: A loss within this factor of the label-smoothing floor has reached it.
SMOOTHING_SLACK = 1.05
#: A last loss above this multiple of the initial one: the copy diverged.
DIVERGED = 2.0
#: Without targets the lowest achievable loss is unknown (a contrastive loss has a floor above 0):
#: a loss below this fraction of the initial one, when the target is not reached, is taken as memorised.
UNKNOWN_FLOOR = 0.05


@dataclass(frozen=True)
class OverfitConfig:
    """What the verdict depends on (arguments of ``OverfitBatchCheck``).

    Attributes:
        max_steps: the most optimizer steps for the copy.
        patience: steps without meaningful improvement before the loss counts as a plateau.
        target_loss: the loss to reach; ``None`` judges from the kind of targets.
        task: ``"auto"`` or the task.
    """

    max_steps: int = 300
    patience: int = 50
    target_loss: float | None = None
    task: str = "auto"


@dataclass
class OverfitRun:
    """What training the copy measured (the input of :func:`verdict`)."""

    n: int
    kind: str
    task: str | None = None
    losses: list[float] = field(default_factory=list)
    target: float | None = None
    reached: bool = False
    plateau: bool = False
    no_target: bool = False
    r2: float | None = None
    smoothing: tuple[float, float] | None = None
    irreducible: float | None = None  # the loss no model reaches below on this batch (conflict_floor)
    outputs: torch.Tensor | None = None
    targets: Any = None
    changed: bool = True
    hints: list[str] = field(default_factory=list)
    learning_rate: str = ""


@dataclass
class OverfitOutcome:
    """The verdict, the copy's loss curve and the figure's data (``None``: no figure)."""

    status: Status
    message: str
    numbers: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    plot: dict[str, Any] | None = None


# ---------------------------------------------------------------------- the run
def take(batch: Any, n_batch: int, n: int) -> Any:
    """The first ``n`` examples: every tensor with ``n_batch`` rows is sliced (copies, never views)."""
    return map_tensors(batch, lambda t: t[:n].clone() if t.dim() and t.shape[0] == n_batch else t)


def predict(shadow: ShadowSteps, batch: Any, call: ModelCall) -> torch.Tensor | None:
    """The copy's logits on ``batch`` (float, on the CPU), or ``None`` when it cannot be called."""
    try:
        logits = shadow.forward(batch, call).logits
    except Exception:
        return None
    return logits.detach().float().cpu() if isinstance(logits, torch.Tensor) else None


def overfit(
    shadow: ShadowSteps, batch: Any, n: int, config: OverfitConfig, call: ModelCall
) -> OverfitOutcome:
    """Train ``shadow`` on the ``n`` examples of ``batch`` and judge it (see :func:`verdict`)."""
    try:
        parts = split_batch(batch, input_key=call.input_key, target_key=call.target_key)
    except ValueError:
        parts = None
    targets = parts.targets if parts is not None else None
    module = shadow.module
    before = [p.detach().clone() for p in module.parameters()]
    outputs0 = predict(shadow, batch, call)
    kind, task = kind_of(targets, outputs0, config.task)
    run = OverfitRun(n=n, kind=kind, task=task, targets=targets, hints=static_hints(module, shadow.optimizer))
    run.smoothing = declared_smoothing(module, outputs0, targets, task, config.target_loss)
    if config.target_loss is None and task == "multiclass" and parts is not None:
        run.irreducible = conflict_floor(batch, parts.inputs, targets, outputs0, module)
    try:
        _train(shadow, batch, config, call, run)
    except ShadowUnsupported as err:
        return OverfitOutcome("skipped", f"cannot train a copy of the module: {err}", {}, list(run.losses))
    if run.no_target:
        value = run.losses[-1]
        return OverfitOutcome(
            "skipped",
            f"the initial loss is {value:.4g} (not positive), so no relative target applies; pass `target_loss=`",
            {"initial_loss": value},
            list(run.losses),
        )
    run.outputs = predict(shadow, batch, call)
    if kind == "regression":
        run.r2 = r2_score(run.outputs, targets)
        run.reached = run.reached or (run.r2 is not None and run.r2 >= R2_TARGET)
    run.changed = any(not torch.equal(a, p.detach()) for a, p in zip(before, module.parameters()))
    run.learning_rate = _learning_rate(shadow.optimizer)
    status, message, numbers, plot = verdict(config, run)
    return OverfitOutcome(status, message, numbers, list(run.losses), plot)


def _train(shadow: ShadowSteps, batch: Any, config: OverfitConfig, call: ModelCall, run: OverfitRun) -> None:
    """Step the copy until the target, a plateau, a non-finite loss or ``max_steps``; fills ``run``."""
    losses = run.losses
    for k in range(config.max_steps):
        value = shadow.step(batch, k)
        losses.append(value)
        if not math.isfinite(value):
            break
        if run.target is None:
            run.target = target_loss_for(config, run.kind, value, run.smoothing)
            if run.target is None:
                run.no_target = True
                return
            if run.irreducible:  # what nothing can memorise, on top of the near-zero target
                run.target += run.irreducible
        if value <= run.target:
            run.reached = True
            break
        if run.kind == "regression" and k % 10 == 9:
            run.r2 = r2_score(predict(shadow, batch, call), run.targets)
            if run.r2 is not None and run.r2 >= R2_TARGET:
                run.reached = True
                break
        if plateaued(losses, config.patience, log_scale=config.target_loss is None):
            run.plateau = True
            break
    if not run.reached and losses and math.isfinite(losses[-1]):
        final = shadow.loss(batch, train_mode=True)
        losses.append(final)
        run.reached = run.target is not None and final <= run.target
        if not run.reached:  # dropout noise: judge the copy without it too
            eval_loss = shadow.loss(batch, train_mode=False)
            run.reached = run.target is not None and eval_loss <= run.target


# ---------------------------------------------------------------------- the verdict
def verdict(
    config: OverfitConfig, run: OverfitRun
) -> tuple[Status, str, dict[str, Any], dict[str, Any] | None]:
    """``(status, message, numbers, figure data)`` of a finished run.

    ``fail`` for a non-finite loss or one that rose above :data:`DIVERGED` times its start, and for
    a plateau above the target (the message names the likely cause); ``pass`` when the target was
    reached (or a label-smoothing floor), or when the loss still falls fast enough to reach it
    within another ``max_steps`` (a geometric fall, measured on the log of the loss), or, without
    targets, ends below :data:`UNKNOWN_FLOOR` of its start; ``warn`` when the loss was still
    falling at ``max_steps``, too slowly to tell.
    """
    numbers = _numbers(config, run)
    plot = plot_data(run.losses, run.target, run.outputs, run.targets, run.task)
    if plot is not None and "accuracy" in plot:
        numbers["accuracy"] = plot["accuracy"]
    losses = run.losses
    if losses and not math.isfinite(losses[-1]):
        return (*_diverged(run, numbers), numbers, plot)
    if run.reached:
        return "pass", _reached_message(run, numbers), numbers, plot
    if run.task == "multiclass" and config.target_loss is None and run.smoothing is None:
        message = _smoothing_pass(run, numbers)
        if message is not None:
            return "pass", message, numbers, plot
    status, message = _not_reached(config, run, numbers)
    return status, message, numbers, plot


def _numbers(config: OverfitConfig, run: OverfitRun) -> dict[str, Any]:
    losses = run.losses
    reached = run.reached
    numbers: dict[str, Any] = {
        "num_samples": run.n,
        "steps": len(losses) - (0 if reached and len(losses) <= config.max_steps else 1),
        "initial_loss": losses[0] if losses else float("nan"),
        "final_loss": losses[-1] if losses else float("nan"),
        "lowest_loss": min((v for v in losses if math.isfinite(v)), default=float("nan")),
        "target_loss": run.target,
        "kind": run.kind,
    }
    if run.r2 is not None:
        numbers["r2"] = run.r2
    if run.smoothing is not None:
        numbers["label_smoothing"], numbers["smoothing_floor"] = run.smoothing
    if run.irreducible:
        numbers["irreducible_loss"] = run.irreducible
    return numbers


def _diverged(run: OverfitRun, numbers: dict[str, Any]) -> tuple[Status, str]:
    losses, n, initial = run.losses, run.n, numbers["initial_loss"]
    finite = [v for v in losses if math.isfinite(v)]
    if initial > 0 and len(finite) > 1 and finite[-1] > DIVERGED * initial:
        return (
            "fail",
            f"cannot overfit {n} examples: the loss rose from {initial:.4g} to {finite[-1]:.4g}, then "
            f"{losses[-1]} at step {len(losses) - 1}: the learning rate{run.learning_rate} "
            "is too high for this batch; lower it",
        )
    return (
        "fail",
        f"the loss became {losses[-1]} at step {len(losses) - 1} while overfitting {n} examples "
        f"(from {initial:.4g}); lower the learning rate or look for log(0), division by zero",
    )


def _reached_message(run: OverfitRun, numbers: dict[str, Any]) -> str:
    r2 = run.r2
    how = (
        f"R² {r2:.3f}"
        if run.kind == "regression" and r2 is not None and r2 >= R2_TARGET
        else f"loss {numbers['lowest_loss']:.4g}"
    )
    why = ""
    if run.smoothing is not None:
        why = f": the floor of label smoothing {run.smoothing[0]:.3g} is {run.smoothing[1]:.4g}"
    return (
        f"overfit {run.n} examples in {numbers['steps']} steps: {how} (from {numbers['initial_loss']:.4g}; "
        f"target {target_text(run.kind, run.target, run.irreducible)}{why})"
    )


def _smoothing_pass(run: OverfitRun, numbers: dict[str, Any]) -> str | None:
    """The ``pass`` message when the plateau is the floor of an undeclared label smoothing, else ``None``."""
    best = numbers["lowest_loss"]
    floor = smoothing_from_outputs(run.outputs, run.targets, best)
    if floor is None:
        return None
    eps, p, classes = floor
    numbers["label_smoothing"], numbers["smoothing_floor"] = eps, smoothing_floor(eps, classes)
    return (
        f"overfit {run.n} examples in {numbers['steps']} steps: the loss stopped at {best:.4g} (from "
        f"{numbers['initial_loss']:.4g}) with every example right at the same probability {p:.3g}: a floor "
        f"consistent with label smoothing eps≈{eps:.2g} over {classes} classes"
    )


def _not_reached(config: OverfitConfig, run: OverfitRun, numbers: dict[str, Any]) -> tuple[Status, str]:
    n, steps, kind, target = run.n, numbers["steps"], run.kind, run.target
    initial, best = numbers["initial_loss"], numbers["lowest_loss"]
    last = run.losses[-1] if run.losses else float("nan")
    if not run.hints and initial > 0 and last > DIVERGED * initial:
        return (
            "fail",
            f"cannot overfit {n} examples: the loss rose from {initial:.4g} to {last:.4g} in {steps} steps "
            f"(lowest {best:.4g}): the learning rate{run.learning_rate} is too high for this batch; lower it",
        )
    free = config.target_loss is None and not run.hints and run.changed
    if free and kind == "unknown" and best <= UNKNOWN_FLOOR * initial:
        how = "levelled off at" if run.plateau else "reached"
        return "pass", (
            f"overfit {n} examples: the loss {how} {best:.4g} after {steps} steps, {1 - best / initial:.1%} "
            f"below its start {initial:.4g}; with no targets found the lowest achievable loss is unknown "
            "(a contrastive loss stays above 0): pass `target_loss=` to check a value"
        )
    eta = steps_to_target(run.losses, target, config.patience) if free and not run.plateau else None
    if eta is not None and eta <= config.max_steps:
        return "pass", (
            f"overfitting {n} examples: the loss fell from {initial:.4g} to {best:.4g} in {steps} steps and is still "
            f"falling geometrically: at its recent rate it reaches the target {target_text(kind, target)} in about "
            f"{eta} more steps (raise `max_steps` to watch it get there)"
        )
    hint = _hint(run.hints, run.changed, run.task, run.outputs, run.targets, best, config.target_loss is None)
    if run.plateau or not run.changed or run.hints:
        reached = "plateaued at" if run.plateau else "only reached"
        return (
            "fail",
            f"cannot overfit {n} examples: the loss {reached} {best:.4g} after {steps} steps (from {initial:.4g}; "
            f"lowest achievable {target_text(kind, target, run.irreducible)}); {hint}",
        )
    return (
        "warn",
        f"the loss was still decreasing after max_steps={config.max_steps} steps on {n} examples ({initial:.4g} -> "
        f"{best:.4g}, target {target_text(kind, target)}); raise `max_steps` (or the learning rate) to conclude",
    )


# ---------------------------------------------------------------------- targets and plateaus
def kind_of(targets: torch.Tensor | None, outputs: torch.Tensor | None, task: str) -> tuple[str, str | None]:
    """``("classification" | "regression" | "unknown", the task or None)``."""
    if targets is None or not isinstance(targets, torch.Tensor):
        if task == "auto":
            return "unknown", None
        return ("regression" if task == "regression" else "classification"), task
    if task == "auto" and isinstance(outputs, torch.Tensor) and not float_targets_fit(targets, outputs):
        return "unknown", None  # a second input (contrastive pairs), not what the outputs predict
    try:
        resolved: str | None = infer_task(targets, outputs, task)
    except (ValueError, TypeError):
        resolved = None
    if resolved is None:
        classification = not targets.is_floating_point() or is_binary_valued(targets)
        return ("classification" if classification else "regression"), None
    return ("regression" if resolved == "regression" else "classification"), resolved


def target_loss_for(
    config: OverfitConfig, kind: str, initial: float, smoothing: tuple[float, float] | None = None
) -> float | None:
    """The loss to reach: ``target_loss=``, else from the kind of targets and the initial loss.

    ``None`` when no relative target applies (an initial loss that is not positive).
    """
    if config.target_loss is not None:
        return config.target_loss
    if not initial > 0:
        return None
    if kind == "classification":
        target = max(CLASSIFICATION_TARGET, 2 * RELATIVE_TARGET * initial)
        if smoothing is not None:  # a cross-entropy with label smoothing has a minimum above 0
            target = max(target, SMOOTHING_SLACK * smoothing[1])
        return target
    return RELATIVE_TARGET * initial


def target_text(kind: str, target: float | None, irreducible: float | None = None) -> str:
    """The target as the messages state it."""
    t = "?" if target is None else f"{target:.3g}"
    if kind == "regression":
        return f"loss <= {t} or R² >= {R2_TARGET}"
    if irreducible:
        return (
            f"<= {t}, of which {irreducible:.3g} cannot be memorised: the same context before different "
            "next tokens, e.g. the first token after a BOS"
        )
    return f"<= {t}"


def _other_per_sample(batch: Mapping, known: tuple[Any, ...]) -> bool:
    """Whether ``batch`` holds a tensor besides ``known`` whose rows differ from sample to sample."""
    n = known[0].shape[0]
    for value in batch.values():
        if not isinstance(value, torch.Tensor) or any(value is k for k in known):
            continue
        if value.dim() and value.shape[0] == n and n > 1 and not bool((value == value[:1]).all()):
            return True
    return False


def conflict_floor(batch: Any, inputs: Any, targets: Any, outputs: Any, module: Any = None) -> float | None:
    """The cross-entropy no model can go below on ``batch``: next-token positions whose context is
    the same but whose tokens differ (token targets of a causal objective: the first token after a
    BOS, or after nothing but padding, in each sequence). ``None`` when every context has one next
    token, or the targets are not next tokens. (Samples of one class per sample with the same input
    and other labels are a data bug, ``DataInspector``'s "conflicting labels": not forgiven here.)

    The context of a label is the attended ids up to the logits that predict it
    (``attention_mask == 1``; padding carries nothing). The floor is the mean over the loss
    positions of the entropy of the targets that share a context.

    Example:
        >>> class TinyForCausalLM(nn.Module): ...  # a causal LM: it shifts the labels inside
        >>> ids = torch.tensor([[1, 5, 6], [1, 7, 6], [1, 5, 6], [1, 8, 6]])  # BOS, then 5, 7, 5 or 8
        >>> batch = {"input_ids": ids, "labels": ids}
        >>> round(conflict_floor(batch, ids, ids, torch.zeros(4, 3, 9), TinyForCausalLM()), 4)
        0.5199
        >>> conflict_floor(batch, ids, ids, torch.zeros(4, 3, 9)) is None  # per-token tags: no shared context
        True
        >>> captioned = {**batch, "pixel_values": torch.randn(4, 3, 2, 2)}  # the image tells them apart
        >>> conflict_floor(captioned, ids, ids, torch.zeros(4, 3, 9), TinyForCausalLM()) is None
        True
    """
    if not isinstance(targets, torch.Tensor) or not isinstance(outputs, torch.Tensor):
        return None
    t = targets.detach().cpu()
    keys: list[tuple[Any, int]] = []  # (context, target) per loss position
    if is_token_targets(t, outputs):
        objective = infer_sequence_objective(t, outputs, batch=batch, module=module)
        ids = batch.get("input_ids") if isinstance(batch, Mapping) else inputs
        if objective is None or not objective.causal or not isinstance(ids, torch.Tensor):
            return None
        if ids.shape != t.shape or ids.is_floating_point():
            return None
        mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
        if isinstance(batch, Mapping) and _other_per_sample(batch, (ids, mask, targets)):
            return None  # pixel values, a prefix, segments: the context is more than the ids
        ids = ids.detach().cpu()
        keep = (
            mask.detach().cpu() != 0
            if isinstance(mask, torch.Tensor) and mask.shape == ids.shape
            else ids == ids
        )
        shift = objective.shift
        for r_ids, r_keep, r_t in zip(ids.tolist(), keep.tolist(), t.tolist()):
            context: Any = ()
            for j, (token, kept) in enumerate(zip(r_ids, r_keep)):
                if kept:  # padding carries nothing: the context is the attended ids so far
                    context = hash((context, token))
                label = j + shift
                if label < len(r_t) and r_t[label] != objective.ignore_index:
                    keys.append((context, r_t[label]))
    if not keys:
        return None
    groups: dict[Any, Counter] = {}
    for context, label in keys:
        groups.setdefault(context, Counter())[label] += 1
    total = 0.0
    for counts in groups.values():
        n = sum(counts.values())
        total += sum(c * math.log(n / c) for c in counts.values())
    floor = total / len(keys)
    return floor if floor > 1e-9 else None


def plateaued(losses: list[float], patience: int, log_scale: bool = True) -> bool:
    """The smoothed loss improved by < 1% of its total improvement over the last ``patience`` steps.

    With ``log_scale`` (a loss whose minimum is 0) improvements are measured on the log of the
    loss, so that a loss still halving near zero does not count as a plateau.
    """
    if len(losses) < patience + 5:
        return False
    w = max(3, patience // 5)
    arr = np.asarray(losses, dtype=np.float64)
    if log_scale and bool(np.all(arr > 0)):
        arr = np.log(arr)
    smooth = moving_average(arr, w)[w - 1 :]  # only the full windows
    if len(smooth) <= patience:
        return False
    best_now = smooth.min()
    best_then = smooth[: len(smooth) - patience].min()
    total = smooth[0] - best_now
    recent = best_then - best_now
    return bool(recent <= 0.01 * max(total, 0.0) + 1e-12 * (1.0 + abs(arr[0])))


def steps_to_target(losses: list[float], target: float | None, patience: int) -> int | None:
    """Steps a still-falling loss needs to reach ``target`` at the rate of its last ``patience`` steps.

    The rate is measured on the log of the loss, smoothed as :func:`plateaued` smooths it: a loss
    whose minimum is 0 falls geometrically while it memorises. ``None`` when it does not fall, or
    the curve is too short or not positive.

    Example:
        >>> steps_to_target([0.99**k for k in range(200)], 0.99**300, patience=50)
        101
    """
    if target is None or not target > 0 or len(losses) < patience + 5:
        return None
    arr = np.asarray(losses, dtype=np.float64)
    if not bool(np.all(arr > 0)) or not bool(np.all(np.isfinite(arr))):
        return None
    w = max(3, patience // 5)
    smooth = moving_average(np.log(arr), w)[w - 1 :]
    if len(smooth) <= patience:
        return None
    rate = (smooth[-patience - 1] - smooth[-1]) / patience
    if not rate > 0:
        return None
    return max(0, math.ceil((min(smooth[-1], math.log(min(arr))) - math.log(target)) / rate))


def r2_score(outputs: torch.Tensor | None, targets: torch.Tensor | None) -> float | None:
    """R² of the predictions on float targets (``None`` when it does not apply)."""
    if outputs is None or targets is None or not targets.is_floating_point():
        return None
    y = targets.detach().float().cpu().reshape(-1)
    if outputs.numel() != y.numel():
        return None
    p = outputs.reshape(-1)
    sst = float(((y - y.mean()) ** 2).sum())
    if sst <= 0:
        return None
    return 1.0 - float(((y - p) ** 2).sum()) / sst


# ---------------------------------------------------------------------- class scores and label smoothing
def class_view(
    outputs: torch.Tensor | None, targets: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(scores (M, C), labels (M,), example (M,))`` of every labelled position of a multiclass output.

    Outputs ``(N, C, ...)`` with targets ``(N, ...)`` (``F.cross_entropy``'s layout) or ``(N, T, C)``
    with ``(N, T)`` (language models); positions whose label is out of ``[0, C)`` (padding,
    ``ignore_index=-100``) are left out. ``None`` when outputs and targets do not fit that way.
    """
    if outputs is None or not isinstance(targets, torch.Tensor) or targets.is_floating_point():
        return None
    y = targets.detach().cpu().long()
    out = outputs.detach().float().cpu()
    if y.dim() == 0 or out.dim() != y.dim() + 1 or out.shape[0] != y.shape[0] or y.shape[0] == 0:
        return None
    if out.shape[2:] == y.shape[1:]:
        scores = out.movedim(1, -1).reshape(-1, out.shape[1])
    elif out.shape[:-1] == y.shape:
        scores = out.reshape(-1, out.shape[-1])
    else:
        return None
    labels = y.reshape(-1)
    example = torch.arange(y.shape[0]).repeat_interleave(labels.numel() // y.shape[0])
    keep = (labels >= 0) & (labels < scores.shape[1])
    if not bool(keep.any()) or scores.shape[1] < 2:
        return None
    return scores[keep], labels[keep], example[keep]


def are_probabilities(scores: torch.Tensor) -> bool:
    """True when every row of ``scores`` is a probability distribution (already softmaxed)."""
    return bool(
        (scores >= 0).all()
        and (scores <= 1).all()
        and torch.allclose(scores.sum(-1), torch.ones(1), atol=1e-3)
    )


def smoothing_floor(eps: float, classes: int) -> float:
    """The lowest cross-entropy with label smoothing ``eps`` over ``classes``: the entropy of the smoothed target."""
    high, low = 1.0 - eps + eps / classes, eps / classes
    return -(high * math.log(high)) - (classes - 1) * (low * math.log(low) if low > 0 else 0.0)


def smoothing_for_floor(loss: float, classes: int) -> float | None:
    """The label smoothing ``eps`` whose floor is ``loss`` (the floor grows with ``eps`` up to ``(C - 1) / C``)."""
    top = (classes - 1) / classes
    if not 0.0 < loss < smoothing_floor(top, classes):
        return None
    lo, hi = 0.0, top
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if smoothing_floor(mid, classes) < loss else (lo, mid)
    return (lo + hi) / 2


def smoothing_from_outputs(
    outputs: torch.Tensor | None, targets: Any, loss: float
) -> tuple[float, float, int] | None:
    """``(eps, p, classes)`` when a plateau at ``loss`` is the floor of label smoothing, else ``None``.

    Minimising a smoothed cross-entropy leaves every labelled position right with the same
    probability ``p < 1`` of its class, ``p = 1 - eps (C - 1) / C``. The outputs must show that
    (within ``max(0.05, (1 - p) / 2)``: Adam leaves a few percent of spread after a few hundred steps),
    and the ``eps`` they imply must agree (within 25%) with the ``eps`` whose floor is the loss
    (the loss is measured in training mode, the outputs in eval mode: dropout makes them differ a
    little). A bug that caps the confidence (bounded logits) leaves a loss of about ``-log p``,
    far below the smoothing floor of that ``p``: it does not pass.
    """
    view = class_view(outputs, targets)
    if view is None or not math.isfinite(loss):
        return None
    scores, labels, _ = view
    probs = scores if are_probabilities(scores) else scores.softmax(-1)
    if not bool((probs.argmax(-1) == labels).all()):
        return None
    p_true = probs.gather(1, labels.unsqueeze(1)).squeeze(1).double()
    p = float(p_true.mean())
    classes = int(scores.shape[1])
    from_outputs = (1.0 - p) * classes / (classes - 1)
    spread = float(p_true.max() - p_true.min())
    if not 0.005 <= from_outputs < 1.0 or spread > max(0.05, 0.5 * (1.0 - p)):
        return None
    from_loss = smoothing_for_floor(loss, classes)
    if from_loss is None or abs(from_loss - from_outputs) > 0.25 * max(from_loss, from_outputs):
        return None
    return from_loss, p, classes


def declared_smoothing(
    module: nn.Module, outputs: torch.Tensor | None, targets: Any, task: str | None, target_loss: float | None
) -> tuple[float, float] | None:
    """``(eps, floor)`` of an ``nn.CrossEntropyLoss(label_smoothing=eps)`` inside the module."""
    if target_loss is not None or task != "multiclass":
        return None
    eps = max(
        (
            float(m.label_smoothing)
            for m in module.modules()
            if isinstance(m, nn.CrossEntropyLoss) and isinstance(m.label_smoothing, (int, float))
        ),
        default=0.0,
    )
    view = class_view(outputs, targets)
    if not 0.0 < eps < 1.0 or view is None:
        return None
    classes = int(view[0].shape[1])
    return eps, smoothing_floor(eps, classes)


# ---------------------------------------------------------------------- hints
def _learning_rate(optimizer: torch.optim.Optimizer) -> str:
    rates = sorted({float(g["lr"]) for g in optimizer.param_groups if isinstance(g.get("lr"), (int, float))})
    if not rates:
        return ""
    return f" ({rates[0]:.3g})" if len(rates) == 1 else f" (up to {rates[-1]:.3g})"


def static_hints(module: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """What makes the copy unable to learn, visible before training: frozen parameters, a zero rate, Dropout(1)."""
    hints = []
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        hints.append("all parameters are frozen (requires_grad=False)")
    else:
        ids = {id(p) for p in trainable}
        groups = [g for g in optimizer.param_groups if any(id(p) in ids for p in g["params"])]
        if not groups:
            hints.append("the optimizer holds none of the trainable parameters")
        elif all(float(g.get("lr", 1.0)) == 0.0 for g in groups):
            hints.append("the learning rate is 0")
    for name, m in module.named_modules():
        p = getattr(m, "p", None)
        if isinstance(m, nn.modules.dropout._DropoutNd) and isinstance(p, (int, float)) and p >= 1.0:
            hints.append(f"{name!r} is {type(m).__name__}(p={p}): it zeroes its input in training")
    return hints


def _hint(
    static: list[str],
    changed: bool,
    task: str | None,
    outputs: torch.Tensor | None,
    targets: Any,
    best: float,
    auto: bool,
) -> str:
    if static:
        return "; ".join(static)
    if not changed:
        return "no parameter changed: the loss is not connected to the trainable parameters, or every gradient is 0"
    view = class_view(outputs, targets) if task == "multiclass" else None
    if view is not None:
        c = int(view[0].shape[1])
        floor = math.log(1 + (c - 1) / math.e)
        if are_probabilities(view[0]) or abs(best - floor) <= 0.05 * floor:
            return (
                f"the floor of cross-entropy applied to probabilities is ln(1 + {c - 1}/e) = {floor:.3g} for {c} "
                "classes: pass logits (not softmax outputs) to cross_entropy, or use nll_loss(log_softmax(z))"
            )
    head = (
        "if the loss has a non-zero minimum by design (label smoothing, a penalty term), pass `target_loss=`; else "
        if auto
        else ""
    )
    return (
        head
        + "look for a loss that does not match the outputs (activation applied twice, wrong target shape), "
        "augmentation or noise inside the module (`augment_off=`), or a model too small to memorise"
    )


# ---------------------------------------------------------------------- figure data
def plot_data(
    losses: list[float],
    target: float | None,
    outputs: torch.Tensor | None,
    targets: torch.Tensor | None,
    task: str | None,
) -> dict[str, Any] | None:
    """Numpy copies of what :func:`lightning_recipe.plots.overfit_batch.summary_figure` shows.

    ``mode`` is ``"class"`` (label and predicted class per example), ``"scatter"`` (label against
    prediction or probability) or ``None`` (no predictions to show).
    """
    data: dict[str, Any] = {"losses": np.asarray(losses, dtype=np.float64), "target": target, "mode": None}
    if outputs is None or targets is None or not isinstance(targets, torch.Tensor):
        return data
    y = targets.detach().cpu()
    n = y.shape[0] if y.dim() else 0
    if n == 0 or outputs.shape[0] != n:
        return data
    view = class_view(outputs, y) if task == "multiclass" else None
    if view is not None:
        data.update(_class_plot(*view))
        return data
    if task in ("binary", "multilabel") and outputs.numel() == y.numel():
        out = outputs
        probs = out if bool((out >= 0).all() and (out <= 1).all()) else out.sigmoid()
        yy, pp = y.reshape(-1).float(), probs.reshape(-1)
        data.update(
            mode="scatter",
            label=yy.numpy(),
            pred=pp.numpy(),
            accuracy=float(((pp > 0.5).float() == yy).float().mean()),
            ylabel="predicted probability",
        )
        return data
    if outputs.numel() == y.numel() and y.is_floating_point():
        data.update(
            mode="scatter", label=y.reshape(-1).numpy(), pred=outputs.reshape(-1).numpy(), ylabel="prediction"
        )
    return data


def _class_plot(scores: torch.Tensor, labels: torch.Tensor, example: torch.Tensor) -> dict[str, Any]:
    probs = scores if are_probabilities(scores) else scores.softmax(-1)
    pred = scores.argmax(-1)
    p_true = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    # one point per example: its first labelled position
    first = torch.ones_like(example, dtype=torch.bool)
    first[1:] = example[1:] != example[:-1]
    return {
        "mode": "class",
        "label": labels[first].numpy().astype(np.float64),
        "pred": pred[first].numpy().astype(np.float64),
        "p_true": p_true[first].numpy(),
        "accuracy": float((pred == labels).float().mean()),
        "per_position": bool(labels.numel() > int(first.sum())),
    }


def batch_examples(batch: Any, num_samples: int) -> tuple[Any, int] | None:
    """``(the first examples of batch, how many)``, or ``None`` when it holds no batch dimension."""
    n_batch = batch_size_of(batch)
    if n_batch is None:
        return None
    n = min(num_samples, n_batch)
    return take(batch, n_batch, n), n
