"""OverfitBatchCheck on real Trainer runs: broken losses and frozen models fail, healthy ones pass."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from lightning.pytorch import Callback
from torch import nn
from torch.nn import functional as F

from lightning_recipe import OverfitBatchCheck, RecipeCheckError
from tests.helpers import (
    DumpFindings,
    LitModel,
    assert_same_params,
    breast_cancer_arrays,
    diabetes_arrays,
    digits_arrays,
    final_params,
    loader,
    make_trainer,
    mlp,
    png_shape,
    read_events,
    small_cnn,
)

FIGURE = "recipe/overfit_batch/summary"
LOSS = "recipe/overfit_batch/loss"


def digits_loader(n: int = 256, batch_size: int = 32, **kw):
    x, y = digits_arrays()
    return loader(x[:n], y[:n], batch_size=batch_size, **kw)


def fit(tmp_path, model, callbacks, data=None, **kw):
    trainer = make_trainer(tmp_path, callbacks, **kw)
    trainer.fit(model, data if data is not None else digits_loader())
    return trainer


def frozen_mlp() -> LitModel:
    model = LitModel(mlp(64, 10))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ---------------------------------------------------------------------- healthy models pass
@pytest.mark.parametrize(
    "make, data",
    [
        (lambda: LitModel(mlp(64, 10)), None),
        (lambda: LitModel(mlp(64, 10), loss=lambda z, y: F.nll_loss(F.log_softmax(z, dim=1), y)), None),
        (lambda: LitModel(small_cnn(dropout=0.3), optimizer="sgd", lr=0.1), None),
        (
            lambda: LitModel(
                nn.Sequential(
                    nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10)
                )
            ),
            None,
        ),
        (lambda: LitModel(mlp(30, 1), loss="bce"), "cancer"),
        (lambda: LitModel(mlp(10, 1), loss="mse"), "diabetes"),
    ],
    ids=["mlp-ce", "nll-log-softmax", "cnn-dropout-sgd", "batchnorm", "binary-bce", "regression-mse"],
)
def test_overfit_batch_passes_healthy_models(tmp_path, make, data):
    torch.manual_seed(0)
    if data == "cancer":
        data = loader(*breast_cancer_arrays(), batch_size=32)
    elif data == "diabetes":
        x, y = diabetes_arrays()
        data = loader(x, (y - y.mean()) / y.std(), batch_size=32)
    check = OverfitBatchCheck()
    trainer = fit(tmp_path, make(), [check], data=data, max_steps=1)
    (finding,) = check.findings
    assert finding.status == "pass", finding.message
    assert finding.message.startswith("overfit 8 examples in ")
    assert finding.numbers["num_samples"] == 8 and finding.global_step == 0
    events = read_events(trainer.logger)
    curve = events.scalars(LOSS)
    assert curve[0][0] == 0 and len(curve) == len(check.losses) and curve[-1][1] < curve[0][1]
    ((step, _, _, png),) = events.images(FIGURE)
    assert step == 0 and png_shape(png)[1] > 600


# ---------------------------------------------------------------------- broken setups fail
def softmax_ce() -> LitModel:
    return LitModel(nn.Sequential(mlp(64, 10), nn.Softmax(dim=1)))  # cross_entropy on probabilities


@pytest.mark.parametrize(
    "make, floor, why",
    [
        (softmax_ce, 1.46, r"ln\(1 \+ 9/e\) = 1.46 for 10 classes: pass logits"),
        (frozen_mlp, 2.3, r"all parameters are frozen"),
        (
            lambda: LitModel(mlp(64, 10, dropout=1.0)),
            None,
            r"'net.3' is Dropout\(p=1.0\): it zeroes its input",
        ),
        (lambda: LitModel(mlp(64, 10), lr=0.0), 2.3, r"the learning rate is 0"),
    ],
    ids=["softmax-then-cross-entropy", "frozen", "dropout-1.0", "lr-0"],
)
def test_overfit_batch_fails_with_the_floor_it_reached(tmp_path, make, floor, why):
    torch.manual_seed(0)
    check = OverfitBatchCheck(on_fail="raise")  # raises before the real (frozen) model's first step
    with pytest.raises(RecipeCheckError, match="OverfitBatchCheck: cannot overfit 8 examples") as info:
        fit(tmp_path, make(), [check], max_steps=1)
    finding = info.value.finding
    assert finding.status == "fail" and check.findings == [finding]
    assert finding.numbers["target_loss"] == pytest.approx(0.05)
    if floor is not None:
        assert finding.numbers["lowest_loss"] == pytest.approx(floor, abs=0.05)
        assert f"{finding.numbers['lowest_loss']:.4g}" in finding.message
    import re

    assert re.search(why, finding.message), finding.message


def test_overfit_batch_regression_broadcasting_bug_fails(tmp_path):
    x, y = diabetes_arrays()
    y = (y - y.mean()) / y.std()
    torch.manual_seed(0)
    model = LitModel(mlp(10, 1), loss=lambda out, t: F.mse_loss(out, t))  # (N, 1) vs (N,): N x N pairs
    check = OverfitBatchCheck()
    with pytest.warns(UserWarning):
        fit(tmp_path, model, [check], data=loader(x, y, batch_size=32), max_steps=1)
    (finding,) = check.findings
    assert finding.status == "fail" and "plateaued" in finding.message
    assert finding.numbers["r2"] < 0.5


def test_overfit_batch_label_smoothing_floor_passes(tmp_path):
    torch.manual_seed(0)
    smooth = lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1)  # noqa: E731
    auto = OverfitBatchCheck()
    fit(tmp_path / "a", LitModel(mlp(64, 10), loss=smooth), [auto], max_steps=1)
    (finding,) = auto.findings
    assert finding.status == "pass", finding.message
    assert "a floor consistent with label smoothing eps≈0.1 over 10 classes" in finding.message
    assert finding.numbers["label_smoothing"] == pytest.approx(0.1, abs=0.01)
    assert finding.numbers["smoothing_floor"] == pytest.approx(0.50, abs=0.01)
    torch.manual_seed(0)
    told = OverfitBatchCheck(target_loss=0.55)
    fit(tmp_path / "b", LitModel(mlp(64, 10), loss=smooth), [told], max_steps=1)
    assert told.findings[0].status == "pass"
    assert "label_smoothing" not in told.findings[0].numbers  # the user's target: no guessing


class SmoothedModule(LitModel):
    """Label smoothing declared as an ``nn.CrossEntropyLoss`` submodule, 3 classes (digits 0-2)."""

    def __init__(self) -> None:
        super().__init__(mlp(64, 3))
        self.criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
        self.loss_fn = self.criterion


def test_overfit_batch_reads_label_smoothing_from_a_cross_entropy_module(tmp_path):
    x, y = digits_arrays()
    keep = y < 3
    torch.manual_seed(0)
    check = OverfitBatchCheck()
    fit(tmp_path, SmoothedModule(), [check], data=loader(x[keep], y[keep]), max_steps=1)
    (finding,) = check.findings
    assert finding.status == "pass", finding.message
    assert "the floor of label smoothing 0.1 is 0.2" in finding.message  # H(0.933, 0.033, 0.033) = 0.28
    assert finding.numbers["target_loss"] == pytest.approx(1.05 * finding.numbers["smoothing_floor"])


def test_overfit_batch_label_smoothing_does_not_hide_probabilities_fed_to_cross_entropy(tmp_path):
    torch.manual_seed(0)
    smooth = lambda p, y: F.cross_entropy(p, y, label_smoothing=0.1)  # noqa: E731
    check = OverfitBatchCheck()
    with pytest.warns(UserWarning, match="pass logits"):
        fit(
            tmp_path,
            LitModel(nn.Sequential(mlp(64, 10), nn.Softmax(dim=1)), loss=smooth),
            [check],
            max_steps=1,
        )
    assert check.findings[0].status == "fail"


class CappedLogits(nn.Module):
    """A bug that caps the confidence: logits squashed into [-2, 2], so p(label) <= 0.86 (loss >= 0.15)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * torch.tanh(self.net(x))


