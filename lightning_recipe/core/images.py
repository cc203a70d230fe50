"""The one test of "is this batch a batch of images".

Example:
    >>> is_image_like((8, 1, 8, 8)), is_image_like((8, 28, 28)), is_image_like((8, 30))
    (True, True, False)
"""

from __future__ import annotations

from typing import Any

__all__ = ["is_image_like"]


def is_image_like(shape: tuple[int, ...] | Any) -> bool:
    """True for a batch shaped ``(N, C, H, W)`` with C in {1, 3, 4} or ``(N, H, W)``, H and W >= 4."""
    shape = tuple(shape)
    if len(shape) == 4:
        return shape[1] in (1, 3, 4) and shape[2] >= 4 and shape[3] >= 4
    if len(shape) == 3:
        return shape[1] >= 4 and shape[2] >= 4 and shape[1] * shape[2] <= 4096 * 4096
    return False
