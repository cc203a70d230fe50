"""DataInspector and inspect_data: the recipe's "become one with the data"."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data.dataloader import default_collate
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.batches import KeySpec, first_tensor, split_batch, validate_key_spec
from lightning_recipe.core.data_stats import (
    AXES,
    DATA_TASKS,
    EXTREMES,
    DataIssue,
    DataReport,
    SplitStats,
    analyse_splits,
    thumbnails,
)
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.stats import is_one_shot
from lightning_recipe.findings import Finding, RecipeCheckError

__all__ = ["DataInspection", "DataInspector", "inspect_data"]

log = logging.getLogger(__name__)

_PREFIX = "recipe/data/"
_SEED = 0
#: Samples read from an iterable data set without ``len()`` (possibly endless) when ``max_samples`` is not set.
ITERABLE_MAX_SAMPLES = 10_000


# ---------------------------------------------------------------------- the result object
@dataclass
class DataInspection:
    """What :func:`inspect_data` (or :class:`DataInspector`) found.

    Attributes:
        report: the analysis (:class:`~lightning_recipe.core.data_stats.DataReport`): per-split
            summaries, per-sample statistics, the most extreme samples with thumbnails.
        findings: one :class:`~lightning_recipe.report.Finding` per issue (check ``"DataInspector"``,
            the kind in ``numbers["issue"]``), then a ``pass`` summary.
    """

    report: DataReport
    findings: list[Finding]

    @property
    def problems(self) -> list[Finding]:
        """The ``warn`` and ``fail`` findings."""
        return [f for f in self.findings if f.is_problem]

    @property
    def issues(self) -> list[str]:
        """The kinds of problem found, e.g. ``["duplicates", "train_val_overlap"]``."""
        return [str(f.numbers["issue"]) for f in self.problems]

    def issue(self, name: str, split: str | None = None) -> DataIssue | None:
        """The issue of kind ``name`` (and ``split``), or ``None``."""
        return self.report.issue(name, split)

    @property
    def summary(self) -> dict[str, dict[str, Any]]:
        """Per split: samples, unique samples, duplicates, NaN/Inf, blank, classes, imbalance..."""
        return self.report.splits

    def markdown(self) -> str:
        """The Markdown summary also logged to ``recipe/data/summary``."""
        return self.report.markdown()

    def __str__(self) -> str:
        return self.markdown()


def _to_findings(report: DataReport, step: str) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for issue in report.issues:
        numbers = {"issue": issue.issue}
        if issue.split is not None:
            numbers["split"] = issue.split
        numbers.update(issue.numbers)
        out.append((issue.status, issue.message, numbers))
    return out


# ---------------------------------------------------------------------- what to iterate
@dataclass
class _Plan:
    """How one split is iterated: a sequential loader and the dataset index of each position."""

    loader: Iterable[Any]
    indices: list[int] | None  # dataset index per iteration position; None: positions themselves
    dataset: Any | None  # map-style dataset, for fetching samples to show
    collate: Callable[[list[Any]], Any] | None
    batches: int | None
    max_samples: int | None  # for iterable sources: stop after this many
    capped: bool = False  # an iterable source without len() was read up to max_samples only


def _is_map_style(dataset: Any) -> bool:
    if dataset is None or isinstance(dataset, IterableDataset):
        return False
    try:
        len(dataset)
    except TypeError:
        return False
    return hasattr(dataset, "__getitem__")


def _plan(
    source: Any,
    batch_size: int | None,
    max_samples: int | None,
    rank: int = 0,
    world_size: int = 1,
) -> _Plan:
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
    if not isinstance(source, DataLoader) and not _is_map_style(source):
        dataset = None
    if not _is_map_style(dataset):
        loader = source if rank == 0 else []
        try:
            batches = len(source) if rank == 0 else 0  # type: ignore[arg-type]
        except TypeError:  # no len(): possibly endless; read a bounded prefix
            batches = None
            if max_samples is None:
                max_samples = ITERABLE_MAX_SAMPLES
        return _Plan(loader, None, None, None, batches, max_samples)
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
    return _Plan(loader, shard, dataset, collate, math.ceil(len(shard) / size), None)


def _inputs_of(parts_inputs: Any) -> torch.Tensor:
    tensor = parts_inputs if isinstance(parts_inputs, torch.Tensor) else first_tensor(parts_inputs)
    if tensor is None:
        raise ValueError(
            f"DataInspector: found no tensor in the inputs (a {type(parts_inputs).__name__}); pass `input_key=`."
        )
    return tensor


def _scan(
    plan: _Plan,
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


def _gather(stats: SplitStats, world_size: int) -> SplitStats:
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


def _fetcher(plans: dict[str, _Plan], input_key: KeySpec, target_key: KeySpec) -> Callable[[str, int], Any]:
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


# ---------------------------------------------------------------------- the core routine
@dataclass
class _Options:
    input_key: KeySpec
    target_key: KeySpec
    task: str
    num_classes: int | None
    ignore_index: int | None
    max_samples: int | None
    batch_size: int | None
    near_duplicates: bool
    imbalance_ratio: float
    near_constant_ratio: float
    outlier_z: float
    top_k: int


def _validate(owner: str, o: _Options) -> None:
    validate_key_spec(o.input_key, owner, "input_key")
    validate_key_spec(o.target_key, owner, "target_key")
    if o.task not in DATA_TASKS:
        listed = ", ".join(repr(t) for t in DATA_TASKS[:-1]) + f" or {DATA_TASKS[-1]!r}"
        raise ValueError(f"{owner}(task={o.task!r}): unknown task; pass one of {listed}.")
    check_positive_int(owner, "num_classes", o.num_classes, allow_none=True)
    check_positive_int(owner, "max_samples", o.max_samples, allow_none=True)
    check_positive_int(owner, "batch_size", o.batch_size, allow_none=True)
    check_positive_int(owner, "top_k", o.top_k, minimum=0)
    if o.ignore_index is not None and (
        isinstance(o.ignore_index, bool) or not isinstance(o.ignore_index, int)
    ):
        raise TypeError(
            f"{owner}(ignore_index={o.ignore_index!r}): pass an integer label such as -100, or None."
        )
    for name, value, low in (
        ("imbalance_ratio", o.imbalance_ratio, 1.0),
        ("near_constant_ratio", o.near_constant_ratio, 0.0),
        ("outlier_z", o.outlier_z, 0.0),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not value > low
            or math.isinf(value)
        ):
            raise ValueError(f"{owner}({name}={value!r}): pass a finite number greater than {low:g}.")


@dataclass
class _Outcome:
    """What :func:`_run` produced: the report (``None`` when the training data could not be
    scanned), the plans, the reason per split that was not scanned, and the splits read only in part."""

    report: DataReport | None
    plans: dict[str, _Plan]
    failed: dict[str, str]
    estimated: dict[str, int]


def _run(
    sources: dict[str, Any],
    o: _Options,
    progress: bool,
    rank: int = 0,
    world_size: int = 1,
    agree: Callable[[bool], bool] = lambda ok: ok,
) -> _Outcome:
    """Scan every split; a split that cannot be scanned is left out with the reason.

    ``agree(ok)`` returns the same boolean on every rank (all ranks ok): it runs after each
    split's local scan and before the gather, so a rank whose scan failed never leaves the others
    waiting in ``all_gather_object``.
    """
    plans: dict[str, _Plan] = {}
    merged: dict[str, SplitStats] = {}
    failed: dict[str, str] = {}
    estimated: dict[str, int] = {}
    for name, src in sources.items():
        stats = SplitStats(
            name,
            task=o.task,  # type: ignore[arg-type]
            num_classes=o.num_classes,
            ignore_index=o.ignore_index,
            top_k=o.top_k,
            near_duplicates=o.near_duplicates,
        )
        error: BaseException | None = None
        reason = ""
        try:
            if is_one_shot(src):
                reason = (
                    f"skipped, because the {name} data is a one-shot iterator: scanning it would take its samples "
                    "from training; pass a re-iterable data set (a map-style Dataset, or an IterableDataset whose "
                    "__iter__ starts afresh)"
                )
            else:
                plan = _plan(src, o.batch_size, o.max_samples, rank, world_size)
                plans[name] = plan
                _scan(plan, stats, o.input_key, o.target_key, progress and rank == 0)
        except Exception as err:  # a batch layout, a dtype or a dataset this inspection cannot read
            error = err
            reason = (
                f"skipped, because the {name} data could not be scanned ({type(err).__name__}: {str(err).rstrip('.')}); "
                "pass `input_key=` / `target_key=`"
            )
        if not agree(not reason):
            if isinstance(error, ArgumentError):
                raise error  # an argument the user passed does not fit the data: only the user can fix it
            failed[name] = (
                reason or f"skipped, because another process could not scan the {name} data; see its warning"
            )
            plans.pop(name, None)
            continue
        merged[name] = _gather(stats, world_size)
        plan = plans[name]
        if not agree(not plan.capped):  # any rank stopped early
            estimated[name] = merged[name].count
    if "train" not in merged:
        return _Outcome(None, plans, failed, estimated)
    report = analyse_splits(
        merged,
        train="train",
        imbalance_ratio=o.imbalance_ratio,
        near_constant_ratio=o.near_constant_ratio,
        outlier_z=o.outlier_z,
    )
    if estimated:
        note = "; ".join(
            f"{split}: estimated from the first {n} samples (an iterable data set without len(); "
            "pass max_samples= to read more)"
            for split, n in estimated.items()
        )
        for issue in report.issues:
            if issue.issue == "summary":
                issue.message += f" ({note})"
                issue.numbers["estimated_from"] = dict(estimated)
    return _Outcome(report, plans, failed, estimated)


def _loaders_of(data: Any) -> tuple[Any, Any]:
    """(train, val) of a LightningDataModule-like object."""
    for hook in ("prepare_data",):
        fn = getattr(data, hook, None)
        if callable(fn):
            fn()
    setup = getattr(data, "setup", None)
    if callable(setup):
        setup("fit")
    train = data.train_dataloader()
    val = None
    val_fn = getattr(data, "val_dataloader", None)
    if callable(val_fn):
        try:
            val = val_fn()
        except (NotImplementedError, AttributeError):
            val = None
    if isinstance(val, (list, tuple)):
        val = val[0] if val else None
    return train, val


def inspect_data(
    train: Any,
    val: Any = None,
    *,
    input_key: KeySpec = None,
    target_key: KeySpec = None,
    task: str = "auto",
    num_classes: int | None = None,
    ignore_index: int | None = -100,
    max_samples: int | None = None,
    batch_size: int | None = None,
    near_duplicates: bool = False,
    imbalance_ratio: float = 5.0,
    near_constant_ratio: float = 0.01,
    outlier_z: float = 12.0,
    top_k: int = 8,
    progress: bool = True,
) -> DataInspection:
    """Inspect a data set without a Trainer: one pass over train (and val), the findings returned.

    The same checks as :class:`DataInspector` (see there for what each finding means). Sample
    indices are positions in the dataset (``dataset[i]``), read in order by a sequential loader
    built over the dataset with the original loader's batch size, collate function and workers.
    The global random state is left as it was.

    Args:
        train: a ``Dataset``, a ``DataLoader``, or a ``LightningDataModule`` (its ``setup("fit")``,
            ``train_dataloader()`` and ``val_dataloader()`` are used; ``val`` is then ignored).
        val: the validation ``Dataset`` or ``DataLoader`` (compared with ``train`` for overlap).
        input_key: where the inputs are in a batch (dict key, position or callable); inferred by default.
        target_key: where the targets are; inferred by default (``None`` found: no label checks).
        task: ``"auto"``, ``"multiclass"``, ``"binary"``, ``"multilabel"`` or ``"regression"``.
        num_classes: labels at or above it are out of range, classes below it without samples are missing.
        ignore_index: a sentinel label neither counted nor out of range (default ``-100``, PyTorch's
            ``cross_entropy`` default; ``None``: count every label).
        max_samples: inspect a fixed random subset of at most this many samples per split (an
            iterable data set without ``len()``: its first ``max_samples``, default 10,000).
        batch_size: batch size of the inspection loader (default: the loader's, else 64).
        near_duplicates: also look for near-duplicate images (same 8x8 average hash).
        imbalance_ratio: warn when the largest class outnumbers the smallest by this factor (one
            label per sample only: per-token and per-pixel labels are skewed by nature).
        near_constant_ratio: a sample whose std is below this fraction of its class's median std is near-constant.
        outlier_z: warn about samples this many robust SDs from their class along mean/std/norm.
        top_k: the most extreme samples kept (with thumbnails) per statistic and direction.
        progress: show a progress bar.

    Returns:
        A :class:`DataInspection`: ``findings``, ``issues``, ``summary``, ``report``, ``markdown()``.

    Raises:
        ValueError: when a split cannot be scanned (a batch layout it cannot read: pass
            ``input_key=`` / ``target_key=``; a one-shot iterator: pass a re-iterable data set).

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> x, y = torch.rand(200, 1, 8, 8), torch.arange(200) % 4
        >>> x[150] = x[20]                              # a duplicate
        >>> result = inspect_data(TensorDataset(x[:150], y[:150]), TensorDataset(x[150:], y[150:]), progress=False)
        >>> result.issues
        ['train_val_overlap']
        >>> result.issue("train_val_overlap").numbers["examples"]
        [[0, 20]]
    """
    options = _Options(
        input_key, target_key, task, num_classes, ignore_index, max_samples, batch_size,
        bool(near_duplicates), imbalance_ratio, near_constant_ratio, outlier_z, top_k,
    )  # fmt: skip
    _validate("inspect_data", options)
    if hasattr(train, "train_dataloader") and not isinstance(train, (DataLoader, Dataset)):
        train, val = _loaders_of(train)
    sources = {"train": train} if val is None else {"train": train, "val": val}
    with preserved_state(None, loaders=list(sources.values())):
        outcome = _run(sources, options, progress)
    if outcome.failed:
        raise ValueError(f"inspect_data: {'; '.join(outcome.failed.values())}.")
    report = outcome.report
    assert report is not None
    step = DataInspector.recipe_step
    findings = [
        Finding("DataInspector", status, message, numbers, step=step)  # type: ignore[arg-type]
        for status, message, numbers in _to_findings(report, step)
    ]
    return DataInspection(report, findings)


# ---------------------------------------------------------------------- the callback
class DataInspector(RecipeCallback):
    """Inspect the training and validation data at the start of fit, before any neural net code.

    Recipe, "become one with the data": *"One time I discovered that the data contained duplicate
    examples. Another time I found corrupted images / labels. I look for data imbalances and
    biases. [...] visualize their distributions and the outliers along any axis."* At fit start,
    one streaming pass over the training and validation datasets (vectorised per batch; memory:
    hashes and per-sample scalars, about 60 bytes a sample, never the data) finds:

    * ``duplicates``: exact duplicates within a split (96-bit hash of each sample's bytes);
      ``conflicting_labels``: identical inputs with different targets;
    * ``train_val_overlap``: validation samples that also occur in the training set;
    * ``near_duplicates`` (``near_duplicates=True``): images with the same 8x8 average hash;
    * ``nonfinite_inputs`` / ``nonfinite_targets`` (fail): NaN or Inf, with the samples;
    * ``blank_samples``: samples whose values are all equal (blank images), and near-constant
      ones, compared *within their class* (a dim or low-contrast class is not corrupted);
    * ``labels_out_of_range`` (fail): labels below 0 or at/above ``num_classes`` (``ignore_index``
      excepted); ``missing_classes``; ``class_imbalance`` (largest:smallest >= ``imbalance_ratio``,
      judged for one label per sample: per-token and per-pixel labels are skewed by nature);
    * ``constant_features``: tabular features that never vary in the training set;
    * ``outliers``: samples more than ``outlier_z`` robust SDs from their class along the
      per-sample mean, std or norm (std and norm on a log scale).

    Each problem is a finding (``warn``, or ``fail`` for NaN/Inf and bad labels); a clean data set
    gives one ``pass`` finding. The sample numbers are dataset indices (``dataset[i]``): the
    inspection iterates its own sequential ``DataLoader`` over the train loader's ``.dataset``
    (same batch size, collate function and workers), not the shuffled training loader, and restores
    every random state afterwards, so training is unchanged. Iterable datasets are iterated as
    they are, by rank zero (indices are positions); one without ``len()`` (possibly endless) for
    its first ``max_samples`` (default 10,000) samples, and the summary says the findings are
    estimates. A one-shot source (an iterator, or an ``IterableDataset`` that hands out the same
    iterator on every ``iter()``) is not read: reading it would take its samples from training.
    When a split cannot be scanned (a batch layout it cannot read: strings, ragged lists, a dict
    with several inputs) it records a ``skipped`` finding naming ``input_key=`` / ``target_key=``
    and training goes on. Under DDP each rank inspects indices ``rank::world_size``
    and the statistics are gathered, so duplicates across ranks are found and every rank reaches
    the same verdicts; rank zero writes.

    TensorBoard, at step 0, under ``recipe/data/``: ``summary`` (Text: a table of the splits and
    every verdict), ``class_counts`` (bar chart per split, missing classes in red),
    ``sample_stats`` (distributions of the per-sample mean, std and norm), ``extremes`` (the most
    extreme samples along each statistic), ``duplicates`` and ``flagged`` (the duplicate pairs and
    the NaN/blank/outlier samples, for map-style datasets), ``<split>/sample_mean|std|norm``
    (Histograms) and ``<split>/samples|duplicates|nonfinite|blank|imbalance_ratio``,
    ``train_val_overlap`` (Scalars).

    Args:
        input_key: where the inputs are in a batch (dict key, position or callable); inferred by default.
        target_key: where the targets are; inferred by default (none found: no label checks).
        task: ``"auto"`` (integer targets are classes, float 0/1 targets binary or multilabel,
            other float targets regression), ``"multiclass"``, ``"binary"``, ``"multilabel"``,
            ``"regression"``.
        num_classes: the number of classes; labels at or above it are out of range, and classes
            below it without samples are missing (default: the labels seen).
        ignore_index: a sentinel label that is neither counted nor out of range (default
            ``-100``, PyTorch's ``cross_entropy`` default, e.g. padded language-model targets; pass
            ``255`` for the void label of segmentation masks, ``None`` to count every label).
        max_samples: inspect a fixed random subset of at most this many samples per split (a huge
            set); for an iterable data set without ``len()``, its first ``max_samples`` (default 10,000).
        batch_size: batch size of the inspection loader (default: the training loader's).
        check_val: inspect the validation data too (and compare it with the training data).
        near_duplicates: also look for near-duplicate images (costs one pooling per batch).
        imbalance_ratio: warn when the largest class outnumbers the smallest present one by this factor.
        near_constant_ratio: a sample whose std is below this fraction of its class's median is near-constant.
        outlier_z: warn about samples this many robust SDs (1.4826 MAD) from their class's median.
        top_k: how many extreme samples to show per statistic and direction.
        progress: show a progress bar (default: when the trainer shows one).
        log_images: log the figures and image grids (the summary, scalars and histograms always).
        on_fail: ``"warn"`` or ``"raise"`` (:class:`~lightning_recipe.report.RecipeCheckError` for
            NaN/Inf and labels out of range, after everything is logged).

    Attributes:
        findings: the findings of the current run (one per problem, or a single ``pass``).
        result: the :class:`DataInspection` of the current run (``None`` before fit starts and
            on a resumed run, which does not inspect again).

    Raises:
        ValueError: for an unknown ``task``, a non-positive count or threshold.
        TypeError: for a key that is not a str, int or callable, a non-integer ``ignore_index``.

    Example:
        >>> import torch
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
        >>> from torch.utils.data import DataLoader
        >>> inspector = DataInspector(progress=False)
        >>> class Model(BoringModel):
        ...     def train_dataloader(self):
        ...         data = RandomDataset(32, 64)
        ...         data.data[10] = float("nan")         # one corrupted sample
        ...         return DataLoader(data, batch_size=16)
        >>> trainer = Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        ...                   enable_checkpointing=False, callbacks=[inspector],
        ...                   default_root_dir=getfixture("tmp_path"))
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(Model())
        >>> [(f.status, f.numbers["issue"], f.numbers["examples"]) for f in inspector.findings if f.is_problem]
        [('fail', 'nonfinite_inputs', [10])]
    """


    def __init__(
        self,
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        task: str = "auto",
        num_classes: int | None = None,
        ignore_index: int | None = -100,
        max_samples: int | None = None,
        batch_size: int | None = None,
        check_val: bool = True,
        near_duplicates: bool = False,
        imbalance_ratio: float = 5.0,
        near_constant_ratio: float = 0.01,
        outlier_z: float = 12.0,
        top_k: int = 8,
        progress: bool | None = None,
        log_images: bool = True,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail)
        self.input_key = input_key
        self.target_key = target_key
        self.task = task
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.max_samples = max_samples
        self.batch_size = batch_size
        self.check_val = bool(check_val)
        self.near_duplicates = bool(near_duplicates)
        self.imbalance_ratio = imbalance_ratio
        self.near_constant_ratio = near_constant_ratio
        self.outlier_z = outlier_z
        self.top_k = top_k
        self.progress = progress
        self.log_images = bool(log_images)
        _validate(self.name, self._options())
        self.result: DataInspection | None = None
        self._done = False

    def _options(self) -> _Options:
        return _Options(
            self.input_key, self.target_key, self.task, self.num_classes, self.ignore_index,
            self.max_samples, self.batch_size, self.near_duplicates, self.imbalance_ratio,
            self.near_constant_ratio, self.outlier_z, self.top_k,
        )  # fmt: skip

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._done = False
            self.result = None

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._done or not self.is_fitting(trainer):
            return
        self._inspect(trainer)

    @override
    def state_dict(self) -> dict[str, Any]:
        return self.one_time_state(self._done)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = self.load_one_time_state(state_dict)

    # ------------------------------------------------------------------ the pass
    def _inspect(self, trainer: Trainer) -> None:
        # the loaders are built outside the state guard: building them is the user's code and
        # Lightning would build them (consuming what they consume) right after this hook anyway
        sources: dict[str, Any] = {"train": self.first_dataloader(self.train_dataloader(trainer))}
        if self.check_val:
            val = self.val_dataloader(trainer) if trainer.limit_val_batches != 0 else None
            if val is not None:
                sources["val"] = val
        progress = self.progress if self.progress is not None else trainer.progress_bar_callback is not None
        rank, world = int(trainer.global_rank), int(trainer.world_size)
        # iterable sources are iterated as they are: their own generators are restored too
        with preserved_state(None, loaders=list(sources.values())):
            outcome = _run(
                sources,
                self._options(),
                bool(progress),
                rank,
                world,
                agree=lambda ok: self.decide(trainer, ok),
            )
        self._done = True
        for reason in outcome.failed.values():
            self.record(trainer, "skipped", reason, {"issue": "not_scanned"})
        report, plans = outcome.report, outcome.plans
        if report is None:
            return
        step = int(trainer.global_step)
        if trainer.is_global_zero:
            with preserved_state(None):  # fetching samples to show may run random transforms
                self._log(trainer, report, plans, step)
        first_fail: Finding | None = None
        for status, message, numbers in _to_findings(report, self.recipe_step):
            finding = self.record(trainer, status, message, numbers, raise_on_fail=False)  # type: ignore[arg-type]
            if status == "fail" and first_fail is None:
                first_fail = finding
        self.result = DataInspection(report, list(self.findings))
        if first_fail is not None and self.on_fail == "raise":
            raise RecipeCheckError(first_fail)

    # ------------------------------------------------------------------ TensorBoard
    def _log(self, trainer: Trainer, report: DataReport, plans: dict[str, _Plan], step: int) -> None:
        scalars: dict[str, float] = {}
        for split, s in report.splits.items():
            scalars[f"{_PREFIX}{split}/samples"] = float(s.get("samples", 0))
            scalars[f"{_PREFIX}{split}/duplicates"] = float(s.get("duplicates", 0))
            scalars[f"{_PREFIX}{split}/nonfinite"] = float(s.get("nonfinite", 0))
            scalars[f"{_PREFIX}{split}/blank"] = float(s.get("constant", 0) + s.get("near_constant", 0))
            if "imbalance_ratio" in s:
                scalars[f"{_PREFIX}{split}/imbalance_ratio"] = float(s["imbalance_ratio"])
            if "in_train" in s:
                scalars[f"{_PREFIX}train_val_overlap"] = float(s["in_train"])
        recipe_logging.log_scalars(trainer, scalars, step)
        for split, stats in report.stats.items():
            for j, axis in enumerate(AXES):
                recipe_logging.log_histogram(trainer, f"{_PREFIX}{split}/sample_{axis}", stats[:, j], step)
        recipe_logging.log_text(trainer, f"{_PREFIX}summary", report.markdown(), step)
        if not self.log_images:
            return
        counts = {n: s["class_counts"] for n, s in report.splits.items() if s.get("class_counts")}
        if counts:
            missing = {
                i.split: i.numbers.get("missing", []) for i in report.issues if i.issue == "missing_classes"
            }
            recipe_logging.log_figure(
                trainer, f"{_PREFIX}class_counts", _class_figure_builder(counts, missing), step
            )
        if report.stats:
            stats_copy = {k: v.copy() for k, v in report.stats.items()}
            recipe_logging.log_figure(
                trainer, f"{_PREFIX}sample_stats", _stats_figure_builder(stats_copy), step
            )
        if report.extremes.get("train"):
            builder = _extremes_figure_builder(
                report.extremes["train"], report.image_like.get("train", False)
            )
            recipe_logging.log_figure(trainer, f"{_PREFIX}extremes", builder, step)
        fetch = _fetcher(plans, self.input_key, self.target_key)
        if report.duplicate_pairs:
            tiles, titles = [], []
            for sa, ia, sb, ib in report.duplicate_pairs[:8]:
                a, b = fetch(sa, ia), fetch(sb, ib)
                if a is None or b is None or a.shape != b.shape:
                    continue
                tiles += [a, b]
                titles += [f"{sa} #{ia}", f"= {sb} #{ib}"]
            if tiles:
                builder = _tiles_builder(
                    np.stack(tiles), titles, 4, "duplicates: each pair is the same sample"
                )
                recipe_logging.log_figure(trainer, f"{_PREFIX}duplicates", builder, step)
        tiles, titles = [], []
        for split, flagged in report.flagged.items():
            for reason, indices in flagged.items():
                for i in indices[:6]:
                    t = fetch(split, i)
                    if t is not None and (not tiles or t.shape == tiles[0].shape):
                        tiles.append(t)
                        titles.append(f"{split} #{i}\n{reason}")
        if tiles:
            builder = _tiles_builder(np.stack(tiles[:24]), titles[:24], 6, "flagged samples")
            recipe_logging.log_figure(trainer, f"{_PREFIX}flagged", builder, step)


# ---------------------------------------------------------------------- figures (numpy in, Figure out)
def _class_figure_builder(counts: dict[str, list[int]], missing: dict[Any, list[int]]) -> Callable[[], Any]:
    counts = {k: list(v) for k, v in counts.items()}

    def build() -> Any:
        from lightning_recipe.plots.style import new_figure

        n_classes = max(len(v) for v in counts.values())
        fig = new_figure(min(12.0, 3.0 + 0.35 * n_classes), 3.2, dpi=100)
        ax = fig.add_subplot()
        width = 0.8 / len(counts)
        colors = ["#3b75af", "#ef8636", "#519e3e", "#8d69b8"]
        for j, (split, c) in enumerate(counts.items()):
            c = np.asarray(c + [0] * (n_classes - len(c)), dtype=float)
            total = max(c.sum(), 1.0)
            xs = np.arange(n_classes) + (j - (len(counts) - 1) / 2) * width
            ax.bar(xs, c / total, width=width, label=f"{split} ({int(total)})", color=colors[j % len(colors)])
            for m in missing.get(split, []):
                if m < n_classes:
                    ax.plot([xs[m]], [0], marker="x", color="#c0392b", markersize=8, mew=2)
        ax.set_xlabel("class")
        ax.set_ylabel("fraction of the split")
        if n_classes <= 30:
            ax.set_xticks(range(n_classes))
        top = max(max(c) / max(sum(c), 1) for c in counts.values())
        ax.set_ylim(0, top * 1.3 if top > 0 else 1.0)
        ax.legend(fontsize=8, frameon=False, ncol=len(counts), loc="upper right")
        ax.set_title("class balance (red x: class missing from a split)", fontsize=10)
        fig.tight_layout()
        return fig

    return build


def _stats_figure_builder(stats: dict[str, np.ndarray]) -> Callable[[], Any]:
    def build() -> Any:
        from lightning_recipe.plots.style import new_figure

        fig = new_figure(10.5, 3.0, dpi=100)
        colors = ["#3b75af", "#ef8636", "#519e3e", "#8d69b8"]
        for j, axis in enumerate(AXES):
            ax = fig.add_subplot(1, len(AXES), j + 1)
            finite = [v[:, j][np.isfinite(v[:, j])] for v in stats.values()]
            pooled = (
                np.concatenate([f for f in finite if f.size]) if any(f.size for f in finite) else np.zeros(1)
            )
            lo, hi = float(pooled.min()), float(pooled.max())
            bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
            for k, (split, v) in enumerate(zip(stats, finite)):
                if v.size:
                    ax.hist(
                        v, bins=bins, histtype="step", density=True, lw=1.5, label=split, color=colors[k % 4]
                    )
            ax.set_title(f"per-sample {axis}", fontsize=10)
            ax.set_yticks([])
            if j == 0:
                ax.legend(fontsize=8, frameon=False)
        fig.tight_layout()
        return fig

    return build


def _extremes_figure_builder(
    extremes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], image_like: bool
) -> Callable[[], Any]:
    rows = [(k, extremes[f"{a}_{d}"]) for a, d in EXTREMES if f"{a}_{d}" in extremes for k in [f"{a}_{d}"]]
    rows = [(k, (v.copy(), i.copy(), t.copy())) for k, (v, i, t) in rows]

    def build() -> Any:
        from lightning_recipe.plots.style import labelled_image_grid_figure, new_figure

        k = max(len(i) for _, (_, i, _) in rows)
        suptitle = "most extreme training samples (one shared scale; the value above each)"
        if image_like:  # one image axis for all tiles: an axis per tile renders ten times slower
            tiles, titles = [], []
            for key, (values, indices, thumbs) in rows:
                axis, direction = key.rsplit("_", 1)
                shown = values if direction == "high" else -values
                arrow = "↑" if direction == "high" else "↓"
                for c in range(k):
                    if c < len(indices):
                        tiles.append(thumbs[c])
                        head = f"{axis} {arrow}" if c == 0 else ""
                        titles.append(f"{head}\n#{int(indices[c])}: {shown[c]:.3g}")
                    else:
                        tiles.append(np.full_like(thumbs[0], np.nan))
                        titles.append("")
            return labelled_image_grid_figure(
                np.stack(tiles), titles, ncols=k, suptitle=suptitle, tile_px=72, per_image=False
            )
        fig = new_figure(1.0 + 1.1 * k, 1.45 * len(rows) + 0.5, dpi=100)
        for r, (key, (values, indices, thumbs)) in enumerate(rows):
            axis, direction = key.rsplit("_", 1)
            shown = values if direction == "high" else -values
            ax = fig.add_subplot(len(rows), 1, r + 1)
            mat = thumbs.reshape(len(indices), -1)
            lim = float(np.abs(mat).max()) or 1.0
            ax.imshow(mat, aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_yticks(range(len(indices)))
            ax.set_yticklabels([f"#{int(i)} ({v:.3g})" for i, v in zip(indices, shown)], fontsize=6)
            ax.set_xticks([])
            ax.set_ylabel(f"{axis} {'↑' if direction == 'high' else '↓'}", fontsize=8)
        fig.suptitle(suptitle, fontsize=10)
        fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
        return fig

    return build


def _tiles_builder(tiles: np.ndarray, titles: list[str], ncols: int, suptitle: str) -> Callable[[], Any]:
    tiles = tiles.copy()
    titles = list(titles)

    def build() -> Any:
        from lightning_recipe.plots.style import labelled_image_grid_figure

        if tiles.ndim >= 3 and tiles.shape[-1] >= 4 and tiles.shape[-2] >= 4:
            cols = min(ncols, len(tiles))
            return labelled_image_grid_figure(tiles, titles, ncols=cols, suptitle=suptitle, tile_px=96)
        from lightning_recipe.plots.style import new_figure

        mat = tiles.reshape(len(tiles), -1)
        fig = new_figure(8.0, 0.3 * len(tiles) + 1.0, dpi=100)
        ax = fig.add_subplot()
        lim = float(np.abs(mat).max()) or 1.0
        ax.imshow(mat, aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_yticks(range(len(titles)))
        ax.set_yticklabels([t.replace("\n", " ") for t in titles], fontsize=7)
        ax.set_xlabel("feature")
        ax.set_title(suptitle, fontsize=9)
        fig.tight_layout()
        return fig

    return build
