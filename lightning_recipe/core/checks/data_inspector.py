"""DataInspector without Lightning: configuration, the scan of every split, verdicts as findings, ``inspect_data``.

The per-sample statistics and the verdicts themselves are :mod:`lightning_recipe.core.data_stats`
(:class:`~lightning_recipe.core.data_stats.SplitStats`, the mergeable state, and
:func:`~lightning_recipe.core.data_stats.analyse_splits`); reading a split is
:mod:`lightning_recipe.core.data_scan`. This module ties them together for the callback and for
:func:`inspect_data`, and words what the scan could not do.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> x, y = torch.rand(64, 1, 8, 8), torch.arange(64) % 4
    >>> x[9] = float("nan")
    >>> outcome = scan_sources({"train": TensorDataset(x, y)}, DataInspectorConfig(), progress=False)
    >>> [(status, numbers["issue"]) for status, _, numbers in report_findings(outcome.report)]
    [('fail', 'nonfinite_inputs'), ('pass', 'summary')]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    SequentialSampler,
    WeightedRandomSampler,
)

from lightning_recipe.core.arguments import check_positive_int
from lightning_recipe.core.batches import KeySpec, validate_key_spec
from lightning_recipe.core.data_scan import ScanPlan, gather_stats, plan_split, scan_split
from lightning_recipe.core.data_stats import NO_LABEL, DataIssue, DataReport, SplitStats, analyse_splits
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.stats import is_one_shot, targets_from_dataset
from lightning_recipe.core.tasks import check_task_argument
from lightning_recipe.findings import Finding

__all__ = [
    "CHECK",
    "MIN_BUDGET_SAMPLES",
    "RESAMPLED_RATIO",
    "SORTED_RUNS",
    "WEIGHT_NAMES",
    "DataInspection",
    "DataInspectorConfig",
    "ScanOutcome",
    "budget_samples",
    "imbalance_answer",
    "inspect_data",
    "loss_weighting",
    "note_scanned",
    "report_findings",
    "scan_sources",
    "sorted_order_issue",
    "summary_scalars",
]

#: The check name of every finding.
CHECK = "DataInspector"

Verdict = tuple[str, str, dict[str, Any]]


# ---------------------------------------------------------------------- configuration
@dataclass
class DataInspectorConfig:
    """What to read and how to judge it (the arguments of :class:`DataInspector` and :func:`inspect_data`)."""

    input_key: KeySpec = None
    target_key: KeySpec = None
    task: str = "auto"
    num_classes: int | None = None
    ignore_index: int | None = -100
    max_samples: int | None = None
    batch_size: int | None = None
    near_duplicates: bool = False
    imbalance_ratio: float = 5.0
    near_constant_ratio: float = 0.01
    outlier_z: float = 12.0
    top_k: int = 8

    def validate(self, owner: str) -> None:
        """Raise ``ValueError``/``TypeError`` naming ``owner(argument=value)`` for a bad value."""
        validate_key_spec(self.input_key, owner, "input_key")
        validate_key_spec(self.target_key, owner, "target_key")
        check_task_argument(self.task, owner)
        check_positive_int(owner, "num_classes", self.num_classes, allow_none=True)
        check_positive_int(owner, "max_samples", self.max_samples, allow_none=True)
        check_positive_int(owner, "batch_size", self.batch_size, allow_none=True)
        check_positive_int(owner, "top_k", self.top_k, minimum=0)
        if self.ignore_index is not None and (
            isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int)
        ):
            raise TypeError(
                f"{owner}(ignore_index={self.ignore_index!r}): pass an integer label such as -100, or None."
            )
        for name, value, low in (
            ("imbalance_ratio", self.imbalance_ratio, 1.0),
            ("near_constant_ratio", self.near_constant_ratio, 0.0),
            ("outlier_z", self.outlier_z, 0.0),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not value > low
                or math.isinf(value)
            ):
                raise ValueError(f"{owner}({name}={value!r}): pass a finite number greater than {low:g}.")

    def split_stats(self, name: str) -> SplitStats:
        """An empty accumulator for the split ``name``."""
        return SplitStats(
            name,
            task=self.task,  # type: ignore[arg-type]
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            top_k=self.top_k,
            near_duplicates=self.near_duplicates,
        )


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


# ---------------------------------------------------------------------- verdicts
#: Tensor attributes and buffers whose name says they weight the loss per class.
WEIGHT_NAMES = ("class_weight", "class_weights", "pos_weight")
#: A weighted sampler answers an imbalance when the classes' shares of its weight are within this ratio.
RESAMPLED_RATIO = 2.0


def _uneven(weights: Any, sizes: tuple[int, ...] = ()) -> bool:
    """Whether ``weights`` is a tensor of at least two different values (one value other than 1 for a
    single weight), of one of ``sizes`` elements when given: uniform weights balance nothing, and a
    vector of another length weights something else (tasks, heads)."""
    if (
        not isinstance(weights, torch.Tensor)
        or weights.numel() < 1
        or (sizes and weights.numel() not in sizes)
    ):
        return False
    if weights.numel() == 1:
        return float(weights) != 1.0
    return bool((weights != weights.reshape(-1)[0]).any())


def _samplers(loader: Any) -> Iterator[Any]:
    """The loader's samplers, a distributed wrapper's inner sampler included (Lightning wraps a custom one)."""
    for holder in (loader, getattr(loader, "batch_sampler", None)):
        sampler = getattr(holder, "sampler", None)
        if sampler is not None:
            yield sampler
            inner = getattr(getattr(sampler, "dataset", None), "_sampler", None)  # DistributedSamplerWrapper
            if inner is not None:
                yield inner


def _resampled(sampler: WeightedRandomSampler, dataset: Any) -> bool:
    """Whether the sampler's weights even the classes out: each class's share of the total weight
    within :data:`RESAMPLED_RATIO` of the others' where the dataset's targets are cheap to read;
    where they are not, any uneven weights (a class-balancing sampler is the common one)."""
    weights = torch.as_tensor(sampler.weights, dtype=torch.float64).reshape(-1)
    if not _uneven(weights):
        return False
    try:
        targets = targets_from_dataset(dataset)
    except Exception:  # a dataset's own attribute that does not read
        targets = None
    if not isinstance(targets, torch.Tensor) or targets.dim() != 1 or len(targets) != len(weights):
        return True  # the targets cannot be read cheaply: uneven weights are most often class weights
    if targets.is_floating_point() or targets.is_complex():
        return False
    _, index = targets.unique(return_inverse=True)
    mass = torch.zeros(int(index.max()) + 1, dtype=torch.float64).index_add_(0, index, weights)
    return bool(mass.min() > 0 and mass.max() / mass.min() <= RESAMPLED_RATIO)


def imbalance_answer(loader: Any, module: nn.Module | None = None) -> Callable[[Any], str | None]:
    """How training already answers a class imbalance: ``answer(class_counts)`` says it in words, or
    ``None`` when nothing shows it.

    A ``WeightedRandomSampler`` on the training loader whose weights give the classes even shares
    (:data:`RESAMPLED_RATIO`; read from the dataset's targets) resamples them; a class-weighted loss
    module (``CrossEntropyLoss``/``NLLLoss`` with ``weight=``, ``BCEWithLogitsLoss`` with
    ``pos_weight=``) or a tensor named like :data:`WEIGHT_NAMES` on the module, of one weight per
    class (a single ``pos_weight`` for a binary task), weights them. A loss weighted inside
    ``training_step`` from a plain list is not seen; a sampler over data whose targets are not cheap
    to read counts when its weights are uneven.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = TensorDataset(torch.zeros(4, 1), torch.tensor([0, 0, 0, 1]))
        >>> weighted = nn.ModuleDict({"loss": nn.CrossEntropyLoss(torch.tensor([1.0, 3.0]))})
        >>> imbalance_answer(DataLoader(data), weighted)([3, 1])
        "the loss is class-weighted (CrossEntropyLoss(weight=) at 'loss')"
        >>> imbalance_answer(DataLoader(data), weighted)([3, 1, 1]) is None   # 2 weights for 3 classes
        True
    """

    def answer(class_counts: Any) -> str | None:
        classes = len(class_counts)
        for sampler in _samplers(loader):
            if isinstance(sampler, WeightedRandomSampler) and _resampled(
                sampler, getattr(loader, "dataset", None)
            ):
                return "the training loader resamples them (a WeightedRandomSampler)"
        return None if module is None else loss_weighting(module, classes)

    return answer


def loss_weighting(module: nn.Module, classes: int | None = None) -> str | None:
    """Where ``module`` weights its loss by class, in words, or ``None``: a ``CrossEntropyLoss`` /
    ``NLLLoss`` with ``weight=``, a ``BCEWithLogitsLoss`` with ``pos_weight=``, or a tensor named like
    :data:`WEIGHT_NAMES`, uneven and of one weight per class when ``classes`` is given (a single
    ``pos_weight`` for two).

    Example:
        >>> loss_weighting(nn.ModuleDict({"loss": nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0]))}))
        "the loss is class-weighted (BCEWithLogitsLoss(pos_weight=) at 'loss')"
    """
    any_size: tuple[int, ...] = ()
    sizes = any_size if classes is None else ((1, classes) if classes == 2 else (classes,))
    weights = any_size if classes is None else (classes,)
    for name, sub in module.named_modules():
        where = f" at '{name}'" if name else ""
        if isinstance(sub, (nn.CrossEntropyLoss, nn.NLLLoss)) and _uneven(sub.weight, weights):
            return f"the loss is class-weighted ({type(sub).__name__}(weight=){where})"
        if isinstance(sub, nn.BCEWithLogitsLoss) and _uneven(getattr(sub, "pos_weight", None), sizes):
            return f"the loss is class-weighted (BCEWithLogitsLoss(pos_weight=){where})"
        named = [*vars(sub).items(), *sub.named_buffers(recurse=False)]
        for attr, value in named:
            if attr in WEIGHT_NAMES and _uneven(value, sizes if attr == "pos_weight" else weights):
                kind = "buffer" if attr in sub._buffers else "tensor"
                return f"the loss is class-weighted (the {kind} '{name + '.' if name else ''}{attr}')"
    return None


#: Training targets in at most this share of the runs of one class a random order has are "sorted".
SORTED_RUNS = 0.2


def _in_order(loader: Any) -> bool:
    """Whether ``loader`` reads its dataset front to back: batches of a plain ``BatchSampler`` over a
    ``SequentialSampler``, or over a ``DistributedSampler`` of the dataset itself without shuffling
    (what Lightning puts in its place under DDP; its wrapper of a custom sampler leaves the order to
    that sampler). A custom ``batch_sampler=`` (buckets, P-K batches) decides its own order."""
    batches = getattr(loader, "batch_sampler", None)
    if batches is not None and type(batches) is not BatchSampler:
        return False
    sampler = getattr(batches, "sampler", None) if batches is not None else getattr(loader, "sampler", None)
    if isinstance(sampler, SequentialSampler):
        return True
    # Lightning's DistributedSamplerWrapper samples a wrapper of the custom sampler, not the dataset
    return (
        isinstance(sampler, DistributedSampler)
        and sampler.dataset is getattr(loader, "dataset", None)
        and not sampler.shuffle
    )


def sorted_order_issue(
    loader: Any, min_samples: int = 64, target_key: Any = None, scanned: SplitStats | None = None
) -> DataIssue | None:
    """A ``warn`` when the training loader reads class-sorted data in order (``shuffle=False``).

    Every batch then holds one class (or two at a boundary): the model learns whichever class it saw
    last, and BatchNorm's statistics follow the class. Read from the dataset's targets where they
    are cheap (:func:`~lightning_recipe.core.stats.targets_from_dataset`), one label per sample:
    sorted when the number of runs of one label is at most :data:`SORTED_RUNS` of what a random order
    gives (``1 + (N - 1)(1 - sum p^2)``). Data read in order but not sorted says nothing. Where the
    dataset does not hold its targets apart (a dict per sample) or ``target_key=`` names them, the
    labels of the ``scanned`` samples, in dataset order, are read instead.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> sorted_data = TensorDataset(torch.zeros(200, 2), torch.arange(200) // 50)   # 4 classes, in order
        >>> sorted_order_issue(DataLoader(sorted_data, batch_size=32)).issue
        'sorted_unshuffled'
        >>> sorted_order_issue(DataLoader(sorted_data, batch_size=32, shuffle=True)) is None
        True
    """
    if not _in_order(loader):
        return None
    targets = None
    if target_key is None:  # targets named by the user: not the dataset's own
        try:
            targets = targets_from_dataset(getattr(loader, "dataset", None))
        except Exception:  # a dataset's own attribute that does not read: the scan's labels, if any
            targets = None
    if targets is None and scanned is not None:
        labels = scanned.arrays()["label"]
        targets = labels if labels.numel() and bool((labels != NO_LABEL).all()) else None
    if not isinstance(targets, torch.Tensor) or targets.dim() != 1 or len(targets) < min_samples:
        return None
    if targets.is_floating_point() or targets.is_complex():
        return None
    n = len(targets)
    _, counts = targets.unique(return_counts=True)
    if len(counts) < 2:
        return None
    p = counts.double() / n
    expected = 1 + (n - 1) * (1 - float((p * p).sum()))
    runs = 1 + int((targets[1:] != targets[:-1]).sum())
    if runs > SORTED_RUNS * expected:
        return None
    batch = (
        getattr(loader, "batch_size", None)
        or getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
        or 1
    )
    per_batch = 1 + (batch - 1) * (runs - 1) / max(1, n - 1)
    message = (
        f"train: the training loader reads the data in order (shuffle=False) and its {n} targets come "
        f"sorted, in {runs} runs of one class (a shuffled order has ~{expected:.0f}): a batch of {batch} "
        f"holds ~{per_batch:.1f} classes, so the model learns whichever it saw last and BatchNorm's "
        "statistics follow the class; pass `shuffle=True` to the training DataLoader (unless the order "
        "is the point: a stateful model over one long recording)."
    )
    numbers = {"runs": runs, "expected_runs": round(expected, 1), "samples": n, "batch_size": batch}
    return DataIssue("sorted_unshuffled", "warn", message, "train", numbers)


def report_findings(report: DataReport) -> list[Verdict]:
    """``(status, message, numbers)`` per issue of ``report``; the kind in ``numbers["issue"]``, the split in ``"split"``."""
    out = []
    for issue in report.issues:
        numbers: dict[str, Any] = {"issue": issue.issue}
        if issue.split is not None:
            numbers["split"] = issue.split
        numbers.update(issue.numbers)
        out.append((issue.status, issue.message, numbers))
    return out


def one_shot_reason(name: str) -> str:
    """Why a one-shot source is not read."""
    return (
        f"skipped, because the {name} data is a one-shot iterator: scanning it would take its samples "
        "from training; pass a re-iterable data set (a map-style Dataset, or an IterableDataset whose "
        "__iter__ starts afresh)"
    )


def unreadable_reason(name: str, err: BaseException) -> str:
    """Why a split that raised ``err`` while it was read is left out."""
    return (
        f"skipped, because the {name} data could not be scanned ({type(err).__name__}: {str(err).rstrip('.')}); "
        "pass `input_key=` / `target_key=`"
    )


def other_rank_reason(name: str) -> str:
    """Why a split this rank read is left out: another rank could not read its shard."""
    return f"skipped, because another process could not scan the {name} data; see its warning"


def note_estimates(report: DataReport, estimated: dict[str, int]) -> None:
    """Say in the summary verdict which splits were read only for their first samples."""
    if not estimated:
        return
    note = "; ".join(
        f"{split}: estimated from the first {n} samples (an iterable data set without len(); "
        "pass max_samples= to read more)"
        for split, n in estimated.items()
    )
    for issue in report.issues:
        if issue.issue == "summary":
            issue.message += f" ({note})"
            issue.numbers["estimated_from"] = dict(estimated)


#: The fewest samples per split a budgeted scan reads (enough to count classes and see an imbalance).
MIN_BUDGET_SAMPLES = 4096


def budget_samples(fraction: float, planned_steps: int | None, batch_size: int | None) -> int | None:
    """The samples per split a scan within a one-time budget reads: ``fraction`` of the samples the
    planned run trains on (reading a sample costs less than training on it), at least
    :data:`MIN_BUDGET_SAMPLES`; ``None`` (no cap) when the planned run is unknown.

    Example:
        >>> budget_samples(0.01, 100_000, 64), budget_samples(0.01, 500, 64), budget_samples(0.01, None, 64)
        (64000, 4096, None)
    """
    if planned_steps is None:
        return None
    return max(MIN_BUDGET_SAMPLES, int(fraction * planned_steps * (batch_size or 64)))


def note_scanned(report: DataReport, plans: dict[str, ScanPlan], cap: int, note: str) -> None:
    """Say in the summary verdict how many batches of each split a budgeted scan read."""
    read = ", ".join(
        f"{split}: {plan.batches if plan.batches is not None else '?'} batches"
        + (
            f" (a fixed random subset of {cap} samples)"
            if plan.dataset is not None and len(plan.dataset) > cap
            else ""
        )
        for split, plan in plans.items()
    )
    for issue in report.issues:
        if issue.issue == "summary":
            issue.message += f" (scanned {read}; {note}; pass max_samples= to choose)"
            issue.numbers["scanned_batches"] = {split: plan.batches for split, plan in plans.items()}


def summary_scalars(report: DataReport) -> dict[str, float]:
    """The scalars of ``recipe/data/`` (names below it): per split samples, duplicates, NaN/Inf, blank, imbalance."""
    scalars: dict[str, float] = {}
    for split, s in report.splits.items():
        scalars[f"{split}/samples"] = float(s.get("samples", 0))
        scalars[f"{split}/duplicates"] = float(s.get("duplicates", 0))
        scalars[f"{split}/nonfinite"] = float(s.get("nonfinite", 0))
        scalars[f"{split}/blank"] = float(s.get("constant", 0) + s.get("near_constant", 0))
        if "imbalance_ratio" in s:
            scalars[f"{split}/imbalance_ratio"] = float(s["imbalance_ratio"])
        if "in_train" in s:
            scalars["train_val_overlap"] = float(s["in_train"])
    return scalars


# ---------------------------------------------------------------------- the scan
@dataclass
class ScanOutcome:
    """What :func:`scan_sources` produced: the report (``None`` when the training data could not be
    scanned), the plans, the reason per split that was not scanned, and the splits read only in part."""

    report: DataReport | None
    plans: dict[str, ScanPlan]
    failed: dict[str, str]
    estimated: dict[str, int]


def _scan_one(
    name: str, source: Any, config: DataInspectorConfig, progress: bool, rank: int, world_size: int
) -> tuple[SplitStats, ScanPlan | None, str, BaseException | None]:
    """This rank's part of one split: ``(stats, plan, reason it was not read or "", error)``."""
    stats = config.split_stats(name)
    plan = None
    try:
        if is_one_shot(source):
            return stats, None, one_shot_reason(name), None
        plan = plan_split(source, config.batch_size, config.max_samples, rank, world_size)
        scan_split(plan, stats, config.input_key, config.target_key, progress and rank == 0)
    except Exception as err:  # a batch layout, a dtype or a dataset this inspection cannot read
        return stats, plan, unreadable_reason(name, err), err
    return stats, plan, "", None


def scan_sources(
    sources: dict[str, Any],
    config: DataInspectorConfig,
    progress: bool,
    rank: int = 0,
    world_size: int = 1,
    agree: Callable[[bool], bool] = lambda ok: ok,
    balanced_by: Callable[[Any], str | None] | None = None,
    check_order: bool = True,
) -> ScanOutcome:
    """Scan every split and judge them; a split that cannot be scanned is left out with the reason.

    ``balanced_by``: how training answers a class imbalance (:func:`imbalance_answer`), if it does;
    ``check_order``: judge the training loader's order (:func:`sorted_order_issue`; off when Lightning
    itself replaced the sampler, as ``overfit_batches`` does).

    ``agree(ok)`` returns the same boolean on every rank (all ranks ok): it runs after each
    split's local scan and before the gather, so a rank whose scan failed never leaves the others
    waiting in ``all_gather_object``.
    """
    plans: dict[str, ScanPlan] = {}
    merged: dict[str, SplitStats] = {}
    failed: dict[str, str] = {}
    estimated: dict[str, int] = {}
    for name, source in sources.items():
        stats, plan, reason, error = _scan_one(name, source, config, progress, rank, world_size)
        if not agree(not reason):
            if isinstance(error, ArgumentError):
                raise error  # an argument the user passed does not fit the data: only the user can fix it
            failed[name] = reason or other_rank_reason(name)
            continue
        assert plan is not None
        plans[name] = plan
        merged[name] = gather_stats(stats, world_size)
        if not agree(not plan.capped):  # any rank stopped early
            estimated[name] = merged[name].count
    if "train" not in merged:
        return ScanOutcome(None, plans, failed, estimated)
    report = analyse_splits(
        merged,
        train="train",
        imbalance_ratio=config.imbalance_ratio,
        near_constant_ratio=config.near_constant_ratio,
        outlier_z=config.outlier_z,
        balanced_by=balanced_by,
        extra=tuple(
            i
            for i in [
                sorted_order_issue(sources["train"], target_key=config.target_key, scanned=merged["train"])
            ]
            if i
        )
        if check_order
        else (),
    )
    note_estimates(report, estimated)
    return ScanOutcome(report, plans, failed, estimated)


# ---------------------------------------------------------------------- without a Trainer
def _loaders_of(data: Any) -> tuple[Any, Any]:
    """(train, val) of a LightningDataModule-like object."""
    prepare = getattr(data, "prepare_data", None)
    if callable(prepare):
        prepare()
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

    The same checks as :class:`~lightning_recipe.DataInspector` (see there, and the README section
    "Become one with the data", for what each finding means). Sample indices are positions in the
    dataset (``dataset[i]``), read in order by a sequential loader built over the dataset with the
    original loader's batch size, collate function and workers. The global random state is left as it was.

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
    config = DataInspectorConfig(
        input_key, target_key, task, num_classes, ignore_index, max_samples, batch_size,
        bool(near_duplicates), imbalance_ratio, near_constant_ratio, outlier_z, top_k,
    )  # fmt: skip
    config.validate("inspect_data")
    if hasattr(train, "train_dataloader") and not isinstance(train, (DataLoader, Dataset)):
        train, val = _loaders_of(train)
    sources = {"train": train} if val is None else {"train": train, "val": val}
    with preserved_state(None, loaders=list(sources.values())):
        outcome = scan_sources(sources, config, progress, balanced_by=imbalance_answer(train))
    if outcome.failed:
        raise ValueError(f"inspect_data: {'; '.join(outcome.failed.values())}.")
    assert outcome.report is not None
    findings = [
        Finding(CHECK, status, message, numbers)
        for status, message, numbers in report_findings(outcome.report)
    ]  # type: ignore[arg-type]
    return DataInspection(outcome.report, findings)