def test_overfit_batch_capped_confidence_is_not_taken_for_label_smoothing(tmp_path):
    torch.manual_seed(0)
    check = OverfitBatchCheck()
    with pytest.warns(UserWarning, match="cannot overfit 8 examples: the loss plateaued at 0.15"):
        fit(tmp_path, LitModel(CappedLogits()), [check], max_steps=1)
    assert check.findings[0].status == "fail" and "label_smoothing" not in check.findings[0].numbers


@pytest.mark.parametrize("lr, then", [(0.1, "then inf"), (0.062, "in ")], ids=["to-inf", "slowly"])
def test_overfit_batch_says_when_the_loss_rose(tmp_path, lr, then):
    from lightning.pytorch.demos.boring_classes import BoringModel

    class Boring(BoringModel):  # Lightning's demo: SGD on one example of 32 random features
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=lr)

    torch.manual_seed(0)
    model = Boring()
    check = OverfitBatchCheck()
    with pytest.warns(UserWarning, match="too high for this batch"):
        make_trainer(tmp_path, [check], max_steps=1).fit(model, model.train_dataloader())
    (finding,) = check.findings
    assert finding.status == "fail"
    assert "cannot overfit 1 examples: the loss rose from 0.5" in finding.message, finding.message
    assert then in finding.message and "plateaued" not in finding.message
    assert f"the learning rate ({lr:.3g}) is too high for this batch; lower it" in finding.message


