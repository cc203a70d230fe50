"""FinalBiasInit on real data: exact biases, only the bias changes, skips that never crash, resume, DDP."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_recipe import FinalBiasInit, LossAtInitCheck
from tests.helpers import (
    LitModel,
    ManualGAN,
    diabetes_arrays,
    digits_arrays,
    imbalanced_breast_cancer,
    loader,
    make_trainer,
    mlp,
    png_shape,
    read_events,
    small_cnn,
)


class BiasProbe(Callback):
    """Records every parameter right after FinalBiasInit ran (place it after FinalBiasInit)."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer, pl_module):
        self.before = {k: v.detach().clone() for k, v in pl_module.named_parameters()}

    def on_train_start(self, trainer, pl_module):
        self.after = {k: v.detach().clone() for k, v in pl_module.named_parameters()}


def fit(tmp_path, model, data, *callbacks, **kw):
    probe = BiasProbe()
    kw.setdefault("max_steps", 1)
    trainer = make_trainer(tmp_path, [*callbacks, probe], **kw)
    trainer.fit(model, data)
    return trainer, probe


def multilabel_arrays(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    y = (rng.random((n, 4)) < np.array([0.05, 0.2, 0.5, 0.85])).astype(np.float32)
    return x, y


# ---------------------------------------------------------------------- exact biases on real data
def test_digits_bias_is_log_prior_and_only_the_bias_changes(tmp_path):
    torch.manual_seed(0)
    x, y = digits_arrays()
    init = FinalBiasInit()
    model = LitModel(small_cnn())
    trainer, probe = fit(tmp_path, model, loader(x, y, shuffle=True), init)
    prior = np.bincount(y, minlength=10) / len(y)
    assert init.layer_name == "net.4" and init.applied
    np.testing.assert_allclose(probe.after["net.4.bias"].numpy(), np.log(prior), atol=1e-5)
    for name, before in probe.before.items():
        if name != "net.4.bias":
            assert torch.equal(before, probe.after[name]), f"{name} changed"
    (finding,) = init.findings
    assert finding.status == "pass"
    assert (
        "set the final bias of 'net.4' (Linear, 10 outputs) to log(prior) of 1797 training targets"
        in finding.message
    )
    assert finding.numbers["uninformative_loss"] == pytest.approx(math.log(10))
    events = read_events(trainer.logger)
    assert events.scalars("recipe/bias_init/uninformative_loss")[0] == (
        0,
        pytest.approx(math.log(10), abs=1e-5),
    )
    entropy = float(-(prior * np.log(prior)).sum())
    assert events.scalars("recipe/bias_init/expected_loss")[0][1] == pytest.approx(entropy, abs=1e-5)
    ((step, w, h, png),) = events.images("recipe/bias_init/priors")
    assert step == 0 and png_shape(png)[:2] == (h, w) and w >= 300


@pytest.mark.parametrize("head", ["bce1", "ce2"])
def test_imbalanced_breast_cancer_bias_and_loss_at_init(tmp_path, head):
    torch.manual_seed(0)
    x, y = imbalanced_breast_cancer()
    p = float(y.mean())
    net = mlp(30, 1 if head == "bce1" else 2)
    model = LitModel(net, loss="bce" if head == "bce1" else "ce")
    init, check = FinalBiasInit(), LossAtInitCheck()
    _, probe = fit(tmp_path, model, loader(x, y, batch_size=64, shuffle=True), init, check)
    bias = probe.after["net.3.bias"].double()
    if head == "bce1":
        assert init.resolved_task == "binary"
        np.testing.assert_allclose(bias.numpy(), [math.log(p / (1 - p))], atol=1e-5)
    else:
        assert init.resolved_task == "multiclass"
        np.testing.assert_allclose(bias.numpy(), np.log([1 - p, p]), atol=1e-5)
    (finding,) = check.findings
    assert finding.status == "pass", finding.message
    h = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert finding.numbers["bias_from"] == "FinalBiasInit"
    assert finding.numbers["measured"] == pytest.approx(finding.numbers["expected"], rel=0.3)
    assert finding.numbers["measured"] < 0.5 * math.log(2)  # well below ln 2 and near H(prior)
    assert h < 0.35


def test_diabetes_bias_is_the_target_mean(tmp_path):
    torch.manual_seed(0)
    x, y = diabetes_arrays()
    net = mlp(10, 1)
    init, check = FinalBiasInit(), LossAtInitCheck()
    _, probe = fit(tmp_path, LitModel(net, loss="mse"), loader(x, y, shuffle=True), init, check)
    assert init.resolved_task == "regression"
    bias = float(probe.after["net.3.bias"])
    assert bias == pytest.approx(float(y.astype(np.float64).mean()), rel=1e-6)
    assert 150 < bias < 155
    assert check.findings[0].status == "pass"
    assert check.findings[0].numbers["expected_is"] == "Var[y]"


def test_multilabel_bias_is_log_odds_per_label(tmp_path):
    torch.manual_seed(0)
    x, y = multilabel_arrays()
    net = mlp(12, 4)
    init, check = FinalBiasInit(), LossAtInitCheck()
    _, probe = fit(tmp_path, LitModel(net, loss="bce"), loader(x, y, shuffle=True), init, check)
    p = y.mean(0).astype(np.float64)
    assert init.resolved_task == "multilabel"
    np.testing.assert_allclose(probe.after["net.3.bias"].double().numpy(), np.log(p / (1 - p)), atol=1e-5)
    assert check.findings[0].status == "pass"


def test_given_priors_and_target_mean_skip_the_scan(tmp_path):
    torch.manual_seed(0)
    net = mlp(4, 3)
    data = DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=8)  # no targets at all

    class NoTargets(LitModel):
        def training_step(self, batch, batch_idx):
            return self(batch[0]).pow(2).mean()

    model = NoTargets(net)
    init = FinalBiasInit(priors=[0.5, 0.3, 0.2])
    _, probe = fit(tmp_path, model, data, init)
    softmax = torch.softmax(probe.after["net.3.bias"].double(), 0).numpy()
    np.testing.assert_allclose(softmax, [0.5, 0.3, 0.2], atol=1e-6)
    init = FinalBiasInit(target_mean=[10.0, -3.0])
    _, probe = fit(tmp_path, NoTargets(mlp(4, 2)), data, init)
    assert probe.after["net.3.bias"].tolist() == [10.0, -3.0]


