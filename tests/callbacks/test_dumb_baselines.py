"""DumbBaselines: real Trainer runs on scikit-learn data; baselines read back from the event files."""

from __future__ import annotations

import json
import math
import pickle
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.nn import functional as F

from lightning_recipe import DumbBaselines
from lightning_recipe.core.baselines import dumb_baselines
from lightning_recipe.core.stats import TargetStats
from tests.helpers import (
    DumpFindings,
    LitModel,
    assert_same_params,
    breast_cancer_arrays,
    diabetes_arrays,
    digits_arrays,
    final_params,
    imbalanced_breast_cancer,
    loader,
    make_trainer,
    mlp,
    png_shape,
    read_events,
)

TAG = "recipe/dumb_baselines"


def _split(x: np.ndarray, y: np.ndarray, frac: float = 0.8) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    idx = np.random.default_rng(0).permutation(len(x))
    k = int(frac * len(x))
    return (x[idx[:k]], y[idx[:k]]), (x[idx[k:]], y[idx[k:]])


def digits_data(shuffle_labels: bool = False) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    (xt, yt), (xv, yv) = _split(*digits_arrays())
    if shuffle_labels:
        rng = np.random.default_rng(1)
        yt, yv = yt[rng.permutation(len(yt))], yv[rng.permutation(len(yv))]
    return (xt, yt), (xv, yv)


def loaders(data: Any, batch_size: int = 64) -> tuple[Any, Any]:
    (xt, yt), (xv, yv) = data
    return loader(xt, yt, batch_size=batch_size, shuffle=True), loader(xv, yv, batch_size=128)


class AccuracyModel(LitModel):
    """Also logs ``val_acc``."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean())


class QuietModel(LitModel):
    """Logs nothing during validation."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_error", F.cross_entropy(self(batch[0]), batch[1]))


def fit(tmp_path: Any, model: Any, callback: DumbBaselines, data_loaders: Any, **kw: Any):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [callback], **{"max_epochs": 3, "max_steps": -1, **kw})
    trainer.fit(model, *data_loaders)
    return trainer


# ---------------------------------------------------------------------- healthy models
def test_dumb_baselines_drawn_as_flat_lines_and_beaten_on_digits(tmp_path):
    data = digits_data()
    baselines = DumbBaselines()
    trainer = fit(tmp_path, LitModel(mlp(64, 10)), baselines, loaders(data))
    (_, yt), (_, yv) = data
    expected = dumb_baselines(
        TargetStats.from_targets(torch.as_tensor(yt), "multiclass", num_classes=10), torch.as_tensor(yv)
    )
    assert baselines.scores == expected
    events = read_events(trainer.logger)
    prior = events.scalars(f"{TAG}/prior_loss")
    accuracy = events.scalars(f"{TAG}/majority_accuracy")
    val_steps = [s for s, _ in events.scalars("val_loss")]
    # at the start, then next to every val_loss point (Lightning logs epoch-end values one step earlier)
    assert prior[0][0] == 0 and len(prior) == len(val_steps) + 1
    assert all(0 <= s - v <= 1 for (s, _), v in zip(prior[1:], val_steps))
    assert all(v == pytest.approx(expected.loss) for _, v in prior) and expected.loss == pytest.approx(
        2.30, abs=0.02
    )
    assert all(v == pytest.approx(expected.metric) for _, v in accuracy) and expected.metric < 0.12
    [finding] = baselines.findings
    assert finding.status == "pass"
    assert finding.message.startswith("val_loss beat the class-prior predictor's cross_entropy loss (2.3")
    assert "first at epoch 0, step 23" in finding.message
    assert finding.numbers["beaten_epoch"] == 0 and finding.numbers["prior_loss"] == pytest.approx(
        expected.loss
    )
    [(step, width, height, png)] = events.images(f"{TAG}/comparison")
    assert step == trainer.global_step and png_shape(png)[:2] == (height, width)
    (tmp_path / "comparison.png").write_bytes(png)


