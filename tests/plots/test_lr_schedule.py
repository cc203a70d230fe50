"""plots/lr_schedule: the schedule figure renders, with the verdict in its title."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from lightning_recipe.core.schedules import analyse_lr
from lightning_recipe.plots.lr_schedule import schedule_figure
from lightning_recipe.plots.style import figure_to_array


def test_schedule_figure_renders_every_curve_with_a_title():
    decay = 0.1 * 0.1 ** (np.arange(200) // 30)
    constant = np.full(200, 0.01)
    fig = schedule_figure(
        [("SGD 0", decay, analyse_lr(decay)), ("SGD 1", constant, analyse_lr(constant))], 1e-3, 20, start=5
    )
    assert isinstance(fig, Figure)
    assert (
        fig.axes[0].get_title()
        == "simulated LR over 200 optimizer steps: LR near zero for 40% of the run (from 60%)"
    )
    assert fig.axes[0].get_yscale() == "log" and len(fig.axes[0].get_lines()) >= 4
    image = figure_to_array(fig)
    assert image.shape[2] == 3 and image.shape[1] == 700


def test_schedule_figure_of_a_constant_lr():
    lrs = np.full(50, 0.1)
    fig = schedule_figure([("Adam", lrs, analyse_lr(lrs))])
    assert fig.axes[0].get_title().endswith("constant LR") and fig.axes[0].get_yscale() == "linear"
    assert figure_to_array(fig).dtype == np.uint8
