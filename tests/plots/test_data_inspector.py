"""The figures of the data and batch inspectors: each has a title and renders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_recipe.core.data_stats import SplitStats, analyse_splits
from lightning_recipe.plots.batch_inspector import batch_grid_figure
from lightning_recipe.plots.data_inspector import (
    class_balance_figure,
    extremes_figure,
    report_figures,
    sample_stats_figure,
    tiles_figure,
)
from lightning_recipe.plots.style import figure_to_array


def _titles(fig) -> list[str]:
    found = [ax.get_title() for ax in fig.axes] + [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        found.append(fig._suptitle.get_text())
    return [t for t in found if t]


def _renders(fig) -> None:
    image = figure_to_array(fig)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def _extremes(image: bool) -> dict:
    g = np.random.default_rng(0)
    shape = (3, 1, 8, 8) if image else (3, 10)
    return {
        f"{a}_{d}": (g.normal(size=3), np.arange(3), g.normal(size=shape).astype(np.float32))
        for a in ("mean", "std", "norm")
        for d in ("high", "low")
    }


def test_class_balance_and_sample_stats():
    fig = class_balance_figure({"train": [5, 3, 2], "val": [1, 0, 1]}, {"val": [1]})
    assert _titles(fig) == ["class balance (red x: class missing from a split)"]
    _renders(fig)
    g = np.random.default_rng(0)
    fig = sample_stats_figure({"train": g.normal(size=(50, 3)), "val": np.full((5, 3), np.nan)})
    assert _titles(fig) == ["per-sample mean", "per-sample std", "per-sample norm"]
    _renders(fig)


@pytest.mark.parametrize("image", [True, False])
def test_extremes_images_and_rows(image):
    fig = extremes_figure(_extremes(image), image_like=image)
    assert "most extreme training samples (one shared scale; the value above each)" in _titles(fig)
    _renders(fig)


@pytest.mark.parametrize("shape", [(4, 1, 8, 8), (4, 12)])
def test_tiles_images_and_rows(shape):
    fig = tiles_figure(
        np.random.default_rng(0).normal(size=shape), ["a", "b", "c\nd", "e"], 4, "flagged samples"
    )
    assert "flagged samples" in _titles(fig)
    _renders(fig)


def test_report_figures_builds_every_figure_of_a_report_on_copies():
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    stats = SplitStats("train")
    stats.update(x, torch.arange(40) % 3, torch.arange(40))
    report = analyse_splits({"train": stats})
    tiles = [np.zeros((1, 8, 8), np.float32), np.ones((1, 8, 8), np.float32)]
    builders = report_figures(report, (tiles, ["train #1", "= train #2"]), ([], []))
    assert list(builders) == ["class_counts", "sample_stats", "extremes", "duplicates"]
    report.stats["train"][:] = np.nan  # the builders drew from copies
    for build in builders.values():
        _renders(build())
    assert report_figures(type(report)()) == {}


def test_batch_grid():
    fig = batch_grid_figure(
        np.random.default_rng(0).random((10, 3, 8, 8)), [str(i) for i in range(10)], "step 0"
    )
    assert _titles(fig) == ["step 0"]
    _renders(fig)
