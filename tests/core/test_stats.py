import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from lightning_recipe.core.stats import (
    UNSIZED_MAX_BATCHES,
    TargetStats,
    binary_entropy,
    collect_target_stats,
    entropy,
    is_one_shot,
    targets_from_dataset,
)
from tests.helpers import diabetes_arrays, digits_arrays


class WithTargets(Dataset):
    """A torchvision-like dataset: `targets` list, inputs that must never be loaded."""

    def __init__(self, targets):
        self.targets = list(targets)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        raise AssertionError("the fast path must not load inputs")


class NoTargets(Dataset):
    def __init__(self, y):
        self.y = y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"image": torch.zeros(1, 2, 2), "label": self.y[i]}


def test_multiclass_priors_on_digits():
    _, y = digits_arrays()
    stats = TargetStats.from_targets(torch.as_tensor(y), "multiclass")
    expected = np.bincount(y, minlength=10) / len(y)
    assert torch.allclose(stats.priors(), torch.as_tensor(expected, dtype=torch.float64))
    assert stats.count == 1797 and stats.num_outputs == 10 and stats.missing_classes() == []


def test_regression_mean_var_on_diabetes():
    _, y = diabetes_arrays()
    stats = TargetStats.from_targets(torch.as_tensor(y), "regression")
    assert stats.mean().item() == pytest.approx(float(np.mean(y.astype(np.float64))), rel=1e-9)
    assert stats.var().item() == pytest.approx(float(np.var(y.astype(np.float64))), rel=1e-9)
    assert stats.second_moment().item() == pytest.approx(float(np.mean(y.astype(np.float64) ** 2)), rel=1e-9)


def test_multilabel_positive_rates():
    y = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    stats = TargetStats.from_targets(y, "multilabel")
    assert stats.priors().tolist() == [0.75, 0.25, 0.75]


@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
def test_merge_and_tensor_round_trip_equal_one_pass(task):
    g = torch.Generator().manual_seed(0)
    if task == "multiclass":
        y = torch.randint(0, 7, (1000,), generator=g)
    elif task == "binary":
        y = torch.randint(0, 2, (1000,), generator=g).float()
    else:
        y = torch.randn(1000, 3, generator=g) * 10 + 50
    whole = TargetStats.from_targets(y, task, num_classes=7 if task == "multiclass" else None)
    shards = [TargetStats.from_targets(s, task) for s in y.split(137)]
    merged = shards[0]
    for s in shards[1:]:
        merged = merged.merge(s)
    assert merged.count == whole.count
    # what an all-reduce with a sum does: add the flat tensors (padded to an agreed class count)
    size = 7 if task == "multiclass" else None
    flat = sum(s.to_tensor(size) for s in shards)
    rebuilt = TargetStats.from_tensor(task, flat)
    for got in (merged, rebuilt):
        if task == "multiclass":
            assert torch.equal(got.class_counts, whole.class_counts)
        else:
            assert torch.allclose(got.mean(), whole.mean()) and torch.allclose(got.var(), whole.var())


def test_ignore_index_and_bad_labels():
    stats = TargetStats.from_targets(torch.tensor([0, -100, 2, 2]), "multiclass", ignore_index=-100)
    assert stats.class_counts.tolist() == [1.0, 0.0, 2.0] and stats.missing_classes() == [1]
    with pytest.raises(ValueError, match=r"negative class label -100 .* pass `ignore_index=`"):
        TargetStats.from_targets(torch.tensor([0, -100]), "multiclass")
    with pytest.raises(ValueError, match="class label 5 is out of range for num_classes=3"):
        TargetStats.from_targets(torch.tensor([0, 5]), "multiclass", num_classes=3)
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        TargetStats.from_targets(torch.tensor([0]), "nope")
    with pytest.raises(ValueError, match="cannot merge 'multiclass' with 'regression'"):
        stats.merge(TargetStats.from_targets(torch.tensor([1.0]), "regression"))


