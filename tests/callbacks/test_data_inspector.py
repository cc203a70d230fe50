"""DataInspector / inspect_data: real Trainer runs on scikit-learn data, event files read back."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from lightning_recipe import DataInspector, RecipeCheckError, inspect_data
from lightning_recipe.report import RecipeWarning
from tests.helpers import (
    LitModel,
    assert_same_params,
    breast_cancer_arrays,
    digits_arrays,
    final_params,
    make_trainer,
    mlp,
    png_shape,
    read_events,
    small_cnn,
)


class DigitsData(LightningDataModule):
    """Digits split 1,400 / 397, with optional planted problems."""

    def __init__(self, plant: bool = False, batch_size: int = 64, shuffle: bool = True) -> None:
        super().__init__()
        x, y = digits_arrays()
        x, y = torch.as_tensor(x).clone(), torch.as_tensor(y).clone()
        self.xt, self.yt, self.xv, self.yv = x[:1400], y[:1400], x[1400:], y[1400:]
        if plant:
            self.xv[5], self.yv[5] = self.xt[100], self.yt[100]  # leak into val
            self.xt[11] = 0.0  # a blank image
            self.xt[400] = 0.25  # another one
            self.xt[42, 0, 3, 3] = float("nan")  # a corrupted sample
        self.batch_size, self.shuffle = batch_size, shuffle

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.xt, self.yt), batch_size=self.batch_size, shuffle=self.shuffle)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.xv, self.yv), batch_size=self.batch_size)


def _issues(findings) -> list[str]:
    return sorted(f.numbers["issue"] for f in findings if f.is_problem)


def _fit(tmp_path, callbacks, data=None, model=None, **kw) -> tuple[Trainer, LitModel]:
    model = model or LitModel(small_cnn())
    trainer = make_trainer(tmp_path, callbacks, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecipeWarning)
        trainer.fit(model, datamodule=data or DigitsData())
    return trainer, model


# ---------------------------------------------------------------------- verdicts
def test_data_inspector_finds_the_planted_problems_and_logs_the_page(tmp_path):
    inspector = DataInspector(progress=False)
    trainer, _ = _fit(tmp_path, [inspector], DigitsData(plant=True), max_steps=2)
    assert _issues(inspector.findings) == ["blank_samples", "nonfinite_inputs", "train_val_overlap"]
    assert inspector.findings[-1].message.startswith("3 problem(s) in 1797 samples")
    by_issue = {f.numbers["issue"]: f for f in inspector.findings}
    assert by_issue["nonfinite_inputs"].status == "fail" and by_issue["nonfinite_inputs"].numbers[
        "examples"
    ] == [42]
    assert by_issue["blank_samples"].numbers["examples"] == [11, 400]
    assert by_issue["train_val_overlap"].numbers["examples"] == [[5, 100]]
    assert all(f.check == "DataInspector" and f.global_step == 0 for f in inspector.findings)
    assert inspector.result is not None and inspector.result.summary["train"]["samples"] == 1400

    events = read_events(trainer.logger)
    (step, text), *_ = events.texts("recipe/data/summary")
    assert step == 0 and "train_val_overlap" in text and "| train | 1400 |" in text
    for tag in ("class_counts", "sample_stats", "extremes", "duplicates", "flagged"):
        images = events.images(f"recipe/data/{tag}")
        assert len(images) == 1 and images[0][0] == 0, tag
        h, w, _ = png_shape(images[0][3])
        assert h > 100 and w > 150
    assert events.scalars("recipe/data/val/samples") == [(0, 397.0)]
    assert events.scalars("recipe/data/train_val_overlap") == [(0, 1.0)]
    assert events.scalars("recipe/data/train/nonfinite") == [(0, 1.0)]
    assert len(events.histograms("recipe/data/train/sample_std")) == 1


def test_data_inspector_stays_silent_on_clean_data_and_during_the_sanity_check(tmp_path):
    inspector = DataInspector(progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecipeWarning)
        trainer, _ = _fit(tmp_path, [inspector], DigitsData(), max_steps=2, num_sanity_val_steps=2)
    assert [(f.status, f.numbers["issue"]) for f in inspector.findings] == [("pass", "summary")]
    # the clean summary says what was looked for (it read "0 problem(s) ...; see the other findings")
    assert inspector.findings[0].message.startswith(
        "train 1400, val 397 samples: no duplicates, train/val overlap, NaN/Inf, blank samples"
    ), inspector.findings[0].message
    events = read_events(trainer.logger)
    assert [s for s, _ in events.texts("recipe/data/summary")] == [0]
    assert not events.has_image("recipe/data/duplicates") and not events.has_image("recipe/data/flagged")


def test_breast_cancer_tabular_with_an_imbalance_and_a_constant_feature(tmp_path):
    x, y = breast_cancer_arrays()
    x = x.copy()
    x[:, 7] = 0.0
    neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:21]  # 212:21, about 90/10
    idx = np.sort(np.concatenate([neg, pos]))
    data = TensorDataset(torch.as_tensor(x[idx]), torch.as_tensor(y[idx]))
    result = inspect_data(DataLoader(data, batch_size=32), progress=False)
    # one constant column of 30 is reported as a note (flattened digits have 3 of 64 in healthy data)
    assert result.issues == ["class_imbalance"]
    note = result.issue("constant_features")
    assert note.status == "pass" and note.numbers["features"] == [7]
    assert result.issue("class_imbalance").numbers["class_counts"] == [212, 21]
    x[:, [1, 2, 3, 4]] = 1.0  # 5 of 30 never vary: a preprocessing problem
    data = TensorDataset(torch.as_tensor(x[idx]), torch.as_tensor(y[idx]))
    result = inspect_data(DataLoader(data, batch_size=32), progress=False)
    assert result.issues == ["class_imbalance", "constant_features"]
    assert result.issue("constant_features").numbers["features"] == [1, 2, 3, 4, 7]


class _SkewedCancer(LightningDataModule):
    """Breast cancer at 150:15 (10:1) for training, 62:65 for validation; ``sampler``:
    ``"balanced"`` (a WeightedRandomSampler of inverse class frequencies), ``"uniform"`` (equal weights)."""

    def __init__(self, sampler: str | None = None) -> None:
        super().__init__()
        x, y = breast_cancer_arrays()
        neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
        train = np.sort(np.concatenate([neg[:150], pos[:15]]))
        val = np.sort(np.concatenate([neg[150:], pos[15:80]]))
        self.train_set = TensorDataset(torch.as_tensor(x[train]), torch.as_tensor(y[train]))
        self.val_set = TensorDataset(torch.as_tensor(x[val]), torch.as_tensor(y[val]))
        self.sampler = sampler

    def train_dataloader(self) -> DataLoader:
        if self.sampler is None:
            return DataLoader(self.train_set, batch_size=32, shuffle=True)
        y = self.train_set.tensors[1]
        weights = 1.0 / torch.bincount(y)[y].double() if self.sampler == "balanced" else torch.ones(len(y))
        return DataLoader(self.train_set, batch_size=32, sampler=WeightedRandomSampler(weights, len(y)))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=64)


def test_an_imbalance_the_loss_weights_or_the_sampler_evens_out_is_a_pass_its_plain_twin_warns(tmp_path):
    weighted = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 10.0]))
    cases = {
        "plain": (None, "ce", "warn", "weight the loss or resample"),
        "weighted loss": (
            None,
            weighted,
            "pass",
            "the loss is class-weighted (CrossEntropyLoss(weight=) at 'loss_fn')",
        ),
        "sampler": ("balanced", "ce", "pass", "the training loader resamples them (a WeightedRandomSampler)"),
        "uniform sampler": (
            "uniform",
            "ce",
            "warn",
            "weight the loss or resample",
        ),  # equal weights even nothing out
        "uniform weights": (None, torch.nn.CrossEntropyLoss(weight=torch.ones(2)), "warn", "weight the loss"),
    }
    for name, (sampler, loss, status, words) in cases.items():
        inspector = DataInspector(progress=False)
        model = LitModel(mlp(30, 2), loss=loss)
        _fit(tmp_path / name.replace(" ", "_"), [inspector], _SkewedCancer(sampler), model=model, max_steps=2)
        found = inspector.result.issue("class_imbalance")
        assert found is not None and found.status == status and words in found.message, (name, found)
        summary = inspector.findings[-1].message
        assert summary.startswith("1 problem(s)") if status == "warn" else summary.startswith("train 165"), (
            name
        )
    # validation data as imbalanced as training: answered in training, so no warning on it either
    inspector = DataInspector(progress=False)
    skewed_val = _SkewedCancer("balanced")
    skewed_val.val_set = skewed_val.train_set
    _fit(tmp_path / "val", [inspector], skewed_val, model=LitModel(mlp(30, 2)), max_steps=2)
    found = inspector.result.issue("class_imbalance", "val")
    assert found.status == "pass" and "; in training the training loader resamples them" in found.message


class _SortedDigits(DigitsData):
    """The digits sorted by label (a data set written class by class), loaded ``order``-ly."""

    def __init__(self, order: str) -> None:
        super().__init__(shuffle=order == "shuffled")
        if order != "permuted":
            keep = torch.argsort(self.yt, stable=True)
        else:  # read in order, but the order itself is random: healthy
            keep = torch.randperm(len(self.yt), generator=torch.Generator().manual_seed(0))
        self.xt, self.yt = self.xt[keep], self.yt[keep]


@pytest.mark.parametrize("order", ["sorted", "shuffled", "permuted"])
def test_class_sorted_data_read_in_order_warns_and_its_shuffled_twins_do_not(tmp_path, order):
    inspector = DataInspector(progress=False)
    _fit(tmp_path, [inspector], _SortedDigits(order), max_steps=2)
    found = inspector.result.issue("sorted_unshuffled")
    if order != "sorted":
        assert found is None and _issues(inspector.findings) == []
        return
    assert found.status == "warn" and found.numbers["runs"] == 10 and found.numbers["samples"] == 1400
    assert "pass `shuffle=True`" in found.message and "a batch of 64 holds ~1.4 classes" in found.message
    assert inspector.findings[-1].message.startswith("1 problem(s)")


class _DictDigits(torch.utils.data.Dataset):
    """Digits as one dict per sample: no ``targets`` attribute, no ``TensorDataset`` to read them from."""

    def __init__(self, sort: bool) -> None:
        x, y = digits_arrays()
        order = np.argsort(y, kind="stable") if sort else np.random.default_rng(0).permutation(len(y))
        self.x, self.y = torch.as_tensor(x[order]), torch.as_tensor(y[order])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


@pytest.mark.parametrize("sort", [True, False], ids=["sorted", "in_a_random_order"])
def test_class_sorted_dict_samples_read_in_order_are_judged_from_the_scanned_labels(sort):
    """A dataset of dicts does not hand its targets over cheaply: the order is judged from the labels
    the scan read, by dataset index (it used to stay silent)."""
    result = inspect_data(DataLoader(_DictDigits(sort), batch_size=32), progress=False)
    found = result.issue("sorted_unshuffled")
    assert (found is not None) == sort
    if sort:
        assert found.numbers["runs"] == 10


def test_flattened_digits_with_their_blank_border_pixels_are_clean():
    x, y = digits_arrays()
    data = TensorDataset(torch.as_tensor(x.reshape(len(x), -1)), torch.as_tensor(y))
    assert inspect_data(DataLoader(data, batch_size=128), progress=False).issues == []


def test_ignore_index_is_not_out_of_range_when_told(tmp_path):
    x, y = digits_arrays()
    y = y.copy()
    y[[3, 30]] = -100
    data = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    # -100 (PyTorch's cross_entropy default) is ignored by default; ignore_index=None counts it
    assert inspect_data(data, num_classes=10, progress=False).issues == []
    flagged = inspect_data(data, num_classes=10, ignore_index=None, progress=False)
    assert flagged.issues == ["labels_out_of_range"]
    assert "pass ignore_index=" in flagged.problems[0].message
    y[[3, 30]] = -1  # a negative label that is no sentinel is still caught by default
    bad = inspect_data(TensorDataset(torch.as_tensor(x), torch.as_tensor(y)), num_classes=10, progress=False)
    assert bad.issues == ["labels_out_of_range"] and bad.problems[0].numbers["examples"] == [3, 30]


def _token_data(n: int = 256, vocab: int = 50, length: int = 12, seed: int = 0):
    """Language-model data: token ids and next-token targets padded with -100 (Zipfian vocabulary)."""
    g = torch.Generator().manual_seed(seed)
    zipf = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    tokens = torch.multinomial(zipf, n * length, replacement=True, generator=g).reshape(n, length)
    lengths = torch.randint(4, length + 1, (n,), generator=g)
    mask = torch.arange(length)[None] < lengths[:, None]
    targets = torch.where(mask, tokens.roll(-1, 1), torch.full_like(tokens, -100))
    return tokens, targets


def test_language_model_targets_padded_with_minus_100_are_clean():
    tokens, targets = _token_data()
    result = inspect_data(TensorDataset(tokens, targets), progress=False)
    # no "labels out of range" for the padding and no "class imbalance" for a Zipfian vocabulary
    assert result.issues == []
    assert result.summary["train"]["ignored_labels"] == int((targets == -100).sum())
    assert result.summary["train"]["imbalance_ratio"] > 5 and result.summary["train"]["dense_labels"]
    # the twin with one label per sample is still judged: 9:1 on breast cancer
    x, y = breast_cancer_arrays()
    neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:21]
    keep = np.sort(np.concatenate([neg, pos]))
    skewed = inspect_data(TensorDataset(torch.as_tensor(x[keep]), torch.as_tensor(y[keep])), progress=False)
    assert "class_imbalance" in skewed.issues


def test_token_batches_padded_each_to_its_own_length_are_scanned():
    """The usual Hugging Face collate pads each batch to its longest sequence: the scan compares
    samples across batches of different widths (it used to stop at "Sizes of tensors must match")."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, 30, (400,), generator=gen)
    seqs = [torch.randint(1, 100, (int(n),), generator=gen) for n in lengths]
    labels = (lengths > 18).long()

    def pad_per_batch(items):
        width = max(len(seqs[i]) for i in items)
        ids = torch.zeros(len(items), width, dtype=torch.long)
        mask = torch.zeros(len(items), width, dtype=torch.long)
        for row, i in enumerate(items):
            ids[row, : len(seqs[i])], mask[row, : len(seqs[i])] = seqs[i], 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels[items]}

    loader = DataLoader(list(range(400)), batch_size=16, collate_fn=pad_per_batch)
    assert len({b["input_ids"].shape[1] for b in loader}) > 3  # the widths really differ
    result = inspect_data(loader, progress=False)
    assert [f.message for f in result.findings if f.status == "skipped"] == []
    assert result.summary["train"]["samples"] == 400 and result.issues == []


