"""PredictionDynamics on real Trainer runs, read back from the event files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from lightning_recipe.callbacks.batch_inspector import BatchInspector
from lightning_recipe.callbacks.first_layer import FirstLayerFilters
from lightning_recipe.callbacks.prediction_dynamics import PredictionDynamics, predictions_for
from tests.helpers import (
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

P = "recipe/prediction_dynamics/"


def _digits(n: int = 256):
    x, y = digits_arrays()
    return loader(x[:n], y[:n], batch_size=32)


def _val():
    x, y = digits_arrays()
    return loader(x[1500:], y[1500:], batch_size=64)


def test_multiclass_logs_figures_and_jitter_at_expected_steps(tmp_path):
    cb = PredictionDynamics(num_samples=16, every_n_train_steps=3)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [cb], max_steps=7, limit_val_batches=1)
    trainer.fit(LitModel(small_cnn()), _digits(), _val())
    ev = read_events(trainer.logger)
    assert [s for s, *_ in ev.images(P + "trajectories")] == [0, 3, 6]
    assert [s for s, *_ in ev.images(P + "predictions")] == [0, 3, 6]
    assert [s for s, _ in ev.scalars(P + "jitter")] == [3, 6]
    assert [s for s, _ in ev.scalars(P + "mean_true_prob")] == [0, 3, 6]
    _, width, height, png = ev.images(P + "trajectories")[-1]
    assert png_shape(png)[:2] == (height, width) and width <= 800 and height <= 500
    assert cb.task == "multiclass" and cb._source_used == "val"
    # samples spread evenly over the validation set, kept on the CPU
    x, y = digits_arrays()
    idx = np.unique(np.linspace(0, len(x) - 1501, 16).round().astype(int)) + 1500
    assert torch.equal(cb._targets, torch.as_tensor(y[idx]))
    assert cb._inputs.device.type == "cpu"


def test_falls_back_to_training_data(tmp_path):
    cb = PredictionDynamics(num_samples=4, every_n_train_steps=2)
    trainer = make_trainer(tmp_path, [cb], max_steps=2)
    trainer.fit(LitModel(small_cnn()), _digits())
    assert cb._source_used == "train" and cb.steps == [0, 2]


@pytest.mark.parametrize("task", ["binary", "regression", "multilabel"])
def test_other_heads(tmp_path, task):
    if task == "binary":
        x, y = breast_cancer_arrays()
        data, net, loss, _y_shape = loader(x, y.astype(np.float32), 64), mlp(30, 1), "bce", None
    elif task == "regression":
        x, y = diabetes_arrays()
        data, net, loss = loader(x, y, 64), mlp(10, 1), "mse"
    else:
        x, y = digits_arrays()
        multi = np.stack([y % 2 == 0, y > 4, y == 7], 1).astype(np.float32)
        data, net, loss = loader(x[:256], multi[:256], 64), mlp(64, 3), "bce"
    cb = PredictionDynamics(num_samples=8, every_n_train_steps=2)
    trainer = make_trainer(tmp_path, [cb], max_steps=4)
    trainer.fit(LitModel(net, loss=loss), data)
    ev = read_events(trainer.logger)
    assert cb.task == task
    assert [s for s, *_ in ev.images(P + "trajectories")] == [0, 2, 4]
    assert [s for s, *_ in ev.images(P + "predictions")] == [0, 2, 4]
    tag = "mean_abs_error" if task == "regression" else "mean_true_prob"
    assert len(ev.scalars(P + tag)) == 3 and len(ev.scalars(P + "jitter")) == 2


def test_task_override_and_predictions_for():
    v, p, d = predictions_for("binary", torch.tensor([[0.0], [100.0]]), torch.tensor([1.0, 1.0]))
    assert v.tolist() == [0.5, 1.0] and d.tolist() == [0, 1]
    v, p, d = predictions_for("multilabel", torch.tensor([[100.0, -100.0]]), torch.tensor([[1.0, 0.0]]))
    assert v.tolist() == [1.0] and d.tolist() == [2]
    logits = torch.zeros(2, 5, 3)  # (N, T, C) sequence logits
    v, p, d = predictions_for("multiclass", logits, torch.zeros(2, 5, dtype=torch.long))
    assert np.allclose(v, 1 / 3) and p.shape == (2, 3)


def test_jitter_is_larger_with_a_higher_learning_rate(tmp_path):
    def jitter(lr):
        cb = PredictionDynamics(num_samples=4, every_n_train_steps=6)
        torch.manual_seed(0)
        make_trainer(tmp_path / str(lr), [cb], max_steps=18, logger=False).fit(
            LitModel(small_cnn(), lr=lr, optimizer="sgd"), _digits(n=800), _val()
        )
        return float(np.mean(cb.jitter))

    assert jitter(1.0) > 5 * jitter(1e-3)


def test_no_observer_effect(tmp_path):
    def run(callbacks):
        torch.manual_seed(0)
        model = LitModel(small_cnn(dropout=0.3))
        x, y = digits_arrays()
        trainer = make_trainer(tmp_path, callbacks, max_steps=6, logger=False, limit_val_batches=1)
        torch.manual_seed(1)
        trainer.fit(model, loader(x[:200], y[:200], batch_size=32, shuffle=True), _val())
        return final_params(model)

    assert_same_params(run([]), run([PredictionDynamics(num_samples=8, every_n_train_steps=2)]))


def test_quiet_during_sanity_check(tmp_path):
    cb = PredictionDynamics()
    trainer = make_trainer(tmp_path, [cb], max_steps=0, num_sanity_val_steps=2)
    trainer.fit(LitModel(small_cnn()), _digits(), _val())
    assert cb.steps == [] and cb.findings == []


def test_state_dict_pickle_and_resume_show_the_same_samples(tmp_path):
    cb = PredictionDynamics(num_samples=6, every_n_train_steps=2)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [cb], max_steps=4)
    trainer.fit(LitModel(small_cnn()), _digits(), _val())
    state = cb.state_dict()
    assert state["steps"] == [0, 2, 4] and state["inputs"].shape == (6, 1, 8, 8)
    clone = pickle.loads(pickle.dumps(PredictionDynamics()))
    clone.load_state_dict(state)
    assert clone.steps == [0, 2, 4] and torch.equal(clone._targets, cb._targets)
    ckpt = tmp_path / "c.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed = PredictionDynamics(num_samples=6, every_n_train_steps=2)
    t2 = make_trainer(tmp_path / "r", [resumed], max_steps=8)
    x, y = digits_arrays()  # a different validation set: the resumed run must keep its samples
    t2.fit(LitModel(small_cnn()), _digits(), loader(x[:64], y[:64]), ckpt_path=str(ckpt))
    assert torch.equal(resumed._inputs, state["inputs"])
    assert resumed.steps == [0, 2, 4, 6, 8] and len(resumed.jitter) == 4


def test_ambiguous_task_is_skipped_with_the_argument_to_pass(tmp_path):
    x, _ = digits_arrays()
    onehot = np.eye(10, dtype=np.float32)[digits_arrays()[1]]
    cb = PredictionDynamics(num_samples=4)
    trainer = make_trainer(tmp_path, [cb], max_steps=1)
    trainer.fit(LitModel(small_cnn(), loss="mse"), loader(x[:64], onehot[:64]))
    assert [f.status for f in cb.findings] == ["skipped"]
    assert "task='multiclass'" in cb.findings[0].message
    cb2 = PredictionDynamics(num_samples=4, task="multilabel")
    make_trainer(tmp_path / "b", [cb2], max_steps=1).fit(
        LitModel(small_cnn(), loss="mse"), loader(x[:64], onehot[:64])
    )
    assert cb2.task == "multilabel" and cb2.findings == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_samples": 0}, ValueError, r"PredictionDynamics\(num_samples=0\)"),
        ({"num_samples": 100}, ValueError, r"num_samples=100\): at most 64"),
        ({"every_n_train_steps": 1.5}, TypeError, r"every_n_train_steps=1.5"),
        ({"source": "test"}, ValueError, r"source='test'\): unknown value; pass one of 'val' or 'train'"),
        ({"task": "multi"}, ValueError, r"task='multi'\): unknown task"),
        ({"forward": 3}, TypeError, r"forward=3\): pass a callable"),
        ({"class_names": "abc"}, TypeError, r"class_names='abc'"),
    ],
)
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        PredictionDynamics(**kwargs)


@pytest.mark.slow
def test_all_three_under_two_process_ddp(tmp_path):
    callbacks = [
        PredictionDynamics(num_samples=4, every_n_train_steps=2),
        FirstLayerFilters(),
        BatchInspector(every_n_train_steps=2),
    ]
    trainer = make_trainer(
        tmp_path, callbacks, max_steps=4, strategy="ddp_fork", devices=2, limit_val_batches=1
    )
    log_dir = trainer.logger.log_dir
    trainer.fit(LitModel(small_cnn()), _digits(), _val())
    ev = read_events(log_dir)
    assert [s for s, *_ in ev.images(P + "trajectories")] == [0, 2, 4]
    assert next(s for s, *_ in ev.images("recipe/first_layer/filters")) == 0
    assert [s for s, *_ in ev.images("recipe/batch_inspector/images")] == [0, 2]


class _NoForward(LitModel):
    """Calls ``self.net`` in its steps and defines no ``forward``: ``pl_module(x)`` raises."""

    forward = torch.nn.Module.forward  # the unimplemented default

    def training_step(self, batch, batch_idx):
        return self.loss_fn(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.loss_fn(self.net(batch[0]), batch[1]))


class _LatentForward(LitModel):
    """A generator-style module: ``forward`` takes 4-d latents, not the data's 30 features."""

    def __init__(self) -> None:
        super().__init__(mlp(30, 2))
        self.gen = torch.nn.Linear(4, 30)

    def forward(self, z):
        return self.gen(z)

    def training_step(self, batch, batch_idx):
        return self.loss_fn(self.net(batch[0]), batch[1])


