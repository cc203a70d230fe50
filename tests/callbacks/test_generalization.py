"""GeneralizationCheck in real Trainer runs: scripted losses drive the verdicts; a real run overfits."""

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.nn import functional as F

from lightning_recipe import DumbBaselines, EarlyStopping, GeneralizationCheck
from lightning_recipe.core.errors import ArgumentError
from tests.core.test_generalization import curves
from tests.helpers import (
    DumpFindings,
    LitModel,
    assert_same_params,
    digits_arrays,
    final_params,
    loader,
    make_trainer,
    mlp,
    read_events,
    read_rank_findings,
)


class Scripted(LightningModule):
    """A real classifier whose *logged* losses are scripted per epoch (the verdicts depend on them only)."""

    def __init__(self, train, val, names=("train_loss", "val_loss"), dropout=0.0):
        super().__init__()
        self.net = mlp(64, 10, hidden=8, dropout=dropout)
        self.train_curve, self.val_curve = list(train), list(val)
        self.names = names

    def _at(self, curve):
        return float(curve[min(self.current_epoch, len(curve) - 1)])

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.log(self.names[0], self._at(self.train_curve))
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        if self.names[1]:
            self.log(self.names[1], self._at(self.val_curve))

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=0.01)


def _data(n=64):
    x, y = digits_arrays()
    return loader(x[:n], y[:n], batch_size=64, shuffle=True), loader(
        x[1000:1064], y[1000:1064], batch_size=64
    )


def _fit(tmp_path, model, callbacks, epochs, **kwargs):
    kwargs.setdefault("max_steps", -1)
    trainer = make_trainer(tmp_path, callbacks, max_epochs=epochs, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, *_data())
    return trainer


def _no_crash(check):
    assert not [f for f in check.findings if "could not run" in f.message]


def test_names_overfitting_on_a_run_that_memorises_noisy_labels(tmp_path):
    x, y = digits_arrays()
    noisy = y[:64].copy()
    rng = np.random.default_rng(0)
    flip = rng.choice(64, 32, replace=False)
    noisy[flip] = rng.integers(0, 10, 32)
    torch.manual_seed(0)
    check = GeneralizationCheck()
    trainer = make_trainer(tmp_path, [check], max_steps=-1, max_epochs=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(
            LitModel(mlp(64, 10, hidden=256), lr=1e-2),
            loader(x[:64], noisy, batch_size=64, shuffle=True),
            loader(x[1000:1300], y[1000:1300], batch_size=300),
        )
    _no_crash(check)
    verdict = check.findings[0]
    assert (check.stage, verdict.status) == ("overfitting", "warn")
    assert verdict.numbers["rise_fraction"] > 0.25  # the threshold is 5%
    for expected in (
        "more data (64 training samples)",
        "inputs 1x8x8 = 64 values per sample",
        "no dropout in the model",
        "weight_decay=0 in Adam",
        "no EarlyStopping attached",
    ):
        assert expected in verdict.message
    events = read_events(trainer.logger)
    gaps = events.scalars("recipe/generalization/gap")
    assert len(gaps) == 20 and gaps[-1][1] > gaps[0][1]
    assert events.has_image("recipe/generalization/curves")
    [(_, text)] = events.texts("recipe/generalization/verdict")
    assert text.startswith("**overfitting** (warn)") and "1. more data (64 training samples)" in text


def test_healthy_scripted_run_passes_and_says_leave_it_training_when_max_epochs_ends_it(tmp_path):
    _x, _e, t, v = curves("improving", n=12)
    check = GeneralizationCheck(baseline=2.3)
    trainer = _fit(tmp_path, Scripted(t, v), [check], 12)
    _no_crash(check)
    assert [f.status for f in check.findings] == [
        "pass",
        "pass",
    ]  # advice: a healthy run cut short is no fault
    assert check.stage == "healthy"
    assert check.findings[1].message.startswith(
        "max_epochs=12 ended the run while val_loss was still improving ~"
    )
    assert check.history["epoch"] == list(range(12)) and check.history["x"] == [
        float(i + 1) for i in range(12)
    ]
    assert check.history["val"] == pytest.approx(v, rel=1e-6) and check.history["train"] == pytest.approx(
        t, rel=1e-6
    )
    assert trainer.current_epoch == 12


def test_max_steps_and_a_plateau_pass_quietly(tmp_path):
    _x, _e, t, v = curves("plateau", n=12)
    check = GeneralizationCheck()
    _fit(tmp_path, Scripted(t, v), [check], epochs=-1, max_steps=12)
    assert [f.status for f in check.findings] == ["pass", "pass"] and check.stage == "healthy"
    assert check.findings[1].message.startswith("max_steps=12 ended the run after val_loss levelled off")


def test_underfitting_against_dumb_baselines_the_loss_at_init_or_a_given_baseline(tmp_path):
    _x, _e, t, v = curves("underfit", n=6)
    t, v = t / 2.3 * 2.2, v / 2.3 * 2.2  # 70-80% of ln 10, the class-prior loss on the digits
    dumb = DumbBaselines(monitor="val_loss")
    check = GeneralizationCheck()
    _fit(tmp_path / "dumb", Scripted(t, v), [dumb, check], 6)
    assert check.stage == "underfitting" and check.findings[0].status == "warn"
    assert "of the class-prior predictor's 2.3" in check.findings[0].message
    assert "get a bigger model first" in check.findings[0].message
    # no DumbBaselines: the loss at init (the first logged training loss) is the reference
    check = GeneralizationCheck()
    _fit(tmp_path / "init", Scripted([2.3, *t[1:]], v), [check], 6)
    assert check.stage == "underfitting" and "of the loss at init's 2.3" in check.findings[0].message
    # a baseline far above: healthy
    check = GeneralizationCheck(baseline=50.0)
    _fit(tmp_path / "given", Scripted(t, v), [check], 6)
    assert check.stage == "healthy"


def test_early_stopping_on_noise_is_a_warning_and_on_overfitting_with_restored_weights_a_pass(tmp_path):
    xs = np.arange(1.0, 16.0)
    rng = np.random.default_rng(0)
    v = 1.0 - 0.03 * xs + rng.normal(0, 0.004, xs.size)
    v[11] -= 0.15
    check, stop = GeneralizationCheck(), EarlyStopping(monitor="val_loss", patience=3)
    _fit(tmp_path / "noise", Scripted(v - 0.1, v), [check, stop], 30)
    assert stop.stopped_epoch == 14
    assert (check.findings[1].status, "on noise") == ("warn", "on noise") and "on noise" in check.findings[
        1
    ].message

    _x, _e, t, v = curves("overfit")
    check, stop = (
        GeneralizationCheck(),
        EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True),
    )
    _fit(tmp_path / "overfit", Scripted(t, v), [check, stop], 30)
    assert check.stage == "overfitting" and check.findings[0].status == "pass"
    assert f"restored the weights of epoch {stop.best_epoch}" in check.findings[0].message
    assert (
        "early stopping (EarlyStopping(patience=5) attached, best weights restored)"
        in check.findings[0].message
    )
    assert "as val_loss turned up" in check.findings[1].message


