"""How numbers read in messages and reports: the one formatter of the package.

Example:
    >>> fmt(2.302585), fmt(812.63), fmt(27062.1), fmt(0.000123), fmt(float("inf"))
    ('2.30', '812.6', '27062', '1.23e-04', 'inf')
    >>> sig(0.0123456), sig(float("inf")), sig(12345.0, 4)
    ('0.0123', 'inf', '1.234e+04')
"""

from __future__ import annotations

import math

__all__ = ["fmt", "sig"]


def fmt(x: float) -> str:
    """A number as a person reads it in a message: as many decimals as its size calls for."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    ax = abs(x)
    if ax >= 1000:
        return f"{x:.0f}"
    if ax >= 100:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax >= 0.01 or ax == 0:
        return f"{x:.3f}"
    return f"{x:.2e}"


def sig(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits (``%g``); ``inf``/``nan`` as words."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"
