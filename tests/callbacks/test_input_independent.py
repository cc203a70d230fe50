"""InputIndependentBaseline: real Trainer runs on scikit-learn data, verdicts read from findings and event files."""

from __future__ import annotations

import json
import pickle
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from lightning_recipe import InputIndependentBaseline, RecipeCheckError
from tests.helpers import (
    DumpFindings,
    LitModel,
    assert_same_params,
    breast_cancer_arrays,
    digits_arrays,
    final_params,
    loader,
    make_trainer,
    mlp,
    png_shape,
    read_events,
)

TAG = "recipe/input_independent"


# ---------------------------------------------------------------------- data and models
def _split(x: np.ndarray, y: np.ndarray, frac: float = 0.8) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    idx = np.random.default_rng(0).permutation(len(x))
    k = int(frac * len(x))
    return (x[idx[:k]], y[idx[:k]]), (x[idx[k:]], y[idx[k:]])


def digits_loaders(shuffle_labels: bool = False, batch_size: int = 32) -> tuple[DataLoader, DataLoader]:
    (xt, yt), (xv, yv) = _split(*digits_arrays())
    if shuffle_labels:  # the bug: labels permuted relative to the inputs in the data set
        rng = np.random.default_rng(1)
        yt, yv = yt[rng.permutation(len(yt))], yv[rng.permutation(len(yv))]
    return loader(xt, yt, batch_size=batch_size, shuffle=True), loader(xv, yv, batch_size=64)


class IgnoresInput(nn.Module):
    """The classic: the input is multiplied away before it reaches the net."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 0)


class LearnedConstant(nn.Module):
    """Outputs a learned constant: the input never reaches a parameter."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


class DictModel(LitModel):
    """Batches are dicts ``{"image": x, "label": y}``."""

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self(batch["image"]), batch["label"])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", F.cross_entropy(self(batch["image"]), batch["label"]))


class DictDataset(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = torch.as_tensor(x), torch.as_tensor(y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], "label": self.y[i]}


class TokenNet(nn.Module):
    """Digits as 64 tokens (pixel intensities 0-16), embedded and averaged: integer inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(17 * 64, 16)
        self.head = nn.Linear(16, 10)
        self.register_buffer("offsets", torch.arange(64) * 17)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens + self.offsets).mean(dim=1))


class ManualModel(LitModel):
    def __init__(self) -> None:
        super().__init__(mlp(64, 10))
        self.automatic_optimization = False

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt = self.optimizers()
        loss = F.cross_entropy(self(batch[0]), batch[1])
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()


def fit(tmp_path: Any, model: LightningModule, check: InputIndependentBaseline, loaders: Any, **kw: Any):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [check], **{"max_steps": 1, **kw})
    trainer.fit(model, *loaders)
    return trainer


# ---------------------------------------------------------------------- healthy models stay silent
def test_input_independent_passes_on_healthy_digits_and_logs_evidence(tmp_path):
    torch.manual_seed(0)
    check = InputIndependentBaseline()
    trainer = fit(tmp_path, LitModel(mlp(64, 10)), check, digits_loaders())
    [finding] = check.findings
    assert finding.status == "pass", finding.message
    assert finding.message.startswith("the model uses its input: validation loss")
    assert check.real_val_loss < 0.5 < 2.0 < check.zeroed_val_loss  # ln 10 = 2.30 for the zeroed copy
    # zeroed pixels are the same for every digit: the zeroed copy predicts one constant, at best the
    # validation labels' frequencies; the real copy is far below that, so the zeroed one never trained
    _, (_, yv) = _split(*digits_arrays())
    p = np.bincount(yv, minlength=10) / len(yv)
    entropy = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    assert finding.numbers["zeroed_trained"] is False and "the zeroed copy was not trained" in finding.message
    assert check.zeroed_val_loss == finding.numbers["zeroed_floor"] == pytest.approx(entropy)
    events = read_events(trainer.logger)
    assert events.scalars(f"{TAG}/real_val_loss") == [(0, pytest.approx(check.real_val_loss))]
    assert events.scalars(f"{TAG}/zeroed_floor") == [(0, pytest.approx(entropy))]
    assert not events.has_scalar(f"{TAG}/zeroed_val_loss")  # no zeroed copy was scored after training
    [(step, gap)] = events.scalars(f"{TAG}/relative_gap")
    assert step == 0 and gap > 0.5
    [(step, width, height, png)] = events.images(f"{TAG}/curves")
    assert step == 0 and png_shape(png)[:2] == (height, width) == (360, 640)
    (tmp_path / "curves.png").write_bytes(png)


class SidePadding(torch.utils.data.Dataset):
    """Digits as dicts with a per-sample ``padding_mask`` the model never reads: structure the zeroed
    copy keeps, so its samples differ and it is no constant predictor."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = torch.as_tensor(x), torch.as_tensor(y)
        self.mask = torch.rand(len(y), 4, generator=torch.Generator().manual_seed(0)) > 0.5

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], "padding_mask": self.mask[i], "label": self.y[i]}


