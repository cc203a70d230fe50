import logging
import os
import pickle
import signal
import warnings

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_recipe import EarlyStopping, RecipeWarning
from tests.helpers import make_trainer, read_events


class Scripted(BoringModel):
    """Trains for real (weights change every epoch) and reports a scripted validation loss per epoch."""

    def __init__(self, losses, interrupt_at=None):
        super().__init__()
        self.losses = list(losses)
        self.interrupt_at = interrupt_at

    def training_step(self, batch, batch_idx):
        if self.interrupt_at is not None and self.current_epoch == self.interrupt_at:
            raise KeyboardInterrupt
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        rank_offset = 0.0 if self.trainer.world_size == 1 else 0.001 * self.global_rank
        self.log("val_loss", self.losses[self.current_epoch] + rank_offset)


FALL_THEN_RISE = [1.0, 0.6, 0.4, 0.5, 0.7, 0.8, 0.9, 1.0]


def _fit(tmp_path, callbacks, losses, max_epochs=8, ckpt_path=None, model=None, **kw):
    model = model or Scripted(losses)
    trainer = make_trainer(
        tmp_path,
        callbacks,
        max_steps=-1,
        max_epochs=max_epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        **kw,
    )
    trainer.fit(model, ckpt_path=ckpt_path)
    return model, trainer


def test_restores_weights_of_best_epoch_bitwise(tmp_path):
    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    model, trainer = _fit(tmp_path, [stop, ckpt], FALL_THEN_RISE, enable_checkpointing=True)
    assert stop.best_epoch == 2 and stop.stopped_epoch == 4
    assert trainer.current_epoch == 5  # stopped after epoch 4
    best = torch.load(tmp_path / "ckpt" / "epoch=2.ckpt", weights_only=False)["state_dict"]
    last = torch.load(tmp_path / "ckpt" / "epoch=4.ckpt", weights_only=False)["state_dict"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k]), k
    assert not torch.equal(best["layer.weight"], last["layer.weight"])
    [finding] = stop.findings
    assert finding.status == "pass"
    assert (
        finding.message
        == "stopped at epoch 4 (patience exhausted); best val_loss=0.4 at epoch 2; weights restored to it"
    )
    assert finding.numbers["reason"] == "patience exhausted"
    ev = read_events(trainer.logger)
    assert ev.scalars("recipe/early_stopping/best_epoch")[-1][1] == 2


