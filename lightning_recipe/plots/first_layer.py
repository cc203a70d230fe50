"""FirstLayerFilters' picture: the first layer's filters as one image grid; numpy in, image out.

Example:
    >>> import numpy as np
    >>> filter_grid(np.random.default_rng(0).normal(size=(5, 1, 3, 3))).shape   # 3 x 2 tiles of 48 px, 5 px gaps
    (111, 164, 3)
"""

from __future__ import annotations

import math

import numpy as np

from lightning_recipe.plots.style import image_grid

__all__ = ["filter_grid"]

#: The blue-grey between and around the tiles (a filter's own range never reaches it by chance).
_GAP_COLOR = np.array([70, 90, 120], np.uint8)


def filter_grid(tiles: np.ndarray, ncols: int | None = None) -> np.ndarray:
    """The tiles as one ``(H, W, 3)`` uint8 grid: each scaled to its own range, about 48 px a tile, blue-grey gaps.

    Args:
        tiles: ``(N, C, h, w)`` filters (C is 1 or 3), as :func:`lightning_recipe.core.filters.filter_tiles` gives.
        ncols: tiles per row (default: about square).
    """
    n, _, h, w = tiles.shape
    scale = max(1, min(16, round(48 / max(h, w))))
    pad = max(1, scale // 3)
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    grid = image_grid(tiles, ncols, pad=pad, per_image=True, scale=scale)
    # where the gaps and empty cells are: black (constant) tiles on a white ground
    gaps = image_grid(np.zeros((n, 1, h, w)), ncols, pad=pad, scale=scale, pad_value=1.0)[..., 0] > 0
    grid = np.pad(grid, ((pad, pad), (pad, pad), (0, 0)))
    grid[np.pad(gaps, pad, constant_values=True)] = _GAP_COLOR
    return grid