class PulledToInit(LitModel):
    """Cross-entropy plus a pull toward the initial weights (L2-SP): the plain loss at initialisation,
    another one once trained, so the floor must be confirmed where it is used, not only at the start."""

    def __init__(self) -> None:
        super().__init__(mlp(64, 10))
        self.start = [p.detach().clone() for p in self.parameters()]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        pull = sum(((p - p0.to(p.device)) ** 2).sum() for p, p0 in zip(self.parameters(), self.start))
        return F.cross_entropy(self(batch[0]), batch[1]) + 0.01 * pull


@pytest.mark.parametrize("case", ["sum_reduction", "focal", "per_sample_mask", "pulled_to_init"])
def test_input_independent_trains_the_zeroed_copy_where_its_floor_is_unknown(tmp_path, case):
    """The floor counts only for the loss it is computed for, on zeroed batches alike for every sample:
    a summed or focal loss (its constant predictions score below the labels' entropy), or a mask that
    tells samples apart, and the zeroed copy trains and is scored, as before."""
    (xt, yt), (xv, yv) = _split(*digits_arrays())

    def focal(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(z, y, reduction="none")
        return ((1 - torch.exp(-ce)) ** 2 * ce).mean()

    if case == "pulled_to_init":
        model: LightningModule = PulledToInit()
        loaders = digits_loaders()
    elif case == "per_sample_mask":
        model = DictModel(mlp(64, 10))
        loaders = tuple(DataLoader(SidePadding(x, y), batch_size=b, shuffle=b == 32)
                        for (x, y), b in (((xt, yt), 32), ((xv, yv), 64)))  # fmt: skip
    else:
        loss = (lambda z, y: F.cross_entropy(z, y, reduction="sum")) if case == "sum_reduction" else focal
        model, loaders = LitModel(mlp(64, 10), loss=loss), digits_loaders()
    check = InputIndependentBaseline()
    fit(tmp_path, model, check, loaders)
    [finding] = check.findings
    assert finding.status == "pass", finding.message
    assert "with zeroed inputs" in finding.message and "zeroed_floor" not in finding.numbers
    assert check.zeroed_val_loss == finding.numbers["zeroed_val_loss_at"][finding.numbers["steps"]]


def test_input_independent_passes_on_breast_cancer_with_bce(tmp_path):
    (xt, yt), (xv, yv) = _split(*breast_cancer_arrays())
    yt, yv = yt.astype(np.float32), yv.astype(np.float32)
    check = InputIndependentBaseline()
    fit(tmp_path, LitModel(mlp(30, 1), loss="bce"), check, (loader(xt, yt, shuffle=True), loader(xv, yv)))
    assert check.findings[0].status == "pass", check.findings[0].message


def test_input_independent_passes_at_karpathys_adam_rate_after_more_rounds(tmp_path):
    check = InputIndependentBaseline(steps=50)
    fit(tmp_path, LitModel(mlp(64, 10), lr=3e-4), check, digits_loaders())
    finding = check.findings[0]
    assert finding.status == "pass", finding.message
    assert finding.numbers["steps"] > 50  # one round was not enough to tell: it trained on


def test_input_independent_ignores_a_warmup_that_starts_at_zero(tmp_path):
    def warmup(opt: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, step / 1000))

    check = InputIndependentBaseline()
    fit(tmp_path, LitModel(mlp(64, 10), scheduler=warmup), check, digits_loaders())
    assert check.findings[0].status == "pass", check.findings[0].message