# ---------------------------------------------------------------------- data it cannot read
class _TwoInputs(torch.utils.data.Dataset):
    """Breast cancer as a dict of two feature blocks and a target: no single input to infer."""

    def __init__(self) -> None:
        x, y = breast_cancer_arrays()
        self.x, self.y = torch.as_tensor(x), torch.as_tensor(y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"a": self.x[i, :15], "b": self.x[i, 15:], "target": self.y[i]}


class _TwoInputModel(LitModel):
    def training_step(self, batch, batch_idx):
        return self.loss_fn(self(torch.cat([batch["a"], batch["b"]], 1)), batch["target"])

    validation_step = None


def test_a_batch_it_cannot_read_is_skipped_naming_the_keys_and_training_goes_on(tmp_path):
    inspector = DataInspector(progress=False)
    trainer = make_trainer(tmp_path / "a", [inspector], max_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_TwoInputModel(mlp(30, 2)), DataLoader(_TwoInputs(), batch_size=32))
    assert trainer.global_step == 3
    [finding] = inspector.findings
    assert finding.status == "skipped" and finding.numbers["issue"] == "not_scanned"
    assert finding.message.startswith("skipped, because the train data could not be scanned")
    assert "found no inputs in a dict batch with keys ['a', 'b', 'target']" in finding.message
    assert "input_key=" in finding.message and "target_key=" in finding.message
    # the twin, told where the inputs are, inspects the data
    told = DataInspector(input_key="a", progress=False)
    trainer = make_trainer(tmp_path / "b", [told], max_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_TwoInputModel(mlp(30, 2)), DataLoader(_TwoInputs(), batch_size=32))
    assert [f.status for f in told.findings if not f.is_problem] == ["pass"]
    assert told.result.summary["train"]["samples"] == 569
    with pytest.raises(
        ValueError, match=r"inspect_data: skipped, because the train data could not be scanned"
    ):
        inspect_data(DataLoader(_TwoInputs(), batch_size=32), progress=False)


