"""Torch-free names that the checks and the plot modules share: the rendering process
(:mod:`lightning_recipe._render_worker`) imports the plot modules without torch, so what they need
from ``core`` lives here (numpy and the standard library only) and the check modules re-export it.

Example:
    >>> evenly_spaced(10, 4)
    [0, 3, 6, 9]
    >>> decimate(np.arange(5.0), max_points=10)[0].tolist()
    [0, 1, 2, 3, 4]
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = [
    "AXES",
    "EXTREMES",
    "LEAK",
    "LR_SEVERITY",
    "OWN",
    "OWN_ZERO",
    "ZERO",
    "decimate",
    "evenly_spaced",
]

#: The per-sample statistics of the data scan, in the column order of ``SplitStats.stats``.
AXES: tuple[str, ...] = ("mean", "std", "norm")
#: The extremes kept with thumbnails: (axis, direction).
EXTREMES: tuple[tuple[str, str], ...] = tuple((a, d) for a in AXES for d in ("high", "low"))

#: Cell categories of the batch-independence dependency figure.
ZERO, OWN, OWN_ZERO, LEAK = 0, 1, 2, 3

#: How bad a learning-rate curve's verdict is (the worst curve of an optimizer speaks for it).
LR_SEVERITY = {"early_decay": 3, "cycles": 2, "zero": 1, "ok": 0, "constant": 0}


def evenly_spaced(n: int, k: int) -> list[int]:
    """At most ``k`` indices out of ``range(n)``, evenly spread, always with the first and the last.

    >>> evenly_spaced(10, 4)
    [0, 3, 6, 9]
    >>> evenly_spaced(3, 8)
    [0, 1, 2]
    """
    if n <= k:
        return list(range(n))
    if k <= 1:
        return [0][:k]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def decimate(values: np.ndarray, max_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` thinned to at most ``max_points`` rows, keeping each block's min and max.

    A step decay or a cosine restart stays visible in a plot of a million-step run.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n <= max_points:
        return np.arange(n), values
    half = max(max_points // 2, 1)
    edges = np.linspace(0, n, half + 1).astype(int)
    steps: list[int] = []
    for a, b in itertools.pairwise(edges):
        if b <= a:
            continue
        block = values[a:b] if values.ndim == 1 else values[a:b].min(axis=1)
        lo, hi = a + int(np.argmin(block)), a + int(np.argmax(block))
        steps.extend(sorted({lo, hi}))
    idx = np.asarray(sorted(set(steps) | {n - 1}))
    return idx, values[idx]