def test_input_independent_zeroes_dict_inputs_but_not_the_labels(tmp_path):
    (xt, yt), (xv, yv) = _split(*digits_arrays())
    loaders = (
        DataLoader(DictDataset(xt, yt), batch_size=32, shuffle=True),
        DataLoader(DictDataset(xv, yv), batch_size=64),
    )
    check = InputIndependentBaseline()
    fit(tmp_path, DictModel(mlp(64, 10)), check, loaders)
    assert check.findings[0].status == "pass", check.findings[0].message
    batch = next(iter(loaders[1]))
    zeroed = check._zeroed(batch, check=True)
    assert torch.equal(zeroed["label"], batch["label"]) and not zeroed["image"].any()
    assert batch["image"].any()  # the batch itself is not modified in place


def test_input_independent_token_inputs_get_a_default_fill(tmp_path):
    """Token ids with no padding in sight and no pad token: a fixed id (0); ``integer_fill=`` overrides."""
    from sklearn.datasets import load_digits

    d = load_digits()
    tokens = d.data.astype(np.int64)
    (xt, yt), (xv, yv) = _split(tokens, d.target.astype(np.int64))
    loaders = (loader(xt, yt, shuffle=True), loader(xv, yv))
    check = InputIndependentBaseline()
    fit(tmp_path, LitModel(TokenNet()), check, loaders)
    [finding] = check.findings
    assert finding.status == "pass", finding.message
    assert finding.numbers["integer_fill"] == 0 and check.integer_fill_used[1].startswith("a fixed id")
    assert "token inputs set to id 0 (a fixed id" in finding.message

    check = InputIndependentBaseline(integer_fill=3)
    fit(tmp_path, LitModel(TokenNet()), check, loaders)
    assert check.findings[0].status == "pass", check.findings[0].message
    assert check.integer_fill_used == (3, "integer_fill=")


# ---------------------------------------------------------------------- bugs it must catch
def test_input_independent_fails_on_shuffled_labels(tmp_path):
    check = InputIndependentBaseline()
    with pytest.warns(UserWarning, match="extracts no information from its input"):
        fit(tmp_path, LitModel(mlp(64, 10)), check, digits_loaders(shuffle_labels=True))
    [finding] = check.findings
    assert finding.status == "fail"
    assert finding.message.startswith("the model extracts no information from its input")
    assert "labels are aligned with inputs" in finding.message
    assert finding.numbers["relative_gap"] < 0.05


@pytest.mark.parametrize(
    "net", [IgnoresInput(mlp(64, 10)), LearnedConstant(10)], ids=["times_zero", "constant"]
)
def test_input_independent_fails_when_the_input_never_reaches_the_net(tmp_path, net):
    check = InputIndependentBaseline()
    with pytest.warns(UserWarning, match="does not depend on its input"):
        fit(tmp_path, LitModel(net), check, digits_loaders())
    [finding] = check.findings
    assert finding.status == "fail"
    assert "identical at every point" in finding.message
    assert finding.numbers["real_val_loss"] == finding.numbers["zeroed_val_loss"]


def test_input_independent_raises_before_training_with_on_fail_raise(tmp_path):
    check = InputIndependentBaseline(on_fail="raise")
    model = LitModel(IgnoresInput(mlp(64, 10)))
    before = final_params(model)
    with (
        pytest.raises(
            RecipeCheckError, match=r"InputIndependentBaseline: the model's output does not depend"
        ),
        pytest.warns(UserWarning, match="does not depend on its input"),
    ):
        fit(tmp_path, model, check, digits_loaders())
    assert model.train_losses == []  # no real training step ran
    assert_same_params(before, final_params(model))


# ---------------------------------------------------------------------- skipped, with the reason
def test_input_independent_skips_without_validation_data(tmp_path):
    check = InputIndependentBaseline()
    fit(tmp_path, LitModel(mlp(64, 10)), check, digits_loaders()[:1])
    [finding] = check.findings
    assert finding.status == "skipped"
    assert "no validation data" in finding.message and "`val_dataloaders=`" in finding.message


def test_input_independent_skips_manual_optimization(tmp_path):
    check = InputIndependentBaseline()
    fit(tmp_path, ManualModel(), check, digits_loaders())
    assert check.findings[0].status == "skipped"
    assert "manual optimization" in check.findings[0].message