def test_infers_other_metric_names_and_says_what_to_pass_when_there_is_no_validation_loss(tmp_path):
    _x, _e, t, v = curves("healthy", n=6)
    check = GeneralizationCheck(log_figure=False)
    _fit(tmp_path / "names", Scripted(t, v, names=("training_loss", "valid_loss")), [check], 6)
    assert check.stage == "healthy" and "valid_loss" in check.findings[0].message
    assert "training_loss" in check.findings[0].message

    check = GeneralizationCheck()
    _fit(tmp_path / "none", Scripted(t, v, names=("train_loss", None)), [check], 3)
    [finding] = check.findings
    assert finding.status == "skipped" and "found no validation loss" in finding.message
    assert "pass `monitor=` one of ['train_loss']" in finding.message

    with pytest.raises(
        ArgumentError, match=r"GeneralizationCheck\(monitor='val_los'\): no such logged metric"
    ):
        _fit(tmp_path / "typo", Scripted(t, v), [GeneralizationCheck(monitor="val_los")], 2)


def test_too_short_a_run_is_skipped(tmp_path):
    check = GeneralizationCheck()
    _fit(tmp_path, Scripted([1.0], [1.0]), [check], 3)
    [finding] = check.findings
    assert finding.status == "skipped" and "only 3 validations" in finding.message


def test_bad_arguments_name_the_argument_and_what_to_pass():
    with pytest.raises(TypeError, match=r"GeneralizationCheck\(monitor=3\): pass the name of a logged loss"):
        GeneralizationCheck(monitor=3)
    with pytest.raises(ValueError, match=r"GeneralizationCheck\(baseline=-1.0\): pass a positive loss value"):
        GeneralizationCheck(baseline=-1.0)
    with pytest.raises(
        ValueError, match=r"GeneralizationCheck\(min_rise=5\): pass a fraction between 0 and 1"
    ):
        GeneralizationCheck(min_rise=5)
    with pytest.raises(ValueError, match=r"GeneralizationCheck\(on_fail='stop'\)"):
        GeneralizationCheck(on_fail="stop")


