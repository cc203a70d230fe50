"""LRScheduleAudit: real Trainer runs on the digits; each finding from a scripted schedule bug, silent traps."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint, StochasticWeightAveraging
from torch.optim import lr_scheduler as sch

from lightning_recipe import LRScheduleAudit, RecipeCheckError
from tests.helpers import (
    LitModel,
    assert_same_params,
    digits_arrays,
    final_params,
    loader,
    make_trainer,
    mlp,
    png_shape,
    read_events,
)

BATCHES, EPOCHS = 20, 10  # 200 optimizer steps planned
STEPS = BATCHES * EPOCHS


class _StopAtStart(Callback):
    """Ends the run right after the audit (the audit only needs the plan, not the steps)."""

    def on_train_start(self, trainer, pl_module):
        trainer.should_stop = True


class _RecordLR(Callback):
    """The LR the real optimizer uses at every optimizer step, and the schedulers' state at the start."""

    def __init__(self):
        self.lrs: list[float] = []
        self.states: list[dict] = []

    def on_train_start(self, trainer, pl_module):
        self.states.append(
            {
                "scheduler": [pickle.dumps(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs],
                "optimizer": [pickle.dumps(o.state_dict()) for o in trainer.optimizers],
            }
        )

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append(float(optimizer.param_groups[0]["lr"]))


def _model(scheduler=None, interval="step", frequency=1, dropout=0.0, optimizer="sgd", **extra):
    torch.manual_seed(0)
    factory = None
    if scheduler is not None:

        def factory(opt):
            return {"scheduler": scheduler(opt), "interval": interval, "frequency": frequency, **extra}

    return LitModel(mlp(64, 10, dropout=dropout), "ce", lr=0.1, optimizer=optimizer, scheduler=factory)


def _data():
    x, y = digits_arrays()
    return loader(x, y, batch_size=32, shuffle=True)


def _audit(tmp_path, scheduler=None, run=False, audit=None, callbacks=(), **kw):
    audit = audit or LRScheduleAudit()
    trainer_kw = {"max_epochs": EPOCHS, "max_steps": -1, "limit_train_batches": BATCHES}
    trainer_kw.update(
        {k: kw.pop(k) for k in list(kw) if k in ("max_epochs", "max_steps", "accumulate_grad_batches")}
    )
    extra = [] if run else [_StopAtStart()]
    trainer = make_trainer(tmp_path, [*callbacks, audit, *extra], **trainer_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_model(scheduler, **kw), _data())
    return audit, trainer


# ---------------------------------------------------------------------- bugs that must be flagged
def test_imagenet_step_lr_stepped_per_batch_fails(tmp_path):
    audit, trainer = _audit(tmp_path, lambda o: sch.StepLR(o, step_size=30, gamma=0.1))
    (finding,) = audit.findings
    assert finding.status == "fail"
    assert finding.message.startswith(
        "StepLR(step_size=30, gamma=0.1) drives the LR below 0.001x its peak at 60% of training and keeps it "
        "there for 40% of the 200 steps (down to 1e-06x)"
    )
    assert (
        "the scheduler is stepped every optimizer step (interval='step'); if step_size count epochs, set interval='epoch'"
        in finding.message
    )
    assert "(this run has 200, 20 per epoch)" in finding.message
    assert finding.numbers["first_near_zero_fraction"] == pytest.approx(0.6)
    events = read_events(trainer.logger)
    ((step, width, height, png),) = events.images("recipe/lr_schedule/schedule")
    assert step == 0 and png_shape(png)[:2] == (height, width) and width > 500
    lrs = events.scalars("recipe/lr_schedule/simulated_lr")
    assert lrs[0] == (0, pytest.approx(0.1)) and lrs[-1][0] == STEPS - 1 and lrs[-1][1] < 1e-6


def test_epoch_schedule_for_another_data_set_fails(tmp_path):
    # ten-fold decay every epoch: the schedule of a data set with 30x more epochs
    audit, _ = _audit(tmp_path, lambda o: sch.StepLR(o, step_size=1, gamma=0.1), interval="epoch")
    (finding,) = audit.findings
    assert finding.status == "fail"
    assert (
        "stepped once per epoch over 10 epochs (interval='epoch'); step_size look chosen for another data set"
        in finding.message
    )


def test_cosine_with_t_max_in_epochs_stepped_per_batch_warns(tmp_path):
    audit, _ = _audit(tmp_path, lambda o: sch.CosineAnnealingLR(o, T_max=EPOCHS))
    (finding,) = audit.findings
    assert finding.status == "warn"
    assert finding.message.startswith(
        "CosineAnnealingLR(T_max=10, eta_min=0) takes the LR to 0x its peak already at 5.0% of training, and 10 times"
    )
    assert "if T_max count epochs, set interval='epoch'" in finding.message


def test_one_cycle_shorter_than_the_run_fails_before_training(tmp_path):
    audit = LRScheduleAudit(on_fail="raise")
    with pytest.raises(
        RecipeCheckError,
        match=r"OneCycleLR\(total_steps=100\) raises when stepped after optimizer step 101 of 200 .*pass total_steps=trainer.estimated_stepping_batches \(200\)",
    ):
        _audit(tmp_path, lambda o: sch.OneCycleLR(o, max_lr=0.1, total_steps=100), run=True, audit=audit)


def test_one_cycle_longer_than_the_run_warns(tmp_path):
    audit, _ = _audit(tmp_path, lambda o: sch.OneCycleLR(o, max_lr=0.1, total_steps=5 * STEPS))
    (finding,) = audit.findings
    assert finding.status == "warn" and "is stepped only 200 times in this run" in finding.message


# ---------------------------------------------------------------------- traps that must stay silent
@pytest.mark.parametrize(
    ("scheduler", "interval"),
    [
        (
            lambda o: sch.SequentialLR(
                o, [sch.LinearLR(o, 1e-4, 1.0, 20), sch.CosineAnnealingLR(o, STEPS - 20)], [20]
            ),
            "step",
        ),
        (lambda o: sch.OneCycleLR(o, max_lr=0.1, total_steps=STEPS), "step"),
        (lambda o: sch.CosineAnnealingLR(o, T_max=EPOCHS), "epoch"),
        (lambda o: sch.StepLR(o, step_size=7, gamma=0.1), "epoch"),  # modest decay at 2/3 of the run
        (lambda o: sch.MultiStepLR(o, [3, 6, 8], gamma=0.1), "epoch"),  # ImageNet's recipe, scaled
        (lambda o: sch.LambdaLR(o, lambda s: min(1.0, (s + 1) / 50)), "step"),  # warm-up, then constant
    ],
)
def test_healthy_schedules_pass(tmp_path, scheduler, interval):
    audit, _ = _audit(tmp_path, scheduler, interval=interval)
    assert [f.status for f in audit.findings] == ["pass"], audit.findings


def test_no_scheduler_passes(tmp_path):
    audit, _ = _audit(tmp_path)
    (finding,) = audit.findings
    assert finding.status == "pass" and "no LR scheduler" in finding.message


def test_reduce_on_plateau_is_skipped(tmp_path):
    audit, _ = _audit(tmp_path, lambda o: sch.ReduceLROnPlateau(o), interval="epoch", monitor="train_loss")
    (finding,) = audit.findings
    assert finding.status == "skipped"
    assert (
        finding.message
        == "ReduceLROnPlateau follows 'train_loss': its decays depend on the data and cannot be simulated before training"
    )


def test_unbounded_run_is_skipped(tmp_path):
    audit, _ = _audit(tmp_path, lambda o: sch.StepLR(o, 1), max_epochs=-1, max_steps=-1)
    (finding,) = audit.findings
    assert finding.status == "skipped" and "no planned end" in finding.message


# ---------------------------------------------------------------------- the simulation is the real run
@pytest.mark.parametrize(
    ("scheduler", "interval", "frequency", "accumulate"),
    [
        (lambda o: sch.StepLR(o, step_size=2, gamma=0.5), "epoch", 2, 2),
        (lambda o: sch.OneCycleLR(o, max_lr=0.1, total_steps=STEPS // 2), "step", 1, 2),
        (lambda o: sch.CosineAnnealingWarmRestarts(o, T_0=7), "step", 3, 1),
    ],
)
def test_simulation_matches_the_real_run_and_leaves_it_untouched(
    tmp_path, scheduler, interval, frequency, accumulate
):
    before, after = _RecordLR(), _RecordLR()
    audit = LRScheduleAudit()
    trainer = make_trainer(
        tmp_path,
        [before, audit, after],
        max_epochs=EPOCHS,
        max_steps=-1,
        limit_train_batches=BATCHES,
        accumulate_grad_batches=accumulate,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_model(scheduler, interval=interval, frequency=frequency), _data())
    (simulated,) = audit.simulated.values()
    assert len(simulated) == len(after.lrs) == STEPS // accumulate
    np.testing.assert_allclose(simulated, after.lrs, rtol=1e-12)
    assert before.states == after.states  # the audit changed neither optimizer nor scheduler
    assert [f.status for f in audit.findings] == ["pass"]  # and the cross-check with the real LR is silent

    without = _RecordLR()
    trainer = make_trainer(
        tmp_path / "without",
        [without],
        max_epochs=EPOCHS,
        max_steps=-1,
        limit_train_batches=BATCHES,
        accumulate_grad_batches=accumulate,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_model(scheduler, interval=interval, frequency=frequency), _data())
    assert without.lrs == after.lrs


def test_no_observer_effect(tmp_path):
    def run(callbacks):
        model = _model(lambda o: sch.StepLR(o, step_size=3, gamma=0.5), dropout=0.3, optimizer="adam")
        trainer = make_trainer(tmp_path, callbacks, max_steps=30, logger=False)
        torch.manual_seed(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, _data())
        return final_params(model)

    assert_same_params(run([]), run([LRScheduleAudit()]))


# ---------------------------------------------------------------------- arguments, state, resume, sanity
def test_argument_errors():
    with pytest.raises(
        ValueError, match=r"LRScheduleAudit\(min_ratio=0\): pass a number strictly between 0 and 1"
    ):
        LRScheduleAudit(min_ratio=0)
    with pytest.raises(TypeError, match=r"LRScheduleAudit\(max_near_zero_fraction='1/4'\): pass a number"):
        LRScheduleAudit(max_near_zero_fraction="1/4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"LRScheduleAudit\(max_simulated_steps=0\): pass an integer >= 1"):
        LRScheduleAudit(max_simulated_steps=0)
    with pytest.raises(ValueError, match=r"LRScheduleAudit\(on_fail='ignore'\): unknown value"):
        LRScheduleAudit(on_fail="ignore")  # type: ignore[arg-type]


def test_state_dict_pickle_and_resume_do_not_audit_twice(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=40, save_top_k=-1)
    first = LRScheduleAudit()
    step_lr = lambda o: sch.StepLR(o, step_size=30, gamma=0.1)  # noqa: E731
    trainer = make_trainer(
        tmp_path / "a",
        [first, ckpt],
        max_epochs=EPOCHS,
        limit_train_batches=BATCHES,
        max_steps=-1,
        enable_checkpointing=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_model(step_lr), _data())
    state = pickle.loads(pickle.dumps(first.state_dict()))
    assert state["audited"] is True and state["findings"][0]["status"] == "fail"

    second = LRScheduleAudit(on_fail="raise")  # would raise if it audited again
    trainer = make_trainer(
        tmp_path / "b", [second], max_epochs=EPOCHS, limit_train_batches=BATCHES, max_steps=-1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_model(step_lr), _data(), ckpt_path=str(next((tmp_path / "ckpt").glob("*step=40.ckpt"))))
    assert [f.status for f in second.findings] == ["fail"] and second.simulated == {}
    other = LRScheduleAudit()
    other.load_state_dict(state)
    assert other.state_dict()["audited"] is True


def test_quiet_during_sanity_check(tmp_path):
    x, y = digits_arrays()
    audit = LRScheduleAudit()
    trainer = make_trainer(tmp_path, [audit, _StopAtStart()], max_epochs=2, num_sanity_val_steps=2)
    trainer.fit(_model(lambda o: sch.StepLR(o, 1000)), _data(), loader(x[:64], y[:64]))
    assert len(audit.findings) == 1


@pytest.mark.slow
def test_ddp_every_rank_audits_and_rank_zero_logs(tmp_path):
    audit = LRScheduleAudit()
    trainer = make_trainer(
        tmp_path,
        [audit],
        max_epochs=EPOCHS,
        max_steps=-1,
        limit_train_batches=BATCHES,
        strategy="ddp_fork",
        devices=2,
        accelerator="cpu",
    )
    log_dir = trainer.logger.log_dir
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_model(lambda o: sch.StepLR(o, step_size=5, gamma=0.1)), _data())
    events = read_events(log_dir)
    assert len(events.images("recipe/lr_schedule/schedule")) == 1  # rank zero only
    assert events.scalars("recipe/lr_schedule/simulated_lr")[0][0] == 0


# ---------------------------------------------------------------------- the real LR against the simulation
class _StepsByHand(LitModel):
    """Steps the scheduler inside training_step, on top of Lightning's own stepping (the bug)."""

    def training_step(self, batch, batch_idx):
        self.lr_schedulers().step()
        return super().training_step(batch, batch_idx)


class _Manual(LitModel):
    """Manual optimization: the code steps the scheduler (``per_epoch``, ``per_batch`` or ``never``)."""

    def __init__(self, stepping: str) -> None:
        super().__init__(mlp(64, 10), "ce", lr=0.1, optimizer="sgd")
        self.automatic_optimization = False
        self.stepping = stepping

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = self.loss_fn(self(batch[0]), batch[1])
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        if self.stepping == "per_batch" or (self.stepping == "per_epoch" and self.trainer.is_last_batch):
            self.lr_schedulers().step()
        return loss

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr)
        return {"optimizer": opt, "lr_scheduler": sch.StepLR(opt, step_size=1, gamma=0.5)}  # per epoch


def _run(tmp_path, model, callbacks=(), epochs=3):
    audit = LRScheduleAudit()
    trainer = make_trainer(
        tmp_path,
        [audit, *callbacks],
        max_epochs=epochs,
        max_steps=-1,
        limit_train_batches=BATCHES,
        logger=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, _data())
    return audit


def test_scheduler_stepped_by_hand_in_training_step_is_caught(tmp_path):
    torch.manual_seed(0)
    model = _StepsByHand(
        mlp(64, 10), "ce", lr=0.1, optimizer="sgd", scheduler=lambda o: sch.StepLR(o, step_size=2, gamma=0.1)
    )  # interval="epoch" (Lightning's default), and stepped every batch by hand as well
    audit = _run(tmp_path, model)
    # as configured the schedule is fine; as run it is not
    assert [f.status for f in audit.findings] == ["pass", "warn"]
    message = audit.findings[1].message
    assert message.startswith(
        f"the real LR ({0.1 * 0.1**10:.6g}) differs from the configured schedule (0.1) at step 20"
    )
    assert (
        "the scheduler is stepped more often than configured (a manual .step() in training_step?)" in message
    )
    assert "was stepped 21 times, the configuration steps it 1" in message
    assert audit.findings[1].numbers["scheduler_steps"] == [21]


@pytest.mark.parametrize(
    ("scheduler", "interval", "callbacks"),
    [
        (lambda o: sch.StepLR(o, step_size=2, gamma=0.1), "epoch", ()),
        (
            lambda o: sch.SequentialLR(
                o, [sch.LinearLR(o, 1e-3, 1.0, 15), sch.CosineAnnealingLR(o, 45)], [15]
            ),
            "step",
            (),
        ),
        (lambda o: sch.LambdaLR(o, lambda s: min(1.0, (s + 1) / 30)), "step", ()),  # warm-up
        (lambda o: sch.OneCycleLR(o, max_lr=0.1, total_steps=3 * BATCHES), "step", ()),
        (lambda o: sch.ReduceLROnPlateau(o), "epoch", ()),  # not simulated: no cross-check
        (
            lambda o: sch.StepLR(o, step_size=1, gamma=0.5),
            "epoch",
            (StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=1),),  # replaces the scheduler
        ),
    ],
)
def test_real_lr_matches_the_simulation_on_healthy_runs(tmp_path, scheduler, interval, callbacks):
    audit = _run(tmp_path, _model(scheduler, interval=interval, monitor="train_loss"), callbacks)
    assert [f.status for f in audit.findings] in (["pass"], ["skipped"]), [str(f) for f in audit.findings]
    assert not any("real LR" in f.message for f in audit.findings)


def test_manual_optimization_is_audited_as_configured_and_cross_checked(tmp_path):
    audit = _run(tmp_path / "ok", _Manual("per_epoch"))
    assert [f.status for f in audit.findings] == ["pass"]
    assert "simulated as configured" in audit.findings[0].message
    assert audit.findings[0].numbers["manual_optimization"] is True

    audit = _run(tmp_path / "batch", _Manual("per_batch"))
    assert [f.status for f in audit.findings] == ["pass", "warn"]
    assert "at batch 20: the scheduler is stepped more often than configured" in audit.findings[1].message
    assert "make interval=/frequency= in configure_optimizers say how your training_step steps it" in (
        audit.findings[1].message
    )

    audit = _run(tmp_path / "never", _Manual("never"))
    assert [f.status for f in audit.findings] == ["pass", "warn"]
    assert (
        "the scheduler is stepped less often than configured: StepLR(step_size=1, gamma=0.5) was stepped 0 times"
        in (audit.findings[1].message)
    )
    assert "call self.lr_schedulers().step() in training_step" in audit.findings[1].message


def test_pickled_audit_leaves_the_live_optimizer_behind(tmp_path):
    audit = LRScheduleAudit()
    trainer = make_trainer(
        tmp_path, [audit], max_epochs=2, max_steps=-1, limit_train_batches=BATCHES, logger=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_model(lambda o: sch.StepLR(o, 1000), interval="step"), _data())
    copy = pickle.loads(pickle.dumps(audit))
    assert copy._tracked == [] and copy._next_check is None and copy.findings == audit.findings


# ---------------------------------------------------------------------- ReduceLROnPlateau's mode
def test_plateau_with_mode_min_on_an_accuracy_fails(tmp_path):
    audit, _ = _audit(
        tmp_path,
        lambda o: sch.ReduceLROnPlateau(o, mode="min", patience=2),
        interval="epoch",
        monitor="val_acc",
    )
    (finding,) = audit.findings
    assert finding.status == "fail"
    assert finding.message.startswith(
        "ReduceLROnPlateau(mode='min') follows 'val_acc', but its name says higher is better: it counts "
        "every improvement as no improvement and cuts the LR every patience + 1 = 3 epochs (x0.1 each time)"
    )
    assert finding.message.endswith("pass mode='max'")
    assert finding.numbers == {"monitor": "val_acc", "mode": "min", "expected_mode": "max"}


def test_plateau_with_the_right_mode_is_only_skipped(tmp_path):
    for mode, monitor in (("max", "val_acc"), ("min", "val_loss"), ("min", "val_score")):
        audit, _ = _audit(
            tmp_path, lambda o, m=mode: sch.ReduceLROnPlateau(o, mode=m), interval="epoch", monitor=monitor
        )
        assert [f.status for f in audit.findings] == ["skipped"], (mode, monitor, audit.findings)


def test_plateau_mode_against_early_stopping_on_the_same_metric(tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping

    # a name that says nothing: the other callback's mode on the same metric decides
    stop = LightningEarlyStopping(monitor="val_score", mode="max")
    audit, _ = _audit(
        tmp_path,
        lambda o: sch.ReduceLROnPlateau(o, mode="min"),
        interval="epoch",
        monitor="val_score",
        callbacks=[stop],
    )
    (finding,) = audit.findings
    assert finding.status == "fail" and "EarlyStopping follows it with mode='max'" in finding.message
    twin = LightningEarlyStopping(monitor="val_score", mode="min")
    audit, _ = _audit(
        tmp_path / "twin",
        lambda o: sch.ReduceLROnPlateau(o, mode="min"),
        interval="epoch",
        monitor="val_score",
        callbacks=[twin],
    )
    assert [f.status for f in audit.findings] == ["skipped"]
