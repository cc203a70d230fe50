"""The generalization verdicts on scripted curves: each verdict with a curve that trips it and twins that do not."""

import numpy as np
import pytest
from torch import nn

from lightning_recipe.core.checks.generalization import (
    RunFacts,
    describe_module,
    describe_optimizers,
    end_of_run,
    jitter,
    judge_stage,
    markdown,
    recent_trend,
    regularization_advice,
    stop_cause,
    theil_sen,
)

N = 20


def curves(kind: str, seed: int = 0, n: int = N):
    """(x, epochs, train, val) of a scripted run of ``n`` validations."""
    rng = np.random.default_rng(seed)
    e = np.arange(n)
    x = e + 1.0

    def noise(sigma):
        return rng.normal(0.0, sigma, n)

    if kind == "healthy":
        t = 2.0 * np.exp(-x / 4) + 0.05 + noise(0.005)
        v = 2.0 * np.exp(-x / 4) + 0.10 + noise(0.005)
    elif kind == "noisy":  # small batches: both curves jitter around a falling trend
        t = np.exp(-x / 5) + 0.3 + noise(0.03)
        v = np.exp(-x / 5) + 0.35 + noise(0.05)
    elif kind == "warmup":  # the LR warm-up lifts both losses over the first epochs, then they fall
        bump = np.where(e < 4, 0.6 * np.sin(np.pi * e / 4), 0.0)
        t = 2.0 * np.exp(-x / 5) + 0.05 + bump + noise(0.005)
        v = 2.0 * np.exp(-x / 5) + 0.10 + bump + noise(0.005)
    elif kind == "overfit":  # validation turns up after epoch 7 while training keeps falling
        t = 2.0 * np.exp(-x / 3) + 0.01 + noise(0.005)
        v = 2.0 * np.exp(-x / 3) + 0.2 + np.maximum(0.0, x - 8) * 0.04 + noise(0.005)
    elif kind == "diverging":  # both turn up: an optimisation problem, not overfitting
        t = 2.0 * np.exp(-x / 3) + 0.1 + np.maximum(0.0, x - 8) * 0.05 + noise(0.005)
        v = t + 0.1
    elif kind == "underfit":  # still at 70-80% of the 2.3 baseline, slowly falling
        t = 2.3 * (0.7 + 0.3 * np.exp(-x / 30)) + noise(0.005)
        v = t + 0.02
    elif kind == "improving":  # well below the baseline and still falling steadily at the end
        t = 0.5 * np.exp(-x / 30) + 0.05 + noise(0.002)
        v = 0.5 * np.exp(-x / 30) + 0.10 + noise(0.002)
    elif kind == "plateau":  # reached its floor by epoch 8, flat after
        t = 2.0 * np.exp(-x / 1.5) + 0.05 + noise(0.003)
        v = 2.0 * np.exp(-x / 1.5) + 0.10 + noise(0.003)
    else:
        raise ValueError(kind)
    return x, e, t, v


@pytest.mark.parametrize("seed", range(5))
def test_validation_turning_up_while_training_falls_is_overfitting_with_onset_and_size(seed):
    x, e, t, v = curves("overfit", seed)
    verdict = judge_stage(x, e, t, v, baseline=2.3)
    assert (verdict.stage, verdict.status) == ("overfitting", "warn")
    assert verdict.onset_epoch in (6, 7, 8)
    assert verdict.numbers["rise_fraction"] > 0.5  # far beyond min_rise=5%
    assert f"overfitting from epoch {verdict.onset_epoch}: val_loss rose" in verdict.message
    assert "while train_loss fell" in verdict.message


@pytest.mark.parametrize("kind", ["healthy", "noisy", "warmup", "plateau", "improving"])
@pytest.mark.parametrize("seed", range(5))
def test_healthy_noisy_small_batch_and_warm_up_curves_are_not_overfitting(kind, seed):
    x, e, t, v = curves(kind, seed)
    verdict = judge_stage(x, e, t, v, baseline=2.3)
    assert (verdict.stage, verdict.status) == ("healthy", "pass"), verdict.message
    assert verdict.message.startswith("healthy: val_loss")


def test_both_losses_rising_is_diverging_not_overfitting():
    x, e, t, v = curves("diverging")
    verdict = judge_stage(x, e, t, v)
    assert (verdict.stage, verdict.status) == ("diverging", "warn")
    assert "lower the learning rate" in verdict.message