class _Stream(torch.utils.data.IterableDataset):
    """Breast cancer rows with noise, endlessly (a fresh stream on every ``iter()``)."""

    def __iter__(self):
        x, y = breast_cancer_arrays()
        g = torch.Generator().manual_seed(0)
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        while True:
            i = int(torch.randint(len(y), (1,), generator=g))
            yield x[i] + 0.05 * torch.randn(30, generator=g), y[i]


class _OneShot(torch.utils.data.IterableDataset):
    """Breast cancer rows from one generator: a second ``iter()`` continues where the first stopped."""

    def __init__(self) -> None:
        x, y = breast_cancer_arrays()
        self.n = len(y)
        self._rows = iter(list(zip(torch.as_tensor(x), torch.as_tensor(y))))

    def __iter__(self):
        return self._rows


class _CountingModel(LitModel):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.seen = 0

    def training_step(self, batch, batch_idx):
        self.seen += int(batch[0].shape[0])
        return super().training_step(batch, batch_idx)


def test_an_endless_iterable_dataset_is_read_for_a_bounded_prefix(tmp_path):
    inspector = DataInspector(progress=False, max_samples=640)
    trainer = make_trainer(tmp_path / "a", [inspector], max_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(LitModel(mlp(30, 2)), DataLoader(_Stream(), batch_size=64))
    assert trainer.global_step == 3
    summary = inspector.findings[-1]
    assert summary.status == "pass" and inspector.result.summary["train"]["samples"] == 640
    assert "train: estimated from the first 640 samples" in summary.message
    assert summary.numbers["estimated_from"] == {"train": 640}
    # the default bound: 10,000 samples, also for inspect_data
    result = inspect_data(DataLoader(_Stream(), batch_size=500), progress=False)
    assert result.summary["train"][
        "samples"
    ] == 10_000 and "estimated from the first 10000" in result.markdown() + str(result.findings[-1].message)


def test_a_one_shot_iterator_is_not_read_and_training_sees_every_sample(tmp_path):
    inspector = DataInspector(progress=False)
    model = _CountingModel(mlp(30, 2))
    trainer = make_trainer(tmp_path / "a", [inspector], max_epochs=1, max_steps=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, DataLoader(_OneShot(), batch_size=64))
    assert model.seen == 569  # nothing taken from training
    [finding] = inspector.findings
    assert finding.status == "skipped" and "one-shot iterator" in finding.message

    # the twin: a finite stream that restarts on every iter() is inspected, and training still sees it all
    class Restarting(_OneShot):
        def __iter__(self):
            x, y = breast_cancer_arrays()
            return iter(list(zip(torch.as_tensor(x), torch.as_tensor(y))))

    inspector, model = DataInspector(progress=False), _CountingModel(mlp(30, 2))
    trainer = make_trainer(tmp_path / "b", [inspector], max_epochs=1, max_steps=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, DataLoader(Restarting(), batch_size=64))
    assert model.seen == 569 and inspector.result.summary["train"]["samples"] == 569
    assert "estimated" not in inspector.findings[-1].message


def test_inspect_data_on_a_datamodule_without_a_trainer_leaves_the_rng_alone():
    state = torch.get_rng_state()
    result = inspect_data(DigitsData(plant=True), progress=False)
    assert torch.equal(state, torch.get_rng_state())
    assert result.issues == ["nonfinite_inputs", "train_val_overlap", "blank_samples"]
    assert result.summary["val"]["in_train"] == 1
    assert "train_val_overlap" in result.markdown()


def test_max_samples_inspects_a_fixed_subset():
    a = inspect_data(DigitsData(), max_samples=300, progress=False)
    b = inspect_data(DigitsData(), max_samples=300, progress=False)
    assert a.summary["train"]["samples"] == 300 and a.summary["val"]["samples"] == 300
    assert np.array_equal(a.report.indices["train"], b.report.indices["train"])


def test_on_fail_raise_raises_after_logging(tmp_path):
    inspector = DataInspector(progress=False, on_fail="raise")
    with pytest.raises(RecipeCheckError, match="NaN/Inf inputs"):
        _fit(tmp_path, [inspector], DigitsData(plant=True))
    assert read_events(tmp_path / "tb" / "version_0").has_text("recipe/data/summary")


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task": "multi"}, ValueError, r"DataInspector\(task='multi'\): unknown task; pass one of 'auto'"),
        ({"num_classes": 0}, ValueError, r"DataInspector\(num_classes=0\): pass an integer >= 1"),
        ({"max_samples": 2.5}, TypeError, r"DataInspector\(max_samples=2.5\)"),
        ({"ignore_index": "pad"}, TypeError, r"DataInspector\(ignore_index='pad'\): pass an integer label"),
        ({"imbalance_ratio": 1.0}, ValueError, r"DataInspector\(imbalance_ratio=1.0\): pass a finite number"),
        ({"outlier_z": float("inf")}, ValueError, r"DataInspector\(outlier_z=inf\)"),
        ({"input_key": 1.5}, TypeError, r"DataInspector\(input_key=1.5\)"),
        ({"on_fail": "stop"}, ValueError, r"DataInspector\(on_fail='stop'\)"),
    ],
)
def test_data_inspector_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataInspector(**kwargs)