def test_dumb_baselines_imbalanced_data_with_a_prior_bias_is_not_called_dumb_at_init(tmp_path, recwarn):
    x, y = imbalanced_breast_cancer(ratio=10)
    data = _split(x, y.astype(np.float32))
    (_, yt), _ = data
    model = LitModel(mlp(30, 1), loss="bce", lr=3e-3)
    with torch.no_grad():  # the recipe's "init well": the final bias at the log-odds of the prior
        p = float(yt.mean())
        model.net[-1].bias.fill_(math.log(p / (1 - p)))
        model.net[-1].weight.mul_(0.01)
    baselines = DumbBaselines()
    trainer = make_trainer(tmp_path, [baselines], max_epochs=4, max_steps=-1, num_sanity_val_steps=0)
    init_loss = trainer.validate(model, loaders(data)[1], verbose=False)[0]["val_loss"]
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [baselines], max_epochs=4, max_steps=-1)
    trainer.fit(model, *loaders(data, batch_size=32))
    assert baselines.scores is not None
    assert init_loss == pytest.approx(baselines.scores.loss, abs=0.02)  # starts exactly at the baseline
    [finding] = baselines.findings
    assert finding.status == "pass", finding.message
    assert baselines.scores.metric > 0.85  # the majority class alone is 91 % right
    assert not [w for w in recwarn if "DumbBaselines" in str(w.message)]


def test_dumb_baselines_regression_mean_predictor(tmp_path):
    x, y = diabetes_arrays()
    y = ((y - y.mean()) / y.std()).astype(np.float32)  # standardised targets, as a user would
    data = _split(x, y)
    baselines = DumbBaselines(human_baseline=0.3)
    trainer = fit(tmp_path, LitModel(mlp(10, 1), loss="mse"), baselines, loaders(data))
    (_, yt), (_, yv) = data
    mean = float(torch.as_tensor(yt, dtype=torch.float64).mean())
    yv64 = torch.as_tensor(yv, dtype=torch.float64)
    events = read_events(trainer.logger)
    [(_, mse), *_] = events.scalars(f"{TAG}/mean_loss")
    [(_, mae), *_] = events.scalars(f"{TAG}/mean_mae")
    assert mse == pytest.approx(float(((yv64 - mean) ** 2).mean()), rel=1e-5)
    assert mae == pytest.approx(float((yv64 - mean).abs().mean()), rel=1e-5)
    assert all(v == pytest.approx(0.3) for _, v in events.scalars(f"{TAG}/human_baseline"))
    [finding] = baselines.findings
    assert finding.status == "pass", finding.message
    assert "the mean predictor's mse loss" in finding.message
    assert "human baseline 0.3 not reached" in finding.message and baselines.human_reached_at is None


def test_dumb_baselines_accuracy_monitor_and_human_baseline(tmp_path):
    baselines = DumbBaselines(monitor="val_acc", human_baseline=0.9)
    fit(tmp_path, AccuracyModel(mlp(64, 10)), baselines, loaders(digits_data()))
    assert (baselines.compare_to, baselines.mode) == ("accuracy", "max")
    assert baselines.baseline == pytest.approx(baselines.scores.metric)
    [finding] = baselines.findings
    assert finding.status == "pass"
    assert finding.message.startswith("val_acc beat the majority-class predictor's accuracy (0.")
    assert baselines.human_reached_at is not None
    epoch, step, value = baselines.human_reached_at
    assert value >= 0.9 and f"human baseline 0.9 reached at epoch {epoch}, step {step}" in finding.message