def test_module_without_forward_is_skipped_naming_forward_and_training_goes_on(tmp_path):
    from lightning_recipe import RecipeWarning

    x, y = breast_cancer_arrays()
    cb = PredictionDynamics(num_samples=4, every_n_train_steps=1)
    trainer = make_trainer(tmp_path, [cb], max_steps=3)
    with pytest.warns(
        RecipeWarning, match=r"could not be called as pl_module\(inputs\) .*NotImplementedError"
    ):
        trainer.fit(_NoForward(mlp(30, 2)), loader(x[:64], y[:64], batch_size=16))
    assert trainer.global_step == 3
    assert [f.status for f in cb.findings] == ["skipped"]  # once: it disables itself
    assert "pass `forward=`" in cb.findings[0].message
    assert P + "trajectories" not in read_events(trainer.logger).all_tags()

    cb2 = PredictionDynamics(num_samples=4, every_n_train_steps=1, forward=lambda m, x: m.net(x))
    make_trainer(tmp_path / "b", [cb2], max_steps=2).fit(
        _NoForward(mlp(30, 2)), loader(x[:64], y[:64], batch_size=16)
    )
    assert cb2.findings == [] and cb2.steps == [0, 1, 2]


def test_forward_taking_latents_is_skipped_naming_forward(tmp_path):
    x, y = breast_cancer_arrays()
    cb = PredictionDynamics(num_samples=4)
    trainer = make_trainer(tmp_path, [cb], max_steps=2)
    trainer.fit(_LatentForward(), loader(x[:64], y[:64], batch_size=16))
    assert trainer.global_step == 2
    assert [f.status for f in cb.findings] == ["skipped"]
    assert "RuntimeError" in cb.findings[0].message and "(4, 30)" in cb.findings[0].message


