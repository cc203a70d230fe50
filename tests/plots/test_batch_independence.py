"""BatchIndependenceCheck's figure: numpy in, a titled Figure out."""

from __future__ import annotations

import numpy as np

from lightning_recipe.plots.batch_independence import dependency_figure, wrap
from lightning_recipe.plots.style import figure_to_array


def test_dependency_figure_has_a_panel_per_check():
    causal = {"cats": np.array([[1, 0, 0], [1, 1, 3]]), "positions": [0, 1], "sample": 0, "dim": 1}
    data = {"cats": np.array([[1, 0, 0, 3], [0, 1, 0, 0]]), "samples": [0, 1], "n": 4, "causal": causal}
    fig = dependency_figure(data, ["fail: mixes samples", "fail: causal leak along dim 1"])
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        "fail: mixes samples",
        "fail: causal leak along dim 1",
    ]
    assert figure_to_array(fig).ndim == 3
    assert wrap("word " * 100, width=20).count("\n") == 2 and wrap("short") == "short"
