"""The figure of the input-independent baseline: both copies' training and validation losses.

Example:
    >>> import numpy as np
    >>> from lightning_recipe.plots.style import figure_to_array
    >>> real, zero = np.geomspace(2.3, 0.2, 100), np.full(100, 2.3)
    >>> fig = curves_figure(real, zero, np.array([0, 100]), np.array([2.3, 0.25]), np.array([2.3, 2.31]), "pass")
    >>> fig.axes[0].get_title()
    'Input-independent baseline: real vs zeroed inputs (pass: the model uses its input)'
    >>> figure_to_array(fig).shape
    (360, 640, 3)
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from lightning_recipe.core.robust import moving_average
from lightning_recipe.plots.style import PALETTE, new_figure

__all__ = ["curves_figure"]

_REAL, _ZERO = PALETTE[0], PALETTE[1]
_VERDICT = {"pass": "the model uses its input", "fail": "NO information extracted from the input"}


def curves_figure(
    real_curve: np.ndarray,
    zero_curve: np.ndarray,
    eval_steps: np.ndarray,
    real_val: np.ndarray,
    zero_val: np.ndarray,
    status: str,
    floor: float | None = None,
) -> Figure:
    """Training loss per step (raw and smoothed) and validation loss per round, real vs zeroed inputs.

    Args:
        real_curve: the training loss of the copy on real inputs, per step.
        zero_curve: the same for the copy on zeroed inputs.
        eval_steps: the steps at which both were scored on validation data.
        real_val: validation losses of the real copy at ``eval_steps``.
        zero_val: validation losses of the zeroed copy at ``eval_steps``.
        status: the verdict (``"pass"``, ``"fail"``, ``"skipped"``), shown in the title.
        floor: the lowest validation loss the zeroed copy can reach (one constant prediction), drawn
            as a dashed line where it is known; ``NaN`` in ``zero_val`` marks a score without it.
    """
    fig = new_figure(6.4, 3.6, dpi=100)
    ax = fig.add_subplot()
    window = max(1, len(real_curve) // 20)
    for curve, color, label in ((real_curve, _REAL, "real"), (zero_curve, _ZERO, "zeroed")):
        if not len(curve):  # the zeroed copy did not train (a pass on its floor)
            continue
        steps = np.arange(len(curve))
        ax.plot(steps, curve, color=color, alpha=0.2, linewidth=0.8)
        ax.plot(
            steps, moving_average(curve, window), color=color, linewidth=1.6, label=f"train, {label} inputs"
        )
    for val, marker, color, label in ((real_val, "o:", _REAL, "real"), (zero_val, "s:", _ZERO, "zeroed")):
        ax.plot(
            eval_steps,
            val,
            marker,
            color=color,
            markersize=7,
            linewidth=1,
            label=f"validation, {label} inputs",
        )
    if floor is not None and np.isfinite(floor):
        ax.axhline(
            floor, color=_ZERO, linestyle="--", linewidth=1.2, label="lowest on zeroed inputs (one constant)"
        )
    extra = np.array([floor if floor is not None else np.nan])
    finite = np.concatenate([real_curve, zero_curve, real_val, zero_val, extra])
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 30:
        ax.set_yscale("log")
    ax.set_xlabel("shadow training step")
    ax.set_ylabel("loss (training_step)")
    ax.set_title(
        f"Input-independent baseline: real vs zeroed inputs ({status}: {_VERDICT.get(status, 'inconclusive')})",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
