"""The figures of DataInspector (``recipe/data/``): class balance, per-sample statistics, extremes, sample tiles.

Numpy in, ``Figure`` out; :func:`report_figures` makes the builders of every figure of a
:class:`~lightning_recipe.core.data_stats.DataReport` on copies of its arrays, to be rendered later
on the writer's thread. No Lightning.

Example:
    >>> import numpy as np
    >>> from lightning_recipe.plots.style import figure_to_array
    >>> fig = class_balance_figure({"train": [50, 40, 10], "val": [10, 0, 5]}, {"val": [1]})
    >>> fig.axes[0].get_title()
    'class balance (red x: class missing from a split)'
    >>> figure_to_array(fig).shape[2]
    3
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lightning_recipe.core.format import sig
from lightning_recipe.core.plain import AXES, EXTREMES
from lightning_recipe.plots.style import (
    CARD_DPI,
    CARD_WIDTH_IN,
    PALETTE,
    STATUS_COLORS,
    labelled_image_grid_figure,
    new_figure,
)

if TYPE_CHECKING:  # torch: the rendering process imports this module without it
    from lightning_recipe.core.data_stats import DataReport

__all__ = [
    "class_balance_figure",
    "extremes_figure",
    "report_figures",
    "sample_stats_figure",
    "tiles_figure",
]

Extremes = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
_EXTREMES_TITLE = "most extreme training samples (one shared scale; the value above each)"


def _signed_heatmap(ax: Axes, mat: np.ndarray) -> None:
    """``mat`` as a heat map symmetric about zero (tabular samples, one row each)."""
    lim = float(np.abs(mat).max()) or 1.0
    ax.imshow(mat, aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim, interpolation="nearest")


def class_balance_figure(counts: dict[str, list[int]], missing: dict[Any, list[int]]) -> Figure:
    """Class fractions per split side by side; a class missing from a split marked with a red x."""
    n_classes = max(len(v) for v in counts.values())
    fig = new_figure(min(CARD_WIDTH_IN, 3.0 + 0.35 * n_classes), 3.2, dpi=CARD_DPI)
    ax = fig.add_subplot()
    width = 0.8 / len(counts)
    for j, (split, c) in enumerate(counts.items()):
        c = np.asarray(list(c) + [0] * (n_classes - len(c)), dtype=float)
        total = max(c.sum(), 1.0)
        xs = np.arange(n_classes) + (j - (len(counts) - 1) / 2) * width
        ax.bar(xs, c / total, width=width, label=f"{split} ({int(total)})", color=PALETTE[j % len(PALETTE)])
        for m in missing.get(split, []):
            if m < n_classes:
                ax.plot([xs[m]], [0], marker="x", color=STATUS_COLORS["fail"], markersize=8, mew=2)
    ax.set_xlabel("class")
    ax.set_ylabel("fraction of the split")
    if n_classes <= 30:
        ax.set_xticks(range(n_classes))
    top = max(max(c) / max(sum(c), 1) for c in counts.values())
    ax.set_ylim(0, top * 1.3 if top > 0 else 1.0)
    ax.legend(fontsize=8, frameon=False, ncol=len(counts), loc="upper right")
    ax.set_title("class balance (red x: class missing from a split)", fontsize=10)
    fig.tight_layout()
    return fig


def sample_stats_figure(stats: dict[str, np.ndarray]) -> Figure:
    """Distributions of the per-sample mean, std and norm (``(N, 3)`` per split), the splits overlaid."""
    fig = new_figure(CARD_WIDTH_IN, 1.3 * len(AXES) + 0.2, dpi=CARD_DPI)  # one panel a row
    for j, axis in enumerate(AXES):
        ax = fig.add_subplot(len(AXES), 1, j + 1)
        finite = [v[:, j][np.isfinite(v[:, j])] for v in stats.values()]
        pooled = np.concatenate([f for f in finite if f.size]) if any(f.size for f in finite) else np.zeros(1)
        lo, hi = float(pooled.min()), float(pooled.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
        for k, (split, v) in enumerate(zip(stats, finite)):
            if v.size:
                color = PALETTE[k % len(PALETTE)]
                ax.hist(v, bins=bins, histtype="step", density=True, lw=1.5, label=split, color=color)
        ax.set_title(f"per-sample {axis}", fontsize=10)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=8)
        if j == 0:
            ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def _extremes_grid(rows: list[tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]], k: int) -> Figure:
    """Image extremes: one image axis for all tiles (an axis per tile renders ten times slower)."""
    tiles, titles = [], []
    for key, (values, indices, thumbs) in rows:
        axis, direction = key.rsplit("_", 1)
        shown = values if direction == "high" else -values
        arrow = "↑" if direction == "high" else "↓"
        for c in range(k):
            if c < len(indices):
                tiles.append(thumbs[c])
                head = f"{axis} {arrow}" if c == 0 else ""
                titles.append(f"{head}\n#{int(indices[c])}: {sig(shown[c])}")
            else:
                tiles.append(np.full_like(thumbs[0], np.nan))
                titles.append("")
    return labelled_image_grid_figure(
        np.stack(tiles), titles, ncols=k, suptitle=_EXTREMES_TITLE, tile_px=72, per_image=False
    )


def _extremes_heatmaps(rows: list[tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]], k: int) -> Figure:
    """Tabular extremes: one heat map per statistic and direction, a row per sample."""
    fig = new_figure(1.0 + 1.1 * k, 1.45 * len(rows) + 0.5, dpi=100)
    for r, (key, (values, indices, thumbs)) in enumerate(rows):
        axis, direction = key.rsplit("_", 1)
        shown = values if direction == "high" else -values
        ax = fig.add_subplot(len(rows), 1, r + 1)
        _signed_heatmap(ax, thumbs.reshape(len(indices), -1))
        ax.set_yticks(range(len(indices)))
        ax.set_yticklabels([f"#{int(i)} ({sig(v)})" for i, v in zip(indices, shown)], fontsize=6)
        ax.set_xticks([])
        ax.set_ylabel(f"{axis} {'↑' if direction == 'high' else '↓'}", fontsize=8)
    fig.suptitle(_EXTREMES_TITLE, fontsize=10)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig


def extremes_figure(extremes: Extremes, image_like: bool) -> Figure:
    """The most extreme samples along each statistic and direction (``{"mean_high": (values, indices,
    thumbnails), ...}``, values negated for ``_low``), on one shared scale, the value above each."""
    rows = [(f"{a}_{d}", extremes[f"{a}_{d}"]) for a, d in EXTREMES if f"{a}_{d}" in extremes]
    k = max(len(i) for _, (_, i, _) in rows)
    return _extremes_grid(rows, k) if image_like else _extremes_heatmaps(rows, k)


def tiles_figure(tiles: np.ndarray, titles: list[str], ncols: int, suptitle: str) -> Figure:
    """Samples with a title each: images as a grid, anything else as a heat map, a row per sample."""
    if tiles.ndim >= 3 and tiles.shape[-1] >= 4 and tiles.shape[-2] >= 4:
        cols = min(ncols, len(tiles))
        return labelled_image_grid_figure(tiles, titles, ncols=cols, suptitle=suptitle, tile_px=96)
    fig = new_figure(8.0, 0.3 * len(tiles) + 1.0, dpi=100)
    ax = fig.add_subplot()
    _signed_heatmap(ax, tiles.reshape(len(tiles), -1))
    ax.set_yticks(range(len(titles)))
    ax.set_yticklabels([t.replace("\n", " ") for t in titles], fontsize=7)
    ax.set_xlabel("feature")
    ax.set_title(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def report_figures(
    report: DataReport,
    duplicates: tuple[list[np.ndarray], list[str]] = ([], []),
    flagged: tuple[list[np.ndarray], list[str]] = ([], []),
) -> dict[str, Callable[[], Figure]]:
    """Builders of the figures of ``report`` by name (``class_counts``, ``sample_stats``, ``extremes``,
    ``duplicates``, ``flagged``), each on its own copy of the data; a figure without data is left out.

    ``duplicates`` and ``flagged`` are the ``(tiles, titles)`` of the samples to show (fetched from the
    datasets by :func:`~lightning_recipe.core.data_scan.duplicate_tiles` and ``flagged_tiles``).
    """
    out: dict[str, Callable[[], Figure]] = {}
    counts = {n: list(s["class_counts"]) for n, s in report.splits.items() if s.get("class_counts")}
    if counts:
        missing = {
            i.split: list(i.numbers.get("missing", [])) for i in report.issues if i.issue == "missing_classes"
        }
        out["class_counts"] = functools.partial(class_balance_figure, counts, missing)
    if report.stats:
        out["sample_stats"] = functools.partial(
            sample_stats_figure, {k: v.copy() for k, v in report.stats.items()}
        )
    if report.extremes.get("train"):
        extremes = {k: (v.copy(), i.copy(), t.copy()) for k, (v, i, t) in report.extremes["train"].items()}
        image_like = report.image_like.get("train", False)
        out["extremes"] = functools.partial(extremes_figure, extremes, image_like)
    for name, (tiles, titles), ncols, suptitle in (
        ("duplicates", duplicates, 4, "duplicates: each pair is the same sample"),
        ("flagged", flagged, 6, "flagged samples"),
    ):
        if tiles:
            out[name] = functools.partial(tiles_figure, np.stack(tiles), list(titles), ncols, suptitle)
    return out
