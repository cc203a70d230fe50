"""BatchIndependenceCheck's verdicts without a Trainer: each verdict and its clean twin."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_recipe.core.checks.batch_independence import (
    LEAK,
    OWN,
    IndependenceConfig,
    distinct,
    figure_data,
    measure,
)


class _Centred(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3, 2)

    def forward(self, x):
        return self.net(x - x.mean(0))


class _Kwargs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3, 2)

    def forward(self, **batch):
        logits = self.net(batch["x"])
        return {"loss": nn.functional.cross_entropy(logits, batch["labels"]), "logits": logits}


def _dict_batch(n: int = 8):
    return {"x": torch.randn(n, 3), "labels": torch.randint(0, 2, (n,))}


@pytest.mark.parametrize(
    ("module", "batch", "status"),
    [
        (nn.Linear(3, 2), (torch.randn(8, 3), torch.zeros(8)), "pass"),
        (_Centred(), (torch.randn(8, 3), torch.zeros(8)), "fail"),
        (_Kwargs(), _dict_batch(), "pass"),  # module(**batch): no forward= needed
    ],
    ids=["per-sample", "mixing", "forward-kwargs"],
)
def test_measure_judges_the_batch_dimension(module, batch, status):
    chart, verdicts = measure(IndependenceConfig(), module, batch)
    assert [v[0] for v in verdicts] == [status]
    assert chart is not None and chart.batch_size == 8


def test_measure_skips_a_batch_of_one_and_judges_it_once():
    chart, verdicts = measure(IndependenceConfig(), nn.Linear(3, 2), torch.randn(1, 3))
    assert chart is not None and len(verdicts) == 1
    assert verdicts[0][0] == "skipped" and verdicts[0][1].startswith("batch size 1")


def test_one_reason_that_stops_both_checks_is_one_verdict():
    class Odd(nn.Module):
        def forward(self, a, b, c):
            return a

    chart, verdicts = measure(IndependenceConfig(causal_dim=1), Odd(), (torch.randn(4, 5, 3), torch.zeros(4)))
    assert chart is None and len(verdicts) == 2  # one per check: every rank agrees on as many
    (only,) = distinct(verdicts)
    assert only[0] == "skipped" and "forward pass failed" in only[1] and "pass `forward=`" in only[1]


def test_distinct_keeps_two_different_verdicts():
    verdicts = [("pass", "batch ok", {}), ("skipped", "nothing charted along the sequence", {})]
    assert distinct(verdicts) == verdicts
    assert distinct([("skipped", "a", {}), ("skipped", "b", {})]) == [
        ("skipped", "a", {}),
        ("skipped", "b", {}),
    ]


def test_measure_names_input_key_when_the_inputs_are_missing():
    config = IndependenceConfig(input_key="image", forward=lambda m, x: m(x))
    chart, verdicts = measure(config, nn.Linear(3, 2), {"x": torch.randn(4, 3)})
    assert chart is None and verdicts[0][1].startswith("cannot find the inputs: input_key='image'")


def test_measure_leaves_modes_and_grads_as_they_were():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    stats = net[1].running_mean.clone()
    _, verdicts = measure(IndependenceConfig(), net, torch.randn(8, 3))
    assert verdicts[0][0] == "pass" and verdicts[0][2]["eval_mode_layers"] == ["1", "2"]
    assert all(m.training for m in net.modules()) and torch.equal(stats, net[1].running_mean)
    assert all(p.grad is None for p in net.parameters())


def test_figure_data_marks_own_inputs_and_leaks():
    chart, _ = measure(IndependenceConfig(num_samples=2), _Centred(), torch.randn(6, 3))
    assert chart is not None
    data = figure_data(chart, strict=False)
    assert data["samples"] == [0, 5] and data["causal"] is None
    assert data["cats"][0, 0] == OWN and data["cats"][0, 1] == LEAK