# ---------------------------------------------------------------------- bugs
def test_dumb_baselines_warns_when_never_beaten_on_shuffled_labels(tmp_path):
    baselines = DumbBaselines()
    with pytest.warns(UserWarning, match=r"DumbBaselines: val_loss never beat the class-prior predictor"):
        fit(tmp_path, LitModel(mlp(64, 10)), baselines, loaders(digits_data(shuffle_labels=True)))
    [finding] = baselines.findings
    assert finding.status == "warn"
    assert "the model learned nothing a constant does not know" in finding.message
    assert finding.numbers["evaluations"] == 3 and "beaten_epoch" not in finding.numbers
    assert baselines.beaten_at is None


# ---------------------------------------------------------------------- skipped
def test_dumb_baselines_skips_a_missing_monitor_and_lists_what_was_logged(tmp_path):
    baselines = DumbBaselines()
    fit(tmp_path, QuietModel(mlp(64, 10)), baselines, loaders(digits_data()), max_epochs=1)
    [finding] = baselines.findings
    assert finding.status == "skipped"
    assert finding.message.startswith(
        "no metric 'val_loss' was logged during validation; pass `monitor=` one of"
    )
    assert "'val_error'" in finding.message


def test_dumb_baselines_skips_without_validation_data(tmp_path):
    baselines = DumbBaselines()
    fit(tmp_path, LitModel(mlp(64, 10)), baselines, loaders(digits_data())[:1], max_epochs=1)
    [finding] = baselines.findings
    assert finding.status == "skipped" and "`val_dataloaders=`" in finding.message


def test_dumb_baselines_skips_accuracy_for_regression(tmp_path):
    x, y = diabetes_arrays()
    baselines = DumbBaselines(compare_to="accuracy")
    fit(tmp_path, LitModel(mlp(10, 1), loss="mse"), baselines, loaders(_split(x, y)), max_epochs=1)
    [finding] = baselines.findings
    assert finding.status == "skipped"
    assert "compare_to='accuracy' does not fit a regression task" in finding.message


def test_dumb_baselines_skips_an_ambiguous_task_and_names_task(tmp_path):
    x, y = digits_arrays()
    onehot = np.eye(10, dtype=np.float32)[y]
    model = LitModel(mlp(64, 10), loss=lambda out, t: F.cross_entropy(out, t))
    baselines = DumbBaselines()
    fit(tmp_path, model, baselines, loaders(_split(x, onehot)), max_epochs=1)
    [finding] = baselines.findings
    assert finding.status == "skipped"
    assert "cannot infer the task" in finding.message and "task='multiclass'" in finding.message


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"monitor": ""},
            ValueError,
            r"DumbBaselines\(monitor=''\): pass the name of a logged validation metric",
        ),
        (
            {"mode": "up"},
            ValueError,
            r"DumbBaselines\(mode='up'\): unknown value; pass one of 'auto', 'min' or 'max'",
        ),
        (
            {"compare_to": "f1"},
            ValueError,
            r"compare_to='f1'\): unknown value; pass one of 'auto', 'loss', 'accuracy'",
        ),
        (
            {"task": "ranking"},
            ValueError,
            r"DumbBaselines\(task='ranking'\): unknown task; pass one of 'auto'",
        ),
        (
            {"loss": "hinge"},
            ValueError,
            r"DumbBaselines\(loss='hinge'\): unknown value; pass one of 'auto', 'cross_entropy'",
        ),
        (
            {"human_baseline": "95%"},
            ValueError,
            r"human_baseline='95%'\): pass a finite number in the units of monitor='val_loss'",
        ),
        ({"margin": 1.0}, ValueError, r"margin=1.0\): pass a fraction in \[0, 1\)"),
        ({"num_classes": 1}, ValueError, r"num_classes=1\): pass an integer >= 2"),
        ({"ignore_index": 0.5}, TypeError, r"ignore_index=0.5\): pass an integer label or None"),
        ({"max_batches": 0}, ValueError, r"max_batches=0\): pass an integer >= 1"),
        ({"target_key": 2.5}, TypeError, r"target_key=2.5\): expected a dict key"),
        (
            {"monitor": "val_acc", "mode": "min"},
            ValueError,
            r"mode='min', compare_to='accuracy'\): an accuracy is better when higher; pass mode='max'",
        ),
        (
            {"compare_to": "loss", "mode": "max"},
            ValueError,
            r"mode='max', compare_to='loss'\): a loss or error is better when lower; pass mode='min'",
        ),
    ],
)
def test_dumb_baselines_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DumbBaselines(**kwargs)