def test_a_training_loss_high_against_the_baseline_and_still_falling_is_underfitting():
    x, e, t, v = curves("underfit")
    verdict = judge_stage(x, e, t, v, baseline=2.3, baseline_name="class-prior predictor")
    assert (verdict.stage, verdict.status) == ("underfitting", "warn")
    assert verdict.numbers["train_to_baseline"] > 0.7
    assert "of the class-prior predictor's 2.3 (still falling ~" in verdict.message
    assert "get a bigger model first" in verdict.message
    assert ", or train longer: at this rate it reaches 50% of it in ~" in verdict.message
    epochs = int(verdict.message.rsplit("~", 1)[1].split()[0])  # a whole number, not 1.2e+02
    assert 0 < epochs <= 10 * x[-1]
    flat = judge_stage(x, e, [t[-1]] * len(t), [t[-1] + 0.02] * len(t), baseline=2.3)
    assert flat.stage == "underfitting" and "no longer falling much" in flat.message
    assert "train longer" not in flat.message  # a flat curve: only a bigger model helps
    # the same curve well below its baseline, or with no baseline known, is not underfitting
    assert judge_stage(x, e, t, v, baseline=2.3 * 10).stage == "healthy"
    assert judge_stage(x, e, t, v).stage == "healthy"


def test_too_few_validations_are_skipped():
    x, e, t, v = curves("overfit", n=4)
    verdict = judge_stage(x, e, t, v)
    assert (verdict.stage, verdict.status) == ("too_short", "skipped")
    assert "only 4 validations" in verdict.message


def test_overfitting_caught_by_early_stopping_passes_and_lists_the_advice():
    x, e, t, v = curves("overfit")
    advice = regularization_advice(RunFacts(train_size=64))
    verdict = judge_stage(x, e, t, v, restored_epoch=7, advice=advice)
    assert (verdict.stage, verdict.status) == ("overfitting", "pass")
    assert "early stopping caught it and restored the weights of epoch 7" in verdict.message
    assert (
        "try in the recipe's order: 1. more data (64 training samples); 2. data augmentation"
        in verdict.message
    )
    text = markdown(verdict)
    assert "1. more data (64 training samples)" in text.splitlines()


def test_leave_it_training_when_the_budget_ends_a_still_improving_run():
    x, e, t, v = curves("improving")
    verdict = judge_stage(x, e, t, v, baseline=2.3)
    end = end_of_run(x, e, v, "budget", verdict.stage, budget="max_epochs=20")
    assert (end.kind, end.status) == ("leave_it_training", "pass")
    assert end.message.startswith("max_epochs=20 ended the run while val_loss was still improving ~")
    assert end.message.endswith("leave it training")
    assert end.numbers["slope_per_epoch"] > 0.01 and end.numbers["trend_z"] <= -2.5


@pytest.mark.parametrize("kind", ["plateau", "overfit"])
def test_a_levelled_off_or_overfitting_run_is_not_told_to_keep_training(kind):
    x, e, t, v = curves(kind)
    stage = judge_stage(x, e, t, v).stage
    end = end_of_run(x, e, v, "budget", stage, budget="max_epochs=20")
    assert end is None or (end.kind, end.status) == ("levelled_off", "pass")


def test_one_good_epoch_at_the_end_of_a_flat_curve_is_not_a_trend():
    x, e, _t, v = curves("plateau")
    v = v.copy()
    v[-1] -= 0.03  # ten jitters below the floor, once
    assert end_of_run(x, e, v, "budget", "healthy").kind == "levelled_off"


def _stopped(values, patience):
    best, wait = np.inf, 0
    for i, value in enumerate(values):
        best, wait = (value, 0) if value < best else (best, wait + 1)
        if wait >= patience:
            return i
    raise AssertionError("never stopped")


def test_early_stopping_on_a_plateau():
    x, e, _t, v = curves("plateau", n=60)
    stop = _stopped(v, 3) + 1
    end = end_of_run(x[:stop], e[:stop], v[:stop], "early_stopping", "healthy", patience=3)
    assert (end.kind, end.status) == ("stopped_on_plateau", "pass")
    assert "on a plateau" in end.message


def test_early_stopping_on_noise_while_the_trend_still_falls():
    x = np.arange(1.0, 16.0)
    rng = np.random.default_rng(0)
    v = 1.0 - 0.03 * x + rng.normal(0, 0.004, x.size)
    v[11] -= 0.15  # a lucky dip at epoch 11; the three validations after it are on the trend
    end = end_of_run(x, x - 1, v, "early_stopping", "healthy", patience=3)
    assert (end.kind, end.status) == ("stopped_on_noise", "warn")
    assert "still falling ~" in end.message and "raise patience (e.g. to 6)" in end.message
    kind, numbers = stop_cause(x, v, 3)
    assert kind == "noise" and numbers["pre_best_trend_z"] <= -2.5


