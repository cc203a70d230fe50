"""Unit tests of the streaming data statistics (no Trainer), on real data from scikit-learn."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from lightning_recipe.core.data_stats import (
    FLAG_CONSTANT,
    FLAG_NONFINITE,
    SplitStats,
    analyse_splits,
    average_hash,
    sample_hashes,
    sample_statistics,
)
from tests.helpers import breast_cancer_arrays, digits_arrays, imbalanced_breast_cancer


def _stats(name: str, x, y=None, batch_size: int = 64, offset: int = 0, **kw) -> SplitStats:
    x = torch.as_tensor(x)
    y = None if y is None else torch.as_tensor(y)
    s = SplitStats(name, **kw)
    for i in range(0, len(x), batch_size):
        j = min(i + batch_size, len(x))
        s.update(x[i:j], None if y is None else y[i:j], torch.arange(i, j) + offset)
    return s


def _digits_split():
    x, y = digits_arrays()
    x, y = torch.as_tensor(x).clone(), torch.as_tensor(y).clone()
    return x[:1400], y[:1400], x[1400:], y[1400:]


def _problems(report) -> list[str]:
    return sorted(i.issue for i in report.problems)


# ---------------------------------------------------------------------- kernels
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.uint8, torch.int64, torch.bool]
)
def test_sample_hashes_equal_rows_match_and_do_not_depend_on_the_batch(dtype):
    x = (torch.rand(50, 3, 5) * 4).to(dtype)
    x[30] = x[4]
    h = sample_hashes(x)
    assert torch.equal(h[30], h[4])
    unique = {tuple(r) for r in h.tolist()}
    assert len(unique) == len({tuple(r.flatten().tolist()) for r in x.float()})
    # a row hashes the same alone as inside a batch (no order-dependent float reduction)
    assert torch.equal(sample_hashes(x[7:8])[0], h[7])


def test_sample_hashes_tell_apart_rows_differing_in_one_sign_bit():
    x = torch.randn(2000, 16)
    y = x.clone()
    y[:, 3] = -y[:, 3]
    assert not (sample_hashes(x) == sample_hashes(y)).all(1).any()


def test_sample_statistics_flags_constant_nan_and_keeps_huge_finite_values():
    x = torch.randn(4, 16)
    x[1] = 0.5
    x[2, 3] = float("inf")
    x[3] = 1e30  # overflows a float32 norm, but is finite
    stats, flags = sample_statistics(x)
    assert flags.tolist() == [0, FLAG_CONSTANT, FLAG_NONFINITE, FLAG_CONSTANT]
    assert torch.isnan(stats[2]).all() and torch.isfinite(stats[3]).all()
    assert stats[3, 0].item() == pytest.approx(1e30, rel=1e-5)


def test_average_hash_matches_a_brightened_copy_but_not_another_image():
    img = torch.rand(2, 3, 32, 32)
    assert average_hash(img[:1])[0] == average_hash(img[:1] * 0.8 + 0.1)[0]
    assert average_hash(img)[0] != average_hash(img)[1]


# ---------------------------------------------------------------------- clean data stays silent
def test_clean_digits_and_breast_cancer_report_nothing():
    xt, yt, xv, yv = _digits_split()
    report = analyse_splits({"train": _stats("train", xt, yt), "val": _stats("val", xv, yv, offset=0)})
    assert _problems(report) == []
    assert report.issues[-1].issue == "summary" and report.issues[-1].status == "pass"
    assert report.splits["train"]["classes"] == 10 and report.splits["val"]["in_train"] == 0
    x, y = breast_cancer_arrays()
    report = analyse_splits(
        {"train": _stats("train", x[:450], y[:450]), "val": _stats("val", x[450:], y[450:])}
    )
    assert _problems(report) == []
    assert report.splits["train"]["features"] == 30


# ---------------------------------------------------------------------- planted problems are found
def test_duplicates_across_train_and_val_are_found_with_their_indices():
    xt, yt, xv, yv = _digits_split()
    xv[5], yv[5] = xt[100], yt[100]
    xv[9], yv[9] = xt[7], yt[7]
    report = analyse_splits({"train": _stats("train", xt, yt), "val": _stats("val", xv, yv)})
    assert _problems(report) == ["train_val_overlap"]
    issue = report.issue("train_val_overlap")
    assert issue.split == "val" and issue.numbers["count"] == 2
    assert issue.numbers["examples"] == [[5, 100], [9, 7]]
    assert ("val", 5, "train", 100) in report.duplicate_pairs


def test_duplicates_within_a_split_and_conflicting_labels():
    xt, yt, _, _ = _digits_split()
    xt[50], yt[50] = xt[10], yt[10]
    xt[60], yt[60] = xt[20], (yt[20] + 1) % 10  # same image, another label
    report = analyse_splits({"train": _stats("train", xt, yt)})
    assert _problems(report) == ["conflicting_labels", "duplicates"]
    assert report.issue("duplicates").numbers["examples"] == [[10, 50], [20, 60]]
    assert report.issue("conflicting_labels").numbers["examples"] == [[20, 60]]


def test_nan_rows_are_a_failure_naming_the_samples():
    x, y = breast_cancer_arrays()
    x = x.copy()
    x[[3, 200], 4] = np.nan
    x[77, 0] = np.inf
    report = analyse_splits({"train": _stats("train", x, y)})
    issue = report.issue("nonfinite_inputs")
    assert issue.status == "fail" and issue.numbers["examples"] == [3, 77, 200]
    assert _problems(report) == ["nonfinite_inputs"]


def test_blank_images_are_found():
    xt, yt, _, _ = _digits_split()
    xt[[11, 400, 999]] = 0.0
    xt[500] = 0.3
    report = analyse_splits({"train": _stats("train", xt, yt)})
    issue = report.issue("blank_samples")
    assert issue.numbers["constant"] == 4
    assert issue.numbers["examples"] == [11, 400, 500, 999]
    assert "blank images" in issue.message
    # the four blank images are also exact duplicates of each other (three of them)
    assert report.issue("duplicates").numbers["count"] == 2


def test_near_constant_sample_is_found_within_its_class():
    xt, yt, _, _ = _digits_split()
    xt[42] = 0.5 + 1e-4 * xt[42]  # almost flat, but not exactly
    report = analyse_splits({"train": _stats("train", xt, yt)})
    issue = report.issue("blank_samples")
    assert issue.numbers == {**issue.numbers, "constant": 0, "near_constant": 1, "examples": [42]}


def test_a_dark_low_contrast_class_is_not_called_corrupted():
    xt, yt, xv, yv = _digits_split()
    xt[yt == 3] *= 0.004  # class 3: dim, low-contrast, but every image varies
    xv[yv == 3] *= 0.004
    report = analyse_splits({"train": _stats("train", xt, yt), "val": _stats("val", xv, yv)})
    assert _problems(report) == []


def test_a_class_of_blank_images_is_not_called_corrupted():
    xt, yt, _, _ = _digits_split()
    xt[yt == 0] = 0.0  # e.g. an "empty" class in defect detection
    report = analyse_splits({"train": _stats("train", xt, yt)})
    assert report.issue("blank_samples") is None
    assert report.splits["train"]["blank_classes"] == [0]


def test_imbalance_of_90_10_is_found_and_a_mild_one_is_not():
    x, y = imbalanced_breast_cancer(ratio=9)
    report = analyse_splits({"train": _stats("train", x, y)})
    issue = report.issue("class_imbalance")
    assert issue is not None and issue.numbers["ratio"] == pytest.approx(212 / 23, rel=1e-3)
    assert _problems(report) == ["class_imbalance"]
    x, y = breast_cancer_arrays()  # 63/37: fine
    assert analyse_splits({"train": _stats("train", x, y)}).issue("class_imbalance") is None


def test_a_missing_class_is_found_in_the_split_that_lacks_it():
    xt, yt, xv, yv = _digits_split()
    keep = yv != 7
    report = analyse_splits({"train": _stats("train", xt, yt), "val": _stats("val", xv[keep], yv[keep])})
    issue = report.issue("missing_classes")
    assert issue.split == "val" and issue.numbers["missing"] == [7]
    assert _problems(report) == ["missing_classes"]
    # with num_classes=12 two more classes are missing everywhere
    report = analyse_splits({"train": _stats("train", xt, yt, num_classes=12)})
    assert report.issue("missing_classes").numbers["missing"] == [10, 11]


def test_labels_out_of_range_and_ignore_index():
    xt, yt, _, _ = _digits_split()
    yt[[5, 6]] = -100
    yt[9] = 10
    report = analyse_splits({"train": _stats("train", xt, yt, num_classes=10)})
    issue = report.issue("labels_out_of_range")
    assert issue.status == "fail" and issue.numbers["examples"] == [5, 6, 9]
    assert "ignore_index=" in issue.message
    yt[9] = 3
    report = analyse_splits({"train": _stats("train", xt, yt, num_classes=10, ignore_index=-100)})
    assert _problems(report) == []
    assert report.splits["train"]["ignored_labels"] == 2


def test_dense_targets_with_ignore_index_are_counted_per_pixel():
    x = torch.rand(40, 1, 8, 8)
    y = torch.randint(0, 3, (40, 8, 8))
    y[:, 0, :] = 255  # a border nobody labelled
    s = _stats("train", x, y, ignore_index=255, num_classes=3)
    report = analyse_splits({"train": s})
    assert _problems(report) == []
    assert sum(report.splits["train"]["class_counts"]) == 40 * 7 * 8


def test_dense_labels_are_not_judged_for_imbalance_but_one_label_per_sample_is():
    g = torch.Generator().manual_seed(0)
    zipf = 1.0 / torch.arange(1, 41, dtype=torch.float64)
    tokens = torch.multinomial(zipf, 300 * 16, replacement=True, generator=g).reshape(300, 16)
    a, b = (
        _stats("train", tokens[:150], tokens[:150]),
        _stats("train", tokens[150:], tokens[150:], offset=150),
    )
    assert a.dense_labels and not SplitStats("x").dense_labels
    report = analyse_splits({"train": a.merge(pickle.loads(pickle.dumps(b)))})
    assert _problems(report) == []  # a Zipfian vocabulary is skewed by nature
    summary = report.splits["train"]
    assert summary["imbalance_ratio"] > 5.0 and summary["dense_labels"] is True
    # the same skew with one label per sample is an imbalance
    per_sample = analyse_splits({"train": _stats("train", tokens.float(), tokens[:, 0])})
    assert "class_imbalance" in _problems(per_sample)


def test_constant_tabular_features_are_found():
    x, y = breast_cancer_arrays()
    x = x.copy()
    x[:, 4] = 1.0
    x[:, 17] = 0.0
    report = analyse_splits({"train": _stats("train", x, y)})
    assert report.issue("constant_features").numbers["features"] == [4, 17]


def test_outliers_are_found_within_class_and_shown_with_thumbnails():
    xt, yt, _, _ = _digits_split()
    xt[33] *= 255.0  # not rescaled to [0, 1]
    report = analyse_splits({"train": _stats("train", xt, yt, top_k=4)})
    issue = report.issue("outliers")
    assert issue.numbers["examples"] == [33]
    _, indices, thumbs = report.extremes["train"]["mean_high"]
    assert indices[0] == 33 and thumbs.shape == (4, 1, 8, 8)


def test_regression_targets_with_nan_are_a_failure():
    x, _ = breast_cancer_arrays()
    t = torch.as_tensor(x[:, :1]).clone() * 3.0 + 1.0
    t[12] = float("nan")
    report = analyse_splits({"train": _stats("train", x, t)})
    assert report.splits["train"]["task"] == "regression"
    assert report.issue("nonfinite_targets").numbers["examples"] == [12]


def test_near_duplicates_are_found_when_asked():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(120, 3, 32, 32, generator=g)
    x[90] = x[12] + 0.004  # a slightly brighter copy
    report = analyse_splits({"train": _stats("train", x, near_duplicates=True)})
    assert _problems(report) == ["near_duplicates"]
    assert report.issue("near_duplicates").numbers["examples"] == [["train #12", "train #90"]]
    assert analyse_splits({"train": _stats("train", x)}).issue("near_duplicates") is None


# ---------------------------------------------------------------------- merging (DDP shards)
def test_merging_shards_gives_the_same_report_as_one_pass():
    xt, yt, xv, yv = _digits_split()
    xt[801] = xt[800]  # a duplicate that straddles the two shards
    xv[3] = xt[5]
    whole = analyse_splits({"train": _stats("train", xt, yt, top_k=3), "val": _stats("val", xv, yv, top_k=3)})
    shards = []
    for r in range(2):
        idx = torch.arange(r, len(xt), 2)
        s = SplitStats("train", top_k=3)
        for i in range(0, len(idx), 50):
            s.update(xt[idx[i : i + 50]], yt[idx[i : i + 50]], idx[i : i + 50])
        shards.append(pickle.loads(pickle.dumps(s)))
    merged = shards[0].merge(shards[1])
    split = analyse_splits({"train": merged, "val": _stats("val", xv, yv, top_k=3)})
    assert [(i.issue, i.message) for i in split.issues] == [(i.issue, i.message) for i in whole.issues]
    for key, (v, i, t) in whole.extremes["train"].items():
        v2, i2, t2 = split.extremes["train"][key]
        assert np.array_equal(v, v2) and np.array_equal(i, i2) and np.array_equal(t, t2)


def test_memory_is_hashes_and_scalars_not_the_data():
    x = torch.rand(2000, 3, 32, 32)
    s = _stats("train", x, torch.arange(2000) % 10, batch_size=250)
    per_sample = (s.nbytes - 6 * 8 * (16 + 3 * 32 * 32 * 4)) / 2000
    assert per_sample < 64, per_sample


def test_token_labels_are_a_vocabulary_not_classes_that_must_occur():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (40, 12), generator=gen)
    labels = ids.clone()
    labels[:, 9:] = -100  # padding
    train = SplitStats("train", ignore_index=-100)
    train.update(ids, labels, torch.arange(40))
    report = analyse_splits({"train": train})
    assert report.issue("missing_classes") is None  # ids 0 and most of a vocabulary never occur: normal
    summary = report.splits["train"]
    assert summary["sequence_length"] == 12 and summary["token_ids_used"] == int(ids.unique().numel())
    assert summary["ignored_label_share"] == pytest.approx(3 / 12)
    assert "25% of label positions are -100" in report.issues[-1].message
    # one class label per sample keeps the missing-class verdict
    classes = SplitStats("train")
    classes.update(torch.rand(40, 3), torch.tensor([0, 2] * 20), torch.arange(40))
    assert analyse_splits({"train": classes}).issue("missing_classes") is not None


def test_an_answered_imbalance_is_judged_on_the_training_classes_also_for_a_split_missing_one():
    g = torch.Generator().manual_seed(0)
    train_y = torch.tensor([0] * 300 + [1] * 50 + [2] * 20)
    val_y = torch.tensor([0] * 300 + [1] * 50)  # the rarest class is missing from validation
    splits = {
        "train": _stats("train", torch.randn(len(train_y), 4, generator=g), train_y),
        "val": _stats("val", torch.randn(len(val_y), 4, generator=g), val_y, offset=10_000),
    }
    seen: list[int] = []

    def answer(counts):
        seen.append(len(counts))
        return "the loss is class-weighted" if len(counts) == 3 else None

    report = analyse_splits(splits, balanced_by=answer)
    assert seen == [3, 3]  # both splits asked with the training split's three classes
    assert report.issue("class_imbalance", "val").status == "pass"
    assert "; in training the loss is class-weighted" in report.issue("class_imbalance", "val").message
