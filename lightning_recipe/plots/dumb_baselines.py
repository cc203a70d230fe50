"""DumbBaselines' figure: the monitored metric against the dumb (and human) baseline; numpy in, ``Figure`` out.

Example:
    >>> import numpy as np
    >>> fig = comparison_figure(np.array([10.0, 20.0]), np.array([2.0, 1.0]), "val_loss", 2.3, "baseline", 0.5, (10.0, 2.0))
    >>> fig.axes[0].get_title()
    'Dumb baselines: the model must beat them'
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from lightning_recipe.plots.style import PALETTE, STATUS_COLORS, new_figure

__all__ = ["comparison_figure"]


def comparison_figure(
    steps: np.ndarray,
    values: np.ndarray,
    monitor: str,
    baseline: float,
    label: str,
    human: float | None,
    beaten: tuple[float, float] | None,
) -> Figure:
    """The metric at each validation step (the model's colour), the dumb baseline (red, dashed), the
    human baseline (green, dotted) and a star where the model first beat the dumb one."""
    fig = new_figure(6.4, 3.6, dpi=100)
    ax = fig.add_subplot()
    ax.plot(steps, values, "o-", color=PALETTE[0], linewidth=1.6, markersize=4, label=monitor)
    ax.axhline(
        baseline,
        color=STATUS_COLORS["fail"],
        linestyle="--",
        linewidth=1.4,
        label=f"{label} ({baseline:.4g})",
    )
    if human is not None:
        ax.axhline(
            human,
            color=STATUS_COLORS["pass"],
            linestyle=":",
            linewidth=1.6,
            label=f"human baseline ({human:.4g})",
        )
    if beaten is not None:
        ax.plot(
            [beaten[0]],
            [beaten[1]],
            marker="*",
            color="gold",
            markeredgecolor="black",
            markersize=14,
            linestyle="none",
            label="first beat the baseline",
        )
    ax.set_xlabel("global step")
    ax.set_ylabel(monitor)
    ax.set_title("Dumb baselines: the model must beat them", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
