"""The "init well" figures: numpy in, a titled Figure out, rendered."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_recipe.plots.bias_init import bias_figure, prior_figure, regression_figure, softmax
from lightning_recipe.plots.style import figure_to_array


@pytest.mark.parametrize("n", [2, 10, 80])
def test_prior_figure(n):
    prior = np.arange(1, n + 1, dtype=np.float64)
    prior /= prior.sum()
    fig = prior_figure(prior, softmax(np.log(prior)), "multiclass", "head")
    assert fig.axes[0].get_title() == "final bias of 'head': prediction at init vs data"
    assert figure_to_array(fig).ndim == 3
    assert prior_figure(None, np.array([0.3]), "binary", "h").axes[0].get_title()


def test_regression_figure_and_dispatch():
    fig = regression_figure(np.array([1.0, 2.0]), np.array([0.5, 0.5]), np.array([1.0, 2.0]))
    assert fig.axes[0].get_title() == "final bias vs target mean" and figure_to_array(fig).ndim == 3
    assert bias_figure("regression", np.array([3.0])).axes[0].get_title() == "final bias vs target mean"
    fig = bias_figure("multilabel", np.zeros(3), layer="out", prior=np.array([0.1, 0.5, 0.9]))
    assert "'out'" in fig.axes[0].get_title()
    assert softmax(np.zeros(4)).tolist() == [0.25] * 4
