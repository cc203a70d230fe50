"""The DataInspector's check module without a Trainer: configuration, verdict wording, the scan of splits."""

from __future__ import annotations

import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset, WeightedRandomSampler

from lightning_recipe.core.checks.data_inspector import (
    DataInspectorConfig,
    imbalance_answer,
    note_estimates,
    other_rank_reason,
    report_findings,
    scan_sources,
    sorted_order_issue,
    summary_scalars,
)
from lightning_recipe.core.data_stats import DataIssue, DataReport
from lightning_recipe.core.errors import ArgumentError


def _images(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"task": "multi"},
            ValueError,
            r"owner\(task='multi'\): unknown task; pass one of 'auto', 'multiclass'",
        ),
        ({"num_classes": 0}, ValueError, r"owner\(num_classes=0\): pass an integer >= 1"),
        ({"max_samples": 2.5}, TypeError, r"owner\(max_samples=2.5\)"),
        ({"top_k": -1}, ValueError, r"owner\(top_k=-1\): pass an integer >= 0"),
        ({"ignore_index": "pad"}, TypeError, r"owner\(ignore_index='pad'\): pass an integer label"),
        (
            {"imbalance_ratio": 1.0},
            ValueError,
            r"owner\(imbalance_ratio=1.0\): pass a finite number greater than 1",
        ),
        ({"outlier_z": float("inf")}, ValueError, r"owner\(outlier_z=inf\)"),
        ({"near_constant_ratio": True}, ValueError, r"owner\(near_constant_ratio=True\)"),
        ({"input_key": 1.5}, TypeError, r"owner\(input_key=1.5\)"),
    ],
)
def test_config_rejects_bad_values_naming_the_owner(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataInspectorConfig(**kwargs).validate("owner")


def test_config_accepts_its_defaults_and_explicit_values():
    DataInspectorConfig().validate("owner")
    DataInspectorConfig(
        task="regression", num_classes=3, ignore_index=None, max_samples=10, top_k=0
    ).validate("owner")


def _report(*issues: DataIssue) -> DataReport:
    summary = DataIssue(
        "summary", "pass", "train 10 samples: no duplicates", None, {"train": {"samples": 10}}
    )
    return DataReport(issues=[*issues, summary], splits={"train": {"samples": 10}})


def test_report_findings_carry_the_issue_and_the_split():
    report = _report(DataIssue("duplicates", "warn", "train: 2 exact duplicates", "train", {"count": 2}))
    assert report_findings(report) == [
        ("warn", "train: 2 exact duplicates", {"issue": "duplicates", "split": "train", "count": 2}),
        ("pass", "train 10 samples: no duplicates", {"issue": "summary", "train": {"samples": 10}}),
    ]


def test_report_findings_of_a_clean_report_are_one_pass():
    assert [(s, n["issue"]) for s, _, n in report_findings(_report())] == [("pass", "summary")]


def test_note_estimates_names_the_splits_read_in_part_and_leaves_a_full_read_alone():
    report = _report()
    note_estimates(report, {})
    assert report.issues[-1].message == "train 10 samples: no duplicates"
    note_estimates(report, {"train": 640})
    assert report.issues[-1].message.endswith(
        "(train: estimated from the first 640 samples (an iterable data set "
        "without len(); pass max_samples= to read more))"
    )
    assert report.issues[-1].numbers["estimated_from"] == {"train": 640}


def test_summary_scalars_per_split_and_the_overlap():
    report = DataReport(
        splits={
            "train": {"samples": 100, "duplicates": 2, "nonfinite": 1, "constant": 3, "near_constant": 1,
                      "imbalance_ratio": 1.5},
            "val": {"samples": 20, "in_train": 4},
        }
    )  # fmt: skip
    assert summary_scalars(report) == {
        "train/samples": 100.0, "train/duplicates": 2.0, "train/nonfinite": 1.0, "train/blank": 4.0,
        "train/imbalance_ratio": 1.5, "val/samples": 20.0, "val/duplicates": 0.0, "val/nonfinite": 0.0,
        "val/blank": 0.0, "train_val_overlap": 4.0,
    }  # fmt: skip


def test_scan_sources_judges_train_against_val():
    data = _images()
    x = data.tensors[0]
    leaked = TensorDataset(torch.cat([x[:3], torch.rand(5, 1, 8, 8)]), torch.arange(8) % 4)
    outcome = scan_sources(
        {"train": DataLoader(data, batch_size=16), "val": leaked}, DataInspectorConfig(), False
    )
    assert outcome.failed == {} and outcome.estimated == {}
    assert [n["issue"] for s, _, n in report_findings(outcome.report) if s != "pass"] == ["train_val_overlap"]
    clean = scan_sources({"train": data}, DataInspectorConfig(), False)
    assert [s for s, _, _ in report_findings(clean.report)] == ["pass"]


class _Endless(IterableDataset):
    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        while True:
            yield torch.randn(4, generator=g), torch.tensor(0)


def test_scan_sources_says_why_a_split_is_left_out():
    one_shot = iter([(torch.zeros(4), 0)])
    outcome = scan_sources({"train": _images(), "val": one_shot}, DataInspectorConfig(), False)
    assert "one-shot iterator" in outcome.failed["val"] and outcome.report is not None
    unreadable = scan_sources(
        {"train": [{"a": torch.zeros(2, 3), "b": torch.ones(2, 3)}]}, DataInspectorConfig(), False
    )
    assert unreadable.report is None
    assert unreadable.failed["train"].startswith(
        "skipped, because the train data could not be scanned (ValueError"
    )
    # another rank could not read its shard: every rank leaves the split out
    agreed = scan_sources({"train": _images()}, DataInspectorConfig(), False, agree=lambda ok: False)
    assert agreed.failed == {"train": other_rank_reason("train")} and agreed.report is None


def test_scan_sources_raises_an_argument_that_does_not_fit_and_notes_a_partial_read():
    with pytest.raises(ArgumentError, match="input_key='img'"):
        scan_sources({"train": [{"x": torch.zeros(3)}]}, DataInspectorConfig(input_key="img"), False)
    outcome = scan_sources(
        {"train": DataLoader(_Endless(), batch_size=50)}, DataInspectorConfig(max_samples=120), False
    )
    assert outcome.estimated == {"train": 120} and outcome.report.splits["train"]["samples"] == 120
    assert "estimated from the first 120 samples" in outcome.report.issues[-1].message


def test_imbalance_answer_sees_a_weighted_sampler_also_inside_lightnings_distributed_wrapper():
    data = TensorDataset(torch.zeros(8, 1), torch.tensor([0] * 6 + [1] * 2))
    weights = torch.tensor([1.0] * 6 + [3.0] * 2)  # 6 : 6 of the weight: the classes evened out
    sampler = WeightedRandomSampler(weights, 8)
    wrapped = DistributedSamplerWrapper(sampler, num_replicas=2, rank=1)  # what Lightning builds under DDP
    for loader in (DataLoader(data, sampler=sampler), DataLoader(data, sampler=wrapped)):
        assert (
            imbalance_answer(loader)([6, 2]) == "the training loader resamples them (a WeightedRandomSampler)"
        )
    assert imbalance_answer(DataLoader(data, sampler=WeightedRandomSampler(torch.ones(8), 8)))([6, 2]) is None
    assert imbalance_answer(DataLoader(data, shuffle=True))([6, 2]) is None
    # uneven weights that do not even the classes out (by difficulty, by domain): no answer
    by_domain = torch.tensor([1.0, 2.0] * 3 + [1.0, 1.0])
    assert imbalance_answer(DataLoader(data, sampler=WeightedRandomSampler(by_domain, 8)))([6, 2]) is None


def test_imbalance_answer_names_the_weighted_loss_module_or_tensor_of_one_weight_per_class():
    class Model(nn.Module):
        def __init__(self, **weights: torch.Tensor) -> None:
            super().__init__()
            self.net = nn.Linear(1, 2)
            for name, value in weights.items():
                setattr(self, name, value)

    loader = DataLoader(TensorDataset(torch.zeros(4, 1)))
    bce = Model(criterion=nn.BCEWithLogitsLoss(pos_weight=torch.tensor(9.0)))
    assert imbalance_answer(loader, bce)([90, 10]) == (
        "the loss is class-weighted (BCEWithLogitsLoss(pos_weight=) at 'criterion')"
    )
    plain = Model(class_weights=torch.tensor([1.0, 4.0]))
    assert (
        imbalance_answer(loader, plain)([80, 20]) == "the loss is class-weighted (the tensor 'class_weights')"
    )
    assert (
        imbalance_answer(loader, plain)([60, 20, 20]) is None
    )  # two weights for three classes: another thing
    buffered = Model()
    buffered.register_buffer("class_weight", torch.tensor([1.0, 2.0, 5.0]))
    assert (
        imbalance_answer(loader, buffered)([60, 30, 10])
        == "the loss is class-weighted (the buffer 'class_weight')"
    )
    assert (
        imbalance_answer(loader, Model(criterion=nn.BCEWithLogitsLoss(pos_weight=torch.tensor(1.0))))([9, 1])
        is None
    )
    assert (
        imbalance_answer(loader, Model(criterion=nn.CrossEntropyLoss(), class_weights=torch.ones(3)))(
            [8, 1, 1]
        )
        is None
    )
    assert (
        imbalance_answer(loader, Model(loss_weights=torch.tensor([1.0, 0.1])))([9, 1]) is None
    )  # tasks, not classes


def test_sorted_order_is_read_through_lightnings_distributed_sampler_and_needs_enough_labels():
    from torch.utils.data import DistributedSampler

    data = TensorDataset(torch.zeros(256, 1), torch.arange(256) // 64)
    unshuffled = DistributedSampler(data, num_replicas=2, rank=0, shuffle=False)  # Lightning's under DDP
    assert sorted_order_issue(DataLoader(data, sampler=unshuffled)).numbers["runs"] == 4
    shuffled = DistributedSampler(data, num_replicas=2, rank=0, shuffle=True)
    assert sorted_order_issue(DataLoader(data, sampler=shuffled)) is None
    assert (
        sorted_order_issue(DataLoader(TensorDataset(torch.zeros(32, 1), torch.arange(32) // 8))) is None
    )  # few
    regression = TensorDataset(torch.zeros(256, 1), torch.linspace(0, 1, 256))  # a sorted regression target
    assert sorted_order_issue(DataLoader(regression)) is None
    one_class = TensorDataset(torch.zeros(256, 1), torch.zeros(256, dtype=torch.long))
    assert sorted_order_issue(DataLoader(one_class)) is None


def test_the_order_is_left_to_a_custom_sampler_or_batch_sampler_and_to_named_targets():
    from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

    data = TensorDataset(torch.zeros(256, 1), torch.arange(256) // 64)  # class-sorted, as ImageFolder is
    weighted = WeightedRandomSampler(torch.ones(256), 256)
    wrapped = DistributedSamplerWrapper(weighted, num_replicas=2, rank=0, shuffle=False)  # Lightning, DDP
    assert sorted_order_issue(DataLoader(data, sampler=wrapped, batch_size=32)) is None
    shuffled_batches = BatchSampler(RandomSampler(data), 32, drop_last=False)
    assert sorted_order_issue(DataLoader(data, batch_sampler=shuffled_batches)) is None

    class Buckets(BatchSampler):  # a custom batch sampler decides its own order
        pass

    assert (
        sorted_order_issue(DataLoader(data, batch_sampler=Buckets(SequentialSampler(data), 32, False)))
        is None
    )
    ordered = DataLoader(data, batch_sampler=BatchSampler(SequentialSampler(data), 32, False))
    found = sorted_order_issue(ordered)  # plain batches in order: still sorted
    assert found.numbers["runs"] == 4 and found.numbers["batch_size"] == 32
    assert sorted_order_issue(DataLoader(data, batch_size=32), target_key=0) is None  # the user's targets


def test_mask_alignment_counts_long_runs_without_overflow_and_stops_after_enough_samples():
    from lightning_recipe.core.checks.batch_inspector import MaskAlignment, _binomial_tail

    assert (
        _binomial_tail(4, 1100, 0.08) == pytest.approx(1.0) and 0.0 <= _binomial_tail(200, 1100, 0.08) < 1e-6
    )
    x = torch.zeros(16, 1, 16, 16)
    x[:, :, 4:12, 2:7] = 1.0
    tally = MaskAlignment()
    for step in range(100):
        assert tally.add(x, (x[:, 0] > 0.5).long(), step) is None
    assert tally.done and tally.bounded == 256  # judged on 256 samples, then it stops scoring