class _NextPixel(LitModel):
    """Next-token model over digit rows: (N, T) token ids in, (N, T, V) logits out."""

    def __init__(self, vocab: int = 17) -> None:
        super().__init__(torch.nn.Identity())
        self.vocab = vocab
        self.emb = torch.nn.Embedding(vocab, 16)
        self.rnn = torch.nn.GRU(16, 24, batch_first=True)
        self.head = torch.nn.Linear(24, vocab)

    def forward(self, ids):
        return self.head(self.rnn(self.emb(ids))[0])

    def training_step(self, batch, batch_idx):
        ids, targets = batch
        return torch.nn.functional.cross_entropy(self(ids).reshape(-1, self.vocab), targets.reshape(-1))


def _next_pixel_data(n: int = 128):
    """Digits read as 64-token sequences (pixel intensities 0..16), targets shifted by one and the
    tail of every row padded with ignore_index -100, at a different length per row."""
    x, _ = digits_arrays()
    ids = torch.as_tensor(x[:n].reshape(n, -1)).round().long().clamp(0, 16)
    targets = ids.roll(-1, 1)
    lengths = 20 + (torch.arange(n) * 7) % 44
    targets[torch.arange(64)[None] >= lengths[:, None]] = -100
    targets[0] = -100  # a row with no labelled position at all
    return ids, targets


