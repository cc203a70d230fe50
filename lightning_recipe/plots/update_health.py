"""UpdateHealth's figure: per-layer update/weight ratios, gradient norms and dead units; numpy in, Figure out.

* :func:`layer_labels` turns qualified module names into short labels that stay readable and
  unique (``resnet.encoder.stages.0.layers.0.layer.0.convolution`` keeps its indices).
* :func:`health_figure` draws the per-layer panels with :mod:`lightning_recipe.plots.style`.

Example:
    >>> from lightning_recipe.plots.style import figure_to_array
    >>> fig = health_figure(10, ["0", "2"], [-3.1, -2.7], [-1.0, -0.5], ["1"], [0.25], kinds=["Linear", "Linear"])
    >>> fig.texts[0].get_text(), figure_to_array(fig).shape[2]
    ('UpdateHealth · step 10', 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from lightning_recipe.core.plain import evenly_spaced
from lightning_recipe.plots.style import CARD_DPI, CARD_WIDTH_IN, PALETTE, STATUS_COLORS, new_figure

__all__ = ["health_figure", "layer_labels"]

_GAP = "…"
_GREY_DOTS, _GREY_STEMS, _GREY_GRID = "#bbbbbb", "#dddddd", "#eeeeee"


# ---------------------------------------------------------------------- labels
def _is_index(segment: str) -> bool:
    return segment.isdigit()


def _informative(paths: Sequence[list[str]]) -> list[list[bool]]:
    """Per path, which segments tell it apart: a segment is informative when its parent has other
    children (or is itself a name); the last segment and the word before a kept index are kept too."""
    children: dict[tuple[str, ...], set[str | None]] = {}
    for path in paths:
        for j in range(len(path)):
            children.setdefault(tuple(path[:j]), set()).add(path[j])
        children.setdefault(tuple(path), set()).add(None)  # the name itself ends here
    flags = []
    for path in paths:
        keep = [len(children[tuple(path[:j])]) > 1 for j in range(len(path))]
        keep[-1] = True
        for j in range(len(path) - 1):
            if keep[j + 1] and _is_index(path[j + 1]) and not _is_index(path[j]):
                keep[j] = True  # the container of an index: "stages.0", not a bare "0"
        flags.append(keep)
    return flags


def _render(path: Sequence[str], keep: Sequence[bool]) -> str:
    out, gap = "", False
    for segment, kept in zip(path, keep):
        if not kept:
            gap = True
            continue
        if gap:
            out += _GAP
        elif out:
            out += "."
        out += segment
        gap = False
    return out


def _shorten(path: list[str], keep: list[bool], suffix: str, width: int) -> str:
    """Drop kept segments until ``path`` + ``suffix`` fits ``width``: first the words before the first
    index (``resnet.encoder``), then the suffix, then the other words from the left; indices and the
    last segment always stay."""
    last = len(path) - 1
    first_index = next((j for j in range(last) if _is_index(path[j])), last)
    words = [j for j in range(last) if keep[j] and not _is_index(path[j])]
    lead = [j for j in words if j < first_index - 1 or (j == first_index - 1 and not keep[first_index])]
    for j in lead:
        if len(_render(path, keep) + suffix) <= width:
            return _render(path, keep) + suffix
        keep[j] = False
    if len(_render(path, keep) + suffix) <= width:
        return _render(path, keep) + suffix
    for j in [j for j in words if j not in lead]:
        if len(_render(path, keep)) <= width:
            break
        keep[j] = False
    return _render(path, keep)


def layer_labels(
    names: Sequence[str], kinds: Sequence[str | None] | None = None, width: int = 48
) -> list[str]:
    """Readable, unique labels ``"<name> · <Kind>"`` for qualified module names.

    A label that fits in ``width`` characters shows the full name. A longer name first loses the
    segments that are the only child of their parent (the word before an index stays: ``stages.0``),
    then its words before the first index (``resnet.encoder``), then the `` · Kind``, then other
    words from the left until it fits; indices and the last segment always stay, and a dropped run
    shows as ``…``. Labels that would still coincide fall back to the full names (then a ``#k``
    suffix): no two labels are the same.

    Args:
        names: qualified module names (``""`` is the root); a ``:k`` suffix (a ReLU site) is kept.
        kinds: the module class name per name, appended after `` · `` (``None``: none).
        width: the length a label should not exceed (the full name is kept when it fits).

    Example:
        >>> stem = "resnet.encoder.stages.{}.layers.0.layer.0.convolution"
        >>> layer_labels([stem.format(0), stem.format(1), "classifier.1"], ["Conv2d", "Conv2d", "Linear"])
        ['resnet…stages.0…convolution · Conv2d', 'resnet…stages.1…convolution · Conv2d', 'classifier.1 · Linear']
    """
    kinds = list(kinds) if kinds is not None else [None] * len(names)
    suffixes = [f" · {kind}" if kind else "" for kind in kinds]
    full = [(name or "(root)") + suffix for name, suffix in zip(names, suffixes)]
    paths = [name.split(".") if name else ["(root)"] for name in names]
    labels = list(full)
    for i, keep in enumerate(_informative(paths)):
        if len(full[i]) > width:
            labels[i] = _shorten(paths[i], keep, suffixes[i], width)
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    labels = [full[i] if counts[label] > 1 else label for i, label in enumerate(labels)]
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique


# ---------------------------------------------------------------------- figure
def health_figure(
    step: int,
    layers: Sequence[str],
    log_ratio: Sequence[float],
    log_grad: Sequence[float],
    sites: Sequence[str] = (),
    dead: Sequence[float] = (),
    history: Sequence[Sequence[float]] | None = None,
    rule_of_thumb: float = -3.0,
    max_rows: int = 64,
    kinds: Sequence[str | None] | None = None,
    site_kinds: Sequence[str | None] | None = None,
) -> Figure:
    """Per-layer panels: log10 update/weight ratio, log10 gradient norm, dead units per ReLU site.

    Layers run top (input) to bottom (output). Non-finite values are markers at the panel's edge:
    NaN is "no change" (ratio) or "no gradient" (gradient), ``-inf`` a zero gradient, ``+inf`` a
    layer whose weights were all zero before the step ("from zero", e.g. a zero-initialised LoRA
    B). Grey dots are earlier checks (``history``: per layer, earlier log10 ratios). ``layers`` and
    ``sites`` are module names, shown through :func:`layer_labels` with their ``kinds`` and
    ``site_kinds`` (class names). Builds from plain sequences only.
    """
    layer_names = layer_labels(list(layers), kinds)
    site_names = layer_labels(list(sites), site_kinds)

    def rows(names: Sequence[str], *values: Sequence[float]) -> tuple[list[str], list[np.ndarray]]:
        idx = evenly_spaced(len(names), max_rows)
        return [names[i] for i in idx], [np.asarray([v[i] for i in idx], dtype=np.float64) for v in values]

    past_all = list(history) if history is not None else [()] * len(layers)
    past_rows = [past_all[i] for i in evenly_spaced(len(layers), max_rows)]
    lnames, (lr, lg) = rows(layer_names, list(log_ratio), list(log_grad))
    snames, (sd,) = rows(site_names, list(dead))
    panels = 3 if snames else 2
    # one panel a row, at a TensorBoard card's width; long labels widen it (about 0.07 in a character)
    extra = 0.06 * max(0, max(map(len, [*lnames, *snames]), default=0) - 18)
    heights = [0.75 + 0.2 * len(lnames)] * 2 + ([0.75 + 0.2 * len(snames)] if snames else [])
    fig = new_figure(CARD_WIDTH_IN + extra, min(0.5 + sum(heights), 30.0), dpi=CARD_DPI)
    axes = fig.subplots(panels, 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    fig.suptitle(f"UpdateHealth · step {step}", fontsize=11)
    _dot_panel(
        axes[0],
        lr,
        lnames,
        past_rows,
        "log10 ‖Δw‖ / ‖w‖  (band: 1e-3 ×/÷ 10)",
        ("no change", "no change", "from zero"),
        rule_of_thumb,
    )
    _dot_panel(axes[1], lg, lnames, past_rows, "log10 ‖gradient‖", ("no gradient", "zero", "inf"), None)
    if snames:
        _dead_panel(axes[2], sd, snames)
    fig.tight_layout()
    return fig


def _dot_panel(
    ax: Any,
    values: np.ndarray,
    names: list[str],
    past_rows: list[Sequence[float]],
    title: str,
    missing: tuple[str, str, str],
    ref: float | None,
) -> None:
    """One dot per layer; the reference band and the earlier checks when ``ref`` is given."""
    y = np.arange(len(names))
    finite = np.isfinite(values)
    lows = [values[finite].min()] if finite.any() else []
    highs = [values[finite].max()] if finite.any() else []
    if ref is not None:
        ax.axvspan(ref - 1, ref + 1, color=STATUS_COLORS["pass"], alpha=0.18, lw=0, zorder=0)
        ax.axvline(ref, color=STATUS_COLORS["pass"], lw=1.2, ls="--", zorder=1)
        lows.append(ref - 1.2)
        highs.append(ref + 1.2)
        for i, earlier in enumerate(past_rows):
            past = np.asarray([v for v in earlier if math.isfinite(v)], dtype=np.float64)
            if past.size:
                ax.scatter(past, np.full(past.size, i), s=10, color=_GREY_DOTS, zorder=2, lw=0)
                lows.append(past.min())
                highs.append(past.max())
    lo = min(lows) if lows else -1.0
    hi = max(highs) if highs else 1.0
    pad = max(0.3, 0.08 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    ax.hlines(y[finite], lo, values[finite], color=_GREY_STEMS, lw=0.8, zorder=1)
    ax.scatter(values[finite], y[finite], s=22, color=PALETTE[0], zorder=3)
    bad = STATUS_COLORS["fail"]
    for mask, x, marker, label in (
        (np.isnan(values), lo + pad * 0.4, "x", missing[0]),
        (np.isneginf(values), lo + pad * 0.4, "x", missing[1]),
        (np.isposinf(values), hi - pad * 0.4, ">", missing[2]),
    ):
        if mask.any():
            ax.scatter(np.full(mask.sum(), x), y[mask], marker=marker, s=30, color=bad, zorder=3)
            right = x > (lo + hi) / 2
            ax.text(
                x - pad * 0.2 if right else x + pad * 0.2,
                y[mask][0],
                label,
                color=bad,
                fontsize=7,
                va="center",
                ha="right" if right else "left",
            )
    ax.set_xlim(lo, hi)
    ax.set_title(title, fontsize=10)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color=_GREY_GRID, lw=0.6)


def _dead_panel(ax: Any, fractions: np.ndarray, names: list[str]) -> None:
    """Dead units per ReLU site, as bars: red when all are dead, orange from half."""
    y = np.arange(len(names))
    pct = 100.0 * fractions
    status = ["fail" if v >= 100.0 else ("warn" if v >= 50.0 else "pass") for v in pct]
    ax.barh(y, pct, color=[STATUS_COLORS[s] for s in status], height=0.6)
    for yi, v in zip(y, pct):
        ax.text(min(v + 2, 88), yi, f"{v:.0f}%", va="center", fontsize=7)
    ax.set_xlim(0, 100)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_title("dead units (zero on the whole batch)", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
