"""Deprecated alias of :mod:`lightning_recipe.plots.style` (figures moved out of ``core``)."""

from lightning_recipe.plots.style import (
    figure_to_array,
    image_grid,
    is_image_like,
    labelled_image_grid_figure,
    new_figure,
    to_display_images,
)

__all__ = [
    "figure_to_array",
    "image_grid",
    "is_image_like",
    "labelled_image_grid_figure",
    "new_figure",
    "to_display_images",
]