def test_input_independent_is_inconclusive_not_failing_for_a_slow_learner(tmp_path):
    check = InputIndependentBaseline(steps=50, max_steps=100)
    fit(tmp_path, LitModel(mlp(64, 10), lr=1e-3, optimizer="sgd"), check, digits_loaders())
    [finding] = check.findings
    assert finding.status == "skipped", finding.message
    assert finding.message.startswith("inconclusive:") and "`max_steps=` (now 100)" in finding.message


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, r"InputIndependentBaseline\(steps=0\): pass an integer >= 1"),
        ({"steps": 1.5}, TypeError, r"InputIndependentBaseline\(steps=1.5\): pass an integer"),
        ({"steps": 200, "max_steps": 100}, ValueError, r"max_steps=100\): must be at least steps=200"),
        ({"val_batches": 0}, ValueError, r"val_batches=0\): pass an integer >= 1"),
        ({"margin": 0}, ValueError, r"margin=0\): pass a relative margin between 0 and 1"),
        ({"margin": 1.5}, ValueError, r"margin=1.5\): pass a relative margin"),
        ({"fill": float("nan")}, ValueError, r"fill=nan\): pass a finite number"),
        ({"integer_fill": 0.5}, TypeError, r"integer_fill=0.5\): pass an integer id"),
        ({"input_key": 1.5}, TypeError, r"input_key=1.5\): expected a dict key"),
        ({"on_fail": "stop"}, ValueError, r"on_fail='stop'\): unknown value; pass one of 'warn' or 'raise'"),
    ],
)
def test_input_independent_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        InputIndependentBaseline(**kwargs)


def test_input_independent_names_the_key_argument_for_an_unknown_layout(tmp_path):
    (xt, yt), (xv, yv) = _split(*digits_arrays())
    loaders = (DataLoader(DictDataset(xt, yt), batch_size=32), DataLoader(DictDataset(xv, yv), batch_size=64))
    check = InputIndependentBaseline(input_key="pixels")
    with pytest.raises(
        ValueError, match=r"input_key='pixels': no such key in the batch; its keys are \['image', 'label'\]"
    ):
        fit(tmp_path, DictModel(mlp(64, 10)), check, loaders)