def test_overfit_batch_slow_learning_rate_is_inconclusive_not_failed(tmp_path):
    torch.manual_seed(0)
    check = OverfitBatchCheck(max_steps=100)
    with pytest.warns(UserWarning, match="still decreasing after max_steps=100"):
        fit(tmp_path, LitModel(mlp(64, 10), optimizer="sgd", lr=0.01), [check], max_steps=1)
    assert check.findings[0].status == "warn"


def test_overfit_batch_raise_stops_before_the_first_update(tmp_path):
    torch.manual_seed(0)
    model = softmax_ce()
    before = final_params(model)
    with pytest.raises(
        RecipeCheckError, match=r"OverfitBatchCheck: cannot overfit 8 examples: the loss plateaued at 1.46"
    ):
        fit(tmp_path, model, [OverfitBatchCheck(on_fail="raise")], max_steps=2)
    assert_same_params(before, final_params(model))


class AugmentingModel(LitModel):
    """Adds strong noise to its inputs in training_step unless ``augment`` is off."""

    augment = True

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.augment:
            x = torch.randn_like(x) * 5
        return F.cross_entropy(self(x), y)


def test_overfit_batch_augment_off_and_prepare_batch(tmp_path):
    torch.manual_seed(0)
    seen = []

    def prepare(batch):
        seen.append(batch[0].shape[0])
        return batch

    noisy = OverfitBatchCheck(max_steps=150, num_samples=4)
    with pytest.warns(UserWarning, match="OverfitBatchCheck"):
        fit(tmp_path / "a", AugmentingModel(mlp(64, 10)), [noisy], max_steps=1)
    assert noisy.findings[0].status in ("fail", "warn")
    torch.manual_seed(0)
    model = AugmentingModel(mlp(64, 10))
    quiet = OverfitBatchCheck(
        num_samples=4, augment_off=lambda m: setattr(m, "augment", False), prepare_batch=prepare
    )
    fit(tmp_path / "b", model, [quiet], max_steps=1)
    assert quiet.findings[0].status == "pass" and seen == [4]
    assert model.augment is True  # only the copy was changed


def test_overfit_batch_manual_optimization_is_skipped(tmp_path):
    class Manual(LitModel):
        def __init__(self):
            super().__init__(mlp(64, 10))
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            loss = F.cross_entropy(self(batch[0]), batch[1])
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    check = OverfitBatchCheck()
    fit(tmp_path, Manual(), [check], max_steps=1)
    (finding,) = check.findings
    assert finding.status == "skipped" and "manual optimization" in finding.message


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_samples": 0}, ValueError, r"OverfitBatchCheck\(num_samples=0\): pass an integer >= 1"),
        ({"max_steps": 2.5}, TypeError, r"max_steps=2.5\): pass an integer"),
        ({"patience": 1}, ValueError, r"patience=1\): pass an integer >= 2"),
        ({"target_loss": float("nan")}, ValueError, r"target_loss=nan\): pass a finite number"),
        ({"task": "multi"}, ValueError, r"OverfitBatchCheck\(task='multi'\): unknown task"),
        ({"augment_off": True}, TypeError, r"augment_off=True\): pass a callable"),
        ({"on_fail": "stop"}, ValueError, r"on_fail='stop'\): unknown value"),
        ({"target_key": 1.5}, TypeError, r"target_key=1.5\): expected a dict key"),
    ],
)
def test_overfit_batch_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        OverfitBatchCheck(**kwargs)


# ---------------------------------------------------------------------- never perturb, resume, quiet
def test_overfit_batch_does_not_change_training(tmp_path):
    def run(callbacks, sub):
        torch.manual_seed(0)
        model = LitModel(small_cnn(dropout=0.5))
        fit(tmp_path / sub, model, callbacks, data=digits_loader(shuffle=True), max_steps=6)
        return final_params(model)

    assert_same_params(run([], "a"), run([OverfitBatchCheck(max_steps=40)], "b"))