def test_sequence_targets_padded_with_ignore_index_are_masked(tmp_path):
    ids, targets = _next_pixel_data()
    cb = PredictionDynamics(num_samples=6, every_n_train_steps=2, source="train")
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [cb], max_steps=4)
    trainer.fit(_NextPixel(), loader(ids, targets, batch_size=32))
    assert cb.task == "multiclass" and cb.findings == [] and cb.steps == [0, 2, 4]
    ev = read_events(trainer.logger)
    probs = [v for _, v in ev.scalars(P + "mean_true_prob")]
    assert len(probs) == 3 and all(0 < p < 1 for p in probs)
    assert len(ev.images(P + "trajectories")) == 3


def test_predictions_for_leaves_ignore_index_out_of_the_means():
    logits = torch.randn(3, 5, 4)  # (N, T, V)
    targets = torch.tensor([[1, 2, -100, -100, -100], [0, 1, 2, 3, 0], [-100] * 5])
    value, probs, _ = predictions_for("multiclass", logits, targets)
    p = torch.softmax(logits, dim=-1)
    assert value[0] == pytest.approx(float((p[0, 0, 1] + p[0, 1, 2]) / 2), rel=1e-6)
    assert value[1] == pytest.approx(float(p[1, torch.arange(5), targets[1]].mean()), rel=1e-6)
    assert np.isnan(value[2])  # nothing labelled: no value, not a crash
    assert probs[0] == pytest.approx(p[0, :2].mean(0).numpy(), rel=1e-6)
    flat_value, _, _ = predictions_for("multiclass", torch.zeros(2, 3), torch.tensor([2, -100]))
    assert flat_value[0] == pytest.approx(1 / 3) and np.isnan(flat_value[1])


def test_forward_kwargs_module_with_a_dict_batch_is_called_without_configuration(tmp_path):
    from tests.callbacks.kwargs_model import KwargsClassifier, dict_loader

    x, y = digits_arrays()
    cb = PredictionDynamics(num_samples=4, every_n_train_steps=2)
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [cb], max_steps=4)
    trainer.fit(KwargsClassifier(), dict_loader(x[:128], y[:128]))
    assert cb.findings == [] and cb.steps == [0, 2, 4] and cb.task == "multiclass"
    assert cb._call.convention == "kwargs"
    assert len(read_events(trainer.logger).images(P + "trajectories")) == 3