@pytest.mark.parametrize(
    ("monitor", "mode", "expected"),
    [
        ("val_loss", "auto", ("loss", "min")),
        ("val/acc", "auto", ("accuracy", "max")),
        ("val_mae", "auto", ("mae", "min")),
        ("val_f1", "max", ("accuracy", "max")),
        ("val_score", "min", ("loss", "min")),
    ],
)
def test_dumb_baselines_infers_what_to_compare_from_the_monitor(monitor, mode, expected):
    baselines = DumbBaselines(monitor=monitor, mode=mode)
    assert (baselines.compare_to, baselines.mode) == expected


# ---------------------------------------------------------------------- state, resume, observer effect
def test_dumb_baselines_state_round_trip_and_resume(tmp_path):
    data = loaders(digits_data())
    baselines = DumbBaselines()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [baselines, ckpt], max_epochs=2, max_steps=-1, enable_checkpointing=True)
    trainer.fit(LitModel(mlp(64, 10)), *data)
    state = baselines.state_dict()
    assert len(state["history"]) == 2 and state["beaten_at"][0] == 0
    clone = pickle.loads(pickle.dumps(baselines))
    fresh = DumbBaselines()
    fresh.load_state_dict(clone.state_dict())
    assert fresh.state_dict() == state

    resumed = DumbBaselines()
    trainer = make_trainer(
        tmp_path,
        [resumed, ModelCheckpoint(dirpath=tmp_path / "ckpt2")],
        max_epochs=3,
        max_steps=-1,
        enable_checkpointing=True,
    )
    trainer.fit(LitModel(mlp(64, 10)), *data, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert len(resumed.history) == 3 and resumed.history[:2] == baselines.history
    assert resumed.beaten_at == baselines.beaten_at
    [finding] = resumed.findings
    assert finding.status == "pass" and "first at epoch 0" in finding.message


def test_dumb_baselines_leave_training_bit_identical(tmp_path):
    def run(callbacks: list[Callback]) -> dict[str, torch.Tensor]:
        torch.manual_seed(3)
        model = LitModel(mlp(64, 10, dropout=0.5))
        torch.manual_seed(3)
        trainer = make_trainer(tmp_path, callbacks, max_epochs=2, max_steps=-1, logger=False)
        trainer.fit(model, *loaders(digits_data()))
        return final_params(model)

    baselines = DumbBaselines(human_baseline=0.1)
    assert_same_params(run([]), run([baselines]))
    assert baselines.findings


def test_dumb_baselines_are_quiet_during_the_sanity_check(tmp_path):
    baselines = DumbBaselines()
    trainer = fit(
        tmp_path,
        LitModel(mlp(64, 10)),
        baselines,
        loaders(digits_data()),
        max_epochs=2,
        num_sanity_val_steps=2,
    )
    assert len(baselines.history) == 2
    assert len(read_events(trainer.logger).scalars(f"{TAG}/prior_loss")) == 3  # step 0 + two validations


# ---------------------------------------------------------------------- DDP
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_dumb_baselines_same_verdict_on_every_rank_under_ddp(tmp_path):
    data = digits_data()
    baselines = DumbBaselines()
    strategy = DDPStrategy(start_method="fork", timeout=timedelta(seconds=60))
    trainer = make_trainer(
        tmp_path,
        [baselines, DumpFindings(tmp_path, baselines)],
        max_epochs=2,
        max_steps=-1,
        devices=2,
        strategy=strategy,
    )
    log_dir = trainer.logger.log_dir
    torch.manual_seed(0)
    trainer.fit(LitModel(mlp(64, 10)), *loaders(data))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [f["status"] for f in ranks[0]] == [f["status"] for f in ranks[1]] == ["pass"]
    assert ranks[0][0]["numbers"] == ranks[1][0]["numbers"]  # val_loss reduced to one number for both
    (_, yt), (_, yv) = data
    expected = dumb_baselines(
        TargetStats.from_targets(torch.as_tensor(yt), "multiclass", num_classes=10), torch.as_tensor(yv)
    )
    assert ranks[0][0]["numbers"]["prior_loss"] == pytest.approx(expected.loss)
    events = read_events(log_dir)
    assert len(events.scalars(f"{TAG}/prior_loss")) == 3  # rank zero writes: step 0 + two validations


# ---------------------------------------------------------------------- sequences, shuffled loaders, streams
class _Tokens(torch.utils.data.Dataset):
    """Digits as token sequences (pixel intensities 0-16): predict the next pixel; the last 8 are padding."""

    def __init__(self, x: np.ndarray) -> None:
        self.tokens = (torch.as_tensor(x).reshape(len(x), -1) * 16).round().long()

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        seq = self.tokens[i]
        labels = seq[1:].clone()
        labels[-8:] = -100  # padding, ignored by F.cross_entropy (its default ignore_index)
        return {"input_ids": seq[:-1], "labels": labels}


class TinyLM(LitModel):
    def __init__(self) -> None:
        super().__init__(torch.nn.Sequential(torch.nn.Embedding(17, 32), torch.nn.Linear(32, 17)))
        self.seen: list[list[int]] = []

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self(batch["input_ids"])  # (N, T, 17)
        return F.cross_entropy(logits.transpose(1, 2), batch["labels"])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch["labels"][:4, 0].tolist())
        return self._loss(batch)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch))