def test_overfit_batch_state_round_trip_and_real_resume(tmp_path):
    torch.manual_seed(0)
    check = OverfitBatchCheck()
    trainer = fit(tmp_path / "first", LitModel(mlp(64, 10)), [check], max_steps=2)
    state = check.state_dict()
    assert state["done"] is True and state["findings"][0]["status"] == "pass"
    fresh = OverfitBatchCheck()
    fresh.load_state_dict(state)
    clone = pickle.loads(pickle.dumps(fresh))
    assert clone.state_dict() == state
    ckpt = str(tmp_path / "first.ckpt")
    trainer.save_checkpoint(ckpt)
    resumed = OverfitBatchCheck()
    trainer2 = make_trainer(tmp_path / "second", [resumed], max_steps=4)
    trainer2.fit(LitModel(mlp(64, 10)), digits_loader(), ckpt_path=ckpt)
    assert [f.status for f in resumed.findings] == ["pass"] and resumed.findings[0].global_step == 0
    assert resumed.losses == []  # not redone
    assert not read_events(trainer2.logger).has_image(FIGURE)


def test_overfit_batch_is_quiet_during_the_sanity_check(tmp_path):
    class Probe(Callback):
        def on_sanity_check_end(self, trainer, pl_module):
            self.then = list(check.findings)

    check, probe = OverfitBatchCheck(), Probe()
    trainer = make_trainer(tmp_path, [check, probe], max_steps=1, num_sanity_val_steps=2, limit_val_batches=2)
    trainer.fit(LitModel(mlp(64, 10)), digits_loader(), digits_loader(64))
    assert probe.then == [] and len(check.findings) == 1


# ---------------------------------------------------------------------- DDP
class RankBroken(LitModel):
    """Cross-entropy on probabilities on rank 1 only: rank 0 alone would pass."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        z = self(x)
        if torch.distributed.is_initialized() and torch.distributed.get_rank() == 1:
            z = z.softmax(1)
        return F.cross_entropy(z, y)


@pytest.mark.slow
def test_overfit_batch_same_verdict_on_every_rank_under_ddp(tmp_path):
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    torch.manual_seed(0)
    trainer = make_trainer(
        tmp_path,
        [OverfitBatchCheck(), DumpFindings(tmp_path)],
        max_steps=1,
        devices=2,
        strategy=DDPStrategy(start_method="fork", timeout=timedelta(seconds=60)),
    )
    log_dir = trainer.logger.log_dir
    trainer.fit(RankBroken(mlp(64, 10)), digits_loader(128, batch_size=16))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    (finding,) = ranks[0]
    assert finding["status"] == "fail" and finding["numbers"]["rank"] == 1
    assert "1.46" in finding["message"]
    assert len(read_events(log_dir).images(FIGURE)) == 1


# ---------------------------------------------------------------------- modules that read their trainer
def step_decay(opt: torch.optim.Optimizer) -> dict:
    return {"scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9), "interval": "step"}


class TrainerReading(LitModel):
    """Reads its trainer, optimizer and scheduler in ``training_step`` and writes to the logger directly."""

    def training_step(self, batch, batch_idx):
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        assert self.optimizers().param_groups[0]["lr"] == lr
        self.log("lr", lr)
        self.log_dict({"sched_lr": self.lr_schedulers().get_last_lr()[0], "epoch": float(self.current_epoch)})
        self.logger.experiment.add_scalar("direct_lr", lr, self.trainer.global_step)
        self.trainer.should_stop = False  # a write: must stay on the copy's view
        return super().training_step(batch, batch_idx)


def test_overfit_batch_runs_on_a_module_that_reads_its_trainer_and_leaves_it_untouched(tmp_path):
    def run(callbacks, sub):
        torch.manual_seed(0)
        model = TrainerReading(small_cnn(dropout=0.3), lr=3e-3, scheduler=step_decay)
        trainer = fit(tmp_path / sub, model, callbacks, data=digits_loader(shuffle=True), max_steps=4)
        events = read_events(trainer.logger)
        logged = {tag: events.scalars(tag) for tag in ("lr", "sched_lr", "direct_lr")}
        return final_params(model), logged, trainer.lr_scheduler_configs[0].scheduler.state_dict()

    check = OverfitBatchCheck()
    params_with, logged_with, sched_with = run([check], "with")
    (finding,) = check.findings
    assert finding.status == "pass", finding.message
    params_without, logged_without, sched_without = run([], "without")
    assert_same_params(params_without, params_with)
    assert logged_with == logged_without and len(logged_with["direct_lr"]) == 4
    assert sched_with == sched_without and sched_with["last_epoch"] == 4


def test_overfit_batch_one_cycle_schedule_trains_the_copy_at_its_working_rate(tmp_path):
    def one_cycle(opt: torch.optim.Optimizer) -> dict:
        return {
            "scheduler": torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=1000),
            "interval": "step",
        }

    torch.manual_seed(0)  # starts at max_lr / 25 = 1.2e-4: too slow to overfit within max_steps
    check = OverfitBatchCheck()
    fit(tmp_path, LitModel(mlp(64, 10), lr=3e-3, scheduler=one_cycle), [check], max_steps=1)
    (finding,) = check.findings
    assert finding.status == "pass", finding.message


# ---------------------------------------------------------------------- sequence targets with padding
class _Tokens(torch.utils.data.Dataset):
    """Digits as 11 pixel tokens (0-16) predicting the next one; the last 4 labels are padding."""

    def __init__(self) -> None:
        x, _ = digits_arrays()
        self.tokens = (torch.as_tensor(x).reshape(len(x), -1)[:, 20:32] * 16).round().long()

    def __len__(self) -> int:
        return 256

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        labels = self.tokens[i, 1:].clone()
        labels[-4:] = -100
        return {"input_ids": self.tokens[i, :-1], "labels": labels}


class TinyLM(LitModel):
    """Logits (N, T, V) with V = 50 > T = 11 from the whole sequence; cross-entropy ignores -100 by default."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__(
            nn.Sequential(nn.Flatten(), nn.Linear(11 * 16, 128), nn.ReLU(), nn.Linear(128, 11 * 50))
        )
        self.embed = nn.Embedding(50, 16)
        self.broken = broken

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        logits = self.net(self.embed(ids)).reshape(len(ids), 11, 50)
        return logits.softmax(-1) if self.broken else logits  # broken: cross-entropy on probabilities

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch["input_ids"]).transpose(1, 2), batch["labels"])


