"""The overfit-one-batch verdicts without a Trainer: scripted runs, and a copy trained by ShadowSteps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lightning_recipe.core.checks.overfit_batch import (
    OverfitConfig,
    OverfitRun,
    batch_examples,
    class_view,
    kind_of,
    overfit,
    plateaued,
    r2_score,
    smoothing_floor,
    smoothing_for_floor,
    smoothing_from_outputs,
    static_hints,
    target_loss_for,
    verdict,
)
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.shadow import ShadowSteps

CONFIG = OverfitConfig()


def run(losses, **kw) -> OverfitRun:
    kw.setdefault("target", 0.05)
    return OverfitRun(n=8, kind=kw.pop("kind", "classification"), losses=list(losses), **kw)


# ---------------------------------------------------------------------- verdicts on scripted runs
def test_verdict_passes_a_loss_that_reached_the_target():
    status, message, numbers, plot = verdict(CONFIG, run([2.3, 0.5, 0.04], reached=True))
    assert status == "pass"
    assert message == "overfit 8 examples in 3 steps: loss 0.04 (from 2.3; target <= 0.05)"
    assert numbers["steps"] == 3 and numbers["lowest_loss"] == 0.04 and plot["mode"] is None


def test_verdict_passes_regression_on_r2():
    status, message, numbers, _ = verdict(
        CONFIG, run([4.0, 1.0, 0.2], kind="regression", r2=0.995, reached=True)
    )
    assert status == "pass" and "R² 0.995" in message and numbers["r2"] == 0.995
    assert "target loss <= 0.05 or R² >= 0.99" in message


def test_verdict_fails_a_plateau_and_names_the_static_hint():
    status, message, _, _ = verdict(CONFIG, run([2.33] * 60, plateau=True, hints=["the learning rate is 0"]))
    assert status == "fail"
    assert message.startswith("cannot overfit 8 examples: the loss plateaued at 2.33 after 59 steps")
    assert message.endswith("; the learning rate is 0")


def test_verdict_fails_when_no_parameter_changed():
    status, message, _, _ = verdict(CONFIG, run([2.3] * 5, changed=False))
    assert status == "fail" and "only reached 2.3" in message and "no parameter changed" in message


def test_verdict_fails_a_loss_that_rose():
    status, message, _, _ = verdict(CONFIG, run([0.5, 0.4, 1.5], learning_rate=" (0.1)"))
    assert status == "fail"
    assert message == (
        "cannot overfit 8 examples: the loss rose from 0.5 to 1.5 in 2 steps (lowest 0.4): "
        "the learning rate (0.1) is too high for this batch; lower it"
    )


@pytest.mark.parametrize(
    "losses, expected",
    [
        ([0.5, 1.5, math.inf], "the loss rose from 0.5 to 1.5, then inf at step 2"),
        ([2.3, math.nan], "the loss became nan at step 1 while overfitting 8 examples (from 2.3)"),
    ],
)
def test_verdict_fails_a_non_finite_loss(losses, expected):
    status, message, _, _ = verdict(CONFIG, run(losses))
    assert status == "fail" and expected in message


def test_verdict_warns_when_still_decreasing_at_max_steps():
    status, message, _, _ = verdict(OverfitConfig(max_steps=3), run([2.3, 1.5, 1.0, 0.9]))
    assert status == "warn"
    assert message.startswith(
        "the loss was still decreasing after max_steps=3 steps on 8 examples (2.3 -> 0.9"
    )


def _smoothed_outputs(p: float, classes: int = 10, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax gives every example probability ``p`` of its label (the rest spread evenly)."""
    labels = torch.arange(n) % classes
    probs = torch.full((n, classes), (1 - p) / (classes - 1))
    probs[torch.arange(n), labels] = p
    return probs.log(), labels


def test_verdict_passes_an_undeclared_label_smoothing_floor_but_not_a_capped_confidence():
    eps, classes = 0.1, 10
    logits, labels = _smoothed_outputs(1 - eps * (classes - 1) / classes)
    floor = smoothing_floor(eps, classes)
    scripted = run([2.3, floor, floor], plateau=True, task="multiclass", outputs=logits, targets=labels)
    status, message, numbers, plot = verdict(CONFIG, scripted)
    assert status == "pass", message
    assert "a floor consistent with label smoothing eps≈0.1 over 10 classes" in message
    assert numbers["label_smoothing"] == pytest.approx(0.1, abs=1e-6) and numbers["accuracy"] == 1.0
    assert plot["mode"] == "class"
    # the twin: the same outputs, but the loss sits at -log p (a cap on the logits), far below the floor
    capped = run([2.3, 0.09, 0.09], plateau=True, task="multiclass", outputs=logits, targets=labels)
    assert verdict(CONFIG, capped)[0] == "fail"


# ---------------------------------------------------------------------- targets, plateaus, task
def test_target_loss_for_each_kind():
    assert target_loss_for(CONFIG, "classification", 2.3) == 0.05
    assert target_loss_for(CONFIG, "classification", 10.0) == pytest.approx(0.2)
    assert target_loss_for(CONFIG, "regression", 4.0) == pytest.approx(0.04)
    assert target_loss_for(CONFIG, "classification", 2.3, (0.1, 0.5)) == pytest.approx(0.525)
    assert target_loss_for(OverfitConfig(target_loss=0.3), "regression", -1.0) == 0.3
    assert target_loss_for(CONFIG, "regression", -1.0) is None


