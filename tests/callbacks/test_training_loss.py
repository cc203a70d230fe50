"""TrainingLossCheck: real Trainer runs on scikit-learn data; each finding from a scripted bug, silent twins."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_recipe import RecipeCheckError, TrainingLossCheck
from tests.helpers import (
    LitModel,
    assert_same_params,
    diabetes_arrays,
    digits_arrays,
    final_params,
    loader,
    make_trainer,
    mlp,
    read_events,
    small_cnn,
)


def _digits(lr: float = 1e-2, optimizer: str = "adam", scheduler=None, dropout: float = 0.0) -> LitModel:
    torch.manual_seed(0)
    return LitModel(mlp(64, 10, dropout=dropout), loss="ce", lr=lr, optimizer=optimizer, scheduler=scheduler)


def _digits_loader(**kw):
    x, y = digits_arrays()
    return loader(x, y, batch_size=32, shuffle=True, **kw)


def _diabetes(bias: float | None, lr: float = 3e-3) -> LitModel:
    torch.manual_seed(0)
    net = mlp(10, 1)
    if bias is not None:
        with torch.no_grad():
            net[-1].bias.fill_(bias)  # what FinalBiasInit does: the target mean
    return LitModel(net, loss="mse", lr=lr, optimizer="sgd")


def _diabetes_loader():
    x, y = diabetes_arrays()
    return loader(x, y, batch_size=32, shuffle=True)


def _fit(tmp_path, model, data, check, **kw):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [check], **{"max_steps": 120, **kw})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, data)
    return trainer


def _statuses(check):
    return [(f.status, f.message) for f in check.findings]


# ---------------------------------------------------------------------- flat
def test_frozen_model_is_flagged_not_falling(tmp_path):
    check = TrainingLossCheck()
    _fit(tmp_path, _digits(lr=0.0, optimizer="sgd"), _digits_loader(), check)
    (finding,) = check.findings
    assert finding.status == "warn"
    assert finding.message.startswith("the training loss is not falling: over the first 100 steps")
    assert "check that the LR is not 0" in finding.message
    assert abs(finding.numbers["trend_z"]) < 3


def test_healthy_digits_training_passes(tmp_path):
    check = TrainingLossCheck()
    trainer = _fit(tmp_path, _digits(), _digits_loader(), check)
    (finding,) = check.findings
    assert finding.status == "pass" and finding.message.startswith("the training loss decreases")
    events = read_events(trainer.logger)
    smoothed = events.scalars("recipe/training_loss/smoothed")
    assert [s for s, _ in smoothed] == list(range(9, 120, 10))
    assert smoothed[-1][1] < smoothed[0][1] / 3
    (z,) = events.scalars("recipe/training_loss/trend_z")
    assert z[0] == 99 and z[1] < -3


# ---------------------------------------------------------------------- non-finite, rising
def test_lr_far_too_high_gives_non_finite_fail(tmp_path):
    check = TrainingLossCheck()
    _fit(tmp_path, _diabetes(bias=None, lr=1e-2), _diabetes_loader(), check, max_steps=30)
    (finding,) = check.findings
    assert finding.status == "fail"
    assert (
        "the training loss became inf at step" in finding.message
        and "lower the learning rate" in finding.message
    )


def test_non_finite_raises_under_on_fail_raise(tmp_path):
    check = TrainingLossCheck(on_fail="raise")
    with pytest.raises(RecipeCheckError, match=r"TrainingLossCheck: the training loss became (inf|nan)"):
        _fit(tmp_path, _diabetes(bias=None, lr=1e-2), _diabetes_loader(), check, max_steps=30)


def test_loss_rising_after_progress_is_flagged(tmp_path):
    def growing_lr(opt):  # the LR grows 8% per step: fine at first, far too high later
        return {"scheduler": torch.optim.lr_scheduler.ExponentialLR(opt, 1.08), "interval": "step"}

    check = TrainingLossCheck()
    _fit(tmp_path, _digits(lr=1e-3, scheduler=growing_lr), _digits_loader(), check, max_steps=150)
    kinds = [f.message.split(":")[0] for f in check.findings if f.is_problem]
    assert kinds and kinds[0] in ("the training loss is rising", "the training loss became nan")
    assert any("lower the learning rate" in f.message for f in check.findings)


def test_too_high_sgd_lr_on_digits_is_flagged_above_start(tmp_path):
    check = TrainingLossCheck()
    torch.manual_seed(0)  # the model's init decides which of the two warnings a diverging run gets
    _fit(
        tmp_path,
        LitModel(small_cnn(), "ce", lr=10.0, optimizer="sgd"),
        _digits_loader(),
        check,
        max_steps=100,
    )
    (finding,) = check.findings
    assert finding.status == "warn" and "above the" in finding.message and "too high" in finding.message


# ---------------------------------------------------------------------- hockey stick
def test_zero_bias_regression_is_a_hockey_stick_and_its_twin_is_not(tmp_path):
    bad = TrainingLossCheck()
    _fit(tmp_path / "bad", _diabetes(bias=None), _diabetes_loader(), bad)
    (finding,) = bad.findings
    assert finding.status == "warn" and finding.message.startswith("hockey-stick loss curve")
    assert "FinalBiasInit" in finding.message and finding.numbers["early_drop"] >= 4

    good = TrainingLossCheck()
    _fit(tmp_path / "good", _diabetes(bias=float(diabetes_arrays()[1].mean())), _diabetes_loader(), good)
    assert [f.status for f in good.findings] == ["pass"]


# ---------------------------------------------------------------------- loss sources
class _DictModel(LitModel):
    def training_step(self, batch, batch_idx):
        return {"loss": super().training_step(batch, batch_idx), "extra": torch.tensor(1.0)}


def test_dict_output_and_accumulation_read_the_unscaled_loss(tmp_path):
    check = TrainingLossCheck(window=4, check_after_steps=1000)
    model = _DictModel(mlp(64, 10), "ce", lr=0.0)
    _fit(tmp_path, model, _digits_loader(), check, max_steps=10, accumulate_grad_batches=2)
    assert check.tracker.count == 20
    assert check.tracker.windows[0][1] == pytest.approx(float(np.median(model.train_losses[:4])), rel=1e-5)


class _ManualModel(LitModel):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = self.loss_fn(self(batch[0]), batch[1])
        self.log("my_loss", loss)
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.train_losses.append(float(loss.detach()))


def test_monitor_reads_a_logged_metric(tmp_path):
    check = TrainingLossCheck(monitor="my_loss", check_after_steps=60)
    model = _ManualModel(mlp(64, 10), "ce", lr=1e-2)
    _fit(tmp_path, model, _digits_loader(), check, max_steps=60)
    assert [f.status for f in check.findings] == ["pass"]
    assert check.tracker.windows[0][1] == pytest.approx(float(np.median(model.train_losses[:10])), rel=1e-5)


def test_no_loss_anywhere_is_skipped(tmp_path):
    check = TrainingLossCheck()

    class Silent(_ManualModel):
        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            loss = self.loss_fn(self(batch[0]), batch[1])
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    _fit(tmp_path, Silent(mlp(64, 10), "ce"), _digits_loader(), check, max_steps=20)
    (finding,) = check.findings
    assert finding.status == "skipped" and "pass monitor=" in finding.message


def test_short_run_is_skipped(tmp_path):
    check = TrainingLossCheck()
    _fit(tmp_path, _digits(), _digits_loader(), check, max_steps=5)
    (finding,) = check.findings
    assert finding.status == "skipped" and "only 5 training losses" in finding.message


# ---------------------------------------------------------------------- errors
def test_argument_errors():
    with pytest.raises(TypeError, match=r"TrainingLossCheck\(monitor=3\): pass the name of a logged metric"):
        TrainingLossCheck(monitor=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"TrainingLossCheck\(window=2\): pass an integer >= 3"):
        TrainingLossCheck(window=2)
    with pytest.raises(ValueError, match=r"TrainingLossCheck\(check_after_steps=5\): pass an integer >= 12"):
        TrainingLossCheck(check_after_steps=5)
    with pytest.raises(ValueError, match=r"TrainingLossCheck\(on_fail='stop'\): unknown value"):
        TrainingLossCheck(on_fail="stop")  # type: ignore[arg-type]


def test_unknown_monitor_raises_with_the_logged_names(tmp_path):
    check = TrainingLossCheck(monitor="train_los")
    with pytest.raises(ValueError, match=r"monitor='train_los'\): no such logged metric; .*'train_loss'"):
        _fit(tmp_path, _digits(), _digits_loader(), check, max_steps=3)


# ---------------------------------------------------------------------- state, resume, observer effect
def test_state_dict_and_pickle_round_trip(tmp_path):
    check = TrainingLossCheck(window=10, check_after_steps=100)
    _fit(tmp_path, _digits(), _digits_loader(), check, max_steps=55)
    state = pickle.loads(pickle.dumps(check.state_dict()))
    other = TrainingLossCheck(window=10, check_after_steps=100)
    other.load_state_dict(state)
    assert other.state_dict() == check.state_dict()
    assert other.tracker.count == 55


def test_resume_keeps_the_window_and_progress(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=65, save_top_k=-1)
    first = TrainingLossCheck()
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path / "a", [first, ckpt], max_steps=65, enable_checkpointing=True)
    trainer.fit(_digits(lr=0.0, optimizer="sgd"), _digits_loader())
    assert (
        first.findings[0].numbers["steps"] == 65
    )  # a run ending before check_after_steps is judged at its end
    path = next((tmp_path / "ckpt").glob("*.ckpt"))
    second = TrainingLossCheck()
    trainer = make_trainer(tmp_path / "b", [second], max_steps=120)
    trainer.fit(_digits(lr=0.0, optimizer="sgd"), _digits_loader(), ckpt_path=str(path))
    assert second.tracker.count == 120  # the 65 losses before the checkpoint were kept
    (finding,) = second.findings
    assert finding.status == "warn" and "over the first 100 steps" in finding.message


def test_no_observer_effect(tmp_path):
    def run(callbacks):
        torch.manual_seed(0)
        model = _digits(dropout=0.3)
        trainer = make_trainer(tmp_path, callbacks, max_steps=30, logger=False)
        torch.manual_seed(1)
        trainer.fit(model, _digits_loader())
        return final_params(model)

    assert_same_params(run([]), run([TrainingLossCheck(window=5, check_after_steps=20)]))


def test_quiet_during_sanity_check(tmp_path):
    x, y = digits_arrays()
    check = TrainingLossCheck(window=5, check_after_steps=20)
    trainer = make_trainer(tmp_path, [check], max_steps=20, num_sanity_val_steps=2)
    trainer.fit(_digits(), _digits_loader(), loader(x[:64], y[:64]))
    assert check.tracker.count == 20
    assert read_events(trainer.logger).scalars("recipe/training_loss/smoothed")[0][0] == 4


@pytest.mark.slow
def test_ddp_ranks_judge_the_reduced_loss(tmp_path):
    check = TrainingLossCheck(window=5, check_after_steps=20, on_fail="raise")
    trainer = make_trainer(tmp_path, [check], max_steps=25, strategy="ddp_fork", devices=2, accelerator="cpu")
    log_dir = trainer.logger.log_dir
    trainer.fit(_digits(), _digits_loader())
    smoothed = read_events(log_dir).scalars("recipe/training_loss/smoothed")
    assert [s for s, _ in smoothed] == [4, 9, 14, 19, 24]


# ---------------------------------------------------------------------- unusual training steps never crash it
class _TwoOptimizerModel(LitModel):
    """Manual optimization with two optimizers (a GAN-like alternation); returns ``returns`` (a callable)."""

    def __init__(self, returns, log_as: str | None = None, lr: float = 1e-2):
        super().__init__(mlp(64, 10), "ce", lr=lr)
        self.automatic_optimization = False
        self.returns, self.log_as = returns, log_as

    def training_step(self, batch, batch_idx):
        opt_a, opt_b = self.optimizers()
        loss = self.loss_fn(self(batch[0]), batch[1])
        opt = opt_a if batch_idx % 2 == 0 else opt_b
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.train_losses.append(float(loss.detach()))
        if self.log_as:
            self.log(self.log_as, loss)
        return self.returns(loss)

    def configure_optimizers(self):
        head = list(self.net[-1].parameters())
        body = [p for p in self.net.parameters() if all(p is not q for q in head)]
        return [torch.optim.Adam(body, self.lr), torch.optim.Adam(head, self.lr)]


@pytest.mark.parametrize(
    ("returns", "log_as", "source"),
    [
        (
            lambda loss: {"d_loss": loss, "g_loss": loss * 2},
            None,
            None,
        ),  # a dict without "loss", nothing logged
        (lambda loss: None, None, None),  # returns nothing, logs nothing
        (lambda loss: loss.detach().repeat(3), None, None),  # a vector, not one loss
        (lambda loss: {"d_loss": loss}, "train_loss", "metric 'train_loss'"),  # a dict without "loss", logged
        (lambda loss: None, "train_loss", "metric 'train_loss'"),
    ],
)
def test_unusual_outputs_are_read_or_skipped_never_a_crash(tmp_path, returns, log_as, source):
    check = TrainingLossCheck(window=4, check_after_steps=32)
    model = _TwoOptimizerModel(returns, log_as)
    trainer = _fit(tmp_path, model, _digits_loader(), check, max_steps=40)
    assert trainer.global_step == 40
    if source is None:
        (finding,) = check.findings
        assert finding.status == "skipped" and "found no training loss" in finding.message
        assert "return the loss or pass monitor=" in finding.message
    else:
        assert check.findings[-1].status == "pass" and check.findings[-1].numbers["source"] == source
        assert check.tracker.windows[0][1] == pytest.approx(
            float(np.median(model.train_losses[:4])), rel=1e-5
        )


def test_non_finite_is_caught_from_a_logged_metric_and_from_a_dict(tmp_path):
    class Exploding(_TwoOptimizerModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            if batch_idx >= 7:
                self.log("train_loss", torch.tensor(float("nan")))
            return out

    check = TrainingLossCheck(window=4)
    _fit(
        tmp_path / "metric", Exploding(lambda loss: None, "train_loss"), _digits_loader(), check, max_steps=20
    )
    (finding,) = check.findings
    assert finding.status == "fail" and "the training loss became nan at step 7" in finding.message
    assert finding.numbers["source"] == "metric 'train_loss'"

    check = TrainingLossCheck(window=4)
    bad = _TwoOptimizerModel(
        lambda loss: {"loss": loss + float("inf") if len(bad.train_losses) > 5 else loss}
    )
    _fit(tmp_path / "dict", bad, _digits_loader(), check, max_steps=20)
    (finding,) = check.findings
    assert finding.status == "fail" and "the training loss became inf at step 5" in finding.message


class _SkipsBatches(LitModel):
    """Automatic optimization that skips every third batch by returning None (before logging anything:
    the logged ``train_loss`` is then the previous batch's)."""

    def training_step(self, batch, batch_idx):
        if batch_idx % 3 == 2:
            return None
        return super().training_step(batch, batch_idx)


def test_skipped_batches_are_not_read_from_a_stale_metric(tmp_path):
    check = TrainingLossCheck(window=4, check_after_steps=12)
    model = _SkipsBatches(mlp(64, 10), "ce")
    _fit(tmp_path, model, _digits_loader(), check, max_steps=30)
    kept = model.train_losses  # the losses of the batches that returned one
    assert check.tracker.count == len(kept)
    # the first window holds batches 0-3, of which 0, 1 and 3 returned a loss
    assert check.tracker.windows[0][1] == pytest.approx(float(np.median(kept[:3])), rel=1e-5)