@pytest.mark.parametrize("broken", [False, True], ids=["healthy", "softmax-then-cross-entropy"])
def test_overfit_batch_sequence_targets_with_padding(tmp_path, broken):
    torch.manual_seed(0)
    check = OverfitBatchCheck(input_key="input_ids", target_key="labels")
    data = torch.utils.data.DataLoader(_Tokens(), batch_size=32)
    if broken:
        with pytest.warns(UserWarning, match=r"ln\(1 \+ 49/e\) = 2.95 for 50 classes"):
            trainer = fit(tmp_path, TinyLM(broken), [check], data=data, max_steps=1)
    else:
        trainer = fit(tmp_path, TinyLM(broken), [check], data=data, max_steps=1)
    (finding,) = check.findings
    assert finding.status == ("fail" if broken else "pass"), finding.message
    assert 0 < finding.numbers["accuracy"] <= 1  # over the 56 labelled positions, padding left out
    assert finding.numbers["kind"] == "classification"
    ((_, _, _, png),) = read_events(trainer.logger).images(FIGURE)
    (tmp_path / "summary.png").write_bytes(png)


# ---------------------------------------------------------------------- forward(**batch), loss inside the model
class _DictDigits(torch.utils.data.Dataset):
    """Digits as dicts ``{key: inputs, "labels": y}``: pixels in [0, 1] for "x", ids 0-16 for "input_ids"."""

    def __init__(self, key: str) -> None:
        x, y = digits_arrays()
        x = torch.as_tensor(x).flatten(1)
        self.inputs = (x * 16).round().long() if key == "input_ids" else x
        self.labels = torch.as_tensor(y)
        self.key = key

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {self.key: self.inputs[i], "labels": self.labels[i]}


class KwargsModel(LitModel):
    """Hugging Face style: ``forward(**batch)`` computes its own loss; ``training_step`` returns ``out["loss"]``."""

    def __init__(self, key: str) -> None:
        super().__init__(mlp(64 * (8 if key == "input_ids" else 1), 10))
        self.embed = nn.Embedding(17, 8) if key == "input_ids" else None
        self.key = key

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = batch[self.key]
        logits = self.net(self.embed(x) if self.embed is not None else x)
        return {"loss": F.cross_entropy(logits, batch["labels"]), "logits": logits}

    def training_step(self, batch, batch_idx):
        return self(**batch)["loss"]


@pytest.mark.parametrize("key", ["x", "input_ids"])
def test_overfit_batch_calls_a_forward_that_takes_the_whole_dict_batch(tmp_path, key):
    torch.manual_seed(0)
    check = OverfitBatchCheck()
    data = torch.utils.data.DataLoader(_DictDigits(key), batch_size=32)
    trainer = fit(tmp_path, KwargsModel(key), [check], data=data, max_steps=1)
    (finding,) = check.findings
    assert finding.status == "pass", finding.message
    assert finding.numbers["kind"] == "classification"
    assert finding.numbers["accuracy"] == 1.0  # the predictions came from module(**batch)
    ((_, _, _, png),) = read_events(trainer.logger).images(FIGURE)
    assert png_shape(png)[1] > 600