def test_layer_argument_picks_the_layer(tmp_path):
    torch.manual_seed(0)
    x, y = digits_arrays()

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
            self.cls = nn.Linear(16, 10)
            self.aux = nn.Linear(16, 3)  # runs last, but is not the classifier

        def forward(self, x):
            h = self.body(x)
            self.aux(h)
            return self.cls(h)

    net = TwoHeads()
    init = FinalBiasInit(layer="net.cls")
    _, probe = fit(tmp_path, LitModel(net), loader(x, y), init)
    prior = np.bincount(y, minlength=10) / len(y)
    np.testing.assert_allclose(probe.after["net.cls.bias"].double().numpy(), np.log(prior), atol=1e-5)


# ---------------------------------------------------------------------- cannot apply: skipped, training goes on
def test_final_layer_without_bias_is_skipped(tmp_path):
    x, y = digits_arrays()
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10, bias=False))
    init = FinalBiasInit()
    trainer, _ = fit(tmp_path, LitModel(net), loader(x, y), init, max_steps=2)
    (finding,) = init.findings
    assert finding.status == "skipped" and trainer.global_step == 2
    assert (
        "the final layer 'net.1' (Linear) has no bias, so there is none to set (a language model's head "
        "usually has none; elsewhere build it with bias=True), or pass `layer=`" in finding.message
    )


def test_boring_model_without_targets_is_skipped(tmp_path):
    init = FinalBiasInit()
    trainer = make_trainer(tmp_path, [init], max_steps=2, limit_val_batches=0)
    trainer.fit(BoringModel())
    (finding,) = init.findings
    assert finding.status == "skipped" and trainer.global_step == 2
    assert "found no targets in the training batch; pass `target_key=`" in finding.message


