"""Streaming, mergeable statistics of the training targets.

:class:`TargetStats` holds sums, not means, so that statistics computed on shards (dataloader
batches, DDP ranks) merge exactly by addition: a distributed run all-reduces
:meth:`TargetStats.to_tensor` with a sum and rebuilds with :meth:`TargetStats.from_tensor`.

:func:`targets_from_dataset` is the fast path: it reads the targets straight from a dataset
(``targets``/``labels`` attributes, ``TensorDataset``, ``Subset``, ``ConcatDataset``) without
loading any input. :func:`collect_target_stats` tries it first and falls back to iterating a
dataloader with a progress bar.

Example:
    >>> import torch
    >>> stats = TargetStats.from_targets(torch.tensor([0, 1, 1, 2]), "multiclass", num_classes=3)
    >>> stats.priors().tolist()
    [0.25, 0.5, 0.25]
    >>> other = TargetStats.from_targets(torch.tensor([2, 2]), "multiclass", num_classes=3)
    >>> stats.merge(other).class_counts.tolist()
    [1.0, 2.0, 3.0]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from lightning_recipe.core.batches import KeySpec, split_batch
from lightning_recipe.core.tasks import TASKS, TaskLiteral

__all__ = [
    "UNSIZED_MAX_BATCHES",
    "TargetStats",
    "binary_entropy",
    "collect_target_stats",
    "entropy",
    "is_one_shot",
    "targets_from_dataset",
]

#: Batches :func:`collect_target_stats` reads from a dataloader without ``len()`` (an iterable,
#: possibly endless, data set) when no ``max_batches`` is given.
UNSIZED_MAX_BATCHES = 100

log = logging.getLogger(__name__)


@dataclass
class TargetStats:
    """Sufficient statistics of the targets for one task.

    Attributes:
        task: the task the statistics are for.
        count: number of samples (rows) seen.
        class_counts: multiclass only: how many samples of each class, shape ``(C,)``.
        sum: per output (label for binary/multilabel, output for regression) sum of the targets.
        sum_sq: per output sum of the squared targets.
        num_values: per output number of target values seen (equals ``count`` unless the
            targets have extra dimensions, e.g. per-position regression).
    """

    task: TaskLiteral
    count: int = 0
    class_counts: torch.Tensor | None = None
    sum: torch.Tensor | None = None
    sum_sq: torch.Tensor | None = None
    num_values: torch.Tensor | None = None
    source: str = field(default="", compare=False)
    batches: int = field(default=0, compare=False)
    estimated: bool = field(default=False, compare=False)
    #: read from a fixed random subset of this many samples (the rest of the data not read)
    subset: int | None = field(default=None, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_targets(
        cls,
        targets: torch.Tensor,
        task: TaskLiteral,
        num_classes: int | None = None,
        ignore_index: int | None = None,
    ) -> TargetStats:
        """Statistics of one batch (or all) of targets.

        Args:
            targets: the targets; ``(N,)`` class indices for multiclass (also ``(N, ...)`` for dense
                prediction), ``(N,)``/``(N, K)`` 0/1 labels for binary/multilabel, ``(N,)``/``(N, D)``
                values for regression.
            task: one of :data:`~lightning_recipe.core.tasks.TASKS`.
            num_classes: multiclass only: the number of classes (default: max label + 1).
            ignore_index: multiclass only: a sentinel label to leave out (e.g. ``-100``).
        """
        if task not in TASKS:
            raise ValueError(f"TargetStats: unknown task {task!r}; pass one of {list(TASKS)}.")
        t = targets.detach()
        if task == "multiclass":
            labels = t.reshape(-1).long().cpu()
            if ignore_index is not None:
                labels = labels[labels != ignore_index]
            if labels.numel() and int(labels.min()) < 0:
                raise ValueError(
                    f"TargetStats: negative class label {int(labels.min())} in the targets; pass "
                    "`ignore_index=` if it is a sentinel."
                )
            size = (
                num_classes if num_classes is not None else (int(labels.max()) + 1 if labels.numel() else 0)
            )
            if labels.numel() and int(labels.max()) >= size:
                raise ValueError(
                    f"TargetStats: class label {int(labels.max())} is out of range for num_classes={size}."
                )
            counts = torch.bincount(labels, minlength=size).to(torch.float64)
            return cls(task=task, count=int(t.shape[0]) if t.dim() else 1, class_counts=counts)
        values = t.to(torch.float64).cpu()
        if values.dim() == 0:
            values = values.reshape(1, 1)
        elif values.dim() == 1:
            values = values.reshape(-1, 1)
        n = values.shape[0]
        flat = values.reshape(n, values.shape[1], -1) if values.dim() > 2 else values.unsqueeze(-1)
        return cls(
            task=task,
            count=n,
            sum=flat.sum(dim=(0, 2)),
            sum_sq=(flat * flat).sum(dim=(0, 2)),
            num_values=torch.full((flat.shape[1],), float(n * flat.shape[2]), dtype=torch.float64),
        )

    # ------------------------------------------------------------------ merging
    def merge(self, other: TargetStats) -> TargetStats:
        """Return the statistics of both shards together (exact: sums are added)."""
        if other.task != self.task:
            raise ValueError(f"TargetStats.merge: cannot merge {self.task!r} with {other.task!r} statistics.")
        if self.count == 0:
            return other
        if other.count == 0:
            return self
        if self.task == "multiclass":
            a, b = self.class_counts, other.class_counts
            assert a is not None and b is not None
            size = max(a.numel(), b.numel())
            merged = torch.zeros(size, dtype=torch.float64)
            merged[: a.numel()] += a
            merged[: b.numel()] += b
            return TargetStats(self.task, self.count + other.count, class_counts=merged, source=self.source)
        assert self.sum is not None and other.sum is not None
        if self.sum.shape != other.sum.shape:
            raise ValueError(
                f"TargetStats.merge: shards have {self.sum.numel()} and {other.sum.numel()} outputs."
            )
        return TargetStats(
            self.task,
            self.count + other.count,
            sum=self.sum + other.sum,
            sum_sq=self.sum_sq + other.sum_sq,  # type: ignore[operator]
            num_values=self.num_values + other.num_values,  # type: ignore[operator]
            source=self.source,
        )

    def to_tensor(self, size: int | None = None) -> torch.Tensor:
        """Flatten into one float64 tensor for an all-reduce with a sum.

        Args:
            size: multiclass only: pad the class counts to this many classes, so every rank sends
                a tensor of the same shape (agree on it first, e.g. with a max-reduce of
                ``len(class_counts)``).
        """
        if self.task == "multiclass":
            counts = (
                self.class_counts if self.class_counts is not None else torch.zeros(0, dtype=torch.float64)
            )
            if size is not None and size > counts.numel():
                counts = torch.cat([counts, torch.zeros(size - counts.numel(), dtype=torch.float64)])
            return torch.cat([torch.tensor([float(self.count)], dtype=torch.float64), counts])
        assert self.sum is not None and self.sum_sq is not None and self.num_values is not None
        return torch.cat(
            [torch.tensor([float(self.count)], dtype=torch.float64), self.sum, self.sum_sq, self.num_values]
        )

    @classmethod
    def from_tensor(cls, task: TaskLiteral, flat: torch.Tensor) -> TargetStats:
        """Inverse of :meth:`to_tensor` (after the all-reduce)."""
        flat = flat.detach().to(torch.float64).cpu()
        count = round(float(flat[0]))
        rest = flat[1:]
        if task == "multiclass":
            return cls(task, count, class_counts=rest.clone())
        d = rest.numel() // 3
        return cls(
            task,
            count,
            sum=rest[:d].clone(),
            sum_sq=rest[d : 2 * d].clone(),
            num_values=rest[2 * d :].clone(),
        )

    # ------------------------------------------------------------------ derived values
    @property
    def num_outputs(self) -> int:
        """Number of classes (multiclass) or outputs/labels (other tasks)."""
        if self.task == "multiclass":
            return 0 if self.class_counts is None else int(self.class_counts.numel())
        return 0 if self.sum is None else int(self.sum.numel())

    def priors(self) -> torch.Tensor:
        """Class frequencies (multiclass) or the frequency of label 1 per label (binary/multilabel)."""
        if self.task == "multiclass":
            assert self.class_counts is not None
            total = self.class_counts.sum()
            return self.class_counts / total if total > 0 else self.class_counts
        if self.task == "regression":
            raise ValueError("TargetStats.priors: regression targets have no priors; use mean().")
        return self.mean()

    def mean(self) -> torch.Tensor:
        """Per-output mean of the targets (not for multiclass)."""
        if self.task == "multiclass":
            raise ValueError("TargetStats.mean: multiclass targets have priors, not a mean.")
        assert self.sum is not None and self.num_values is not None
        return self.sum / self.num_values.clamp_min(1)

    def second_moment(self) -> torch.Tensor:
        """Per-output E[y^2]."""
        assert self.sum_sq is not None and self.num_values is not None
        return self.sum_sq / self.num_values.clamp_min(1)

    def var(self) -> torch.Tensor:
        """Per-output population variance E[y^2] - E[y]^2 (clamped at 0)."""
        return (self.second_moment() - self.mean() ** 2).clamp_min(0.0)

    def missing_classes(self) -> list[int]:
        """Multiclass: the classes with no sample."""
        if self.task != "multiclass" or self.class_counts is None:
            return []
        return [int(i) for i in torch.nonzero(self.class_counts == 0).flatten()]

    def summary(self) -> dict[str, Any]:
        """Plain-Python summary for logs and reports."""
        out: dict[str, Any] = {"task": self.task, "count": self.count}
        if self.task == "multiclass":
            out["priors"] = [round(float(p), 6) for p in self.priors()]
        elif self.count:
            out["mean"] = [round(float(m), 6) for m in self.mean()]
            if self.task == "regression":
                out["var"] = [round(float(v), 6) for v in self.var()]
        return out


# ---------------------------------------------------------------------- fast path
def targets_from_dataset(dataset: Any) -> torch.Tensor | None:
    """Read all targets of ``dataset`` without loading its inputs, or return ``None``.

    Understands: a ``targets`` or ``labels`` attribute (tensor, array or list, as torchvision's
    datasets have), ``TensorDataset`` (its last tensor), ``Subset`` (indexes its parent's
    targets) and ``ConcatDataset`` (concatenates its parts' targets).

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset, Subset
        >>> ds = TensorDataset(torch.randn(5, 2), torch.tensor([0, 1, 2, 1, 0]))
        >>> targets_from_dataset(Subset(ds, [1, 3])).tolist()
        [1, 1]
    """
    if isinstance(dataset, Subset):
        parent = targets_from_dataset(dataset.dataset)
        if parent is None:
            return None
        return parent[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    if isinstance(dataset, ConcatDataset):
        parts = [targets_from_dataset(d) for d in dataset.datasets]
        if any(p is None for p in parts) or not parts:
            return None
        try:
            return torch.cat([p for p in parts if p is not None])
        except RuntimeError:
            return None
    if isinstance(dataset, TensorDataset):
        if len(dataset.tensors) < 2:
            return None
        return dataset.tensors[-1]
    for name in ("targets", "labels"):
        value = getattr(dataset, name, None)
        if value is None or callable(value):
            continue
        try:
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            continue
        try:
            length = len(dataset)
        except TypeError:
            length = None
        if tensor.dim() >= 1 and (length is None or tensor.shape[0] == length):
            return tensor
    return None


def collect_target_stats(
    task: TaskLiteral,
    dataset: Dataset | None = None,
    dataloader: Iterable | None = None,
    target_key: KeySpec = None,
    num_classes: int | None = None,
    max_batches: int | None = None,
    ignore_index: int | None = None,
    progress: bool = True,
    transfer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    unsized_max_batches: int = UNSIZED_MAX_BATCHES,
) -> TargetStats:
    """Compute :class:`TargetStats` over a data set: fast path first, dataloader otherwise.

    A dataloader without ``len()`` (an iterable data set, possibly endless) is read for at most
    ``max_batches`` or else ``unsized_max_batches`` batches; the result then has
    ``estimated=True`` and ``batches`` set. Iterating a one-shot source (see :func:`is_one_shot`)
    consumes what training would read: check it first.

    Args:
        task: the task.
        dataset: the data set (tried first with :func:`targets_from_dataset`).
        dataloader: iterated when the fast path does not apply (or when ``max_batches`` is set
            and the dataset is not readable).
        target_key: where the targets are in a batch (see :func:`~lightning_recipe.core.batches.split_batch`).
        num_classes: multiclass: the number of classes.
        max_batches: iterate at most this many batches (an estimate from part of a huge set);
            the fast path reads the same number of leading samples when the batch size is known.
        ignore_index: multiclass: a sentinel label to leave out.
        progress: show a progress bar while iterating the dataloader.
        transfer: applied to each target tensor read from the dataloader (unused on the fast path).
        unsized_max_batches: the cap for a dataloader without ``len()`` when ``max_batches`` is ``None``.

    Raises:
        ValueError: when neither path yields targets; names ``target_key=``.
    """
    if dataset is not None:
        targets = targets_from_dataset(dataset)
        if targets is not None:
            if max_batches is not None and dataloader is not None:
                batch_size = getattr(dataloader, "batch_size", None)
                if batch_size:
                    targets = targets[: max_batches * batch_size]
            stats = TargetStats.from_targets(
                targets, task, num_classes=num_classes, ignore_index=ignore_index
            )
            stats.source = "dataset"
            return stats
    if dataloader is None:
        raise ValueError(
            "found no targets on the dataset (no `targets`/`labels` attribute, not a TensorDataset) "
            "and no dataloader to iterate; pass a dataloader or `target_key=`."
        )
    total: TargetStats | None = None
    read = 0
    iterator: Iterable = dataloader
    try:
        length = len(dataloader)  # type: ignore[arg-type]
    except TypeError:
        length = None
    unsized = length is None
    if unsized and max_batches is None:
        max_batches = int(unsized_max_batches)
    if max_batches is not None:
        length = min(length, max_batches) if length is not None else max_batches
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=length, desc="lightning_recipe: scanning targets", leave=False, unit="batch")
    try:
        for i, batch in enumerate(iterator):
            if max_batches is not None and i >= max_batches:
                break
            parts = split_batch(batch, target_key=target_key, require_targets=True)
            assert parts.targets is not None
            t = parts.targets if transfer is None else transfer(parts.targets)
            stats = TargetStats.from_targets(t, task, num_classes=num_classes, ignore_index=ignore_index)
            total = stats if total is None else total.merge(stats)
            read += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if total is None:
        raise ValueError("the dataloader yielded no batch; cannot compute target statistics.")
    if task == "multiclass" and num_classes is not None and total.class_counts is not None:
        missing = num_classes - total.class_counts.numel()
        if missing > 0:
            total.class_counts = torch.cat([total.class_counts, torch.zeros(missing, dtype=torch.float64)])
    total.source = "dataloader"
    total.batches = read
    total.estimated = max_batches is not None and read >= max_batches
    return total


def is_one_shot(source: Any) -> bool:
    """True when iterating ``source`` consumes it, so a second pass (training's) would miss what was read.

    A ``DataLoader`` over a map-style dataset, a list, or an ``IterableDataset`` whose
    ``__iter__`` makes a fresh iterator each call can be read again from the start; an iterator,
    a generator, or an ``IterableDataset`` that hands out the same iterator every time cannot.
    (An ``IterableDataset`` that makes a fresh iterator over a shared stream, e.g. a socket, looks
    re-iterable here: such a data set is the user's to describe, with ``priors=`` and the like.)

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> is_one_shot(DataLoader(TensorDataset(torch.zeros(4, 2)))), is_one_shot([1, 2, 3])
        (False, False)
        >>> is_one_shot(x for x in range(3))
        True
    """
    data = source.dataset if isinstance(source, DataLoader) else source
    if data is None:
        return False
    if isinstance(source, DataLoader) and not isinstance(data, IterableDataset):
        return False  # map-style: the sampler draws indices afresh each epoch
    if isinstance(data, Iterator):
        return True
    try:
        # creating (not running) two iterators: a generator function's body does not start
        first, second = iter(data), iter(data)
    except TypeError:
        return False
    return first is second or first is data


def entropy(p: torch.Tensor) -> float:
    """Shannon entropy (nats) of a distribution, ignoring zero entries."""
    p = p[p > 0].to(torch.float64)
    return float(-(p * p.log()).sum()) if p.numel() else 0.0


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """Per-element binary entropy (nats), 0 at p in {0, 1}."""
    p = p.to(torch.float64).clamp(0.0, 1.0)
    out = torch.zeros_like(p)
    inside = (p > 0) & (p < 1)
    q = p[inside]
    out[inside] = -(q * q.log() + (1 - q) * (1 - q).log())
    return out
