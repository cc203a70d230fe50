"""The ensemble figure: each member's and the averaged model's loss and metric, side by side.

Example:
    >>> fig = ensemble_figure(["seed 0", "seed 1"], [0.30, 0.32], [0.91, 0.90], 0.25, 0.93,
    ...                       "cross-entropy", "accuracy", title="Ensemble of 2: gain")
    >>> [ax.get_title() for ax in fig.axes]
    ['cross-entropy (lower is better)', 'accuracy (higher is better)']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from lightning_recipe.core.plots import new_figure

__all__ = ["ensemble_figure"]


def ensemble_figure(
    names: Sequence[str],
    losses: Sequence[float],
    metrics: Sequence[float],
    ensemble_loss: float,
    ensemble_metric: float,
    loss_name: str = "loss",
    metric_name: str = "metric",
    title: str = "Ensemble",
) -> Figure:
    """Two bar panels (loss, metric): one bar per member, the ensemble's bar highlighted, the best
    single member's value as a dashed line."""
    fig = new_figure(6.4, 3.4, dpi=100)
    higher = metric_name == "accuracy"
    labels = [*names, "ensemble"]
    colors = ["tab:gray"] * len(names) + ["tab:green"]
    for ax, values, ens, what, better in (
        (fig.add_subplot(1, 2, 1), losses, ensemble_loss, loss_name, "lower"),
        (fig.add_subplot(1, 2, 2), metrics, ensemble_metric, metric_name, "higher" if higher else "lower"),
    ):
        vals = np.asarray([*values, ens], dtype=np.float64)
        ax.bar(np.arange(vals.size), vals, color=colors)
        best = max(values) if better == "higher" else min(values)
        ax.axhline(best, color="tab:red", linestyle="--", linewidth=1.2, label="best single model")
        lo, hi = float(vals.min()), float(vals.max())
        pad = max((hi - lo) * 0.6, abs(hi) * 0.02, 1e-6)
        ax.set_ylim(max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad)
        ax.set_xticks(np.arange(vals.size))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{what} ({better} is better)", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