def test_output_width_that_does_not_fit_the_classes_names_both(tmp_path):
    x, y = digits_arrays()
    net = mlp(64, 5)
    init = FinalBiasInit(task="multiclass")
    _, probe = fit(tmp_path, LitModel(net, loss=lambda o, t: F.cross_entropy(o, t % 5)), loader(x, y), init)
    (finding,) = init.findings
    assert finding.status == "skipped"
    assert "has 5 outputs but the targets have 10 classes" in finding.message
    assert torch.equal(probe.after["net.3.bias"], probe.before["net.3.bias"])


def test_absent_class_gets_a_finite_bias_and_a_warning(tmp_path):
    x, y = digits_arrays()
    keep = y != 9
    net = mlp(64, 10)
    init = FinalBiasInit()
    with pytest.warns(UserWarning, match="never occur"):
        _, probe = fit(tmp_path, LitModel(net), loader(x[keep], y[keep]), init)
    (finding,) = init.findings
    n = int(keep.sum())
    assert finding.status == "warn" and finding.numbers["floored"] == [9]
    bias = probe.after["net.3.bias"].double()
    assert bool(torch.isfinite(bias).all())
    assert float(bias[9]) == pytest.approx(math.log(0.5 / n), abs=1e-5)
    prior = np.bincount(y[keep], minlength=10)[:9] / n
    np.testing.assert_allclose(bias[:9].numpy(), np.log(prior), atol=1e-5)


def test_ambiguous_one_hot_targets_name_the_task_argument(tmp_path):
    x, y = digits_arrays()
    onehot = np.eye(10, dtype=np.float32)[y]
    init = FinalBiasInit()
    fit(tmp_path, LitModel(mlp(64, 10), loss=lambda o, t: F.cross_entropy(o, t)), loader(x, onehot), init)
    assert init.findings[0].status == "skipped"
    assert "task='multiclass' or task='multilabel'" in init.findings[0].message


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task": "multi"}, ValueError, r"FinalBiasInit\(task='multi'\): unknown task"),
        ({"priors": [0.5, -0.1]}, ValueError, r"priors=.*between 0 and 1"),
        ({"priors": "abc"}, TypeError, r"priors='abc'"),
        ({"target_mean": [float("nan")]}, ValueError, "finite"),
        ({"priors": [1.0], "target_mean": 1.0}, ValueError, "not both"),
        ({"task": "regression", "priors": [0.5]}, ValueError, "regression takes target_mean="),
        ({"task": "binary", "target_mean": 3.0}, ValueError, "target_mean= is for task='regression'"),
        ({"max_batches": 0}, ValueError, r"max_batches=0"),
        ({"layer": ""}, TypeError, "qualified name"),
        ({"target_key": 1.5}, TypeError, "target_key=1.5"),
    ],
)
def test_bad_arguments_raise_with_the_argument_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        FinalBiasInit(**kwargs)


def test_unknown_layer_fails_in_setup_with_the_candidates(tmp_path):
    x, y = digits_arrays()
    trainer = make_trainer(tmp_path, [FinalBiasInit(layer="head.fc")])
    with pytest.raises(ValueError, match=r"FinalBiasInit\(layer=...\)='head.fc': no such module"):
        trainer.fit(LitModel(mlp(64, 10)), loader(x, y))


def test_priors_of_the_wrong_length_name_both_numbers(tmp_path):
    x, y = digits_arrays()
    trainer = make_trainer(tmp_path, [FinalBiasInit(priors=[0.5, 0.5])])
    with pytest.raises(ValueError, match=r"got 2 priors but the final layer 'net\.3' has 10 outputs"):
        trainer.fit(LitModel(mlp(64, 10)), loader(x, y))


