"""DumbBaselines' figure: numpy in, a titled Figure out."""

from __future__ import annotations

import numpy as np

from lightning_recipe.plots.dumb_baselines import comparison_figure
from lightning_recipe.plots.style import figure_to_array


def test_comparison_figure_draws_the_metric_and_the_baselines():
    fig = comparison_figure(
        np.array([10.0, 20.0, 30.0]), np.array([2.4, 1.9, 1.2]), "val_loss", 2.3, "dumb", 1.0, (20.0, 1.9)
    )
    assert fig.axes[0].get_title() == "Dumb baselines: the model must beat them"
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][:3] == [
        "val_loss",
        "dumb (2.3)",
        "human baseline (1)",
    ]
    assert figure_to_array(fig).ndim == 3
