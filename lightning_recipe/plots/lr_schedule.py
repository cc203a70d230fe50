"""The LR-schedule audit's figure: the simulated LR over the planned run, the near-zero zone shaded.

Example:
    >>> import numpy as np
    >>> from lightning_recipe.core.schedules import analyse_lr
    >>> lrs = 0.1 * 0.1 ** (np.arange(200) // 30)                 # StepLR(30) stepped every batch
    >>> fig = schedule_figure([("SGD", lrs, analyse_lr(lrs))], min_ratio=1e-3, steps_per_epoch=50)
    >>> fig.axes[0].get_title()
    'simulated LR over 200 optimizer steps: LR near zero for 40% of the run (from 60%)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from lightning_recipe.core.plain import LR_SEVERITY as SEVERITY
from lightning_recipe.core.plain import decimate
from lightning_recipe.plots.style import PALETTE, STATUS_COLORS, new_figure

if TYPE_CHECKING:  # torch: the rendering process imports this module without it
    from lightning_recipe.core.schedules import LRCurveReport

__all__ = ["schedule_figure"]

#: Series colours: the palette without its red, which here means "near zero" (the shaded zone).
_SERIES = tuple(c for c in PALETTE if c != PALETTE[4])


def schedule_figure(
    curves: Sequence[tuple[str, np.ndarray, LRCurveReport]],
    min_ratio: float = 1e-3,
    steps_per_epoch: float = math.inf,
    start: int = 0,
) -> Figure:
    """The simulated LR of each ``(label, lrs, report)`` curve, near-zero zone shaded, verdict in the title.

    Args:
        curves: one ``(label, LR at every optimizer step, its reading)`` per parameter group.
        min_ratio: "near zero" is below this fraction of a curve's peak (dotted line).
        steps_per_epoch: optimizer steps per epoch (grey epoch lines; ``inf``: none).
        start: the optimizer step the curves start at (non-zero on resume).
    """
    fig = new_figure(7.0, 3.6, dpi=100)
    ax = fig.add_subplot()
    peaks = [r.peak for _, _, r in curves if r.peak > 0]
    positive = [float(v[v > 0].min()) for _, v, _ in curves if np.any(v > 0)]
    log_scale = bool(peaks and positive and max(peaks) / max(min(positive), 1e-300) > 100)
    total = max(len(v) for _, v, _ in curves)
    for i, (label, values, report) in enumerate(curves):
        idx, vals = decimate(values, 2000)
        y = np.maximum(vals, 1e-300) if log_scale else vals
        color = _SERIES[i % len(_SERIES)]
        ax.plot(start + idx, y, color=color, lw=1.6, label=f"{label}: {report.verdict}")
        if report.peak > 0:
            ax.axhline(min_ratio * report.peak, color=color, lw=0.8, ls=":", alpha=0.8)
            low = values < min_ratio * report.peak * (1 - 1e-9)
            low[: report.warmup_steps] = False
            if low.any():
                ax.fill_between(
                    start + np.arange(len(values)),
                    0,
                    1,
                    where=low,
                    color=STATUS_COLORS["fail"],
                    alpha=0.12,
                    transform=ax.get_xaxis_transform(),
                    lw=0,
                )
    if log_scale:
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(min(positive), min(peaks) * min_ratio * 1e-3) / 2)
    if not math.isinf(steps_per_epoch) and steps_per_epoch > 0 and total / steps_per_epoch <= 60:
        for e in range(1, int(total // steps_per_epoch) + 1):
            ax.axvline(start + e * steps_per_epoch, color="0.85", lw=0.6, zorder=0)
    worst = max((r for _, _, r in curves), key=lambda r: SEVERITY[r.verdict])
    ax.set_title(f"simulated LR over {total} optimizer steps: {_title(worst)}", fontsize=10)
    ax.set_xlabel(
        "optimizer step (grey lines: epochs; dotted: near-zero threshold; shaded: near zero)", fontsize=8
    )
    ax.set_ylabel("learning rate")
    ax.set_xlim(start, start + max(total - 1, 1))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _title(worst: LRCurveReport) -> str:
    first = worst.first_near_zero_fraction or 0
    return {
        "early_decay": f"LR near zero for {worst.near_zero_fraction:.0%} of the run (from {first:.0%})",
        "cycles": f"LR reaches near zero at {first:.1%} of the run, {worst.near_zero_episodes} times",
        "zero": "LR is 0",
        "constant": "constant LR",
        "ok": "LR schedule spans the run",
    }[worst.verdict]