def test_dumb_baselines_leave_out_padding_labels_by_default(tmp_path):
    (xt, _), (xv, _) = digits_data()
    data = (
        torch.utils.data.DataLoader(_Tokens(xt), batch_size=64, shuffle=True),
        torch.utils.data.DataLoader(_Tokens(xv), batch_size=128),
    )
    baselines = DumbBaselines()
    fit(tmp_path, TinyLM(), baselines, data, max_epochs=2)
    [finding] = baselines.findings
    assert finding.status == "pass", finding.message
    assert baselines.scores is not None and 1.0 < baselines.scores.loss < math.log(17)
    explicit = DumbBaselines(ignore_index=None)  # every label counts: -100 is out of range
    fit(tmp_path / "none", TinyLM(), explicit, data, max_steps=1)
    assert (
        explicit.findings[0].status == "skipped"
        and "negative class label -100" in explicit.findings[0].message
    )


def test_dumb_baselines_leave_a_generator_seeded_shuffle_order_unchanged(tmp_path):
    (xt, _), (xv, _) = digits_data()

    def run(callbacks: list[Any]) -> tuple[dict[str, torch.Tensor], list[list[int]]]:
        torch.manual_seed(0)
        model = TinyLM()
        train = torch.utils.data.DataLoader(
            _Tokens(xt), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(5)
        )
        trainer = make_trainer(tmp_path, callbacks, max_steps=5, logger=False)
        trainer.fit(model, train, torch.utils.data.DataLoader(_Tokens(xv), batch_size=128))
        return final_params(model), model.seen

    baselines = DumbBaselines()
    params_with, seen_with = run([baselines])
    assert baselines.scores is not None  # it read the training loader (no targets on the dataset)
    params_without, seen_without = run([])
    assert seen_with == seen_without
    assert_same_params(params_without, params_with)


