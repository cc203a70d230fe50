"""Unit tests for lightning_recipe.core.schedules: simulation on copies and the LR-curve reading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as sch

from lightning_recipe.core.schedules import (
    analyse_lr,
    decimate,
    describe_scheduler,
    detached_schedulers,
    is_plateau_scheduler,
    simulate_lr,
)

B, E = 100, 10  # batches per epoch, epochs
T = B * E


def _opt(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.randn(50, 50))], lr=lr, momentum=0.9)


def _verdict(make, interval: str = "step", **kw):
    opt = _opt()
    sched = make(opt)
    sim = simulate_lr([(sched, interval, 1)], opt, batches_per_epoch=B, max_epochs=E, **kw)
    return analyse_lr(sim.lrs[:, 0], sim.total_steps), sim


@pytest.mark.parametrize(
    ("make", "interval", "verdict"),
    [
        (lambda o: sch.StepLR(o, 30, 0.1), "step", "early_decay"),  # ImageNet's step_size per batch
        (lambda o: sch.ExponentialLR(o, 0.9), "step", "early_decay"),
        (lambda o: sch.StepLR(o, 1, 0.1), "epoch", "early_decay"),  # decays 10x every epoch of 10
        (lambda o: sch.CosineAnnealingLR(o, T_max=E), "step", "cycles"),  # T_max=max_epochs per step
        (lambda o: sch.StepLR(o, 30, 0.1), "epoch", "constant"),  # never reaches epoch 30
        (lambda o: sch.CosineAnnealingLR(o, T_max=T), "step", "ok"),
        (lambda o: sch.CosineAnnealingLR(o, T_max=E), "epoch", "ok"),
        (lambda o: sch.OneCycleLR(o, max_lr=0.1, total_steps=T), "step", "ok"),
        (
            lambda o: sch.SequentialLR(
                o, [sch.LinearLR(o, 1e-4, 1.0, 50), sch.CosineAnnealingLR(o, T - 50)], [50]
            ),
            "step",
            "ok",
        ),
        (
            lambda o: sch.ChainedScheduler([sch.LinearLR(o, 0.01, 1.0, 50), sch.ExponentialLR(o, 0.999)]),
            "step",
            "ok",
        ),
        (lambda o: sch.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2), "epoch", "ok"),
        (lambda o: sch.MultiStepLR(o, [3, 6, 8], 0.1), "epoch", "ok"),  # ImageNet's three decays, scaled
        (lambda o: sch.StepLR(o, 7, 0.1), "epoch", "ok"),  # one modest decay at 2/3 of the run
        (lambda o: sch.LambdaLR(o, lambda s: 1 - s / T), "step", "ok"),
        (lambda o: sch.PolynomialLR(o, total_iters=T, power=2.0), "step", "ok"),
        (lambda o: sch.CyclicLR(o, 1e-3, 0.1, step_size_up=200), "step", "ok"),
        (lambda o: sch.ConstantLR(o, 1.0, 1), "step", "constant"),
    ],
)
def test_analyse_lr_verdicts_for_common_schedules(make, interval, verdict):
    report, sim = _verdict(make, interval)
    assert sim.error is None
    assert report.verdict == verdict, report


def test_step_lr_per_batch_reaches_near_zero_at_12_percent():
    report, _ = _verdict(lambda o: sch.StepLR(o, 30, 0.1))
    assert report.first_near_zero_fraction == pytest.approx(0.12)
    assert report.near_zero_fraction == pytest.approx(0.88)
    assert report.min_ratio_reached < 1e-30


def test_warmup_from_zero_is_not_near_zero():
    report, _ = _verdict(lambda o: sch.LinearLR(o, start_factor=1e-6, end_factor=1.0, total_iters=300))
    assert report.verdict == "ok"
    assert report.warmup_steps > 100
    assert report.near_zero_fraction == 0.0


def test_simulation_leaves_the_real_optimizer_and_scheduler_untouched():
    opt = _opt()
    sched = sch.OneCycleLR(opt, max_lr=0.1, total_steps=T)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    param = opt.param_groups[0]["params"][0]
    before = param.detach().clone()
    simulate_lr([(sched, "step", 1)], opt, batches_per_epoch=B, max_epochs=E)
    assert opt.state_dict()["param_groups"] == opt_state["param_groups"]
    assert sched.state_dict() == sched_state
    assert torch.equal(param, before)
    assert sched.optimizer is opt


def test_detached_copy_uses_dummy_parameters_and_empty_state():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.randn(1000, 100))], lr=1e-3)
    opt.param_groups[0]["params"][0].grad = torch.ones(1000, 100)
    opt.step()  # Adam now holds two 100k-element moments
    sched = sch.StepLR(opt, 10)
    (copy_sched,), copy_opt = detached_schedulers([sched], opt)
    assert copy_sched.optimizer is copy_opt and copy_opt is not opt
    assert copy_opt.param_groups[0]["params"][0].numel() == 1
    assert len(copy_opt.state) == 0
    assert len(opt.state) == 1


def test_bound_method_lambda_keeps_its_owner_shared():
    class Owner:
        def factor(self, step: int) -> float:
            return 0.5**step

    owner = Owner()
    opt = _opt()
    sched = sch.LambdaLR(opt, owner.factor)
    (copy_sched,), _ = detached_schedulers([sched], opt, keep=[owner])
    assert copy_sched.lr_lambdas[0].__self__ is owner


def test_one_cycle_too_short_raises_in_the_simulation_not_the_run():
    opt = _opt()
    sched = sch.OneCycleLR(opt, max_lr=0.1, total_steps=T // 2)
    sim = simulate_lr([(sched, "step", 1)], opt, batches_per_epoch=B, max_epochs=E)
    assert sim.error is not None and "Tried to step" in sim.error
    assert sim.error_step == T // 2 + 1  # the 501st optimizer step runs, then step() raises
    assert sched.last_epoch == 0


def test_interval_frequency_and_accumulation_follow_lightning():
    opt = _opt()
    sched = sch.StepLR(opt, 1, 0.5)
    sim = simulate_lr(
        [(sched, "step", 2)], opt, batches_per_epoch=10, max_epochs=1, accumulate_grad_batches=1
    )
    assert sim.scheduler_steps == [5]
    assert sim.lrs[:4, 0].tolist() == [0.1, 0.1, 0.05, 0.05]
    opt = _opt()
    sched = sch.StepLR(opt, 1, 0.5)
    sim = simulate_lr(
        [(sched, "epoch", 1)], opt, batches_per_epoch=10, max_epochs=3, accumulate_grad_batches=2
    )
    assert sim.total_steps == 15 and sim.steps_per_epoch == 5
    assert sim.lrs[:, 0].tolist() == [0.1] * 5 + [0.05] * 5 + [0.025] * 5
    # how often the scheduler was stepped before each optimizer step (compared with the real one's count)
    assert sim.step_counts[:, 0].tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_max_steps_and_truncation():
    opt = _opt()
    sim = simulate_lr(
        [(sch.StepLR(opt, 1), "step", 1)], opt, batches_per_epoch=B, max_epochs=-1, max_steps=250
    )
    assert sim.total_steps == 250 and sim.simulated_steps == 250
    opt = _opt()
    sim = simulate_lr(
        [(sch.StepLR(opt, 1), "step", 1)], opt, batches_per_epoch=B, max_epochs=E, max_simulated_steps=100
    )
    assert sim.truncated and sim.simulated_steps == 100 and sim.total_steps == T


def test_iterable_dataset_steps_only_step_interval():
    opt = _opt()
    sim = simulate_lr([(sch.StepLR(opt, 1, 0.5), "epoch", 1)], opt, batches_per_epoch=math.inf, max_steps=20)
    assert sim.scheduler_steps == [0] and math.isinf(sim.steps_per_epoch)


def test_no_planned_end_raises():
    opt = _opt()
    with pytest.raises(ValueError, match="no planned end"):
        simulate_lr([(sch.StepLR(opt, 1), "step", 1)], opt, batches_per_epoch=B, max_epochs=-1, max_steps=-1)


def test_describe_and_plateau():
    opt = _opt()
    assert describe_scheduler(sch.StepLR(opt, 30, 0.1)) == "StepLR(step_size=30, gamma=0.1)"
    assert describe_scheduler(sch.MultiStepLR(opt, [30, 60])) == "MultiStepLR(milestones=[30, 60], gamma=0.1)"
    seq = sch.SequentialLR(opt, [sch.LinearLR(opt, 0.1, total_iters=5), sch.CosineAnnealingLR(opt, 10)], [5])
    assert describe_scheduler(seq).startswith("SequentialLR(LinearLR(total_iters=5)")
    assert is_plateau_scheduler(sch.ReduceLROnPlateau(opt))
    assert not is_plateau_scheduler(sch.StepLR(opt, 1))


def test_analyse_zero_and_empty():
    assert analyse_lr(np.zeros(10)).verdict == "zero"
    assert analyse_lr([]).verdict == "constant"


def test_decimate_keeps_extremes_and_bounds_size():
    x = np.ones(100_000)
    x[51_234] = 0.0
    idx, vals = decimate(x, 500)
    assert len(idx) <= 502 and vals.min() == 0.0 and idx[-1] == 99_999
    idx, vals = decimate(np.arange(10.0), 500)
    assert idx.tolist() == list(range(10))
