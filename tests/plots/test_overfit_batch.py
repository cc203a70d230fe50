"""The overfit-one-batch figure: every mode renders, with the verdict as its title."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from lightning_recipe.plots.overfit_batch import summary_figure
from lightning_recipe.plots.style import figure_to_array

LOSSES = np.geomspace(2.3, 0.04, 40)


@pytest.mark.parametrize(
    "extra",
    [
        {
            "mode": "class",
            "label": np.array([0.0, 1.0, 2.0, 1.0]),
            "pred": np.array([0.0, 1.0, 1.0, 1.0]),
            "p_true": np.array([0.9, 0.8, 0.2, 0.7]),
            "accuracy": 0.75,
            "per_position": True,
        },
        {
            "mode": "scatter",
            "label": np.linspace(-1, 1, 8),
            "pred": np.linspace(-0.9, 1.1, 8),
            "ylabel": "prediction",
        },
        {"mode": None},
    ],
    ids=["class", "scatter", "no-predictions"],
)
def test_summary_figure_renders_each_mode_with_the_verdict_as_title(extra):
    verdict = "fail: cannot overfit 8 examples: " + "a long explanation " * 20
    fig = summary_figure({"losses": LOSSES, "target": 0.05, **extra}, verdict)
    assert isinstance(fig, Figure)
    title = fig.get_suptitle()
    assert title.startswith("fail: cannot overfit 8 examples") and title.count("\n") <= 2
    image = figure_to_array(fig)
    assert image.shape[1] >= 600 and image.std() > 0


def test_summary_figure_draws_a_non_finite_loss_and_no_target():
    losses = np.array([0.5, 1.5, np.inf])
    fig = summary_figure({"losses": losses, "target": None, "mode": None}, "fail: the loss became inf")
    assert fig.get_suptitle() == "fail: the loss became inf" and figure_to_array(fig).ndim == 3
