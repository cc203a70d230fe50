"""BatchIndependenceCheck's dependency figure: the numpy categories of
:func:`lightning_recipe.core.checks.batch_independence.figure_data` in, ``Figure`` out.

Green: a gradient on the sample's own input (or an allowed position); red: on another sample's
input (or a future position), i.e. mixing; grey: no gradient on its own input.

Example:
    >>> import numpy as np
    >>> data = {"cats": np.array([[1, 0, 0], [3, 1, 0]]), "samples": [0, 1], "n": 3, "causal": None}
    >>> fig = dependency_figure(data, ["pass: each output depends only on its own input"])
    >>> fig.axes[0].get_title(loc="left")
    'pass: each output depends only on its own input'
"""

from __future__ import annotations

from typing import Any

from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from lightning_recipe.core.plain import LEAK, OWN, OWN_ZERO, ZERO
from lightning_recipe.plots.style import CARD_DPI, CARD_WIDTH_IN, STATUS_COLORS, new_figure

__all__ = ["dependency_figure", "wrap"]

#: Colours of the categories ZERO, OWN, OWN_ZERO, LEAK.
_COLORS = ["#f4f4f4", STATUS_COLORS["pass"], STATUS_COLORS["skipped"], STATUS_COLORS["fail"]]


def dependency_figure(data: dict[str, Any], verdicts: list[str]) -> Figure:
    """Which sample's input each checked sample's output depends on (and, with a causal chart, which
    input positions each output position depends on); ``verdicts`` are the panels' titles."""
    cmap = ListedColormap(_COLORS)
    causal = data["causal"]
    panels = 2 if causal is not None else 1
    fig = new_figure(CARD_WIDTH_IN, 1.7 + 1.8 * panels, dpi=CARD_DPI)
    ax = fig.add_subplot(panels, 1, 1)
    n = data["n"]
    ax.imshow(data["cats"], cmap=cmap, vmin=0, vmax=3, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(data["samples"])), [str(s) for s in data["samples"]], fontsize=8)
    ax.set_ylabel("output of sample i", fontsize=8)
    ax.set_xlabel(f"input of sample j (batch of {n})", fontsize=8)
    ticks = sorted(set(data["samples"]) | {0, n - 1})
    ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
    ax.set_title(wrap(verdicts[0], 66), fontsize=7.5, loc="left")
    legend = [
        Patch(color=_COLORS[OWN], label="own input: gradient > 0"),
        Patch(color=_COLORS[OWN_ZERO], label="own input: no gradient"),
        Patch(color=_COLORS[LEAK], label="other sample: gradient > 0 (mixing)"),
        Patch(facecolor=_COLORS[ZERO], edgecolor="#999999", label="exactly 0"),
    ]
    if causal is not None:
        ax2 = fig.add_subplot(panels, 1, 2)
        ax2.imshow(causal["cats"], cmap=cmap, vmin=0, vmax=3, aspect="auto", interpolation="nearest")
        ax2.set_yticks(range(len(causal["positions"])), [str(p) for p in causal["positions"]], fontsize=8)
        ax2.set_ylabel("output position t", fontsize=8)
        ax2.set_xlabel(f"input position t' (dim {causal['dim']}, sample {causal['sample']})", fontsize=8)
        ax2.set_title(wrap(verdicts[-1], 66), fontsize=7.5, loc="left")
        legend[0] = Patch(color=_COLORS[OWN], label="own sample / allowed position: gradient > 0")
        legend[1] = Patch(color=_COLORS[OWN_ZERO], label="own / allowed: no gradient")
        legend[2] = Patch(color=_COLORS[LEAK], label="other sample / future position: gradient > 0")
    fig.legend(
        handles=legend, loc="lower center", ncol=1 if causal is not None else 2, fontsize=7, frameon=False
    )
    fig.tight_layout(rect=(0, 0.17 if causal is not None else 0.14, 1, 1))
    return fig


def wrap(text: str, width: int = 120) -> str:
    """``text`` on at most three lines of ``width`` characters (an ellipsis when cut)."""
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    return "\n".join(lines[:3]) + (" …" if len(lines) > 3 else "")