def test_restores_best_weights_when_max_epochs_ends_training(tmp_path):
    stop = EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1)
    model, _ = _fit(tmp_path, [stop, ckpt], FALL_THEN_RISE, max_epochs=5, enable_checkpointing=True)
    best = torch.load(tmp_path / "ckpt" / "epoch=2.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert stop.findings[0].message.startswith("did not stop; best val_loss=0.4 at epoch 2")


def test_without_restore_behaves_like_lightning(tmp_path):
    ours = EarlyStopping(monitor="val_loss", patience=2, min_delta=0.01)
    theirs = LightningEarlyStopping(monitor="val_loss", patience=2, min_delta=0.01)
    torch.manual_seed(0)
    m1, t1 = _fit(tmp_path / "a", [ours], FALL_THEN_RISE)
    torch.manual_seed(0)
    m2, t2 = _fit(tmp_path / "b", [theirs], FALL_THEN_RISE)
    assert (ours.stopped_epoch, ours.wait_count, float(ours.best_score)) == (
        theirs.stopped_epoch,
        theirs.wait_count,
        float(theirs.best_score),
    )
    assert t1.current_epoch == t2.current_epoch
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_start_from_epoch_holds_stopping_and_patience(tmp_path):
    rising = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    plain = EarlyStopping(monitor="val_loss", patience=1)
    _fit(tmp_path / "a", [plain], rising)
    assert plain.stopped_epoch == 1
    held = EarlyStopping(monitor="val_loss", patience=1, start_from_epoch=4, restore_best_weights=True)
    _, trainer = _fit(tmp_path / "b", [held], rising)
    assert held.stopped_epoch == 4 and trainer.current_epoch == 5
    assert held.best_epoch == 0  # the best is still tracked during the warm-up


def test_interrupt_restores_best_weights(tmp_path):
    stop = EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1)
    model = Scripted(FALL_THEN_RISE, interrupt_at=5)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown on Ctrl+C exits the process
            _fit(tmp_path, [stop, ckpt], FALL_THEN_RISE, model=model, enable_checkpointing=True)
    finally:
        signal.signal(signal.SIGINT, handler)
    best = torch.load(tmp_path / "ckpt" / "epoch=2.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert stop.findings[0].numbers["reason"] == "interrupted"


def test_resume_keeps_best_and_uses_new_patience(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1, save_last=True)
    first = EarlyStopping(monitor="val_loss", patience=50, restore_best_weights=True)
    _fit(tmp_path, [first, ckpt], FALL_THEN_RISE, max_epochs=4, enable_checkpointing=True)
    resumed = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    model, _ = _fit(
        tmp_path,
        [resumed],
        FALL_THEN_RISE,
        max_epochs=8,
        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
        enable_checkpointing=True,
    )
    assert resumed.patience == 2
    assert resumed.best_epoch == 2 and float(resumed.best_score) == pytest.approx(0.4)
    assert resumed.stopped_epoch == 4  # epochs 3 and 4 did not improve: the new patience of 2 applies
    best = torch.load(tmp_path / "ckpt" / "epoch=2.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())


def test_state_round_trip_and_pickle():
    stop = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    stop.best_epoch, stop.best_step, stop.wait_count = 4, 40, 1
    stop._best_state = {"w": torch.ones(2)}
    other = EarlyStopping(monitor="val_loss", patience=7)
    other.load_state_dict(stop.state_dict())
    assert (other.best_epoch, other.best_step, other.wait_count, other.patience) == (4, 40, 1, 7)
    assert torch.equal(other._best_state["w"], torch.ones(2))
    clone = pickle.loads(pickle.dumps(stop))
    assert clone.best_epoch == 4
    other.load_state_dict(
        {"wait_count": 0, "stopped_epoch": 0, "best_score": torch.tensor(1.0)}
    )  # older checkpoints


def test_missing_metric_with_strict_false_is_skipped(tmp_path):
    stop = EarlyStopping(monitor="val_acc", strict=False)
    _fit(tmp_path, [stop], FALL_THEN_RISE, max_epochs=2)
    [finding] = stop.findings
    assert (
        finding.status == "skipped"
        and "`val_acc` was never logged" in finding.message
        and "val_loss" in finding.message
    )


def test_non_finite_metric_is_a_warning(tmp_path):
    stop = EarlyStopping(monitor="val_loss", restore_best_weights=True)
    with pytest.warns(RecipeWarning, match="non-finite monitored metric"):
        _fit(tmp_path, [stop], [1.0, 0.5, float("nan"), 0.1], max_epochs=4)
    assert stop.findings[0].status == "warn" and stop.best_epoch == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"EarlyStopping\(start_from_epoch=-1\): pass an integer >= 0"):
        EarlyStopping(monitor="val_loss", start_from_epoch=-1)


# ---------------------------------------------------------------------- Lightning's contract
def test_bad_mode_raises_lightnings_exception_with_lightnings_message():
    with pytest.raises(MisconfigurationException) as theirs:
        LightningEarlyStopping(monitor="val_loss", mode="low")
    with pytest.raises(MisconfigurationException) as ours:
        EarlyStopping(monitor="val_loss", mode="low")
    assert str(ours.value) == str(theirs.value) == "`mode` can be min, max, got low"


def test_accepts_what_lightning_accepts_and_keeps_its_state_keys():
    for kwargs in (
        {"monitor": "val_loss", "patience": 0},
        {"monitor": ""},
        {"monitor": "acc", "mode": "max"},
    ):
        ours, theirs = EarlyStopping(**kwargs), LightningEarlyStopping(**kwargs)
        assert ours.state_key == theirs.state_key
        assert theirs.state_dict().keys() <= ours.state_dict().keys()
        assert ours.state_dict()["patience"] == theirs.state_dict()["patience"]


def test_missing_metric_with_strict_raises_lightnings_error(tmp_path):
    errors = []
    for i, cls in enumerate((EarlyStopping, LightningEarlyStopping)):
        with pytest.raises(
            RuntimeError, match="Early stopping conditioned on metric `val_acc` which is not available"
        ) as err:
            _fit(tmp_path / str(i), [cls(monitor="val_acc")], FALL_THEN_RISE, max_epochs=2)
        errors.append(str(err.value))
    assert errors[0] == errors[1]


_NAN = float("nan")


@pytest.mark.parametrize(
    ("losses", "kwargs"),
    [
        (FALL_THEN_RISE, {"patience": 2, "min_delta": 0.01}),
        ([1.0, 0.6, 0.4, 0.05, 0.5, 0.6], {"stopping_threshold": 0.1}),
        ([1.0, 0.6, 5.0, 0.4, 0.3, 0.2], {"divergence_threshold": 2.0}),
        ([1.0, 0.5, _NAN, 0.1, 0.1, 0.1], {}),
        ([1.0, _NAN, 0.5, 0.6, 0.7, 0.8], {"check_finite": False, "patience": 2}),
        ([0.1, 0.5, 0.4, 0.3, 0.2, 0.1], {"mode": "max", "patience": 2}),
        (FALL_THEN_RISE, {"monitor": "val_acc", "strict": False}),
    ],
    ids=[
        "patience",
        "stopping_threshold",
        "divergence_threshold",
        "non_finite",
        "check_finite_off",
        "max",
        "not_strict",
    ],
)
def test_decides_and_logs_as_lightning_does(tmp_path, caplog, losses, kwargs):
    """Same stop, state and ``verbose`` messages as Lightning's, with the additions switched on."""
    kwargs = {"monitor": "val_loss", "verbose": True, **kwargs}
    caplog.set_level(logging.INFO, logger="lightning.pytorch.callbacks.early_stopping")
    seen = []
    for i, stop in enumerate(
        (EarlyStopping(**kwargs, restore_best_weights=True), LightningEarlyStopping(**kwargs))
    ):
        caplog.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RecipeWarning)
            _, trainer = _fit(tmp_path / str(i), [stop], losses, max_epochs=len(losses))
        seen.append(
            (
                trainer.current_epoch,
                stop.stopped_epoch,
                stop.wait_count,
                repr(stop.best_score),
                stop.stopping_reason,
                stop.stopping_reason_message,
                [
                    r.getMessage()
                    for r in caplog.records
                    if r.name == "lightning.pytorch.callbacks.early_stopping"
                ],
            )
        )
    assert seen[0] == seen[1]
    assert seen[0][-1] or kwargs.get("strict", True) is False  # verbose said something


