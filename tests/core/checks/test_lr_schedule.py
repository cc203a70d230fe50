"""core/checks/lr_schedule: the audit's verdicts on scripted schedulers, no Trainer; each with its clean twin."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler as sch

from lightning_recipe.core.checks.lr_schedule import (
    RunPlan,
    SchedulerConfig,
    audit,
    cross_check,
    cross_check_points,
    hint,
    metric_sense,
    summary,
)
from lightning_recipe.core.schedules import analyse_lr

PLAN = RunPlan(max_epochs=10, max_steps=-1, batches_per_epoch=20)  # 200 optimizer steps


def _opt(lr: float = 0.1, groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=lr)


def _audit(make, interval="step", plan=PLAN, lr=0.1, **kw):
    opt = _opt(lr)
    config = SchedulerConfig(make(opt), interval)
    return audit([config], plan, {id(opt)}, **kw), opt, config


def _verdict(make, interval="step", **kw):
    (verdict,) = _audit(make, interval, **kw)[0].verdicts
    return verdict


def test_run_plan_counts_optimizer_steps_like_lightning():
    plan = RunPlan(max_epochs=3, max_steps=-1, batches_per_epoch=10, accumulate_grad_batches=4,
                   start_step=5, start_epoch=1)  # fmt: skip
    assert plan.has_end and plan.steps_per_epoch == 3 and plan.start_batch == 8
    assert not RunPlan(max_epochs=-1, max_steps=-1, batches_per_epoch=10).has_end
    assert not RunPlan(max_epochs=5, max_steps=-1, batches_per_epoch=math.inf).has_end
    assert RunPlan(max_epochs=-1, max_steps=7, batches_per_epoch=math.inf).start_batch == 0


def test_no_scheduler_passes_and_a_run_without_end_is_skipped():
    assert audit([], PLAN, set()).verdicts == [
        ("pass", "no LR scheduler: the LR stays constant (the recipe's advice until the very end)", {})
    ]
    opt = _opt()
    unbounded = RunPlan(max_epochs=-1, max_steps=-1, batches_per_epoch=20)
    ((status, message, _),) = audit([SchedulerConfig(sch.StepLR(opt, 30))], unbounded, {id(opt)}).verdicts
    assert status == "skipped" and "no planned end" in message and message.endswith("set max_steps")


def test_early_decay_fails_with_the_fix_and_its_per_epoch_twin_passes():
    status, message, numbers = _verdict(lambda o: sch.StepLR(o, step_size=30, gamma=0.1))
    assert status == "fail"
    assert message.startswith(
        "StepLR(step_size=30, gamma=0.1) drives the LR below 0.001x its peak at 60% of training and keeps it "
        "there for 40% of the 200 steps (down to 1e-06x): the scheduler is stepped every optimizer step"
    )
    assert "(this run has 200, 20 per epoch)" in message and numbers["scheduler"].startswith("StepLR")
    status, message, _ = _verdict(lambda o: sch.StepLR(o, step_size=30, gamma=0.1), "epoch")
    assert (
        status == "pass"
        and message == "StepLR(step_size=30, gamma=0.1): the LR stays at 0.1 over the 200 steps"
    )


def test_cycles_warn_and_a_cosine_spanning_the_run_passes():
    status, message, numbers = _verdict(lambda o: sch.CosineAnnealingLR(o, T_max=10))
    assert status == "warn" and "times in all" in message and numbers["verdict"] == "cycles"
    assert "if T_max count epochs, set interval='epoch'" in message
    status, message, _ = _verdict(lambda o: sch.CosineAnnealingLR(o, T_max=200))
    assert status == "pass" and message.startswith("CosineAnnealingLR(T_max=200, eta_min=0): starts at 0.1")


def test_one_cycle_that_raises_or_is_cut_short_and_one_that_spans_the_run():
    status, message, numbers = _verdict(lambda o: sch.OneCycleLR(o, max_lr=0.1, total_steps=100))
    assert status == "fail" and numbers["error_step"] == 101
    assert "raises when stepped after optimizer step 101 of 200" in message
    assert message.endswith("pass total_steps=trainer.estimated_stepping_batches (200)")
    status, message, _ = _verdict(lambda o: sch.OneCycleLR(o, max_lr=0.1, total_steps=1000))
    assert status == "warn" and message.startswith("OneCycleLR(total_steps=1000) is stepped only 200 times")
    status, _, _ = _verdict(lambda o: sch.OneCycleLR(o, max_lr=0.1, total_steps=200))
    assert status == "pass"


def test_a_zero_lr_warns():
    status, message, _ = _verdict(lambda o: sch.LambdaLR(o, lambda step: 1.0), lr=0.0)
    assert status == "warn" and message.endswith("the LR is 0 for the whole run; nothing will train")


def test_what_cannot_be_simulated_is_skipped():
    opt, other = _opt(), _opt()
    configs = [
        SchedulerConfig(sch.ReduceLROnPlateau(opt), "epoch", monitor="val_loss", reduce_on_plateau=True),
        SchedulerConfig(sch.StepLR(other, 30), "epoch"),
        SchedulerConfig(object(), "epoch"),
    ]
    messages = [(s, m) for s, m, _ in audit(configs, PLAN, {id(opt)}).verdicts]
    assert messages == [
        (
            "skipped",
            "ReduceLROnPlateau follows 'val_loss': its decays depend on the data and cannot be simulated before "
            "training",
        ),
        (
            "skipped",
            "StepLR(step_size=30, gamma=0.1) drives a SGD that is not one of the optimizers configure_optimizers "
            "returned: not simulated; build the scheduler on the optimizer you return",
        ),
        (
            "skipped",
            "object has no `optimizer` attribute holding a torch optimizer; it cannot be simulated on a copy",
        ),
    ]


def test_manual_optimization_says_the_curve_is_as_configured():
    plan = RunPlan(max_epochs=10, max_steps=-1, batches_per_epoch=20, manual=True)
    status, message, numbers = _verdict(lambda o: sch.StepLR(o, 1000), plan=plan)
    assert status == "pass" and "simulated as configured (interval/frequency)" in message
    assert numbers["manual_optimization"] is True
    assert "manual_optimization" not in _verdict(lambda o: sch.StepLR(o, 1000))[2]


def test_each_parameter_group_is_a_curve():
    opt = _opt(groups=2)
    result = audit([SchedulerConfig(sch.StepLR(opt, 1000), "step")], PLAN, {id(opt)})
    assert [c.label for c in result.curves] == ["SGD group 0", "SGD group 1"]
    assert [len(c.lrs) for c in result.curves] == [200, 200] and len(result.tracked) == 1


def test_hint_and_summary_wording():
    config = SchedulerConfig(sch.StepLR(_opt(), 30), "epoch")
    assert hint([config], 200, 20, 10) == (
        "the scheduler is stepped once per epoch over 10 epochs (interval='epoch'); step_size look chosen for "
        "another data set or run length: scale them to this run (200 steps, 20 per epoch)"
    )
    warm = [0.01 * (i + 1) for i in range(10)] + [0.1] * 90
    assert summary(analyse_lr(warm)) == "warms up to 0.1 by step 9, ends at 1 of its peak (100 steps)"


def test_cross_check_points_at_step_200_and_the_second_epoch():
    (result, _, _) = _audit(lambda o: sch.StepLR(o, 1000), plan=RunPlan(50, -1, 20))
    assert cross_check_points(result.tracked, 20, 0) == [20, 200]
    assert cross_check_points(result.tracked, 20, 30) == [10, 200]  # resumed mid-epoch
    assert cross_check_points(result.tracked, math.inf, 0) == [200]
    assert cross_check_points([], 20, 0) == []


@pytest.mark.parametrize(
    ("extra_steps", "expected"),
    [
        (0, None),  # the clean twin: stepped as configured
        (1, ("warn", "stepped more often than configured (a manual .step() in training_step?)")),
        (-5, ("warn", "stepped less often than configured")),
    ],
)
def test_cross_check_counts_the_scheduler_steps(extra_steps, expected):
    result, _, config = _audit(lambda o: sch.StepLR(o, step_size=1, gamma=0.9))
    index = 10
    for _ in range(index + extra_steps):
        config.scheduler.step()
    verdict = cross_check(result.tracked, index, {id(config.scheduler)}, global_step=index)
    if expected is None:
        assert verdict is None
        return
    status, message, numbers = verdict
    assert status == expected[0] and expected[1] in message
    assert message.startswith("the real LR (") and "at step 10" in message
    assert numbers["scheduler_steps"] == [index + extra_steps] and numbers["configured_scheduler_steps"] == [
        10
    ]


def test_cross_check_names_another_lr_writer_and_ignores_replaced_schedulers():
    result, opt, config = _audit(lambda o: sch.StepLR(o, 1000))
    for _ in range(3):
        config.scheduler.step()  # as configured ...
    opt.param_groups[0]["lr"] = (
        0.05  # ... but a callback or an optimizer_step override sets the LR  # a callback or an optimizer_step override sets the LR
    )
    assert cross_check(result.tracked, 3, set()) is None  # the scheduler was replaced (SWA)
    status, message, _ = cross_check(result.tracked, 3, {id(config.scheduler)}, manual=True)
    assert status == "skipped" and "at batch 3, though the scheduler was stepped as configured" in message


@pytest.mark.parametrize(
    ("name", "sense"),
    [
        ("val_acc", "max"),
        ("val/accuracy", "max"),
        ("valAccuracy", "max"),
        ("val_f1", "max"),
        ("val_auroc", "max"),
        ("train_loss", "min"),
        ("val/loss_epoch", "min"),
        ("val_mse", "min"),
        ("top1_err", "min"),
        ("val_perplexity", "min"),
        ("val_score", None),
        ("heatmap_l1", None),
        ("acc_loss", None),  # says both
    ],
)
def test_metric_sense_from_its_name(name, sense):
    assert metric_sense(name) == sense
