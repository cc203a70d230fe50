"""The "verify loss @ init" verdicts without a Trainer: scripted losses, targets and outputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from lightning_recipe.core.checks.loss_at_init import (
    FinalOutputWatch,
    check_rtol,
    dataset_stats,
    loss_finding,
    loss_scale,
    mean_evidence,
    measured_loss,
    step_evidence,
)


def _step(weight_scale: float, loss_fn=F.cross_entropy, seed: int = 0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():
        net[2].weight.mul_(weight_scale)
    x, y = torch.randn(64, 8), torch.arange(64) % 10
    watch = FinalOutputWatch()
    watch.arm(net)
    loss = loss_fn(net(x), y)
    watch.disarm()
    return step_evidence(measured_loss(loss), y, watch.last)


def test_a_default_init_passes_and_scaled_weights_fail():
    status, message, numbers = loss_finding(_step(1.0), rtol=0.3)
    assert status == "pass", message
    assert numbers["expected"] == pytest.approx(math.log(10)) and numbers["layer"] == "2"
    status, message, _ = loss_finding(_step(100.0), rtol=0.3)
    assert status == "fail" and "scale down the final layer's weights" in message


def test_a_summed_loss_fails():
    status, message, _ = loss_finding(
        _step(1.0, lambda o, y: F.cross_entropy(o, y, reduction="sum")), rtol=0.3
    )
    assert status == "fail" and "summed" in message


def test_the_watch_follows_one_named_layer_and_removes_its_hooks():
    net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    watch = FinalOutputWatch()
    watch.arm(net, layer="0")
    net(torch.randn(3, 4))
    assert watch.armed and watch.last[0] == "0" and tuple(watch.last[2].shape) == (3, 8)
    watch.disarm()
    watch.last = None
    net(torch.randn(3, 4))
    assert not watch.armed and watch.last is None


def test_measured_loss_undoes_accumulation_and_scaling():
    assert measured_loss(torch.tensor(0.5), accumulate=4, scale=2.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not a scalar tensor"):
        measured_loss(torch.ones(3))

    class Scaler:
        def __init__(self, enabled, scale):
            self.enabled, self.scale = enabled, scale

        def is_enabled(self):
            return self.enabled

        def get_scale(self):
            return self.scale

    assert loss_scale(None) == loss_scale(Scaler(False, 8.0)) == loss_scale(Scaler(True, float("inf"))) == 1.0
    assert loss_scale(Scaler(True, 65536.0)) == 65536.0


def test_no_layer_ran_and_rtol():
    with pytest.raises(ValueError, match="no layer with parameters ran"):
        step_evidence(1.0, torch.tensor([0, 1]), None)
    assert check_rtol("LossAtInitCheck", 1) == 1.0
    for bad in (0, -1.0, float("nan"), True, "0.3"):
        with pytest.raises(ValueError, match="rtol="):
            check_rtol("LossAtInitCheck", bad)


def test_stats_from_bias_init_or_the_dataset():
    data = TensorDataset(torch.randn(6, 2), torch.tensor([0, 0, 0, 0, 1, 1]))
    stats = dataset_stats(data, "multiclass", 3, -100)
    assert stats.class_counts.tolist() == [4.0, 2.0, 0.0]
    assert dataset_stats(object(), "multiclass", 3, -100) is None
    head = nn.Linear(2, 2)
    last = ("head", head, torch.zeros(4, 2))
    got = step_evidence(
        0.69, torch.tensor([0, 1, 0, 1]), last, bias_init=("head", None), data_stats=lambda t, w: None
    )
    assert got["source"] == "FinalBiasInit"
    got = step_evidence(0.69, torch.tensor([0, 1, 0, 1]), last, bias_init=("other", None))
    assert got["source"] == "model" and got["task"] == "multiclass"


def test_mean_evidence_averages_over_processes():
    ev = _step(1.0)["ev"]
    same = mean_evidence(ev, lambda t: t * 2, 2)
    assert same["measured"] == pytest.approx(ev["measured"])
