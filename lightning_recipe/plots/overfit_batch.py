"""The figure of "overfit one batch": the copy's loss curve and, per example, label against prediction.

Numpy in (the dict of :func:`lightning_recipe.core.checks.overfit_batch.plot_data`), ``Figure`` out.

Example:
    >>> import numpy as np
    >>> from lightning_recipe.plots.style import figure_to_array
    >>> data = {"losses": np.geomspace(2.3, 0.04, 30), "target": 0.05, "mode": "class",
    ...         "label": np.array([0.0, 1.0, 2.0]), "pred": np.array([0.0, 1.0, 1.0]),
    ...         "p_true": np.array([0.9, 0.8, 0.3]), "accuracy": 2 / 3}
    >>> fig = summary_figure(data, "warn: an example verdict")
    >>> fig.get_suptitle(), figure_to_array(fig).shape
    ('warn: an example verdict', (696, 638, 3))
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lightning_recipe.plots.style import CARD_DPI, CARD_WIDTH_IN, PALETTE, STATUS_COLORS, new_figure

__all__ = ["summary_figure"]

_LOSS = PALETTE[0]
_RIGHT, _WRONG = STATUS_COLORS["pass"], STATUS_COLORS["fail"]


def summary_figure(data: dict[str, Any], verdict: str) -> Figure:
    """The loss curve with its target (top) and label against prediction at the end (below).

    Args:
        data: ``losses`` (the copy's loss per step), ``target`` (or ``None``) and ``mode``:
            ``"class"`` (``label``, ``pred``, ``p_true`` per example, ``accuracy``, ``per_position``),
            ``"scatter"`` (``label``, ``pred``, ``ylabel``) or ``None`` (no predictions).
        verdict: the title, e.g. ``"pass: overfit 8 examples in 31 steps..."`` (wrapped to 3 lines).
    """
    fig = new_figure(CARD_WIDTH_IN, 4.8, dpi=CARD_DPI)  # one panel a row: legible in a TensorBoard card
    _loss_curve(fig.add_subplot(2, 1, 1), data["losses"], data["target"])
    ax = fig.add_subplot(2, 1, 2)
    mode = data["mode"]
    if mode == "class":
        _classes(ax, data)
    elif mode == "scatter":
        _scatter(ax, data)
    else:
        ax.text(
            0.5,
            0.5,
            "predictions not available\n(pass `forward=` / `input_key=`)",
            ha="center",
            va="center",
            fontsize=8,
        )
        ax.set_axis_off()
    ax.tick_params(labelsize=8)
    lines = textwrap.wrap(verdict, 64, break_long_words=False, break_on_hyphens=False)
    title = "\n".join(lines[:3]) + (" …" if len(lines) > 3 else "")
    fig.suptitle(title, fontsize=9, x=0.01, ha="left")
    fig.tight_layout()
    return fig


def _loss_curve(ax: Axes, losses: np.ndarray, target: float | None) -> None:
    steps = np.arange(len(losses))
    positive = bool(len(losses) and np.all(losses[np.isfinite(losses)] > 0))
    ax.plot(steps, losses, color=_LOSS, lw=1.5, label="loss of the copy")
    finite = losses[np.isfinite(losses)]
    if len(finite):
        ax.annotate(
            f"{finite[-1]:.3g}",
            (len(losses) - 1, finite[-1]),
            textcoords="offset points",
            xytext=(0, 5),
            ha="right",
            fontsize=7,
            color=_LOSS,
        )
    if target is not None:
        ax.axhline(target, color=_RIGHT, ls="--", lw=1, label=f"target {target:.3g}")
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("step of the copy", fontsize=8)
    ax.set_ylabel("training loss", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    ax.tick_params(labelsize=7)


def _classes(ax: Axes, data: dict[str, Any]) -> None:
    label, pred = data["label"], data["pred"]
    idx = np.arange(len(label))
    ok = label == pred
    ax.scatter(idx, label, s=120, facecolors="none", edgecolors="#333333", label="label")
    ax.scatter(idx[ok], pred[ok], marker="x", s=50, color=_RIGHT, label="prediction (right)")
    ax.scatter(idx[~ok], pred[~ok], marker="x", s=50, color=_WRONG, label="prediction (wrong)")
    for i, p in zip(idx, data["p_true"]):
        ax.annotate(
            f"{p:.2f}", (i, label[i]), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=6
        )
    ax.set_xlabel(
        "example at its 1st labelled position (number: P(label))"
        if data.get("per_position")
        else "example (number: predicted probability of its label)",
        fontsize=8,
    )
    ax.set_ylabel("class", fontsize=8)
    ax.set_title(f"label vs prediction: accuracy {data['accuracy']:.0%}", fontsize=8)
    ax.set_xticks(idx)
    lo, hi = min(label.min(), pred.min()), max(label.max(), pred.max())
    ax.set_ylim(lo - 0.8, hi + 0.8)
    ax.legend(fontsize=7, frameon=False, loc="best")


def _scatter(ax: Axes, data: dict[str, Any]) -> None:
    lab, pred = data["label"], data["pred"]
    lo, hi = float(min(lab.min(), pred.min())), float(max(lab.max(), pred.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot(
        [lo - pad, hi + pad], [lo - pad, hi + pad], color="#999999", lw=1, ls="--", label="prediction = label"
    )
    ax.scatter(lab, pred, s=25, color=_LOSS, label="example")
    ax.set_xlabel("label", fontsize=8)
    ax.set_ylabel(data.get("ylabel", "prediction"), fontsize=8)
    ax.set_title("label vs prediction at the end", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