def test_inspect_data_names_itself_in_errors_and_missing_inputs():
    with pytest.raises(ValueError, match=r"inspect_data\(task='x'\)"):
        inspect_data(TensorDataset(torch.zeros(4, 2)), task="x")
    with pytest.raises(ValueError, match="input_key='img': no such key"):
        inspect_data([{"x": torch.zeros(3)}], input_key="img", progress=False)


# ---------------------------------------------------------------------- state, resume, observer effect
def test_state_dict_and_pickle_round_trip_and_resume_does_not_inspect_again(tmp_path):
    inspector = DataInspector(progress=False)
    trainer, _ = _fit(
        tmp_path / "a", [inspector], DigitsData(plant=True), max_steps=2, enable_checkpointing=True
    )
    ckpt = trainer.checkpoint_callback.best_model_path
    state = inspector.state_dict()
    # (Lightning binds the module's `log` to callbacks during fit: pickle a fresh one with the state)
    fresh = DataInspector(progress=False)
    fresh.load_state_dict(state)
    clone = pickle.loads(pickle.dumps(fresh))
    assert clone.state_dict() == state and state["done"] is True

    resumed = DataInspector(progress=False)
    trainer = make_trainer(tmp_path / "b", [resumed], max_steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecipeWarning)
        trainer.fit(LitModel(small_cnn()), datamodule=DigitsData(plant=True), ckpt_path=ckpt)
    assert resumed.result is None  # not inspected again
    assert _issues(resumed.findings) == ["blank_samples", "nonfinite_inputs", "train_val_overlap"]
    assert not read_events(trainer.logger).has_text("recipe/data/summary")


