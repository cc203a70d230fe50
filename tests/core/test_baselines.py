"""Dumb baselines in pure torch: the prior/majority and mean predictors scored on given targets."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from lightning_recipe.core.baselines import (
    DEFAULT_LOSS,
    baseline_scores,
    baseline_sums,
    constant_prediction,
    dumb_baselines,
    resolve_loss,
)
from lightning_recipe.core.stats import TargetStats, entropy
from tests.helpers import breast_cancer_arrays, diabetes_arrays, digits_arrays


def _stats(targets: torch.Tensor, task: str, **kw) -> TargetStats:
    return TargetStats.from_targets(targets, task, **kw)  # type: ignore[arg-type]


def test_multiclass_prior_loss_is_cross_entropy_of_the_training_priors_on_digits():
    _, y = digits_arrays()
    y = torch.as_tensor(y)
    train, val = y[:1400], y[1400:]
    scores = dumb_baselines(_stats(train, "multiclass", num_classes=10), val)
    priors = torch.bincount(train, minlength=10).double() / len(train)
    expected = F.cross_entropy(priors.log().expand(len(val), 10), val).item()
    assert scores.loss_name == "cross_entropy"
    assert scores.loss == pytest.approx(expected, rel=1e-9)
    assert scores.metric == pytest.approx(float((val == int(priors.argmax())).double().mean()))
    assert scores.count == len(val)
    assert scores.tags() == {"prior_loss": scores.loss, "majority_accuracy": scores.metric}


def test_prior_loss_on_the_training_targets_is_their_entropy():
    y = torch.tensor([0] * 70 + [1] * 20 + [2] * 10)
    scores = dumb_baselines(_stats(y, "multiclass"), y)
    assert scores.loss == pytest.approx(entropy(torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)), rel=1e-9)
    assert scores.metric == pytest.approx(0.7)


def test_a_class_never_seen_in_training_keeps_the_loss_finite():
    train = _stats(torch.tensor([0, 0, 1, 1]), "multiclass", num_classes=3)
    p = constant_prediction(train)
    assert p.tolist() == pytest.approx([2 / 4.5, 2 / 4.5, 0.5 / 4.5])  # half a count for class 2
    assert math.isfinite(dumb_baselines(train, torch.tensor([2, 2, 0])).loss)


def test_binary_prior_loss_is_bce_with_the_training_frequency_on_breast_cancer():
    _, y = breast_cancer_arrays()
    y = torch.as_tensor(y).float()
    train, val = y[:450], y[450:]
    scores = dumb_baselines(_stats(train, "binary"), val)
    p = train.double().mean()
    logit = torch.log(p / (1 - p)).float()
    expected = F.binary_cross_entropy_with_logits(logit.expand(len(val)), val).item()
    assert scores.loss_name == "bce"
    assert scores.loss == pytest.approx(expected, rel=1e-5)
    assert scores.metric == pytest.approx(float(val.mean()))  # majority is "1" (63 % benign)


def test_multilabel_scores_every_label():
    train = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    val = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    scores = dumb_baselines(_stats(train, "multilabel"), val)
    p = torch.tensor([0.75, 0.25], dtype=torch.float64)
    expected = F.binary_cross_entropy(p.expand(2, 2), val.double()).item()
    assert scores.loss == pytest.approx(expected)
    assert scores.metric == pytest.approx(0.5)  # majority: label 0 on, label 1 off
    assert scores.count == 4


def test_a_constant_label_stays_finite():
    train = _stats(torch.ones(10), "binary")
    assert math.isfinite(dumb_baselines(train, torch.tensor([0.0, 1.0])).loss)


@pytest.mark.parametrize(
    ("loss", "fn"),
    [("mse", F.mse_loss), ("l1", F.l1_loss), ("huber", F.huber_loss)],
)
def test_regression_mean_predictor_on_diabetes(loss, fn):
    _, y = diabetes_arrays()
    y = torch.as_tensor(y).double()
    train, val = y[:350], y[350:]
    scores = dumb_baselines(_stats(train, "regression"), val, loss=loss)
    guess = torch.full_like(val, float(train.mean()))
    assert scores.loss_name == loss
    assert scores.loss == pytest.approx(fn(guess, val).item(), rel=1e-9)
    assert scores.metric_name == "mae"
    assert scores.metric == pytest.approx(F.l1_loss(guess, val).item(), rel=1e-9)
    assert set(scores.tags()) == {"mean_loss", "mean_mae"}


def test_multi_output_regression_uses_each_outputs_mean():
    train = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
    val = torch.tensor([[1.0, 20.0], [1.0, 20.0]])
    scores = dumb_baselines(_stats(train, "regression"), val)
    assert scores.loss == pytest.approx(0.0)
    assert scores.metric == pytest.approx(0.0)


def test_sums_of_shards_merge_exactly():
    _, y = digits_arrays()
    y = torch.as_tensor(y)
    stats = _stats(y[:1000], "multiclass", num_classes=10)
    p = constant_prediction(stats)
    whole = baseline_sums(p, y[1000:], "multiclass")
    parts = baseline_sums(p, y[1000:1400], "multiclass") + baseline_sums(p, y[1400:], "multiclass")
    assert torch.allclose(whole, parts)
    assert baseline_scores(parts, "multiclass").loss == pytest.approx(
        baseline_scores(whole, "multiclass").loss
    )


def test_dense_multiclass_targets_and_ignore_index():
    train = _stats(torch.tensor([[0, 1], [1, 1]]), "multiclass", num_classes=2)
    val = torch.tensor([[1, -100], [1, 0]])
    scores = dumb_baselines(train, val, ignore_index=-100)
    assert scores.count == 3
    assert scores.metric == pytest.approx(2 / 3)


def test_resolve_loss_defaults_and_errors():
    assert {task: resolve_loss(task) for task in DEFAULT_LOSS} == DEFAULT_LOSS
    assert resolve_loss("regression", "l1") == "l1"
    with pytest.raises(ValueError, match=r"owner\(loss='hinge'\): unknown loss; pass 'auto' or one of"):
        resolve_loss("binary", "hinge", "owner")
    with pytest.raises(
        ValueError,
        match=r"loss='mse'\): does not fit a multiclass task; pass 'auto' or one of 'cross_entropy'",
    ):
        resolve_loss("multiclass", "mse")
    with pytest.raises(ValueError, match=r"task='ranking'\): unknown task"):
        resolve_loss("ranking")  # type: ignore[arg-type]


def test_errors_name_the_problem():
    p = constant_prediction(_stats(torch.tensor([0, 1]), "multiclass"))
    with pytest.raises(ValueError, match=r"class label 5 is out of range for 2 classes; pass `num_classes=`"):
        baseline_sums(p, torch.tensor([5]), "multiclass")
    mean = constant_prediction(_stats(torch.zeros(4, 2), "regression"))
    with pytest.raises(ValueError, match=r"have 3 output\(s\) but the baseline predicts 2"):
        baseline_sums(mean, torch.zeros(4, 3), "regression")
    with pytest.raises(ValueError, match=r"no target was scored"):
        baseline_scores(torch.zeros(3), "regression")
    with pytest.raises(ValueError, match=r"expected 3 sums, got 2"):
        baseline_scores(torch.zeros(2), "regression")
    with pytest.raises(ValueError, match=r"statistics are empty"):
        constant_prediction(TargetStats("regression"))
    scores = dumb_baselines(_stats(torch.zeros(4), "regression"), torch.zeros(4))
    with pytest.raises(ValueError, match=r"a regression baseline has a 'loss' and an 'mae', not 'accuracy'"):
        scores.value("accuracy")
    assert scores.value("mae") == 0.0
