"""The training-loss check's verdicts: what each :class:`~lightning_recipe.core.loss_curve.LossEvent` says.

The recipe's "verify decreasing training loss". The engine that reads the curve is
:class:`~lightning_recipe.core.loss_curve.LossTracker`; here are the words of its findings, and the
Trainer-free parts of reading a batch's loss (from what ``training_step`` returned or from a logged
metric) and of packing a window of losses for one all-reduce. No Lightning here.

Example:
    >>> from lightning_recipe.core.loss_curve import LossEvent
    >>> event = LossEvent("non_finite", 7, {"value": float("nan"), "last_smoothed": 2.3})
    >>> status, message, numbers = event_verdict(event, source="training_step")
    >>> status, message[:62], numbers["step"]
    ('fail', 'the training loss became nan at step 7 (smoothed loss before: ', 7)
    >>> event_verdict(LossEvent("decreasing", 99)) is None        # nothing to say until the end
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lightning_recipe.core.loss_curve import TREND_Z, LossEvent
from lightning_recipe.findings import Status

__all__ = [
    "METRIC_KEYS",
    "Verdict",
    "decreasing_verdict",
    "event_verdict",
    "metric_loss",
    "no_loss_verdict",
    "pack_window",
    "returned_loss",
    "too_short_verdict",
    "unpack_window",
]

#: ``(status, message, numbers)``: one finding, before the callback records it.
Verdict = tuple[Status, str, dict[str, Any]]

#: Metric names tried, in order, when ``training_step`` returns no loss (manual optimization).
METRIC_KEYS = ("train_loss_step", "train_loss", "loss_step", "loss", "train/loss", "training_loss")
#: The fewest losses the checks judge.
MIN_LOSSES = 12


# ---------------------------------------------------------------------- reading one batch's loss
def returned_loss(outputs: Any) -> torch.Tensor | None:
    """The loss ``training_step`` returned (a tensor, a number or a dict's ``"loss"``) as a 0-d tensor
    left on its device, or ``None`` when it returned no single real loss."""
    value = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = torch.tensor(float(value))
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        return value.detach().reshape(())
    return None


def metric_loss(value: Any) -> torch.Tensor | None:
    """A logged metric as a 0-d tensor, or ``None`` when it is not one real number."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            return None
        return value.detach().reshape(())
    try:
        return torch.tensor(float(value))
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------- one window, one all-reduce
def pack_window(pending: Sequence[torch.Tensor | float | None]) -> torch.Tensor:
    """``(2, n)`` float64 on the losses' device: the values (0 where missing) and whether each is present,
    so that a sum over ranks gives the sums and the counts."""
    device = next((v.device for v in pending if isinstance(v, torch.Tensor)), torch.device("cpu"))
    values = torch.stack(
        [
            torch.zeros((), device=device) if v is None else torch.as_tensor(v, device=device).float()
            for v in pending
        ]
    ).double()
    present = torch.tensor([v is not None for v in pending], dtype=torch.float64, device=device)
    return torch.stack([values, present])


def unpack_window(reduced: torch.Tensor, steps: Sequence[int]) -> tuple[list[float], list[int]]:
    """The mean loss over ranks at each step that some rank had one (``([], [])`` when none had)."""
    both = reduced.cpu()
    sums, counts = both[0], both[1]
    keep = counts > 0
    if not bool(keep.any()):
        return [], []
    means = (sums[keep] / counts[keep]).tolist()
    return means, [s for s, k in zip(steps, keep.tolist()) if k]


# ---------------------------------------------------------------------- verdicts
def event_verdict(event: LossEvent, source: str | None = None) -> Verdict | None:
    """The finding an event of the tracker makes (``None`` for ``decreasing``: the pass comes at the end).

    ``source``: where the losses come from (``"training_step"`` or ``"metric 'name'"``), kept in the numbers.
    """
    numbers = {**event.numbers, "step": event.step, "source": source}
    if event.kind == "non_finite":
        return "fail", _non_finite(event), numbers
    if event.kind == "flat":
        return "warn", _flat(event.numbers), numbers
    if event.kind == "rising":
        status, message = _rising(event)
        return status, message, numbers
    if event.kind == "hockey_stick":
        return "warn", _hockey_stick(event.numbers), numbers
    return None


def _non_finite(event: LossEvent) -> str:
    n = event.numbers
    last = n.get("last_smoothed")
    before = f" (smoothed loss before: {last:.4g})" if last is not None else ""
    return (
        f"the training loss became {n['value']} at step {event.step}{before}: lower the learning rate "
        "or clip gradients (Trainer(gradient_clip_val=...)), and look for log(0), division by zero or "
        "non-finite inputs"
    )


def _flat(n: Mapping[str, Any]) -> str:
    if n.get("above_start"):
        return (
            f"the training loss is not falling: after {n['steps']} steps the smoothed loss is "
            f"{n['last_smoothed']:.4g}, above the {n['start']:.4g} it started at (rank-trend "
            f"z={n['trend_z']:+.1f}); the learning rate is probably too high (or the loss has the wrong sign)"
        )
    return (
        f"the training loss is not falling: over the first {n['steps']} steps the smoothed loss went "
        f"from {n['first_smoothed']:.4g} to {n['last_smoothed']:.4g} (rank-trend z={n['trend_z']:+.1f}; "
        f"a decreasing curve has z <= -{TREND_Z:g}); check that the LR is not 0 or far too small, that "
        "the optimizer holds the model's parameters, and that the loss depends on the model's output "
        "(nothing detached)"
    )


def _rising(event: LossEvent) -> tuple[Status, str]:
    n = event.numbers
    if "trend_z" in n:  # the early check: a significant upward trend
        status: Status = "fail" if n["last_smoothed"] > n["first_smoothed"] else "warn"
        return status, (
            f"the training loss rises over the first {n['steps']} steps: smoothed "
            f"{n['first_smoothed']:.4g} -> {n['last_smoothed']:.4g} (rank-trend z={n['trend_z']:+.1f}); "
            "the learning rate is probably too high, or the loss has the wrong sign"
        )
    status = "fail" if n["smoothed"] > n["initial"] else "warn"
    return status, (
        f"the training loss is rising: smoothed {n['smoothed']:.4g} at step {event.step}, up from "
        f"its best {n['best']:.4g} at step {n['best_step']} (it started at {n['initial']:.4g}); lower "
        "the learning rate or clip gradients"
    )


def _hockey_stick(n: Mapping[str, Any]) -> str:
    rest = max(int(n["steps"]) - int(n["few_steps"]), 0)
    return (
        f"hockey-stick loss curve: the smoothed loss fell {n['early_drop']:.1f}x in the first "
        f"{n['few_steps']} steps ({n['start']:.4g} -> {n['after_few']:.4g}) but only "
        f"{n['late_drop']:.2f}x over the next {rest}: the network spent its first steps learning the "
        "output bias; initialise the final layer's bias from the targets (FinalBiasInit)"
    )


def decreasing_verdict(
    initial: float, final: float, best: float | None, steps: int, source: str | None = None
) -> Verdict:
    """The ``pass`` at the end of a run in which nothing was wrong."""
    return (
        "pass",
        f"the training loss decreases: smoothed {initial:.4g} -> {final:.4g} over {steps} steps",
        {
            "initial_smoothed": initial,
            "final_smoothed": final,
            "best_smoothed": best,
            "steps": steps,
            "source": source,
        },
    )


def too_short_verdict(count: int, check_after_steps: int) -> Verdict:
    """``skipped``: the run ended with fewer than :data:`MIN_LOSSES` losses."""
    return (
        "skipped",
        f"the run has only {count} training losses; the checks need at least {MIN_LOSSES} "
        f"(and judge the trend after check_after_steps={check_after_steps})",
        {},
    )


def no_loss_verdict() -> Verdict:
    """``skipped``: no loss could be read, neither returned nor logged."""
    return (
        "skipped",
        "found no training loss: training_step returned none and no metric named "
        f"{', '.join(METRIC_KEYS[:4])} is logged; return the loss or pass monitor=",
        {},
    )
