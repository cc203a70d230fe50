"""Robust statistics shared by the checks: median and MAD, robust z-scores, a moving average.

Per-batch values are noisy and heavy-tailed; decisions are made on these summaries, never on
single values or on means and standard deviations that one outlier can move.

Example:
    >>> import numpy as np
    >>> median_mad([1.0, 2.0, 3.0, 100.0])
    (2.5, 1.0)
    >>> robust_z(np.array([1.0, 1.1, 0.9, 1.0, 9.0])).round(1).tolist()
    [0.0, 0.7, 0.7, 0.0, 54.0]
    >>> moving_average(np.array([0.0, 3.0, 6.0]), 2).tolist()
    [0.0, 1.5, 4.5]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAD_TO_SD", "median_mad", "moving_average", "robust_z"]

#: A normal distribution's standard deviation is this many MADs.
MAD_TO_SD = 1.4826


def median_mad(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """``(median, MAD)`` of ``values`` (the MAD unscaled: multiply by :data:`MAD_TO_SD` for a SD)."""
    x = np.asarray(values, dtype=np.float64)
    med = float(np.median(x))
    return med, float(np.median(np.abs(x - med)))


def robust_z(values: np.ndarray) -> np.ndarray:
    """``|value - median| / (1.4826 MAD)``; where the MAD is 0, the standard deviation stands in,
    and where both are 0 every z is 0."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v.copy()
    med, mad = median_mad(v)
    scale = MAD_TO_SD * mad
    tiny = 1e-12 * max(1.0, abs(med))
    if scale <= tiny:
        sd = float(v.std())
        scale = sd if sd > tiny else 0.0
    if scale == 0.0:
        return np.zeros_like(v)
    return np.abs(v - med) / scale


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average of ``window`` values, same length as ``values`` (the start padded
    with the first value, so the curve does not dip toward 0)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 3 or window <= 1:
        return v
    window = min(int(window), v.size)
    padded = np.concatenate([np.full(window - 1, v[0]), v])
    return np.convolve(padded, np.ones(window) / window, mode="valid")