class _OneShot(torch.utils.data.IterableDataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self._it = iter(zip(torch.as_tensor(x), torch.as_tensor(y)))

    def __iter__(self):
        return self._it


def test_dumb_baselines_skip_a_one_shot_training_stream(tmp_path):
    (xt, yt), (xv, yv) = digits_data()
    baselines = DumbBaselines()
    train = torch.utils.data.DataLoader(_OneShot(xt, yt), batch_size=64)
    fit(tmp_path, LitModel(mlp(64, 10)), baselines, (train, loader(xv, yv)), max_steps=3)
    [finding] = baselines.findings
    assert finding.status == "skipped"
    assert "the training data (_OneShot) is a one-shot stream" in finding.message


def test_dumb_baselines_call_a_forward_kwargs_module_to_infer_the_task(tmp_path):
    from tests.callbacks.kwargs_model import KwargsClassifier, dict_loader

    # 0/1 labels: binary or two-class multiclass, which only the model's 2 logits can tell
    (xt, yt), (xv, yv) = _split(*imbalanced_breast_cancer(ratio=2))
    baselines = DumbBaselines()
    data = (dict_loader(xt, yt, batch_size=64, shuffle=True), dict_loader(xv, yv, batch_size=128))
    fit(tmp_path, KwargsClassifier(in_features=30, num_classes=2), baselines, data)
    [finding] = baselines.findings
    assert finding.status == "pass", finding.message
    assert baselines.scores is not None and baselines.scores.task == "multiclass"
    assert finding.numbers["best_value"] < 0.5 * finding.numbers["baseline"]


@pytest.mark.parametrize("weighted", [True, False], ids=["pos_weight", "plain_bce"])
def test_dumb_baselines_skips_the_loss_comparison_for_a_class_weighted_loss(tmp_path, weighted):
    """A healthy classifier trained with ``BCEWithLogitsLoss(pos_weight=)`` reports a weighted val_loss,
    above the unweighted constant baseline it was compared with ("never beat the class-prior
    predictor", a false alarm): the loss comparison is skipped, saying why; the plain twin is judged."""
    x, y = breast_cancer_arrays()
    y = y.astype(np.float32)
    loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([4.0])) if weighted else nn.BCEWithLogitsLoss()

    def bce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return loss(out.squeeze(-1), target)

    model = LitModel(mlp(30, 1), loss=bce)
    model.weighting = loss  # the module holds its loss, as users write it
    baselines = DumbBaselines()
    fit(tmp_path, model, baselines, loaders(_split(x, y)), max_epochs=2)
    [finding] = baselines.findings
    if weighted:
        assert finding.status == "skipped", finding.message
        assert finding.message.startswith(
            "the loss is class-weighted (BCEWithLogitsLoss(pos_weight=) at 'weighting')"
        )
    else:
        assert finding.status == "pass", finding.message


def test_dumb_baselines_scores_the_mean_predictor_with_the_modules_huber_loss(tmp_path):
    """A regressor trained with ``nn.HuberLoss()`` logs a Huber val_loss: the mean predictor is scored
    with the same loss, not MSE (a bar about twice as far up on standardised targets)."""
    x, y = diabetes_arrays()
    y = ((y - y.mean()) / y.std()).astype(np.float32)

    def huber(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return model.huber(out.squeeze(-1), target)

    model = LitModel(mlp(10, 1), loss=huber)
    model.huber = nn.HuberLoss()
    baselines = DumbBaselines()
    fit(tmp_path, model, baselines, loaders(_split(x, y)), max_epochs=4)
    (_, yt), (_, yv) = _split(x, y)
    mean_predictor = float(
        F.huber_loss(torch.full_like(torch.as_tensor(yv), float(yt.mean())), torch.as_tensor(yv))
    )
    assert baselines.scores is not None and baselines.scores.loss_name == "huber"
    assert baselines.scores.loss == pytest.approx(mean_predictor, rel=1e-4)
    [finding] = baselines.findings
    assert finding.status == "pass" and "the mean predictor's huber loss" in finding.message, finding.message
