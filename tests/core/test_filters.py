"""Unit tests for lightning_recipe.core.filters (no Trainer)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lightning_recipe.core.filters import (
    filter_tiles,
    grey_mode,
    identical_filters,
    image_shape_for,
    relative_change,
    smoothness,
    smoothness_per_filter,
)


@pytest.mark.parametrize(
    ("cin", "mode", "channels"), [(1, "grey", 1), (3, "rgb", 3), (4, "rgb", 3), (8, "channel_mean", 1)]
)
def test_conv_tiles_modes(cin, mode, channels):
    w = nn.Conv2d(cin, 6, 5).weight
    tiles = filter_tiles(w)
    assert grey_mode(cin) == mode
    assert tiles.shape == (6, channels, 5, 5)
    if mode == "channel_mean":
        np.testing.assert_allclose(tiles[:, 0], w.detach().double().mean(1).numpy())


def test_linear_over_flattened_image_is_reshaped():
    lin = nn.Linear(64, 10)
    tiles = filter_tiles(lin.weight, image_shape_for(64, (32, 1, 8, 8)))
    assert tiles.shape == (10, 1, 8, 8)
    np.testing.assert_allclose(tiles[3, 0, 2], lin.weight.detach().double().numpy()[3, 16:24])


def test_not_an_image_gives_none():
    assert filter_tiles(nn.Linear(30, 8).weight) is None
    assert filter_tiles(nn.Conv1d(2, 4, 3).weight) is None
    assert image_shape_for(30, (16, 30)) is None
    assert image_shape_for(63, (16, 1, 8, 8)) is None
    assert image_shape_for(784, (16, 28, 28)) == (1, 28, 28)


def test_max_filters_caps_tiles():
    assert filter_tiles(torch.randn(100, 3, 3, 3), max_filters=64).shape[0] == 64


def test_smoothness_separates_noise_from_smooth_filters():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(64, 1, 7, 7))
    yy, xx = np.mgrid[0:7, 0:7]
    smooth = np.stack(
        [np.cos(0.4 * (np.cos(a) * xx + np.sin(a) * yy))[None] for a in rng.uniform(0, np.pi, 64)]
    )
    checker = ((yy + xx) % 2 * 2 - 1.0)[None, None].repeat(4, 0)
    assert abs(smoothness(noise)) < 0.1
    assert smoothness(smooth) > 0.6
    assert smoothness(checker) == pytest.approx(-1.0, abs=0.01)


def test_smoothness_is_nan_without_neighbours_or_signal():
    assert math.isnan(smoothness(np.ones((4, 1, 3, 3))))
    assert math.isnan(smoothness(np.random.rand(4, 1, 1, 1)))
    assert np.isnan(smoothness_per_filter(np.zeros((2, 3, 3)))).all()


def test_identical_filters():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(10, 3, 3, 3))
    assert not identical_filters(w).any()
    w[7] = w[2]
    assert identical_filters(w).nonzero()[0].tolist() == [2, 7]
    assert identical_filters(torch.zeros(16, 64)).all()
    assert identical_filters(torch.full((16, 1, 3, 3), 0.1)).all()


def test_identical_filters_tolerates_float_noise_but_not_real_differences():
    base = torch.randn(1, 27).repeat(8, 1)
    assert identical_filters(base + 1e-9 * torch.randn(8, 27)).all()
    assert not identical_filters(base + 1e-2 * torch.randn(8, 27)).any()


def test_relative_change():
    assert relative_change(np.array([2.0, 0.0]), np.array([1.0, 0.0])) == 1.0
    assert relative_change(np.array([0.5]), np.zeros(1)) == 0.5
