"""Reading a split for the data inspection: a sequential, sharded loader, one pass feeding
:class:`~lightning_recipe.core.data_stats.SplitStats`, the merge across ranks, and the samples to show.

The inspection never iterates the (shuffled) training loader: :func:`plan_split` builds its own
sequential ``DataLoader`` over the loader's map-style dataset, so sample indices are dataset
indices; other iterables are read as they are, by rank zero, for a bounded prefix when they have
no ``len()``. No Lightning here.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from lightning_recipe.core.data_stats import SplitStats
    >>> data = TensorDataset(torch.rand(10, 1, 8, 8), torch.arange(10) % 2)
    >>> plan = plan_split(DataLoader(data, batch_size=4, shuffle=True), None, None)
    >>> plan.indices, plan.batches
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3)
    >>> scan_split(plan, SplitStats("train"), None, None, progress=False).count
    10
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.data.dataloader import default_collate

from lightning_recipe.core.batches import KeySpec, first_tensor, split_batch
from lightning_recipe.core.data_stats import DataReport, SplitStats, thumbnails

__all__ = [
    "ITERABLE_MAX_SAMPLES",
    "ScanPlan",
    "duplicate_tiles",
    "flagged_tiles",
    "gather_stats",
    "is_map_style",
    "plan_split",
    "sample_fetcher",
    "scan_split",
]

#: Samples read from an iterable data set without ``len()`` (possibly endless) when ``max_samples`` is not set.
ITERABLE_MAX_SAMPLES = 10_000
_SEED = 0


@dataclass
class ScanPlan:
    """How one split is iterated: a sequential loader and the dataset index of each position."""

    loader: Iterable[Any]
    indices: list[int] | None  # dataset index per iteration position; None: positions themselves
    dataset: Any | None  # map-style dataset, for fetching samples to show
    collate: Callable[[list[Any]], Any] | None
    batches: int | None
    max_samples: int | None  # for iterable sources: stop after this many
    capped: bool = False  # an iterable source without len() was read up to max_samples only


def is_map_style(dataset: Any) -> bool:
    """True for a dataset with ``len()`` and ``__getitem__`` that is not an ``IterableDataset``."""
    if dataset is None or isinstance(dataset, IterableDataset):
        return False
    try:
        len(dataset)
    except TypeError:
        return False
    return hasattr(dataset, "__getitem__")


def plan_split(
    source: Any,
    batch_size: int | None,
    max_samples: int | None,
    rank: int = 0,
    world_size: int = 1,
) -> ScanPlan:
    """A sequential loader over ``source`` (a DataLoader or a Dataset), sharded ``rank::world_size``.

    Map-style data: a new ``DataLoader`` over the same dataset with the same collate function,
    worker count and batch size (``batch_size`` overrides), in index order; ``max_samples`` picks
    a fixed random subset (seed 0). Other iterables are iterated as they are, on rank zero only.
    """
    dataset = source.dataset if isinstance(source, DataLoader) else source
    collate: Callable[[list[Any]], Any] = default_collate
    workers, worker_init, context = 0, None, None
    size = batch_size
    if isinstance(source, DataLoader):
        collate = source.collate_fn
        workers, worker_init = source.num_workers, source.worker_init_fn
        context = source.multiprocessing_context
        size = size or source.batch_size or getattr(source.batch_sampler, "batch_size", None)
        if source.batch_size is None and source.batch_sampler is None:
            dataset = None  # auto-batching off: the dataset yields whole batches
    size = int(size or 64)
    if not isinstance(source, DataLoader) and not is_map_style(source):
        dataset = None
    if not is_map_style(dataset):
        loader = source if rank == 0 else []
        try:
            batches = len(source) if rank == 0 else 0  # type: ignore[arg-type]
        except TypeError:  # no len(): possibly endless; read a bounded prefix
            batches = None
            if max_samples is None:
                max_samples = ITERABLE_MAX_SAMPLES
        return ScanPlan(loader, None, None, None, batches, max_samples)
    n = len(dataset)
    if max_samples is not None and max_samples < n:
        g = torch.Generator().manual_seed(_SEED)
        order = torch.randperm(n, generator=g)[:max_samples].sort().values.tolist()
    else:
        order = list(range(n))
    shard = order[rank::world_size]
    loader = DataLoader(
        dataset,
        batch_size=size,
        sampler=shard,
        collate_fn=collate,
        num_workers=workers,
        worker_init_fn=worker_init,
        multiprocessing_context=context if workers else None,
        generator=torch.Generator().manual_seed(_SEED),
    )
    return ScanPlan(loader, shard, dataset, collate, math.ceil(len(shard) / size), None)


def _inputs_of(parts_inputs: Any) -> torch.Tensor:
    tensor = parts_inputs if isinstance(parts_inputs, torch.Tensor) else first_tensor(parts_inputs)
    if tensor is None:
        raise ValueError(
            f"DataInspector: found no tensor in the inputs (a {type(parts_inputs).__name__}); pass `input_key=`."
        )
    return tensor


def _targets_of(targets: Any, target_key: KeySpec) -> torch.Tensor | None:
    """The targets as a tensor; inferred targets that are not numbers (strings, ragged lists) are
    left out (no label checks), named ones that are not numbers are an error."""
    if targets is None or isinstance(targets, torch.Tensor):
        return targets
    try:
        return torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError) as err:
        if target_key is not None:
            raise ValueError(
                f"the targets at target_key={target_key!r} are a {type(targets).__name__}, not numbers ({err})"
            ) from err
        return None


def scan_split(
    plan: ScanPlan,
    stats: SplitStats,
    input_key: KeySpec,
    target_key: KeySpec,
    progress: bool,
) -> SplitStats:
    """One pass over ``plan``, feeding ``stats`` (on this thread: a second thread loses more to the
    GIL than it gains when the dataset's ``__getitem__`` is Python code, which it usually is)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=plan.batches, desc=f"DataInspector: {stats.name}", leave=False, unit="batch")
    pos = 0
    try:
        for batch in plan.loader:
            parts = split_batch(batch, input_key=input_key, target_key=target_key)
            x = _inputs_of(parts.inputs)
            y = _targets_of(parts.targets, target_key)
            n = int(x.shape[0]) if x.dim() else 1
            if plan.max_samples is not None and pos + n > plan.max_samples:
                n = plan.max_samples - pos
                x, y = x[:n], (None if y is None else y[:n])
            if n <= 0:
                break
            if plan.indices is not None:
                idx = torch.as_tensor(plan.indices[pos : pos + n], dtype=torch.int64)
            else:
                idx = torch.arange(pos, pos + n, dtype=torch.int64)
            stats.update(x, y, idx)
            pos += n
            if bar is not None:
                bar.update(1)
            if plan.indices is None and plan.max_samples is not None and pos >= plan.max_samples:
                plan.capped = True
                break
    finally:
        if bar is not None:
            bar.close()
    return stats


def gather_stats(stats: SplitStats, world_size: int) -> SplitStats:
    """Merge every rank's statistics (the same result, in rank order, on every rank)."""
    if world_size <= 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return stats
    stats.arrays()  # one chunk per rank: cheap to send
    gathered: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(gathered, stats)
    merged: SplitStats = gathered[0]
    for other in gathered[1:]:
        merged.merge(other)
    return merged


def sample_fetcher(
    plans: dict[str, ScanPlan], input_key: KeySpec, target_key: KeySpec
) -> Callable[[str, int], np.ndarray | None]:
    """``fetch(split, index)``: the thumbnail of one sample of a map-style dataset, or ``None``."""

    def fetch(split: str, index: int) -> np.ndarray | None:
        plan = plans.get(split)
        if plan is None or plan.dataset is None or plan.collate is None:
            return None
        try:
            batch = plan.collate([plan.dataset[int(index)]])
            x = _inputs_of(split_batch(batch, input_key=input_key, target_key=target_key).inputs)
            return thumbnails(x)[0].numpy()
        except Exception:  # showing a sample is best effort
            return None

    return fetch


def duplicate_tiles(
    report: DataReport, fetch: Callable[[str, int], np.ndarray | None], pairs: int = 8
) -> tuple[list[np.ndarray], list[str]]:
    """The first ``pairs`` duplicate pairs as tiles side by side (pairs that cannot be fetched are left out)."""
    tiles: list[np.ndarray] = []
    titles: list[str] = []
    for sa, ia, sb, ib in report.duplicate_pairs[:pairs]:
        a, b = fetch(sa, ia), fetch(sb, ib)
        if a is None or b is None or a.shape != b.shape:
            continue
        tiles += [a, b]
        titles += [f"{sa} #{ia}", f"= {sb} #{ib}"]
    return tiles, titles


def flagged_tiles(
    report: DataReport, fetch: Callable[[str, int], np.ndarray | None], per_reason: int = 6, most: int = 24
) -> tuple[list[np.ndarray], list[str]]:
    """The NaN/blank/near-constant/outlier samples as tiles of one shape, titled with split, index and reason."""
    tiles: list[np.ndarray] = []
    titles: list[str] = []
    for split, flagged in report.flagged.items():
        for reason, indices in flagged.items():
            for i in indices[:per_reason]:
                t = fetch(split, i)
                if t is not None and (not tiles or t.shape == tiles[0].shape):
                    tiles.append(t)
                    titles.append(f"{split} #{i}\n{reason}")
    return tiles[:most], titles[:most]
