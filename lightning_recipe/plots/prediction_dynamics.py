"""PredictionDynamics' figures: numpy in, ``Figure`` out (no Lightning).

* :func:`trajectory_figure`: one small panel per sample, the probability of the true class (or the
  prediction against a dashed target) over the logged steps; green when right now, red when wrong.
* :func:`predictions_figure`: the current predicted distribution (a samples x classes heatmap with
  the true classes boxed, bars of ``p(1)`` for binary, prediction against target for regression).
* :func:`top_tokens_figure`: a language model's view of a large vocabulary: the k most probable
  tokens at one position per sample with their probabilities, the true token boxed, and its
  probability and rank.

Example:
    >>> import numpy as np
    >>> from lightning_recipe.plots.style import figure_to_array
    >>> preds = np.array([[0.7, 0.3], [0.4, 0.6]])
    >>> fig = predictions_figure("multiclass", np.array([0, 0]), preds, None, step=10)
    >>> fig.axes[0].get_title(), figure_to_array(fig).ndim
    ('predicted probabilities, step 10', 3)
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from lightning_recipe.plots.style import PALETTE, STATUS_COLORS, new_figure

__all__ = ["figure_builders", "predictions_figure", "top_tokens_figure", "trajectory_figure"]


def _class_name(i: int, names: list[str] | None) -> str:
    return str(names[i]) if names is not None and 0 <= i < len(names) else str(i)


def _panel_title(
    task: str, i: int, targets: np.ndarray, preds: np.ndarray, decided: np.ndarray, names: list[str] | None
) -> tuple[str, bool]:
    if task == "multiclass":
        y = int(targets[i]) if targets.ndim == 1 else -1
        p = int(decided[i])
        return f"y={_class_name(y, names)} pred={_class_name(p, names)} ({preds[i, p]:.2f})", p == y
    if task == "binary":
        y = round(float(targets.reshape(len(targets), -1)[i, 0]))
        return f"y={y} p(1)={preds[i, 0]:.2f}", int(decided[i]) == y
    if task == "multilabel":
        k = preds.shape[1]
        return f"{int(decided[i])}/{k} labels right", int(decided[i]) == k
    t = float(targets.reshape(len(targets), -1)[i, 0])
    return f"y={t:.3g} pred={preds[i, 0]:.3g}", True


def trajectory_figure(
    task: str,
    steps: np.ndarray,
    values: np.ndarray,
    targets: np.ndarray | None,
    preds: np.ndarray,
    decided: np.ndarray,
    thumbs: np.ndarray | None,
    names: list[str] | None,
    step: int,
    ylabel: str | None = None,
) -> Figure:
    """Per-sample trajectories as small multiples drawn on ONE axis (a figure with one axis per
    panel costs about ten times as much to render). ``ylabel`` replaces the task's name for the
    plotted value (``"p(true next token)"`` for a causal language model)."""
    from matplotlib.patches import Rectangle

    n = values.shape[1]
    ncols = max(1, min(n, 4))  # four narrow panels a row: about 650 px, the width of a TensorBoard card
    nrows = math.ceil(n / ncols)
    regression = task == "regression"
    default_label = {
        "multiclass": "p(true class)",
        "binary": "p(true label)",
        "multilabel": "mean p(true labels)",
    }.get(task, "prediction")
    ylabel = ylabel or default_label
    # cell layout in axis units: [thumbnail | plot], a title band above each plot
    tw = 0.8 if thumbs is not None else 0.35  # room for the thumbnail, or for the y labels
    pw, ph, gap_x, band, gap_y = 1.6, 1.0, 0.35, 0.32, 0.18
    cell_w, cell_h = tw + pw + gap_x, ph + band + gap_y
    panel_w_in, panel_h_in = 0.72 * cell_w, 0.72 * cell_h
    fig = new_figure(ncols * panel_w_in + 0.3, nrows * panel_h_in + 0.55, dpi=80)
    ax = fig.add_axes((0.01, 0.04, 0.98, 1 - 0.04 - 0.5 / (nrows * panel_h_in + 0.55)))
    ax.set_xlim(-0.05, ncols * cell_w)
    ax.set_ylim(-nrows * cell_h, 0.05)
    ax.set_axis_off()
    s0, s1 = float(steps[0]), float(steps[-1])
    span = (s1 - s0) or 1.0
    xs = (steps - s0) / span
    for i in range(n):
        r, c = divmod(i, ncols)
        left, top = c * cell_w, -r * cell_h - band
        x0, y0 = left + tw, top - ph  # plot box: [x0, x0 + pw] x [y0, y0 + ph]
        if thumbs is not None:
            size = min(tw - 0.08, ph)
            ax.imshow(
                thumbs[i],
                extent=(left, left + size, y0 + (ph - size) / 2, y0 + (ph + size) / 2),
                interpolation="nearest",
                aspect="auto",
                zorder=2,
            )
        if task == "multiclass" and targets is not None and targets.ndim > 1:  # per-position classes
            last = values[-1, i]
            labelled = bool(np.isfinite(last))
            title = f"#{i} mean p(true)={last:.2f}" if labelled else f"#{i}: no labelled position"
            right = labelled and last > 0.5
        else:
            title, right = _panel_title(
                task, i, targets if targets is not None else np.zeros(n), preds, decided, names
            )
        color = PALETTE[0] if regression else (STATUS_COLORS["pass"] if right else STATUS_COLORS["fail"])
        v = values[:, i].astype(np.float64)
        if regression:
            finite = v[np.isfinite(v)]
            ref = [] if targets is None else [float(targets.reshape(n, -1)[i, 0])]
            pool = np.concatenate([finite, np.asarray(ref)]) if finite.size or ref else np.zeros(1)
            lo, hi = float(pool.min()), float(pool.max())
            pad = 0.08 * ((hi - lo) or abs(hi) or 1.0)
            lo, hi = lo - pad, hi + pad
            for ref_value in ref:
                yy = y0 + ph * (ref_value - lo) / (hi - lo)
                ax.plot([x0, x0 + pw], [yy, yy], color="k", ls="--", lw=0.8, zorder=3)
            ax.text(x0 - 0.04, y0, f"{lo:.3g}", fontsize=5.5, ha="right", va="bottom", color="0.35")
            ax.text(x0 - 0.04, y0 + ph, f"{hi:.3g}", fontsize=5.5, ha="right", va="top", color="0.35")
        else:
            lo, hi = -0.03, 1.03
            mid = y0 + ph * (0.5 - lo) / (hi - lo)
            ax.plot([x0, x0 + pw], [mid, mid], color="0.85", lw=0.6, zorder=1)
            if c == 0 or thumbs is not None:
                for value, text in ((0.0, "0"), (1.0, "1")):
                    ax.text(
                        x0 - 0.04,
                        y0 + ph * (value - lo) / (hi - lo),
                        text,
                        fontsize=5.5,
                        ha="right",
                        va="center",
                        color="0.35",
                    )
        ax.add_patch(Rectangle((x0, y0), pw, ph, fill=False, lw=0.6, edgecolor="0.6", zorder=1))
        ys = y0 + ph * (np.clip(v, lo, hi) - lo) / (hi - lo)
        ax.plot(x0 + pw * xs, ys, color=color, lw=1.3, marker="o" if len(xs) < 12 else None, ms=2.5, zorder=4)
        ax.text(
            x0 + pw / 2,
            top + 0.04,
            title,
            fontsize=7,
            ha="center",
            va="bottom",
            color="k" if regression else color,
        )
        if r == nrows - 1 or i + ncols >= n:
            ax.text(x0, y0 - 0.04, f"{int(s0)}", fontsize=5.5, ha="left", va="top", color="0.35")
            ax.text(x0 + pw, y0 - 0.04, f"{int(s1)}", fontsize=5.5, ha="right", va="top", color="0.35")
    fig.suptitle(f"{ylabel} over training steps (fixed batch), step {step}", fontsize=8.5)
    return fig


def predictions_figure(
    task: str, targets: np.ndarray | None, preds: np.ndarray, names: list[str] | None, step: int
) -> Figure:
    n = preds.shape[0]
    if task == "regression":
        fig = new_figure(3.4, 3.0, dpi=80)
        ax = fig.add_subplot()
        t = targets.reshape(n, -1)[:, 0] if targets is not None else np.zeros(n)
        p = preds[:, 0]
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", ls="--", lw=0.9, label="y = target")
        ax.scatter(t, p, s=18, color=PALETTE[0], zorder=3)
        ax.set_xlabel("target", fontsize=8)
        ax.set_ylabel("prediction", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left", frameon=False)
        ax.set_title(f"prediction vs target, step {step}", fontsize=9)
        fig.tight_layout(pad=0.4)
        return fig
    if task == "binary":
        fig = new_figure(3.4, 0.6 + 0.16 * n, dpi=80)
        ax = fig.add_subplot()
        y = targets.reshape(n, -1)[:, 0] if targets is not None else np.zeros(n)
        colors = [
            STATUS_COLORS["pass"] if (p > 0.5) == (t > 0.5) else STATUS_COLORS["fail"]
            for p, t in zip(preds[:, 0], y)
        ]
        ax.barh(np.arange(n), preds[:, 0], color=colors)
        ax.axvline(0.5, color="0.5", lw=0.8, ls="--")
        ax.set_yticks(np.arange(n), [f"#{i} y={round(float(t))}" for i, t in enumerate(y)], fontsize=6.5)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("p(1)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"predicted p(1), step {step}", fontsize=9)
        fig.tight_layout(pad=0.4)
        return fig
    # multiclass / multilabel: samples x classes heatmap, true classes boxed
    k = preds.shape[1]
    if task == "multiclass" and targets is not None and targets.ndim == 1:
        truth = np.zeros_like(preds, dtype=bool)
        labelled = (targets >= 0) & (targets < k)  # not ignore_index
        truth[np.arange(n)[labelled], targets[labelled].astype(int)] = True
    elif targets is not None and targets.reshape(n, -1).shape[1] == k:
        truth = targets.reshape(n, -1) > 0.5
    else:
        truth = np.zeros_like(preds, dtype=bool)
    cols = np.arange(k)
    if k > 30:  # keep the classes that matter: true ones and the most probable ones
        score = preds.max(axis=0) + truth.any(axis=0)
        cols = np.sort(np.argsort(-score)[:30])
    shown, mark = preds[:, cols], truth[:, cols]
    fig = new_figure(1.8 + 0.3 * len(cols), 1.1 + 0.24 * n, dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(shown, vmin=0, vmax=1, cmap="viridis", aspect="auto", interpolation="nearest")
    rows, cs = np.nonzero(mark)
    ax.scatter(cs, rows, marker="s", s=42, facecolors="none", edgecolors="#ff4040", linewidths=1.2)
    ax.set_xticks(
        np.arange(len(cols)),
        [_class_name(int(c), names) for c in cols],
        fontsize=6.5,
        rotation=90 if names else 0,
    )
    ax.set_yticks(np.arange(n), [f"#{i}" for i in range(n)], fontsize=6.5)
    ax.set_xlabel("class (red box: true)" if task == "multiclass" else "label (red box: true)", fontsize=7.5)
    cbar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03, ticks=[0, 0.5, 1])
    cbar.ax.tick_params(labelsize=7)
    cbar.set_label("probability", fontsize=7.5)
    ax.set_title(f"predicted probabilities, step {step}", fontsize=9)
    fig.tight_layout(pad=0.4)  # keeps the colour bar and its labels inside the figure
    return fig


def top_tokens_figure(view: dict, names: list[str] | None, step: int, next_token: bool = True) -> Figure:
    """The ``k`` most probable tokens per row of ``view`` (from
    :func:`~lightning_recipe.core.checks.prediction_dynamics.top_tokens`): one cell per token with
    its id (or name) and probability, shaded by the probability, the true token boxed in red; on the
    right the true token's probability and rank. About 600 px wide.

    Example:
        >>> import numpy as np
        >>> view = {"rows": ["#0 t=3"], "ids": np.array([[7, 2, 9]]), "probs": np.array([[0.6, 0.2, 0.1]]),
        ...         "true": np.array([2]), "p_true": np.array([0.2]), "rank": np.array([2])}
        >>> top_tokens_figure(view, None, step=4).axes[0].get_title()
        'top-3 next-token predictions (fixed batch), step 4'
    """
    from matplotlib.patches import Rectangle

    ids, probs = np.asarray(view["ids"]), np.asarray(view["probs"], dtype=np.float64)
    rows, k = ids.shape
    fig = new_figure(7.5, 0.85 + 0.34 * rows, dpi=80)
    ax = fig.add_axes((0.1, 0.32 / fig.get_figheight(), 0.66, 1 - 0.62 / fig.get_figheight()))
    ax.imshow(probs, vmin=0, vmax=1, cmap="Blues", aspect="auto", interpolation="nearest")
    for r in range(rows):
        for c in range(k):
            token = _class_name(int(ids[r, c]), names)
            dark = probs[r, c] > 0.55
            ax.text(c, r, f"{token}  {probs[r, c]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")  # fmt: skip
            if int(ids[r, c]) == int(view["true"][r]):
                ax.add_patch(
                    Rectangle((c - 0.48, r - 0.45), 0.96, 0.9, fill=False, edgecolor="#d62728", lw=1.6)
                )
        good = int(view["rank"][r]) == 1
        ax.text(
            k - 0.35, r,
            f"true {_class_name(int(view['true'][r]), names)}: p={float(view['p_true'][r]):.2f}, rank {int(view['rank'][r])}",
            ha="left", va="center", fontsize=7, color=STATUS_COLORS["pass"] if good else STATUS_COLORS["fail"],
        )  # fmt: skip
    ax.set_xticks(np.arange(k), [f"#{c + 1}" for c in range(k)], fontsize=7)
    ax.set_yticks(np.arange(rows), list(view["rows"]), fontsize=7)
    ax.tick_params(length=0)
    what = "next-token" if next_token else "per-token"
    ax.set_title(f"top-{k} {what} predictions (fixed batch), step {step}", fontsize=8.5)
    return fig


def figure_builders(
    task: str,
    steps: np.ndarray,
    values: np.ndarray,
    targets: np.ndarray,
    preds: np.ndarray,
    decided: np.ndarray,
    thumbs: np.ndarray | None,
    names: list[str] | None,
    step: int,
    view: Any = None,
    causal: bool = False,
) -> tuple[partial[Figure], partial[Figure]]:
    """The builders of the ``trajectories`` and ``predictions`` figures: partials of this module's
    functions with numpy arguments, so that a rendering process can draw them."""
    ylabel = "p(true next token)" if causal else None
    trajectories = partial(
        trajectory_figure, task, steps, values, targets, preds, decided, thumbs, names, step, ylabel
    )
    if view is not None:
        return trajectories, partial(top_tokens_figure, view, names, step, next_token=causal)
    return trajectories, partial(predictions_figure, task, targets, preds, names, step)