def test_warm_up_on_improving_values_logs_as_lightning_does(tmp_path, caplog):
    falling = [1.0, 0.6, 0.4, 0.3, 0.25]
    caplog.set_level(logging.INFO, logger="lightning.pytorch.callbacks.early_stopping")
    logs = []
    for i, stop in enumerate(
        (
            EarlyStopping(monitor="val_loss", verbose=True, start_from_epoch=3),
            LightningEarlyStopping(monitor="val_loss", verbose=True),
        )
    ):
        caplog.clear()
        _fit(tmp_path / str(i), [stop], falling, max_epochs=len(falling))
        logs.append(
            [r.getMessage() for r in caplog.records if r.name == "lightning.pytorch.callbacks.early_stopping"]
        )
    assert logs[0] == logs[1]
    assert logs[0][1] == "Metric val_loss improved by 0.400 >= min_delta = 0.0. New best score: 0.600"


def test_threshold_stop_keeps_lightnings_best_score_and_restores_that_epoch(tmp_path):
    stop = EarlyStopping(monitor="val_loss", stopping_threshold=0.1, restore_best_weights=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1)
    model, _ = _fit(
        tmp_path, [stop, ckpt], [1.0, 0.6, 0.4, 0.05, 0.5], max_epochs=5, enable_checkpointing=True
    )
    assert float(stop.best_score) == pytest.approx(
        0.4
    )  # as Lightning: a threshold stop is not an improvement
    assert stop.best_epoch == 3 and stop.stopped_epoch == 3
    best = torch.load(tmp_path / "ckpt" / "epoch=3.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert stop.findings[0].message == (
        "stopped at epoch 3 (stopping threshold reached); best val_loss=0.05 at epoch 3; weights restored to it"
    )


def test_new_patience_on_resume_is_the_one_difference_in_state(tmp_path):
    saved = EarlyStopping(monitor="val_loss", patience=50)
    saved.wait_count = 4
    ours, theirs = (
        EarlyStopping(monitor="val_loss", patience=2),
        LightningEarlyStopping(monitor="val_loss", patience=2),
    )
    ours.load_state_dict(saved.state_dict())
    theirs.load_state_dict(saved.state_dict())
    assert (ours.wait_count, theirs.wait_count) == (4, 4)
    assert (ours.patience, theirs.patience) == (2, 50)


class _RecordWeights(EarlyStopping):
    def on_train_end(self, trainer, pl_module):
        super().on_train_end(trainer, pl_module)
        torch.save(
            {"best_epoch": self.best_epoch, "w": pl_module.layer.weight.detach().clone()},
            os.path.join(self.out, f"rank{trainer.global_rank}.pt"),
        )


@pytest.mark.slow
def test_ddp_ranks_restore_the_same_best_weights(tmp_path):
    stop = _RecordWeights(monitor="val_loss", patience=2, restore_best_weights=True)
    stop.out = str(tmp_path)
    _fit(tmp_path, [stop], FALL_THEN_RISE, strategy="ddp_fork", devices=2, logger=False)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["best_epoch"] == r1["best_epoch"] == 2
    assert torch.equal(r0["w"], r1["w"])