# ---------------------------------------------------------------------- state, resume, sanity check
def test_state_dict_and_pickle_round_trip():
    init = FinalBiasInit()
    init._done, init.applied, init.layer_name = True, True, "net.3"
    init.bias = torch.tensor([0.1, -0.2], dtype=torch.float64)
    other = FinalBiasInit()
    other.load_state_dict(init.state_dict())
    assert other.state_dict() == init.state_dict()
    clone = pickle.loads(pickle.dumps(init))
    assert clone.state_dict() == init.state_dict()
    fresh = FinalBiasInit()
    fresh.load_state_dict({})
    assert fresh.state_dict()["done"] is False


def test_resume_from_a_checkpoint_does_not_reinitialise_the_trained_bias(tmp_path):
    torch.manual_seed(0)
    x, y = digits_arrays()
    data = loader(x, y, shuffle=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    model = LitModel(mlp(64, 10), lr=0.05)
    fit(tmp_path, model, data, FinalBiasInit(), ckpt, max_steps=20, enable_checkpointing=True)
    path = str(tmp_path / "ckpt" / "last.ckpt")
    trained_bias = torch.load(path, weights_only=False)["state_dict"]["net.3.bias"]
    prior_bias = torch.log(torch.as_tensor(np.bincount(y, minlength=10) / len(y)))
    assert not torch.allclose(trained_bias.double(), prior_bias, atol=1e-3)

    resumed = FinalBiasInit()
    probe = BiasProbe()
    trainer = make_trainer(tmp_path / "resume", [resumed, probe], max_steps=21)
    trainer.fit(LitModel(mlp(64, 10), lr=0.05), data, ckpt_path=path)
    assert torch.equal(probe.after["net.3.bias"], trained_bias)
    (finding,) = resumed.findings
    assert finding.status == "skipped" and "resumed from a checkpoint" in finding.message


def test_quiet_outside_fit_and_in_the_sanity_check(tmp_path):
    x, y = digits_arrays()
    init = FinalBiasInit()
    model = LitModel(mlp(64, 10))
    before = model.net[-1].bias.detach().clone()
    trainer = make_trainer(tmp_path, [init])
    trainer.validate(model, loader(x, y))
    assert init.findings == [] and torch.equal(model.net[-1].bias.detach(), before)


# ---------------------------------------------------------------------- DDP
class RankShardModel(LitModel):
    """Each rank trains on its own shard with a different class balance (no DistributedSampler)."""

    def train_dataloader(self):
        x, y = digits_arrays()
        rank = self.trainer.global_rank
        keep = (y < 5) if rank == 0 else (y >= 3)
        return loader(x[keep], y[keep], batch_size=32)

    def on_train_start(self):
        torch.save(
            self.net[-1].bias.detach().clone(), f"{self.out_dir}/bias_rank{self.trainer.global_rank}.pt"
        )

    def on_train_end(self):
        (check,) = [c for c in self.trainer.callbacks if isinstance(c, LossAtInitCheck)]
        with open(f"{self.out_dir}/verdict_rank{self.trainer.global_rank}.txt", "w") as fh:
            fh.write(f"{check.findings[0].status}|{check.findings[0].message}")


@pytest.mark.slow
def test_ddp_each_rank_sets_the_global_prior(tmp_path):
    torch.manual_seed(0)
    model = RankShardModel(mlp(64, 10))
    model.out_dir = str(tmp_path)
    init = FinalBiasInit()
    trainer = make_trainer(
        tmp_path,
        [init, LossAtInitCheck()],
        strategy="ddp_fork",
        devices=2,
        max_steps=1,
        use_distributed_sampler=False,
        logger=False,
    )
    trainer.fit(model)
    _, y = digits_arrays()
    union = np.concatenate([y[y < 5], y[y >= 3]])
    prior = np.bincount(union, minlength=10) / len(union)
    b0, b1 = torch.load(tmp_path / "bias_rank0.pt"), torch.load(tmp_path / "bias_rank1.pt")
    assert torch.equal(b0, b1)
    np.testing.assert_allclose(b0.double().numpy(), np.log(prior), atol=1e-5)
    # LossAtInitCheck reduces its numbers: the same verdict on both ranks
    v0 = (tmp_path / "verdict_rank0.txt").read_text()
    assert v0 == (tmp_path / "verdict_rank1.txt").read_text() and v0.startswith("pass|")


# ---------------------------------------------------------------------- manual optimization, odd data sources
def test_manual_optimization_is_skipped_unless_the_task_is_given(tmp_path):
    x, y = imbalanced_breast_cancer(ratio=9)
    init = FinalBiasInit()
    model = ManualGAN(30)
    _, probe = fit(tmp_path / "a", model, loader(x, y, batch_size=32), init, max_steps=2)
    (finding,) = init.findings
    assert finding.status == "skipped" and not init.applied
    assert finding.message.startswith("skipped, because the module uses manual optimization")
    assert "pass `task=` or `layer=` to set it" in finding.message
    assert torch.equal(
        probe.before["net.3.bias"], probe.after["net.3.bias"]
    )  # the discriminator's bias untouched
    # the twin: told the task, it sets the bias (the user means it)
    told = FinalBiasInit(task="binary")
    _, probe = fit(tmp_path / "b", ManualGAN(30), loader(x, y, batch_size=32), told, max_steps=2)
    assert told.applied and told.layer_name == "net.3"
    p = float(np.mean(y))
    assert float(probe.after["net.3.bias"]) == pytest.approx(math.log(p / (1 - p)), abs=1e-5)


class _DictDigits(torch.utils.data.Dataset):
    """Digits as dict samples: no targets attribute, so the statistics come from iterating the loader."""

    def __init__(self) -> None:
        x, y = digits_arrays()
        self.x, self.y = torch.as_tensor(x), torch.as_tensor(y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], "label": self.y[i]}


