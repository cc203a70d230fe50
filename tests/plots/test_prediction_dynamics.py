"""PredictionDynamics' figures: numpy in, a titled Figure out."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from lightning_recipe.plots.prediction_dynamics import predictions_figure, trajectory_figure
from lightning_recipe.plots.style import figure_to_array

_TARGETS = {
    "multiclass": np.array([0, 2, 1, 0], dtype=np.float32),
    "binary": np.array([0, 1, 1, 0], dtype=np.float32),
    "multilabel": np.array([[0, 1, 1], [1, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=np.float32),
    "regression": np.array([1.5, -0.3, 2.0, 0.1], dtype=np.float32),
}


def _rendered(fig: Figure) -> np.ndarray:
    image = figure_to_array(fig)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    return image


@pytest.mark.parametrize("task", list(_TARGETS))
def test_prediction_dynamics_figures_have_a_title_and_render(task):
    rng = np.random.default_rng(0)
    width = {"multiclass": 3, "binary": 1, "multilabel": 3, "regression": 1}[task]
    preds = rng.random((4, width))
    decided = preds.argmax(1) if task == "multiclass" else (preds[:, 0] > 0.5).astype(int)
    steps, values = np.array([0.0, 5.0, 10.0]), rng.random((3, 4))
    thumbs = rng.random((4, 8, 8, 3)) if task == "multiclass" else None
    fig = trajectory_figure(task, steps, values, _TARGETS[task], preds, decided, thumbs, None, step=10)
    assert "over training steps (fixed batch), step 10" in fig.texts[0].get_text()
    _rendered(fig)
    fig = predictions_figure(task, _TARGETS[task], preds, ["a", "b", "c"], step=10)
    assert fig.axes[0].get_title().endswith("step 10")
    _rendered(fig)