# ---------------------------------------------------------------------- state, resume, observer effect
def test_input_independent_state_round_trip_and_resume(tmp_path):
    check = InputIndependentBaseline()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [check, ckpt], max_steps=3, enable_checkpointing=True)
    trainer.fit(LitModel(mlp(64, 10)), *digits_loaders())
    state = check.state_dict()
    assert state["done"] is True and state["finding"]["status"] == "pass"
    clone = pickle.loads(pickle.dumps(check))
    fresh = InputIndependentBaseline()
    fresh.load_state_dict(clone.state_dict())
    assert fresh.state_dict() == state

    resumed = InputIndependentBaseline()
    trainer = make_trainer(
        tmp_path,
        [resumed, ModelCheckpoint(dirpath=tmp_path / "ckpt2")],
        max_steps=6,
        enable_checkpointing=True,
    )
    trainer.fit(LitModel(mlp(64, 10)), *digits_loaders(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    [finding] = resumed.findings  # the stored verdict, not a second run
    assert finding.status == "pass" and finding.message == state["finding"]["message"]
    assert resumed.real_val_loss == pytest.approx(state["finding"]["numbers"]["real_val_loss"])
    events = read_events(trainer.logger)
    assert [s for s, _ in events.scalars(f"{TAG}/real_val_loss")] == [0]


def test_input_independent_leaves_training_bit_identical(tmp_path):
    def run(callbacks: list[Callback]) -> dict[str, torch.Tensor]:
        torch.manual_seed(7)
        model = LitModel(mlp(64, 10, dropout=0.5))
        torch.manual_seed(7)
        trainer = make_trainer(tmp_path, callbacks, max_steps=15, logger=False)
        trainer.fit(model, *digits_loaders())
        return final_params(model)

    check = InputIndependentBaseline(steps=20, max_steps=20)
    assert_same_params(run([]), run([check]))
    assert check.findings  # it did run


def test_input_independent_is_quiet_during_the_sanity_check(tmp_path):
    check = InputIndependentBaseline()
    trainer = fit(
        tmp_path, LitModel(mlp(64, 10)), check, digits_loaders(), num_sanity_val_steps=2, max_steps=2
    )
    assert len(check.findings) == 1
    assert len(read_events(trainer.logger).scalars(f"{TAG}/real_val_loss")) == 1


# ---------------------------------------------------------------------- DDP
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("shuffle_labels", [False, True], ids=["healthy", "shuffled"])
def test_input_independent_same_verdict_on_every_rank_under_ddp(tmp_path, shuffle_labels):
    check = InputIndependentBaseline()
    strategy = DDPStrategy(start_method="fork", timeout=timedelta(seconds=60))
    trainer = make_trainer(
        tmp_path, [check, DumpFindings(tmp_path, check)], max_steps=2, devices=2, strategy=strategy
    )
    log_dir = trainer.logger.log_dir
    torch.manual_seed(0)
    trainer.fit(LitModel(mlp(64, 10)), *digits_loaders(shuffle_labels=shuffle_labels))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert (
        [f["status"] for f in ranks[0]]
        == [f["status"] for f in ranks[1]]
        == ["fail" if shuffle_labels else "pass"]
    )
    assert ranks[0][0]["numbers"]["real_val_loss"] == ranks[1][0]["numbers"]["real_val_loss"]
    if not shuffle_labels:  # passed on the floor, the mean of the ranks' own, on both ranks alike
        assert [r[0]["numbers"]["zeroed_trained"] for r in ranks] == [False, False]
        assert ranks[0][0]["numbers"]["zeroed_floor"] == ranks[1][0]["numbers"]["zeroed_floor"]
    events = read_events(log_dir)
    assert len(events.scalars(f"{TAG}/real_val_loss")) == 1  # rank zero writes


# ---------------------------------------------------------------------- the real run's data and trainer
def test_input_independent_leaves_a_generator_seeded_shuffle_order_unchanged(tmp_path):
    (xt, yt), (xv, yv) = _split(*digits_arrays())

    def run(callbacks: list[Callback]) -> tuple[dict[str, torch.Tensor], list[list[int]]]:
        torch.manual_seed(7)
        model = RecordsLabels(mlp(64, 10, dropout=0.5))
        train = loader(xt, yt, shuffle=True, generator=torch.Generator().manual_seed(5))
        trainer = make_trainer(tmp_path, callbacks, max_steps=6, logger=False)
        trainer.fit(model, train, loader(xv, yv, batch_size=64))
        return final_params(model), model.seen

    check = InputIndependentBaseline(steps=20, max_steps=20)
    params_without, seen_without = run([])
    params_with, seen_with = run([check])
    assert check.findings and check.findings[0].status != "skipped", check.findings[0].message
    assert seen_with == seen_without  # the same batches in the same order
    assert_same_params(params_without, params_with)


class RecordsLabels(LitModel):
    def __init__(self, net: nn.Module) -> None:
        super().__init__(net)
        self.seen: list[list[int]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch[1][:8].tolist())
        return super().training_step(batch, batch_idx)


class _Stream(torch.utils.data.IterableDataset):
    """Yields (x, y) pairs from arrays; each ``iter()`` starts a new pass."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y, self.i = torch.as_tensor(x), torch.as_tensor(y), 0

    def __iter__(self):
        for x, y in zip(self.x, self.y):
            self.i += 1
            yield x, y


class _OneShotStream(_Stream):
    """A stream: ``__iter__`` returns the same iterator, what one pass reads is gone."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__(x, y)
        self._it = super().__iter__()

    def __iter__(self):
        return self._it


@pytest.mark.parametrize("one_shot", [True, False], ids=["one-shot-stream", "re-iterable"])
def test_input_independent_reads_an_iterable_dataset_only_when_it_can_be_replayed(tmp_path, one_shot):
    (xt, yt), (xv, yv) = _split(*digits_arrays())
    kind = _OneShotStream if one_shot else _Stream
    stream = kind(xt, yt)
    check = InputIndependentBaseline()
    fit(
        tmp_path,
        LitModel(mlp(64, 10)),
        check,
        (DataLoader(stream, batch_size=32), loader(xv, yv, batch_size=64)),
    )
    [finding] = check.findings
    if one_shot:
        assert finding.status == "skipped"
        assert "_OneShotStream) is a one-shot stream" in finding.message
        alone = kind(xt, yt)
        make_trainer(tmp_path / "alone", max_steps=1).fit(
            LitModel(mlp(64, 10)), DataLoader(alone, batch_size=32)
        )
        assert stream.i == alone.i  # the check took nothing from the stream
    else:
        assert finding.status == "pass", finding.message


class ReadsTrainer(LitModel):
    """Reads its trainer and scheduler in ``training_step``, as many real modules do to log the LR."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        self.log("sched_lr", self.lr_schedulers().get_last_lr()[0])
        scale = 1.0 if self.trainer.current_epoch >= 0 else 0.0
        return super().training_step(batch, batch_idx) * scale


def test_input_independent_runs_on_a_module_that_reads_its_trainer(tmp_path):
    def decay(opt: torch.optim.Optimizer) -> dict:
        return {"scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9), "interval": "step"}

    def run(callbacks: list[Callback], sub: str):
        torch.manual_seed(0)
        model = ReadsTrainer(mlp(64, 10, dropout=0.3), scheduler=decay)
        trainer = make_trainer(tmp_path / sub, callbacks, max_steps=3)
        trainer.fit(model, *digits_loaders())
        lrs = read_events(trainer.logger).scalars("lr")
        return final_params(model), lrs, trainer.lr_scheduler_configs[0].scheduler.last_epoch

    check = InputIndependentBaseline()
    with_check = run([check], "with")
    assert check.findings[0].status == "pass", check.findings[0].message
    without = run([], "without")
    assert_same_params(without[0], with_check[0])
    assert with_check[1:] == without[1:] and with_check[2] == 3


# ---------------------------------------------------------------------- within a one-time budget (issue 14)
class _StopAtFirstBatch(Callback):
    """Plan a long run but end it at its first batch: the one-time checks have run by then."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        trainer.should_stop = True


def _budgeted(tmp_path, max_steps: int, shuffle_labels: bool = False) -> InputIndependentBaseline:
    torch.manual_seed(0)
    check = InputIndependentBaseline(one_time=0.05)
    trainer = make_trainer(tmp_path, [check, _StopAtFirstBatch()], max_steps=max_steps)
    trainer.fit(LitModel(mlp(64, 10)), *digits_loaders(shuffle_labels=shuffle_labels))
    return check


def test_input_independent_a_long_planned_run_allows_more_steps_than_a_short_one(tmp_path, monkeypatch):
    from lightning_recipe.core import budget

    monkeypatch.setattr(budget, "ONE_TIME_FLOOR_S", 0.0)  # no floor: 5% of one planned step is nothing
    short = _budgeted(tmp_path / "short", max_steps=1)
    long = _budgeted(tmp_path / "long", max_steps=10**7)
    # the short run's budget buys less than one round: it gets the minimum a verdict needs
    assert short.budget_steps == 100 and short.findings[0].numbers["budget_short"]
    assert long.budget_steps == 500  # 5% of ten million steps: up to the default max_steps
    for check in (short, long):
        assert check.findings[0].status == "pass", check.findings[0].message
        assert check.findings[0].numbers["steps"] == 25  # a clear pass after the first quarter round
        assert "one-time budget" in check.findings[0].message


def test_input_independent_keeps_its_verdicts_under_the_smallest_budget(tmp_path):
    shuffled = _budgeted(tmp_path / "shuffled", max_steps=1, shuffle_labels=True)
    [finding] = shuffled.findings
    assert finding.status == "fail", finding.message
    assert finding.message.startswith("the model extracts no information from its input")
    assert finding.numbers["steps"] >= 100  # a fail needs a whole round, whatever the budget
    torch.manual_seed(0)
    zeroed = InputIndependentBaseline(one_time=0.05)
    make_trainer(tmp_path / "zeroed", [zeroed], max_steps=1).fit(
        LitModel(IgnoresInput(mlp(64, 10))), *digits_loaders()
    )
    assert zeroed.findings[0].status == "fail" and "identical at every point" in zeroed.findings[0].message


def test_input_independent_explicit_max_steps_stay_fixed_under_a_budget(tmp_path):
    torch.manual_seed(0)
    check = InputIndependentBaseline(max_steps=300, one_time=0.05)
    make_trainer(tmp_path, [check], max_steps=1).fit(LitModel(mlp(64, 10)), *digits_loaders())
    assert check.budget_steps == 300