def test_fast_path_reads_targets_without_inputs():
    base = WithTargets([0, 1, 2, 1, 0, 2])
    assert targets_from_dataset(base).tolist() == [0, 1, 2, 1, 0, 2]
    assert targets_from_dataset(Subset(base, [1, 3, 5])).tolist() == [1, 1, 2]
    tds = TensorDataset(torch.randn(3, 2), torch.tensor([2, 2, 0]))
    assert targets_from_dataset(ConcatDataset([Subset(base, [0]), tds])).tolist() == [0, 2, 2, 0]
    assert targets_from_dataset(TensorDataset(torch.randn(3, 2))) is None
    assert targets_from_dataset(NoTargets(torch.tensor([1, 2]))) is None


def test_collect_prefers_fast_path_and_falls_back_to_dataloader():
    y = torch.tensor([0, 1, 1, 2, 2, 2])
    fast = collect_target_stats("multiclass", dataset=WithTargets(y.tolist()))
    assert fast.source == "dataset" and fast.class_counts.tolist() == [1.0, 2.0, 3.0]
    ds = NoTargets(y)
    slow = collect_target_stats(
        "multiclass", dataset=ds, dataloader=DataLoader(ds, batch_size=4), progress=False
    )
    assert slow.source == "dataloader" and torch.equal(slow.class_counts, fast.class_counts)
    part = collect_target_stats(
        "multiclass",
        dataset=ds,
        dataloader=DataLoader(ds, batch_size=4),
        max_batches=1,
        num_classes=4,
        progress=False,
    )
    assert part.count == 4 and part.class_counts.tolist() == [1.0, 2.0, 1.0, 0.0]
    assert part.estimated and part.batches == 1 and not slow.estimated and slow.batches == 2


class EndlessDigits(IterableDataset):
    """Digit labels, round and round, forever (a fresh stream on every ``iter()``)."""

    def __iter__(self):
        _, y = digits_arrays()
        i = 0
        while True:
            yield torch.zeros(2), int(y[i % len(y)])
            i += 1


class OneShot(IterableDataset):
    def __init__(self):
        self._it = iter([(torch.zeros(2), 1)] * 4)

    def __iter__(self):
        return self._it


def test_an_endless_loader_is_read_for_a_bounded_number_of_batches():
    loader = DataLoader(EndlessDigits(), batch_size=8)
    stats = collect_target_stats("multiclass", dataloader=loader, progress=False)
    assert stats.estimated and stats.batches == UNSIZED_MAX_BATCHES and stats.count == 8 * UNSIZED_MAX_BATCHES
    few = collect_target_stats("multiclass", dataloader=loader, unsized_max_batches=3, progress=False)
    assert few.batches == 3 and few.count == 24
    # a finite iterable without len() that ends before the cap is read whole: no estimate
    finite = collect_target_stats(
        "multiclass", dataloader=(b for b in [(torch.zeros(2, 1), torch.tensor([0, 1]))]), progress=False
    )
    assert not finite.estimated and finite.batches == 1


def test_one_shot_sources_are_told_from_re_iterable_ones():
    assert not is_one_shot(DataLoader(TensorDataset(torch.zeros(4, 2)), batch_size=2, shuffle=True))
    assert not is_one_shot(DataLoader(EndlessDigits(), batch_size=2))
    assert not is_one_shot([1, 2]) and not is_one_shot(None)
    assert is_one_shot(DataLoader(OneShot(), batch_size=2)) and is_one_shot(OneShot())
    assert is_one_shot(iter([1, 2])) and is_one_shot(x for x in range(2))


def test_collect_errors_name_the_argument():
    with pytest.raises(ValueError, match="pass a dataloader or `target_key=`"):
        collect_target_stats("multiclass", dataset=NoTargets(torch.tensor([1])))
    loader = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    with pytest.raises(ValueError, match="found no targets in a batch of type list with 1 element"):
        collect_target_stats("multiclass", dataloader=loader, progress=False)


def test_entropies():
    assert entropy(torch.full((10,), 0.1)) == pytest.approx(np.log(10))
    assert entropy(torch.tensor([1.0, 0.0])) == 0.0
    assert binary_entropy(torch.tensor([0.5, 0.0, 1.0])).tolist() == pytest.approx([np.log(2), 0.0, 0.0])
