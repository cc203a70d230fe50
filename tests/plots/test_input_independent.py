"""The input-independent baseline figure: both copies' curves, the verdict in the title."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from lightning_recipe.plots.input_independent import curves_figure
from lightning_recipe.plots.style import figure_to_array


@pytest.mark.parametrize(
    "status, words",
    [("pass", "the model uses its input"), ("fail", "NO information"), ("skipped", "inconclusive")],
)
def test_curves_figure_renders_with_the_verdict_in_its_title(status, words):
    rng = np.random.default_rng(0)
    real = np.geomspace(2.3, 0.01, 200) + 0.01 * rng.random(200)  # a range of 230x: log scale
    zero = np.full(200, 2.3)
    fig = curves_figure(
        real, zero, np.array([0, 100, 200]), np.array([2.3, 0.5, 0.1]), np.array([2.3, 2.3, 2.3]), status
    )
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert words in ax.get_title() and ax.get_yscale() == "log"
    assert len(ax.get_legend().get_texts()) == 4
    assert figure_to_array(fig).shape == (360, 640, 3)
