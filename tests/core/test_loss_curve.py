"""Unit tests for lightning_recipe.core.loss_curve: robust, bounded reading of a loss curve."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from lightning_recipe.core.loss_curve import LossTracker, hockey_stick, robust_summary, trend_z


def _feed(tracker: LossTracker, values: np.ndarray, window: int = 10) -> list[str]:
    kinds: list[str] = []
    for start in range(0, len(values), window):
        chunk = values[start : start + window]
        kinds += [e.kind for e in tracker.update(chunk.tolist(), list(range(start, start + len(chunk))))]
    return kinds


@pytest.mark.parametrize("seed", range(5))
def test_noisy_decreasing_curve_is_decreasing(seed):
    rng = np.random.default_rng(seed)
    t = np.arange(400)
    loss = 2.3 * np.exp(-t / 150) + 0.2 + rng.normal(0, 0.25, t.size)  # noise as large as a third of the drop
    assert _feed(LossTracker(check_after=100), loss) == ["decreasing"]


@pytest.mark.parametrize("seed", range(5))
def test_well_initialised_slow_curve_is_not_flat(seed):
    rng = np.random.default_rng(seed)
    t = np.arange(300)
    loss = 0.69 - 0.0004 * t + rng.normal(0, 0.03, t.size)  # 6% drop over the first 100 steps
    assert _feed(LossTracker(check_after=100), loss) == ["decreasing"]


@pytest.mark.parametrize("seed", range(5))
def test_stationary_noise_is_flat(seed):
    rng = np.random.default_rng(seed)
    assert _feed(LossTracker(check_after=100), 2.3 + rng.normal(0, 0.1, 200)) == ["flat"]


def test_constant_loss_is_flat():
    assert _feed(LossTracker(check_after=50), np.full(60, 1.5)) == ["flat"]


def test_rising_from_the_start():
    rng = np.random.default_rng(0)
    t = np.arange(100)
    assert "rising" in _feed(LossTracker(check_after=100), 2.3 + 0.02 * t + rng.normal(0, 0.1, t.size))


def test_rising_after_progress():
    rng = np.random.default_rng(0)
    t = np.arange(400)
    loss = np.where(t < 200, 2.3 * np.exp(-t / 40), 2.3 * np.exp(-200 / 40) + 0.01 * (t - 200))
    events = _feed(LossTracker(check_after=100), loss + rng.normal(0, 0.02, t.size))
    assert events == ["decreasing", "rising"]


def test_a_spike_does_not_make_it_rising():
    rng = np.random.default_rng(1)
    t = np.arange(400)
    loss = 2.3 * np.exp(-t / 80) + 0.1 + rng.normal(0, 0.05, t.size)
    loss[250:253] = 50.0  # a few bad batches
    assert _feed(LossTracker(check_after=100), loss) == ["decreasing"]


def test_non_finite_is_reported_once_with_its_step():
    tracker = LossTracker(window=10, check_after=100)
    values = list(np.linspace(2.0, 1.0, 10)) + [1.0, 0.9, float("nan")] + [float("nan")] * 7
    first = tracker.update(values[:10], list(range(10)))
    events = tracker.update(values[10:], list(range(10, 20)))
    assert first == [] and [e.kind for e in events] == ["non_finite"]
    assert events[0].step == 12 and events[0].numbers["last_smoothed"] == pytest.approx(1.5)
    assert tracker.update([float("inf")] * 10, list(range(20, 30))) == []


def test_hockey_stick_shape():
    t = np.arange(100, dtype=float)
    bias_learning = 5000 + 40000 * np.exp(-t / 3) - 5 * t  # falls 5x in a few steps, then crawls
    shape = hockey_stick(bias_learning)
    assert shape is not None and shape.is_hockey_stick and shape.early_drop > 4
    healthy = 2.3 * np.exp(-t / 30) + 0.05  # fast but sustained progress
    shape = hockey_stick(healthy)
    assert shape is not None and not shape.is_hockey_stick
    assert hockey_stick(-healthy) is None  # only for positive losses


def test_hockey_stick_ignores_a_spike_after_step_zero():
    x = np.full(100, 2.4)
    x[0], x[1], x[2] = 2.3, 95.0, 4.8
    shape = hockey_stick(x)
    assert shape is not None and not shape.is_hockey_stick


def test_tracker_reports_hockey_stick():
    rng = np.random.default_rng(0)
    t = np.arange(120, dtype=float)
    loss = 5000 + 25000 * np.exp(-t / 2) - 10 * t + rng.normal(0, 100, t.size)
    assert _feed(LossTracker(check_after=100), loss) == ["hockey_stick"]


def test_memory_is_bounded():
    tracker = LossTracker(window=10, check_after=100_000, max_early_points=256, history=32)
    _feed(tracker, np.linspace(3, 1, 20_000))
    assert len(tracker.early) < 256 and tracker.early_stride >= 64
    assert len(tracker.windows) == 32 and tracker.count == 20_000


def test_state_dict_round_trip_and_pickle():
    rng = np.random.default_rng(0)
    a = LossTracker(check_after=100)
    loss = 2.3 * np.exp(-np.arange(200) / 50) + rng.normal(0, 0.05, 200)
    _feed(a, loss[:60])
    b = LossTracker(check_after=100)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    assert _feed(a, loss[60:]) == _feed(b, loss[60:]) == ["decreasing"]


def test_trend_z_and_robust_summary():
    assert trend_z([1, 2, 3, 4, 5]) == pytest.approx(2.0)
    assert trend_z([5, 4, 3, 2, 1]) == pytest.approx(-2.0)
    assert trend_z([1, 1, 1]) == 0.0 and trend_z([1, 2]) == 0.0
    assert robust_summary([1, 2, 3, 100]) == (2.5, 1.0)


# ---------------------------------------------------------------------- decision order (issue 11)
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("noise", [0.0, 0.02, 0.1])
def test_a_4x_drop_in_5_steps_then_flat_is_a_hockey_stick_never_flat(seed, noise):
    rng = np.random.default_rng(seed)
    t = np.arange(100)
    # 4x down in 5 steps, then flat: the trend test over the whole window sees mostly the flat tail
    loss = np.where(t < 5, 4.0 - 3.0 * t / 5, 1.0) * (1 + noise * rng.standard_normal(t.size))
    events = LossTracker(check_after=100).update(loss.tolist(), t.tolist())
    assert [e.kind for e in events] == ["hockey_stick"]
    assert events[0].numbers["early_drop"] >= 3.5


def test_a_meaningful_fall_with_a_weak_trend_is_decreasing_not_flat():
    # fell 2x over 6 steps (not fast enough for a hockey stick), then flat noise: z is weak
    rng = np.random.default_rng(0)
    t = np.arange(100)
    loss = np.where(t < 6, 2.0 - t / 6, 1.0) + rng.normal(0, 0.05, t.size)
    (event,) = LossTracker(check_after=100).update(loss.tolist(), t.tolist())
    assert event.kind == "decreasing" and event.numbers["fell"]
    assert event.numbers["first_smoothed"] > 1.2 * event.numbers["last_smoothed"]


def test_a_flat_verdict_never_quotes_a_fallen_loss():
    # whatever the curve, "flat" means the quoted smoothed loss did not fall by 20%
    rng = np.random.default_rng(1)
    for _ in range(200):
        t = np.arange(100)
        drop = rng.uniform(1.0, 8.0)
        k = int(rng.integers(1, 40))
        loss = np.where(t < k, drop - (drop - 1) * t / k, 1.0) * (
            1 + rng.uniform(0, 0.3) * rng.standard_normal(t.size)
        )
        loss = np.abs(loss) + 1e-3
        for event in LossTracker(check_after=100).update(loss.tolist(), t.tolist()):
            if event.kind == "flat" and not event.numbers["above_start"]:
                assert (
                    max(event.numbers["first_smoothed"], event.numbers["start"])
                    <= 1.25 * event.numbers["last_smoothed"]
                )
            if event.kind == "rising":
                assert event.numbers["last_smoothed"] > event.numbers["first_smoothed"]
