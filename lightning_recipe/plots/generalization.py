"""The generalization figure: training and validation loss per validation, the gap, the onset marked.

Example:
    >>> import numpy as np
    >>> x = np.arange(1, 11, dtype=float)
    >>> fig = generalization_figure(x, np.exp(-x / 3), np.exp(-x / 3) + 0.1 + 0.02 * np.maximum(x - 5, 0),
    ...                             onset=5.0, verdict="overfitting from epoch 4", baseline=1.0)
    >>> fig.axes[0].get_title()
    'Generalization: overfitting from epoch 4'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from lightning_recipe.core.plots import new_figure

__all__ = ["generalization_figure"]


def generalization_figure(
    x: Sequence[float] | np.ndarray,
    train: Sequence[float] | np.ndarray,
    val: Sequence[float] | np.ndarray,
    onset: float | None = None,
    verdict: str = "",
    baseline: float | None = None,
    names: tuple[str, str] = ("train_loss", "val_loss"),
) -> Figure:
    """Two panels: both losses (and the dumb baseline) on top, the gap ``val - train`` below.

    Args:
        x: the position of each validation, in epochs.
        train, val: the losses at each validation.
        onset: where the validation loss turned up (a vertical line on both panels).
        verdict: the stage, shown in the title.
        baseline: a dumb baseline's loss, drawn dashed.
        names: the metric names, for the legend.
    """
    xs = np.asarray(x, dtype=np.float64)
    t, v = np.asarray(train, dtype=np.float64), np.asarray(val, dtype=np.float64)
    fig = new_figure(6.4, 4.4, dpi=100)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(xs, t, "o-", color="tab:blue", linewidth=1.5, markersize=3, label=names[0])
    top.plot(xs, v, "o-", color="tab:orange", linewidth=1.5, markersize=3, label=names[1])
    if baseline is not None and np.isfinite(baseline):
        top.axhline(
            baseline, color="tab:red", linestyle="--", linewidth=1.2, label=f"dumb baseline ({baseline:.3g})"
        )
    gap = v - t
    bottom.plot(xs, gap, "o-", color="tab:purple", linewidth=1.5, markersize=3)
    bottom.axhline(0.0, color="0.5", linewidth=0.8)
    if onset is not None:
        for ax in (top, bottom):
            ax.axvline(onset, color="tab:red", linestyle=":", linewidth=1.6)
        top.plot([], [], color="tab:red", linestyle=":", label="validation turns up")
    positive = np.concatenate([t[t > 0], v[v > 0]])
    if positive.size == t.size + v.size and positive.max() / positive.min() > 30:
        top.set_yscale("log")
    top.set_ylabel("loss")
    top.set_title(f"Generalization: {verdict}" if verdict else "Generalization", fontsize=10)
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="best")
    bottom.set_ylabel(f"gap\n{names[1]} - {names[0]}", fontsize=8)
    bottom.set_xlabel("epoch")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return fig
