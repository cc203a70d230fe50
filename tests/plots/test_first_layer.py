"""plots.first_layer: the filter grid."""

from __future__ import annotations

import numpy as np

from lightning_recipe.plots.first_layer import filter_grid


def test_filter_grid_tiles_gaps_and_size():
    tiles = np.random.default_rng(0).normal(size=(5, 3, 4, 4))
    grid = filter_grid(tiles)
    scale, pad = 12, 4  # 48 px tiles
    assert grid.shape == (2 * 4 * scale + 3 * pad, 3 * 4 * scale + 4 * pad, 3) and grid.dtype == np.uint8
    assert (grid[0, 0] == [70, 90, 120]).all() and (grid[-1, -1] == [70, 90, 120]).all()  # border, empty cell
    first = grid[pad : pad + 4 * scale, pad : pad + 4 * scale]
    assert first.min() == 0 and first.max() == 255  # each tile scaled to its own range
    assert filter_grid(tiles, ncols=5).shape[1] == 5 * 4 * scale + 6 * pad