def test_early_stopping_on_the_onset_of_overfitting():
    x, e, _t, v = curves("overfit")
    end = end_of_run(x, e, v, "early_stopping", "overfitting", patience=3)
    assert (end.kind, end.status) == ("stopped_on_overfitting", "pass")


def test_advice_follows_the_recipe_order_with_what_the_run_shows():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    facts = RunFacts(
        train_size=256,
        batch_size=32,
        input_shape=(1, 8, 8),
        augmentation="a fixed TensorDataset: no augmentation",
        weight_decay=describe_optimizers([opt]),
        **describe_module(model),
    )
    advice = regularization_advice(facts)
    heads = [a.split(" (")[0] for a in advice]
    assert heads == [
        "more data",
        "data augmentation",
        "a pretrained network",
        "smaller input dimensionality",
        "a smaller model",
        "a smaller batch",
        "dropout",
        "weight decay",
        "early stopping",
        "a larger model with early stopping",
    ]
    text = " | ".join(advice)
    for expected in (
        "256 training samples",
        "no augmentation",
        "inputs 1x8x8 = 64 values per sample",
        "1.49k parameters, 5.82 per training sample",
        "batch size 32; no batch norm",
        "no dropout in the model; Dropout2d for a ConvNet",
        "weight_decay=0 in Adam",
        "no EarlyStopping attached",
    ):
        assert expected in text
    wd = regularization_advice(
        RunFacts(dropout=[0.2], weight_decay=[("AdamW", 0.01)], batchnorm=True, batch_size=8)
    )
    assert (
        "more dropout (p=0.2 in 1 module(s))" in wd and "more weight decay (weight_decay=0.01 in AdamW)" in wd
    )
    assert "a smaller batch (batch size 8; with batch norm, smaller batches regularize)" in wd


def test_describe_module_finds_dropout_batch_norm_and_convolutions():
    found = describe_module(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout2d(0.1), nn.Dropout(0.3))
    )
    assert (
        found["dropout"] == [0.1, 0.3] and found["spatial_dropout"] and found["batchnorm"] and found["conv"]
    )
    assert found["parameters"] == 1 * 2 * 9 + 2 + 2 + 2


def test_jitter_theil_sen_and_trend_helpers():
    x = np.arange(30.0)
    rng = np.random.default_rng(0)
    noisy = 3.0 - 0.1 * x + rng.normal(0, 0.05, x.size)
    assert 0.03 < jitter(noisy) < 0.08  # the noise, not the slope
    assert jitter(3.0 - 0.1 * x) == pytest.approx(0.0, abs=1e-12)
    assert theil_sen(x, noisy) == pytest.approx(-0.1, abs=0.01)
    trend = recent_trend(x, noisy)
    assert trend.improving and trend.window == 15
    assert recent_trend(x[:5], noisy[:5]) is None


def test_a_loss_still_falling_fast_above_half_the_baseline_is_still_learning_not_underfitting():
    # a short run: 8 epochs, the training loss at ~60% of the baseline but falling ~8% per epoch
    x = np.arange(1.0, 9.0)
    t = 4.15 * 1.1 * 0.92**x
    v = t + 0.05
    verdict = judge_stage(x, x.astype(int) - 1, t, v, baseline=4.15, baseline_name="class-prior predictor")
    assert (verdict.kind, verdict.status, verdict.stage) == ("still_learning", "pass", "healthy")
    assert "train longer before judging the model's size" in verdict.message
    assert verdict.numbers["epochs_to_half_baseline"] < 8
    # the same level reached slowly (~0.6% per epoch over 20 epochs) is underfitting
    x, e, t, v = curves("underfit")
    assert judge_stage(x, e, t, v, baseline=2.3).kind == "underfitting"


def test_a_steep_fall_is_quoted_as_a_fraction_lost_per_epoch_below_100_percent():
    x = np.arange(1.0, 9.0)
    v = 0.65 * 0.55**x  # loses 45% per epoch: a linear slope over the late level would say ~300%
    trend = recent_trend(x, v)
    assert trend is not None and trend.improving
    assert trend.relative == pytest.approx(0.45, abs=0.01)
    end = end_of_run(x, x.astype(int) - 1, v, "budget", "healthy", budget="max_epochs=8")
    assert (end.kind, end.status) == ("leave_it_training", "pass")
    assert "still improving ~45% per epoch" in end.message