def test_state_round_trip_and_resume_keep_the_history(tmp_path):
    _x, _e, t, v = curves("healthy", n=8)
    check = GeneralizationCheck(log_figure=False)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = make_trainer(tmp_path, [check, ckpt], max_steps=-1, max_epochs=4, enable_checkpointing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Scripted(t, v), *_data())
    state = check.state_dict()
    clone = pickle.loads(pickle.dumps(check))
    clone.load_state_dict(state)
    assert clone.history == check.history and len(state["history"]["val"]) == 4

    resumed = GeneralizationCheck(log_figure=False)
    trainer = make_trainer(tmp_path, [resumed], max_steps=-1, max_epochs=8, enable_checkpointing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Scripted(t, v), *_data(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.history["epoch"] == list(range(8))
    assert resumed.history["val"] == pytest.approx(v, rel=1e-6)
    assert resumed.stage == "healthy"


def test_does_not_change_training_and_stays_quiet_in_the_sanity_check(tmp_path):
    _x, _e, t, v = curves("healthy", n=4)
    runs = []
    for i, callbacks in enumerate(([], [GeneralizationCheck()])):
        torch.manual_seed(0)
        model = Scripted(t, v, dropout=0.5)
        torch.manual_seed(1)
        _fit(tmp_path / str(i), model, callbacks, 4, num_sanity_val_steps=1)
        runs.append((final_params(model), callbacks))
    assert_same_params(runs[0][0], runs[1][0])
    check = runs[1][1][0]
    assert len(check.history["val"]) == 4  # the sanity check's validation is not one of them


@pytest.mark.slow
def test_two_process_ddp_takes_the_same_verdicts_on_both_ranks(tmp_path):
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    _x, _e, t, v = curves("overfit", n=14)
    check = GeneralizationCheck()
    trainer = make_trainer(
        tmp_path,
        [check, DumpFindings(tmp_path, check)],
        max_steps=-1,
        max_epochs=14,
        devices=2,
        strategy=DDPStrategy(start_method="fork", timeout=timedelta(seconds=60)),
    )
    log_dir = trainer.logger.log_dir
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Scripted(t, v), *_data())
    ranks = read_rank_findings(tmp_path)
    assert [(f["status"], f["message"]) for f in ranks[0]] == [(f["status"], f["message"]) for f in ranks[1]]
    assert ranks[0][0]["message"].startswith("overfitting from epoch")
    events = read_events(log_dir)
    assert len(events.scalars("recipe/generalization/gap")) == 14
    assert json.dumps(ranks[0])


def test_a_healthy_model_of_noisy_regression_targets_is_not_called_underfitting(tmp_path):
    # sklearn's diabetes: no model explains much more than half the variance; an MLP at its floor
    # (train MSE ~half the mean predictor's) is healthy. The clean twin of the underfitting verdict.
    from tests.helpers import diabetes_arrays

    x, y = diabetes_arrays()
    idx = np.random.default_rng(0).permutation(len(x))
    train, val = idx[:350], idx[350:]
    torch.manual_seed(0)
    model = LitModel(mlp(10, 1), loss="mse", lr=1e-2)
    dumb, check = DumbBaselines(monitor="val_loss"), GeneralizationCheck(log_figure=False)
    trainer = make_trainer(tmp_path, [dumb, check], max_epochs=60, max_steps=-1, logger=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, loader(x[train], y[train], shuffle=True), loader(x[val], y[val]))
    _no_crash(check)
    assert check.stage == "healthy", check.findings[0].message
    ratio = check.findings[0].numbers["train_to_baseline"]
    assert (
        0.3 < ratio < 0.7
    )  # far from the 0.8 a mean-predictor baseline allows, above the 0.5 of a class prior
    assert check.findings[0].message.startswith("healthy: ")


class TrainsInValidation(LitModel):
    """``validation_step`` calls ``self.train()`` (the bug: "forgot to toggle train/eval mode"); the
    twin leaves the mode to Lightning."""

    def __init__(self, bug: bool) -> None:
        super().__init__(mlp(64, 10, dropout=0.3))
        self.bug = bug

    def validation_step(self, batch, batch_idx):
        if self.bug:
            self.train()
        super().validation_step(batch, batch_idx)


@pytest.mark.parametrize("bug", [True, False], ids=["train_in_validation", "left_to_lightning"])
def test_warns_once_when_validation_runs_in_training_mode(tmp_path, bug):
    check = GeneralizationCheck()
    _fit(tmp_path, TrainsInValidation(bug), [check], epochs=3, num_sanity_val_steps=0)
    found = [f for f in check.findings if "training mode during validation" in f.message]
    if not bug:
        assert found == []
        return
    [finding] = found
    assert (
        finding.status == "warn" and "does validation_step (or a hook) call self.train()?" in finding.message
    )
    assert finding.numbers["train_mode_modules"] == ["net.3"]  # the Dropout
