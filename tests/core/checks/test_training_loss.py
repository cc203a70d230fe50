"""core/checks/training_loss: the wording of each loss event, the loss readers, the window packing; no Trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_recipe.core.checks.training_loss import (
    decreasing_verdict,
    event_verdict,
    metric_loss,
    no_loss_verdict,
    pack_window,
    returned_loss,
    too_short_verdict,
    unpack_window,
)
from lightning_recipe.core.loss_curve import LossEvent, LossTracker

STEPS = np.arange(100)


def _events(values, window=100):
    """What a tracker finds in ``values`` fed ``window`` at a time (the early checks run at step 100)."""
    tracker = LossTracker(window=10, check_after=100)
    events = []
    for i in range(0, len(values), window):
        events += tracker.update(list(values[i : i + window]), list(STEPS[i : i + window]))
    return events


def test_a_decreasing_curve_says_nothing_until_the_end():
    rng = np.random.default_rng(0)
    (event,) = _events(2.3 * np.exp(-STEPS / 30) + rng.normal(0, 0.05, 100))
    assert event.kind == "decreasing" and event_verdict(event) is None
    status, message, numbers = decreasing_verdict(2.3, 0.1, 0.09, 100, "training_step")
    assert (status, message) == ("pass", "the training loss decreases: smoothed 2.3 -> 0.1 over 100 steps")
    assert numbers == {"initial_smoothed": 2.3, "final_smoothed": 0.1, "best_smoothed": 0.09, "steps": 100,
                       "source": "training_step"}  # fmt: skip


def test_a_flat_curve_warns_not_falling():
    rng = np.random.default_rng(1)
    (event,) = _events(2.3 + rng.normal(0, 0.05, 100))
    status, message, numbers = event_verdict(event, "metric 'loss'")
    assert status == "warn" and message.startswith(
        "the training loss is not falling: over the first 100 steps"
    )
    assert "check that the LR is not 0" in message and "a decreasing curve has z <= -3" in message
    assert numbers["source"] == "metric 'loss'" and numbers["step"] == 99


def test_a_curve_that_settled_above_its_start_says_the_lr_is_too_high():
    rng = np.random.default_rng(2)
    values = np.r_[[1.0, 1.0, 1.0], 20.0 * np.ones(10), 5.0 + rng.normal(0, 0.01, 87)]
    (event,) = _events(values)
    status, message, _ = event_verdict(event)
    assert status == "warn" and "above the 1 it started at" in message and "probably too high" in message


@pytest.mark.parametrize(("end", "status"), [(3.0, "fail"), (1.5, "warn")])
def test_a_late_rise_fails_only_when_back_above_the_start(end, status):
    event = LossEvent("rising", 400, {"smoothed": end, "best": 1.0, "best_step": 200, "initial": 2.3})
    got, message, _ = event_verdict(event)
    assert got == status and message.startswith(
        f"the training loss is rising: smoothed {end:.4g} at step 400"
    )
    assert message.endswith("lower the learning rate or clip gradients")


def test_an_early_rising_trend_fails():
    (event,) = _events(1.0 + 0.01 * STEPS + np.random.default_rng(3).normal(0, 0.01, 100))
    status, message, _ = event_verdict(event)
    assert status == "fail" and message.startswith("the training loss rises over the first 100 steps")


def test_a_hockey_stick_names_final_bias_init():
    values = np.r_[[30.0, 12.0, 5.0, 2.0], 1.0 + 0.001 * np.random.default_rng(4).normal(size=96)]
    (event,) = _events(values)
    status, message, numbers = event_verdict(event)
    assert status == "warn" and message.startswith("hockey-stick loss curve: the smoothed loss fell")
    assert message.endswith("(FinalBiasInit)") and numbers["early_drop"] > 3


def test_a_non_finite_loss_fails_with_the_smoothed_loss_before():
    (event,) = _events(np.r_[np.ones(15), np.inf], window=8)
    status, message, _ = event_verdict(event)
    assert status == "fail" and message.startswith(
        "the training loss became inf at step 15 (smoothed loss before: 1)"
    )
    status, message, _ = event_verdict(
        LossEvent("non_finite", 0, {"value": float("nan"), "last_smoothed": None})
    )
    assert message.startswith("the training loss became nan at step 0: lower the learning rate")


def test_skips_for_a_short_run_and_a_run_without_loss():
    assert too_short_verdict(5, 100)[:2] == (
        "skipped",
        "the run has only 5 training losses; the checks need at least 12 (and judge the trend after "
        "check_after_steps=100)",
    )
    status, message, _ = no_loss_verdict()
    assert status == "skipped" and "train_loss_step, train_loss, loss_step, loss is logged" in message


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        (torch.tensor(2.5), 2.5),
        ({"loss": torch.tensor([1.5])}, 1.5),
        (0.5, 0.5),
        (None, None),
        (True, None),
        ({"logits": torch.zeros(3)}, None),
        (torch.zeros(2), None),
        (torch.tensor(1 + 1j), None),
    ],
)
def test_returned_loss_reads_a_single_real_value(outputs, expected):
    value = returned_loss(outputs)
    assert (value is None) if expected is None else (value.shape == () and float(value) == expected)


def test_metric_loss():
    assert float(metric_loss(torch.tensor([0.25]))) == 0.25 and float(metric_loss(3)) == 3.0
    assert metric_loss(torch.zeros(2)) is None and metric_loss("n/a") is None


def test_pack_and_unpack_a_window_keep_only_steps_with_a_loss():
    packed = pack_window([torch.tensor(1.0), None, 3.0])
    assert packed.dtype == torch.float64 and packed.tolist() == [[1.0, 0.0, 3.0], [1.0, 0.0, 1.0]]
    assert unpack_window(packed * 2, [4, 5, 6]) == ([1.0, 3.0], [4, 6])  # two ranks, the same values
    assert unpack_window(pack_window([None, None]), [0, 1]) == ([], [])
