"""Reading a split for the data inspection: plans, the scan, the samples to show."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from lightning_recipe.core.arguments import check_positive_int
from lightning_recipe.core.data_scan import (
    ITERABLE_MAX_SAMPLES,
    duplicate_tiles,
    flagged_tiles,
    is_map_style,
    plan_split,
    sample_fetcher,
    scan_split,
)
from lightning_recipe.core.data_stats import SplitStats, analyse_splits


def _data(n: int = 40) -> TensorDataset:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x[7] = x[3]
    x[9] = 0.0
    return TensorDataset(x, torch.arange(n) % 4)


class _Stream(IterableDataset):
    def __iter__(self):
        while True:
            yield torch.rand(3), torch.tensor(1)


def test_a_plan_is_sequential_sharded_and_subsampled_with_a_fixed_seed():
    loader = DataLoader(_data(), batch_size=8, shuffle=True)
    assert plan_split(loader, None, None).indices == list(range(40))
    assert plan_split(loader, None, None, rank=1, world_size=2).indices == list(range(1, 40, 2))
    a, b = plan_split(loader, 4, 10), plan_split(_data(), 4, 10)
    assert a.indices == b.indices and len(a.indices) == 10 and a.batches == 3
    assert is_map_style(_data()) and not is_map_style(_Stream()) and not is_map_style(None)


def test_an_endless_stream_is_read_by_rank_zero_for_a_bounded_prefix():
    plan = plan_split(DataLoader(_Stream(), batch_size=16), None, None)
    assert plan.indices is None and plan.max_samples == ITERABLE_MAX_SAMPLES
    plan = plan_split(DataLoader(_Stream(), batch_size=16), None, 50)
    stats = scan_split(plan, SplitStats("train"), None, None, progress=False)
    assert stats.count == 50 and plan.capped
    assert list(plan_split(_Stream(), None, None, rank=1, world_size=2).loader) == []


def test_samples_to_show_are_fetched_by_dataset_index():
    plan = plan_split(_data(), None, None)
    report = analyse_splits({"train": scan_split(plan, SplitStats("train"), None, None, progress=False)})
    fetch = sample_fetcher({"train": plan}, None, None)
    assert fetch("train", 3).shape == (1, 8, 8) and fetch("val", 3) is None
    tiles, titles = duplicate_tiles(report, fetch)
    assert titles == ["train #3", "= train #7"] and (tiles[0] == tiles[1]).all()
    tiles, titles = flagged_tiles(report, fetch)
    assert titles == ["train #9\nblank"] and float(abs(tiles[0]).max()) == 0.0


def test_check_positive_int_accepts_none_only_when_allowed():
    check_positive_int("f", "n", None, allow_none=True)
    for value, error in ((None, TypeError), (0, ValueError), (True, TypeError)):
        try:
            check_positive_int("f", "n", value)
        except error as err:
            assert str(err) == f"f(n={value!r}): pass an integer >= 1."
        else:  # pragma: no cover
            raise AssertionError(value)
