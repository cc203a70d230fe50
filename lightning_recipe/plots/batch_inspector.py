"""The figure of BatchInspector (``recipe/batch_inspector/images``): the batch's images with their labels
(per-pixel targets: their outlines over the images).

Numpy in, ``Figure`` out; no Lightning.

Example:
    >>> import numpy as np
    >>> fig = batch_grid_figure(np.random.rand(10, 1, 8, 8), [str(i % 3) for i in range(10)], "step 0: (10, 1, 8, 8)")
    >>> fig.texts[0].get_text()
    'step 0: (10, 1, 8, 8)'
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from lightning_recipe.plots.style import labelled_image_grid_figure

__all__ = ["batch_grid_figure"]


def batch_grid_figure(
    images: np.ndarray, labels: list[str] | None, title: str, ncols: int = 8, masks: np.ndarray | None = None
) -> Figure:
    """``images`` ``(N, C, H, W)`` as a grid of ``ncols`` columns, the label above each tile, ``title`` on top;
    ``masks`` ``(N, H, W)``: per-pixel targets, outlined over their images."""
    return labelled_image_grid_figure(images, labels, ncols=ncols, suptitle=title, masks=masks)