def test_attaching_the_inspector_leaves_a_seeded_run_bit_identical(tmp_path):
    def run(callbacks, sub):
        torch.manual_seed(0)
        model = LitModel(mlp(64, 10, dropout=0.5))
        _fit(tmp_path / sub, callbacks, DigitsData(shuffle=True), model=model, max_steps=8)
        return final_params(model)

    plain = run([], "plain")
    observed = run([DataInspector(progress=False, near_duplicates=True)], "observed")
    assert_same_params(plain, observed)


# ---------------------------------------------------------------------- DDP
class _RecordingInspector(DataInspector):
    """Writes each rank's verdicts to a file (the forked workers' state does not come back)."""

    def __init__(self, out_dir, **kw):
        super().__init__(**kw)
        self.out_dir = str(out_dir)

    def on_fit_start(self, trainer, pl_module):
        super().on_fit_start(trainer, pl_module)
        verdicts = [(f.status, f.message) for f in self.findings]
        with open(f"{self.out_dir}/rank{trainer.global_rank}.json", "w") as fh:
            json.dump(verdicts, fh)


@pytest.mark.slow
def test_ddp_finds_duplicates_across_ranks_and_every_rank_agrees(tmp_path):
    x, y = digits_arrays()
    x, y = torch.as_tensor(x[:400]).clone(), torch.as_tensor(y[:400]).clone()
    x[201], y[201] = x[100], y[100]  # rank 1 reads 201, rank 0 reads 100
    x[51] = x[10]  # and an odd/even pair
    data = TensorDataset(x, y)
    model = LitModel(small_cnn())
    inspector = _RecordingInspector(tmp_path, progress=False)
    trainer = make_trainer(
        tmp_path,
        [inspector],
        strategy="ddp_fork",
        devices=2,
        max_steps=1,
        limit_val_batches=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, DataLoader(data, batch_size=32, shuffle=True))
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0 == rank1
    duplicates = [m for s, m in rank0 if "exact duplicates" in m]
    assert duplicates and "#10 = #51" in duplicates[0] and "#100 = #201" in duplicates[0]
    assert "400" in read_events(tmp_path / "tb" / "version_0").texts("recipe/data/summary")[0][1]