class _LabelRecorder(Callback):
    def __init__(self) -> None:
        self.labels: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.labels.append(batch["label"].tolist())


class _DictModel(LitModel):
    def training_step(self, batch, batch_idx):
        return self.loss_fn(self(batch["image"]), batch["label"])

    validation_step = None


def test_scanning_the_loader_leaves_the_training_order_alone(tmp_path):
    def run(callbacks, sub):
        recorder = _LabelRecorder()
        data = DataLoader(
            _DictDigits(), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
        trainer = make_trainer(tmp_path / sub, [*callbacks, recorder], max_steps=4)
        trainer.fit(_DictModel(mlp(64, 10)), data)
        return recorder.labels

    init = FinalBiasInit()
    with_init = run([init], "init")
    assert init.applied and init.stats.source == "dataloader" and init.stats.count == 1797
    assert with_init == run([], "plain")  # the loader's own generator was restored: the same batches


class _EndlessDigits(torch.utils.data.IterableDataset):
    def __iter__(self):
        x, y = digits_arrays()
        i = 0
        while True:
            yield torch.as_tensor(x[i % len(y)]), int(y[i % len(y)])
            i += 1


class _OneShotDigits(torch.utils.data.IterableDataset):
    def __init__(self) -> None:
        x, y = digits_arrays()
        self._rows = iter([(torch.as_tensor(a), int(b)) for a, b in zip(x, y)])

    def __iter__(self):
        return self._rows


def test_an_endless_iterable_dataset_gives_an_estimate_from_a_bounded_scan(tmp_path):
    init = FinalBiasInit()
    fit(tmp_path / "a", LitModel(mlp(64, 10)), DataLoader(_EndlessDigits(), batch_size=50), init, max_steps=2)
    assert init.applied and init.stats.estimated and init.stats.count == 100 * 50
    assert "of 5000 training targets (estimated from 100 batches)" in init.findings[0].message
    # an integer limit_train_batches bounds it instead
    init = FinalBiasInit()
    fit(
        tmp_path / "b",
        LitModel(mlp(64, 10)),
        DataLoader(_EndlessDigits(), batch_size=50),
        init,
        max_steps=2,
        limit_train_batches=7,
    )
    assert init.stats.count == 350 and "(estimated from 7 batches)" in init.findings[0].message


def test_a_one_shot_iterator_is_not_read(tmp_path):
    init = FinalBiasInit()
    model = LitModel(mlp(64, 10))
    trainer = make_trainer(tmp_path / "a", [init], max_epochs=1, max_steps=-1)
    trainer.fit(model, DataLoader(_OneShotDigits(), batch_size=64))
    assert len(model.train_losses) == math.ceil(1797 / 64)  # training saw every sample
    (finding,) = init.findings
    assert finding.status == "skipped" and "one-shot iterator" in finding.message
    assert "pass `layer=` and `priors=` / `target_mean=`" in finding.message
    # the twin: given the layer and the priors it needs no data
    told = FinalBiasInit(layer="net.3", priors=[0.1] * 10)
    model = LitModel(mlp(64, 10))
    trainer = make_trainer(tmp_path / "b", [told], max_epochs=1, max_steps=-1)
    trainer.fit(model, DataLoader(_OneShotDigits(), batch_size=64))
    assert told.applied and len(model.train_losses) == math.ceil(1797 / 64)


# ---------------------------------------------------------------------- a forward(**batch) module
class _DictData(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class KwargsModel(LightningModule):
    """Hugging Face style: ``forward(**batch)`` computes its own loss and returns a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, **batch):
        logits = self.head(torch.relu(self.body(batch["x"])))
        return {"loss": F.cross_entropy(logits, batch["labels"]), "logits": logits}

    def training_step(self, batch, batch_idx):
        return self(**batch)["loss"]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_a_forward_kwargs_module_gets_its_bias_set(tmp_path):
    y = torch.tensor([0] * 6 + [1] * 3 + [2]).repeat(8)  # priors 0.6, 0.3, 0.1
    data = DataLoader(_DictData(torch.randn(len(y), 6), y), batch_size=16)
    init = FinalBiasInit(log_figure=False)
    fit(tmp_path, KwargsModel(), data, init)
    finding = init.findings[0]
    assert finding.status == "pass", finding.message
    assert init.applied and init.layer_name == "head" and init.resolved_task == "multiclass"
    assert torch.softmax(init.bias, 0).tolist() == pytest.approx([0.6, 0.3, 0.1], abs=1e-9)


@pytest.mark.parametrize("head", ["causal_conv", "gru"])
def test_a_per_position_regression_head_gets_the_pooled_target_mean(tmp_path, head):
    # one output applied at every time step: (N, T) targets, a head of width 1
    from lightning_recipe import LossAtInitCheck
    from tests.helpers import CausalConv1d, RecurrentRegressor, sine_sequences

    x, y = sine_sequences(128, 32)
    y = y + 3.0  # a target mean far from the default bias
    torch.manual_seed(0)
    net = CausalConv1d() if head == "causal_conv" else RecurrentRegressor(hidden=8)
    init, check = FinalBiasInit(log_figure=False), LossAtInitCheck()
    fit(tmp_path, LitModel(net, loss="mse"), loader(x, y, batch_size=32), init, check)
    (finding,) = init.findings
    assert finding.status == "pass", finding.message
    assert "32 values each, pooled" in finding.message
    assert init.bias.reshape(-1).tolist() == pytest.approx([float(np.mean(y, dtype=np.float64))], rel=1e-9)
    assert check.findings[0].status == "pass", check.findings[0].message


def test_a_two_output_head_on_many_target_values_is_still_skipped(tmp_path):
    from tests.helpers import sine_sequences

    x, y = sine_sequences(64, 32)
    init = FinalBiasInit(log_figure=False)
    fit(
        tmp_path, LitModel(mlp(32, 2), loss=lambda o, t: F.mse_loss(o.mean(1), t.mean(1))), loader(x, y), init
    )
    (finding,) = init.findings
    # 32 float values a sample beside 2 outputs: not what the head predicts (a second input?)
    assert finding.status == "skipped"
    assert "float values of shape (32, 32) do not fit outputs of shape (32, 2)" in finding.message, (
        finding.message
    )


class _CountingDictDigits(_DictDigits):
    """The digits repeated ``copies`` times as dict samples, counting the samples read."""

    def __init__(self, copies: int) -> None:
        super().__init__()
        self.x = self.x.repeat(copies, *([1] * (self.x.dim() - 1)))
        self.y = self.y.repeat(copies)
        self.reads = 0

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        self.reads += 1
        return super().__getitem__(i)


class _ReadsAtTrainStart(Callback):
    def __init__(self, dataset: _CountingDictDigits) -> None:
        self.dataset, self.reads = dataset, None

    def on_train_start(self, trainer, pl_module):
        self.reads = self.dataset.reads


@pytest.mark.parametrize("one_time", [0.05, None])
def test_within_the_one_time_budget_a_large_loader_is_read_from_a_random_subset(tmp_path, one_time):
    # dict samples without a targets attribute: the loader must be iterated, which on a large
    # dataset is a whole pass over the data before training; within the budget it reads a fixed
    # random subset (at least 4096 samples) and the bias is still log(prior) of the whole data
    data = _CountingDictDigits(copies=6)  # 10782 samples
    init = FinalBiasInit(one_time=one_time)
    reads = _ReadsAtTrainStart(data)
    trainer = make_trainer(tmp_path, [init, reads], max_steps=4)
    trainer.fit(_DictModel(mlp(64, 10)), DataLoader(data, batch_size=64, shuffle=True))
    prior = torch.bincount(data.y, minlength=10).double() / len(data.y)
    (finding,) = init.findings
    assert finding.status == "pass" and init.applied
    if one_time is None:
        assert init.stats.count == len(data) and not init.stats.estimated
        assert torch.allclose(init.bias, prior.log(), atol=1e-6)
    else:
        assert init.stats.count == 4096 and init.stats.estimated and init.stats.subset == 4096
        assert reads.reads <= 4096 + 2 * 64  # the subset and the first batch, not the 10782 samples
        assert torch.allclose(init.bias, prior.log(), atol=0.15)
        assert not torch.allclose(init.bias, prior.log(), atol=1e-6)  # an estimate, honestly labelled
        assert "a fixed random subset of the data" in finding.message
        assert "4096 samples at most" in finding.message and finding.numbers["subset_samples"] == 4096


def test_within_the_one_time_budget_dataset_targets_are_still_read_whole(tmp_path):
    x, y = digits_arrays()
    init = FinalBiasInit(one_time=0.05)
    trainer = make_trainer(tmp_path, [init], max_steps=2)
    trainer.fit(LitModel(mlp(64, 10)), loader(np.concatenate([x] * 3), np.tile(y, 3)))
    assert init.stats.source == "dataset" and init.stats.count == 3 * len(y) and init.stats.subset is None


class _SubsetRecorder(_DictModel):
    def on_train_start(self):
        (init,) = [c for c in self.trainer.callbacks if isinstance(c, FinalBiasInit)]
        rank = self.trainer.global_rank
        torch.save(self.net[-1].bias.detach().clone(), f"{self.out_dir}/bias_rank{rank}.pt")
        with open(f"{self.out_dir}/stats_rank{rank}.txt", "w") as fh:
            fh.write(f"{init.stats.count}|{init.stats.subset}|{init.findings[0].status}")


@pytest.mark.slow
def test_ddp_ranks_read_their_shards_of_the_budgeted_subset_and_set_one_bias(tmp_path):
    data = _CountingDictDigits(copies=6)
    model = _SubsetRecorder(mlp(64, 10))
    model.out_dir = str(tmp_path)
    trainer = make_trainer(
        tmp_path, [FinalBiasInit(one_time=0.05)], strategy="ddp_fork", devices=2, max_steps=1, logger=False
    )
    trainer.fit(model, DataLoader(data, batch_size=64, shuffle=True))
    b0, b1 = torch.load(tmp_path / "bias_rank0.pt"), torch.load(tmp_path / "bias_rank1.pt")
    assert torch.equal(b0, b1)
    prior = torch.bincount(data.y, minlength=10).double() / len(data.y)
    assert torch.allclose(b0.double(), prior.log(), atol=0.15)
    # the two shards of the one subset, summed: 4096 targets in all, not 2 x 4096 nor the 10782
    for rank in (0, 1):
        assert (tmp_path / f"stats_rank{rank}.txt").read_text() == "4096|4096|pass"
