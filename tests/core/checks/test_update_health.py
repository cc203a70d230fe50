"""core.checks.update_health: one check's numbers, the evidence across checks, each verdict and its clean twin; no Trainer."""

from __future__ import annotations

import math
from collections import deque

import pytest
import torch
from torch import nn

from lightning_recipe.core.checks import update_health as uh
from lightning_recipe.core.health import EvalModeProblem, layer_of_parameters


def _summary(median: float = -3.0, dead: dict[str, float] | None = None, step: int = 0) -> uh.CheckSummary:
    return uh.CheckSummary(step, ["a", "b"], [median, median], [1.0, 2.0], 5.0, dict(dead or {}), median)


def _sgd_step(net: nn.Module, lr: float = 1e-3) -> uh.PendingCheck:
    """One scripted check: forward + backward, measure the optimizer, step."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    check = uh.start_check(0, net, (nn.ReLU,), uh.trainable_ids([opt]))
    net(torch.randn(16, 4)).mean().backward()
    check.stop_probe()
    check.optimizers[id(opt)] = uh.measure_optimizer(opt)
    opt.step()
    return check


def test_close_check_measures_ratios_gradients_and_dead_units():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    state = uh.HealthState()
    summary, eval_any = uh.close_check(state, _sgd_step(net), layer_of_parameters(net), lambda t: t, 1)
    assert summary.layers == ["0", "2"] and not eval_any
    assert all(-6 < r < -1 for r in summary.log_ratio) and all(g > 0 for g in summary.grad_norm)
    assert set(summary.dead) == {"1"} and 0 <= summary.dead["1"] < 1
    assert state.checks == 1 and state.evidence["0.weight"] == [1, 1, 1, 1, 1]
    tags = uh.scalars(summary, 16, "t")
    assert {"t/log10_update_ratio/0", "t/grad_norm/2", "t/dead_fraction/1", "t/grad_norm"} <= set(tags)
    assert set(summary.numbers()) == {"step", "layers", "dead_fraction"}


def test_reduce_numbers_sums_over_ranks_and_leaves_out_mismatching_sizes():
    local = uh.LocalNumbers(
        [], [], *(torch.zeros(0, dtype=torch.float64),) * 3, torch.ones(2, 5), [], [], torch.ones(3)
    )
    alive, flags, eval_any, sites_ok = uh.reduce_numbers(local, 0.0, lambda t: 2 * t, world_size=2)
    assert sites_ok and eval_any is False and torch.equal(alive, 2 * torch.ones(3))
    assert torch.equal(flags, 2 * torch.ones(2, 5))
    header_says_other_sizes = iter([torch.tensor([7.0, 20.0, 2.0]), None])

    def reduce_sum(t):
        first = next(header_says_other_sizes)
        return first if first is not None else 2 * t

    alive, flags, _, sites_ok = uh.reduce_numbers(local, 1.0, reduce_sum, world_size=2)
    assert not sites_ok and torch.equal(alive, local.alive) and torch.equal(flags, 2 * torch.ones(2, 5))


@pytest.mark.parametrize(
    ("evidence", "problem"),
    [
        ([3, 0, 0, 0, 0], "no_gradient"),
        ([3, 1, 0, 0, 0], "zero_gradient"),
        ([3, 1, 1, 3, 0], "unchanged"),
        ([3, 1, 1, 3, 1], None),  # the clean twin
        ([2, 0, 0, 0, 0], None),  # not enough checks yet
    ],
)
def test_parameter_verdicts(evidence, problem):
    state = uh.HealthState(evidence={"net.0.weight": evidence})
    verdicts = uh.parameter_verdicts(state, patience=3)
    assert [v[2]["problem"] for v in verdicts] == ([problem] if problem else [])
    if problem:
        status, message, numbers = verdicts[0]
        assert status == "warn" and "1 trainable parameter(s) in 1 layer(s)" in message
        assert numbers["layers"] == ["net.0"] and uh.parameter_verdicts(state, 3) == []


def test_update_ratio_verdict_needs_patience_or_a_spike():
    state = uh.HealthState()
    for _ in range(2):
        uh.record_check(state, [], torch.zeros(0, 5), _summary(median=0.5))
    assert uh.update_ratio_verdict(state, _summary(0.5), patience=3) is None
    uh.record_check(state, [], torch.zeros(0, 5), _summary(median=0.5))
    status, message, numbers = uh.update_ratio_verdict(state, _summary(0.5, step=2), patience=3)
    assert status == "warn" and "10^0.5 at step 2" in message and numbers["step"] == 2
    spike = uh.HealthState()
    assert uh.update_ratio_verdict(spike, _summary(1.2), patience=3)[2]["problem"] == "update_ratio"
    assert uh.update_ratio_verdict(uh.HealthState(high_streak=5), _summary(-3.0), patience=3) is not None
    assert uh.update_ratio_verdict(uh.HealthState(), _summary(-2.0), patience=3) is None  # clean twin


def test_dead_verdict_after_patience_checks_of_all_dead_units():
    state = uh.HealthState()
    for _ in range(3):
        uh.record_check(state, [], torch.zeros(0, 5), _summary(dead={"relu": 1.0, "ok": 0.4}))
    status, message, numbers = uh.dead_verdict(state, {"relu": 1.0, "ok": 0.4}, patience=3)
    assert status == "fail" and numbers["sites"] == ["relu"] and "'relu'" in message
    assert uh.dead_verdict(state, {"relu": 1.0}, patience=3) is None  # once


def test_eval_verdict_whole_model_and_submodule():
    whole = uh.eval_verdict(uh.HealthState(), [EvalModeProblem("", ["net.2"], 4)], step=1)
    assert whole[1].startswith("the whole model is in eval mode") and whole[2]["modules"] == [""]
    part = uh.eval_verdict(uh.HealthState(), [EvalModeProblem("enc", ["enc.1"], 2)], step=0)
    assert part[1].startswith("'enc' is in eval mode while the model trains")
    assert uh.eval_verdict(uh.HealthState(), [], step=0) is None


def test_gradients_reset_verdicts_when_stale_and_silent_when_reset():
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    armed = uh.Armed([p], step=0)
    uh.note_backward([armed])  # a backward on stale gradients
    owner = {id(p): ("layer", "layer.p")}
    verdicts = uh.gradients_reset_verdicts(uh.HealthState(), armed, owner, 1, any_rank=bool)
    assert [(v[0], v[2]["layers"]) for v in verdicts] == [("fail", ["layer"])]
    p.grad = torch.zeros(3)
    reset = uh.Armed([p], step=0)
    uh.note_backward([reset])
    p.grad = torch.ones(3)
    assert reset.reset and uh.gradients_reset_verdicts(uh.HealthState(), reset, owner, 1, any_rank=bool) == []


def test_orphan_verdicts_flag_parameters_outside_every_optimizer():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    opt = torch.optim.SGD(net[1].parameters(), lr=0.1)
    orphans = uh.find_orphans(net, [opt])
    assert [name for name, *_ in orphans] == ["0.weight", "0.bias"]
    net(torch.randn(4, 2)).sum().backward()
    owner = layer_of_parameters(net)
    verdicts = uh.orphan_verdicts(uh.HealthState(), orphans, owner, net, any_rank=bool)
    assert verdicts[0][1].startswith(
        "`0.weight`, `0.bias` require grad and get gradients but are in no optimizer"
    )
    net[0].eval()  # the twin: left out of the optimizer and in eval mode, a frozen part
    assert uh.orphan_verdicts(uh.HealthState(), orphans, owner, net, any_rank=bool) == []


def test_final_verdict_pass_and_skipped():
    last = {"layers": {"a": {"log10_update_ratio": -3.0, "grad_norm": 1.0}}}
    assert uh.final_verdict(3, 3, last)[0] == "pass"
    assert "fewer than patience=3" in uh.final_verdict(2, 3, last)[1]
    assert uh.final_verdict(0, 3, {})[0] == "skipped"


def test_state_round_trip_schedule_and_restated_findings():
    state = uh.HealthState(checks=4, reported={"dead_layer": ["relu"], "no_gradient": []}, last_check_step=6)
    again = uh.HealthState.from_state_dict(state.state_dict())
    assert again == state and again.next_due(4) == 8 and uh.HealthState().next_due(4) == 0
    assert [(v[0], v[2]["carried_over"]) for v in uh.restated_verdicts(again)] == [("fail", True)]
    assert [again.figure_due(5, s) for s in (0, 3, 5, 6, 10)] == [True, False, True, False, True]
    assert not uh.HealthState().figure_due(None, 0)


def test_activation_classes_and_figure_data():
    assert uh.activation_classes(nn.ReLU) == (nn.ReLU,)
    with pytest.raises(TypeError, match=r"UpdateHealth\(activation_types=3\): pass a tuple"):
        uh.activation_classes(3)
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    history: dict[str, deque[float]] = {}
    summary = uh.CheckSummary(4, ["0"], [math.nan], [0.0], 0.0, {"1": 0.5}, math.nan)
    data = uh.figure_data(summary, history, net)
    assert data["kinds"] == ["Linear"] and data["site_kinds"] == ["ReLU"] and data["log_grad"] == [-math.inf]
    assert data["history"] == [[]]  # the grey dots are the earlier checks only
    uh.remember(history, summary)
    assert len(uh.figure_data(summary, history, net)["history"][0]) == 1
    assert uh.unsupported_strategy("FSDPStrategy") and uh.unsupported_strategy("DDPStrategy") is None