def test_plateaued_tells_a_flat_loss_from_a_halving_one():
    assert plateaued([2.0] * 60, patience=50)
    assert not plateaued([2.0 * 0.9**k for k in range(60)], patience=50)
    assert not plateaued([2.0] * 54, patience=50)  # too short to tell


@pytest.mark.parametrize(
    "targets, outputs, task, expected",
    [
        (torch.tensor([0, 1, 2]), torch.zeros(3, 3), "auto", ("classification", "multiclass")),
        (torch.tensor([0.0, 1.0, 1.0]), torch.zeros(3, 1), "auto", ("classification", "binary")),
        (torch.tensor([0.3, 1.7, -2.0]), torch.zeros(3), "auto", ("regression", "regression")),
        (None, None, "auto", ("unknown", None)),
        (None, None, "binary", ("classification", "binary")),
    ],
)
def test_kind_of(targets, outputs, task, expected):
    assert kind_of(targets, outputs, task) == expected


def test_r2_score():
    y = torch.tensor([1.0, 2.0, 3.0])
    assert r2_score(y.clone(), y) == 1.0
    assert r2_score(torch.full((3,), 2.0), y) == 0.0
    assert r2_score(y, torch.tensor([1, 2, 3])) is None  # integer targets: classification


def test_class_view_leaves_padding_out():
    logits = torch.randn(2, 4, 5)  # (N, T, V) language-model logits
    labels = torch.tensor([[1, 2, -100, -100], [3, 4, 0, -100]])
    scores, kept, example = class_view(logits, labels)
    assert scores.shape == (5, 5) and kept.tolist() == [1, 2, 3, 4, 0] and example.tolist() == [0, 0, 1, 1, 1]


def test_smoothing_for_floor_inverts_smoothing_floor():
    assert smoothing_for_floor(smoothing_floor(0.2, 5), 5) == pytest.approx(0.2)
    assert smoothing_for_floor(0.0, 5) is None
    logits, labels = _smoothed_outputs(0.7)
    assert smoothing_from_outputs(logits, labels, 0.01) is None  # a loss far below that floor


def test_a_smoothing_floor_with_the_spread_a_real_run_leaves_is_recognised():
    # measured on the digits MLP with label_smoothing=0.1 after 287 Adam steps: p of the label 0.884..0.916
    logits, labels = _smoothed_outputs(0.9)
    probs = logits.softmax(-1)
    probs[torch.arange(8), labels] += torch.linspace(-0.016, 0.016, 8)
    probs = probs / probs.sum(-1, keepdim=True)
    found = smoothing_from_outputs(probs.log(), labels, 0.5104)
    assert found is not None and found[0] == pytest.approx(0.1, abs=0.01)
    assert smoothing_from_outputs(probs.log(), labels, 0.2) is None  # a loss far from that floor


def test_static_hints():
    frozen = nn.Linear(2, 2).requires_grad_(False)
    assert static_hints(frozen, torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)) == [
        "all parameters are frozen (requires_grad=False)"
    ]
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(1.0))
    hints = static_hints(net, torch.optim.SGD(net.parameters(), lr=0.0))
    assert hints == ["the learning rate is 0", "'1' is Dropout(p=1.0): it zeroes its input in training"]
    healthy = nn.Linear(2, 2)
    assert static_hints(healthy, torch.optim.SGD(healthy.parameters(), lr=0.1)) == []


# ---------------------------------------------------------------------- a copy trained without a Trainer
class Net(nn.Module):
    def __init__(self, probabilities: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 10))
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return z.softmax(1) if self.probabilities else z

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])


def _overfit(module: nn.Module, batch, **config):
    small, n = batch_examples(batch, 8)
    shadow = ShadowSteps(module, torch.optim.Adam(module.parameters(), lr=1e-2))
    return overfit(shadow, small, n, OverfitConfig(**config), ModelCall())


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 16, generator=g), torch.arange(32) % 10


def test_overfit_passes_a_healthy_copy_and_fails_softmax_then_cross_entropy():
    torch.manual_seed(0)
    healthy = _overfit(Net(), _batch())
    assert healthy.status == "pass", healthy.message
    assert healthy.numbers["accuracy"] == 1.0 and healthy.losses[-1] <= 0.05
    torch.manual_seed(0)
    broken = _overfit(Net(probabilities=True), _batch())
    assert broken.status == "fail", broken.message
    assert "ln(1 + 9/e) = 1.46 for 10 classes" in broken.message


def test_overfit_skips_a_negative_loss_without_target_and_a_step_without_loss():
    class Negative(Net):
        def training_step(self, batch, batch_idx):
            return -super().training_step(batch, batch_idx)

    class NoLoss(Net):
        def training_step(self, batch, batch_idx):
            return None

    outcome = _overfit(Negative(), _batch())
    assert (
        outcome.status == "skipped"
        and "not positive" in outcome.message
        and "`target_loss=`" in outcome.message
    )
    assert outcome.numbers["initial_loss"] < 0 and len(outcome.losses) == 1
    outcome = _overfit(NoLoss(), _batch())
    assert outcome.status == "skipped"
    assert (
        outcome.message
        == "cannot train a copy of the module: training_step returned no loss (None, or a dict without 'loss')"
    )


def test_batch_examples_takes_copies_of_the_first_rows():
    x, y = _batch()
    (sx, sy), n = batch_examples((x, y), 4)
    assert n == 4 and torch.equal(sx, x[:4]) and torch.equal(sy, y[:4]) and sx.data_ptr() != x.data_ptr()
    assert batch_examples({"meta": "no tensors"}, 4) is None