class _CorruptAt(torch.utils.data.Dataset):
    """Digits where reading one sample fails (a corrupt file): only the rank that inspects it sees it."""

    def __init__(self, bad: int) -> None:
        x, y = digits_arrays()
        self.x, self.y, self.bad = torch.as_tensor(x[:400]), torch.as_tensor(y[:400]), bad

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        if i == self.bad:
            raise OSError(f"corrupt sample {i}")
        return self.x[i], self.y[i]


@pytest.mark.slow
def test_ddp_a_scan_that_fails_on_one_rank_is_skipped_on_every_rank_without_a_hang(tmp_path):
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    inspector = _RecordingInspector(tmp_path, progress=False)
    trainer = make_trainer(
        tmp_path,
        [inspector],
        # a short timeout: a rank left waiting in all_gather_object fails the test instead of hanging it
        strategy=DDPStrategy(start_method="fork", timeout=timedelta(seconds=60)),
        devices=2,
        max_steps=1,
        limit_val_batches=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # rank 1 inspects the odd indices (and hits 399); training reads indices < 64 only
        trainer.fit(LitModel(small_cnn()), DataLoader(_CorruptAt(399), batch_size=32))
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert [s for s, _ in rank0] == [s for s, _ in rank1] == ["skipped"]
    assert "OSError: corrupt sample 399" in rank1[0][1]
    assert "another process could not scan the train data" in rank0[0][1]


# ---------------------------------------------------------------------- within a one-time budget (issue 14)
def test_data_inspector_within_a_budget_scans_a_subset_and_says_how_many_batches(tmp_path, monkeypatch):
    from lightning_recipe.core.checks import data_inspector as check

    full = DataInspector(progress=False, one_time=0.05)  # digits: fewer samples than the 4096 minimum
    _fit(tmp_path / "full", [full], DigitsData(plant=True), max_steps=2)
    assert _issues(full.findings) == ["blank_samples", "nonfinite_inputs", "train_val_overlap"]
    summary = full.findings[-1]
    assert summary.numbers["scanned_batches"] == {"train": 22, "val": 7}
    assert "scanned train: 22 batches, val: 7 batches" in summary.message
    monkeypatch.setattr(check, "MIN_BUDGET_SAMPLES", 640)  # a data set larger than the budget
    capped = DataInspector(progress=False, one_time=0.05)
    _fit(tmp_path / "capped", [capped], DigitsData(), max_steps=2)
    summary = capped.findings[-1]
    assert capped.result.summary["train"]["samples"] == 640
    assert summary.numbers["scanned_batches"]["train"] == 10
    assert "train: 10 batches (a fixed random subset of 640 samples)" in summary.message
