"""One streaming pass over a data set: duplicates, NaN/Inf, blank samples, class balance, outliers.

The recipe's first step, "become one with the data", as plain torch/numpy code (no Lightning).
:class:`SplitStats` accumulates one split (train, val, ...) batch by batch, vectorised per batch,
keeping per-sample *hashes and scalars*, never the data:

* a 96-bit hash of each sample's input bytes (:func:`sample_hashes`) for exact duplicates within a
  split and across splits, and a 64-bit hash of its target (same input, different target: a
  conflicting label);
* optionally a 64-bit average hash of a downsampled image (:func:`average_hash`) for near-duplicates;
* per-sample mean, standard deviation and L2 norm, NaN/Inf and constant-sample flags
  (:func:`sample_statistics`);
* class counts, labels out of range (``ignore_index`` aside), per-feature min/max for tabular inputs;
* a bounded top-k of the most extreme samples along each axis with small thumbnails.

About 60 bytes per sample in all. Two :class:`SplitStats` of the same split (dataloader shards,
DDP ranks) merge exactly with :meth:`SplitStats.merge`; :func:`analyse_splits` turns the merged
statistics into a :class:`DataReport` of :class:`DataIssue` verdicts.

Example:
    >>> import torch
    >>> x = torch.rand(100, 1, 8, 8)
    >>> x[7] = x[3]                                  # a duplicate
    >>> x[9] = 0.0                                   # a blank image
    >>> y = torch.arange(100) % 4
    >>> train = SplitStats("train")
    >>> train.update(x[:50], y[:50], torch.arange(50))
    >>> train.update(x[50:], y[50:], torch.arange(50, 100))
    >>> report = analyse_splits({"train": train})
    >>> sorted(issue.issue for issue in report.problems)
    ['blank_samples', 'duplicates']
    >>> report.issue("duplicates").numbers["examples"]
    [[3, 7]]
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from lightning_recipe.core.format import sig
from lightning_recipe.core.images import is_image_like
from lightning_recipe.core.inputs import markdown_table
from lightning_recipe.core.plain import AXES, EXTREMES
from lightning_recipe.core.robust import robust_z
from lightning_recipe.core.tasks import TaskArg

__all__ = [
    "AXES",
    "DataIssue",
    "DataReport",
    "SplitStats",
    "analyse_splits",
    "average_hash",
    "cat_thumbnails",
    "sample_hashes",
    "sample_statistics",
    "thumbnails",
    "token_summary",
]

#: Constant tabular features are a warning when more than this share of the features never vary
#: (fewer are reported as a note).
CONSTANT_FEATURES_WARN_SHARE = 0.1

# AXES (the per-sample statistics, in the column order of SplitStats.stats) and EXTREMES (the
# extremes kept with thumbnails) live in core.plain: the plot modules use them without torch

DataTask = TaskArg
DATA_TASKS: tuple[str, ...] = ("auto", "multiclass", "binary", "multilabel", "regression")

#: Per-sample flag bits.
FLAG_NONFINITE = 1
FLAG_CONSTANT = 2
FLAG_BAD_TARGET = 4
#: Label of a sample without a per-sample class label.
NO_LABEL = -(2**62)

_HASH_SEED = 0x5EED_DA7A
_weights: dict[int, torch.Tensor] = {}


# ---------------------------------------------------------------------- per-batch kernels
def _is_tokens(x: torch.Tensor) -> bool:
    """Integer ``(N, T)`` inputs: token ids of a vocabulary."""
    return (
        x.dim() == 2
        and x.shape[1] > 1
        and not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)
    )


def token_summary(s: SplitStats) -> dict[str, Any]:
    """Token statistics of a split with token inputs or token labels: the ids used (vocabulary
    coverage), the sequence length and the share of label positions left out (``ignore_index``)."""
    out: dict[str, Any] = {}
    counts = getattr(s, "token_counts", torch.zeros(0))
    if counts.numel():
        out["token_ids_used"] = int((counts > 0).sum())
        out["max_token_id"] = int(torch.nonzero(counts).max()) if bool((counts > 0).any()) else 0
        out["tokens"] = int(counts.sum())
    if getattr(s, "sequence_length", None):
        out["sequence_length"] = int(s.sequence_length)  # type: ignore[arg-type]
    positions = getattr(s, "label_positions", 0)
    if getattr(s, "token_labels", False) and positions:
        out["ignored_label_share"] = round(s.ignored / positions, 4)
        out["label_ids_used"] = int((s.class_counts > 0).sum())
    return out


def _token_words(name: str, t: dict[str, Any], ignore_index: int | None) -> str:
    parts = []
    if "token_ids_used" in t:
        parts.append(f"{t['token_ids_used']} distinct input ids (max {t['max_token_id']})")
    if "sequence_length" in t:
        parts.append(f"sequences of {t['sequence_length']}")
    if "ignored_label_share" in t:
        parts.append(f"{t['ignored_label_share']:.0%} of label positions are {ignore_index} (no loss)")
    return f"{name}: " + ", ".join(parts) if parts else ""


def _rows(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0] if x.dim() else 1
    return x.detach().reshape(n, -1)


def _projection_weights(n_words: int) -> torch.Tensor:
    w = _weights.get(n_words)
    if w is None:
        g = torch.Generator().manual_seed(_HASH_SEED)
        w = torch.randint(-(2**31), 2**31, (n_words, 2), generator=g, dtype=torch.int64).to(torch.int32)
        if len(_weights) > 16:
            _weights.clear()
        _weights[n_words] = w
    return w


def sample_hashes(x: torch.Tensor) -> torch.Tensor:
    """A 96-bit hash of each sample's bytes, as ``(N, 2)`` int64 (equal rows give equal hashes).

    Column 0 holds the CRC-32 of the row's bytes in its high 32 bits and a multilinear hash of its
    32-bit words (random weights, arithmetic mod 2^32, so the result does not depend on how the
    reduction is ordered or batched) in its low 32 bits; column 1 a second multilinear hash. Two
    different samples share all 96 bits with probability about 2^-64, so exact duplicates are not
    confirmed byte by byte. Samples of different dtypes are different bytes.

    Example:
        >>> x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]])
        >>> h = sample_hashes(x)
        >>> torch.equal(h[0], h[2]), torch.equal(h[0], h[1])
        (True, False)
    """
    flat = _rows(x).cpu()
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    raw = flat.contiguous().view(torch.uint8)
    n, nbytes = raw.shape
    pad = (-nbytes) % 4
    if pad:
        raw = torch.cat([raw, torch.zeros(n, pad, dtype=torch.uint8)], dim=1)
    words = raw.view(torch.int32)
    proj = (words @ _projection_weights(words.shape[1])).to(torch.int64) & 0xFFFFFFFF
    arr = raw.numpy()
    crc = torch.from_numpy(np.fromiter((zlib.crc32(arr[i]) for i in range(n)), dtype=np.int64, count=n))
    out = torch.empty(n, 2, dtype=torch.int64)
    out[:, 0] = (crc << 32) | proj[:, 0]
    out[:, 1] = proj[:, 1] ^ (nbytes << 32)
    return out


_BIT_WEIGHTS = torch.tensor([1 << i for i in range(63)] + [-(2**63)], dtype=torch.int64)


def is_image_batch(x: torch.Tensor) -> bool:
    """An image batch (:func:`~lightning_recipe.core.images.is_image_like`) at least 8x8, the size the
    average hash pools to."""
    return is_image_like(tuple(x.shape)) and min(x.shape[-2:]) >= 8


def average_hash(x: torch.Tensor, size: int = 8) -> torch.Tensor:
    """The 64-bit average hash of each image: gray, pooled to 8x8, each cell above the mean or not.

    Near-duplicates (resized, re-encoded, slightly shifted copies) share it. ``(N,)`` int64.

    Example:
        >>> img = torch.rand(1, 1, 32, 32)
        >>> bool(average_hash(img) == average_hash(img * 0.9 + 0.01))
        True
    """
    g = x.detach().float().cpu()
    if g.dim() == 4:
        g = g.mean(1)
    pooled = F.adaptive_avg_pool2d(torch.nan_to_num(g)[:, None], size).reshape(g.shape[0], -1)
    bits = pooled > pooled.mean(1, keepdim=True)
    return (bits.to(torch.int64) * _BIT_WEIGHTS[: bits.shape[1]]).sum(1)


def sample_statistics(x: torch.Tensor, min_elements: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(mean, std, L2 norm)`` as ``(N, 3)`` float32, and ``(N,)`` uint8 flags.

    Flags: :data:`FLAG_NONFINITE` (any NaN/Inf: the sample's statistics are NaN) and
    :data:`FLAG_CONSTANT` (every element equal, for samples of at least ``min_elements`` elements).
    One fused pass per statistic (sum, norm, max, min); rows the fast path cannot vouch for are
    recomputed exactly.

    Example:
        >>> stats, flags = sample_statistics(torch.tensor([[1.0] * 8, [0.0, 2.0] * 4, [float("nan")] * 8]))
        >>> stats[:2].tolist(), flags.tolist()
        ([[1.0, 0.0, 2.8284270763397217], [1.0, 1.0, 4.0]], [2, 0, 1])
    """
    flat = _rows(x)
    if not flat.is_floating_point() or flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    n, d = flat.shape
    stats = torch.full((n, 3), float("nan"), dtype=torch.float32)
    flags = torch.zeros(n, dtype=torch.uint8)
    if n == 0 or d == 0:
        return stats, flags
    mean = flat.sum(1) / d
    norm = torch.linalg.vector_norm(flat, dim=1)
    mean64 = mean.double()
    var = ((norm.double() ** 2) / d - mean64**2).clamp_min(0.0)
    std = var.sqrt().float()
    ok = torch.isfinite(mean) & torch.isfinite(norm)
    constant = torch.zeros(n, dtype=torch.bool)
    # two passes (sum, norm) for every row; an exact pass only where E[x^2] - E[x]^2 may cancel
    # (a mean large against the spread), which is also where every constant row lies
    careful = torch.nonzero(ok & (mean64**2 >= 100.0 * var)).flatten()
    if careful.numel():
        rows = flat[careful]
        r = rows.double()
        std[careful] = (torch.linalg.vector_norm(r - r.mean(1, keepdim=True), dim=1) / math.sqrt(d)).float()
        constant[careful] = (rows.amax(1) == rows.amin(1)).cpu()
    if not bool(ok.all()):
        # overflow of large finite values looks like Inf here: decide those rows exactly
        suspect = torch.nonzero(~ok).flatten()
        rows = flat[suspect].double()
        finite = torch.isfinite(rows).all(1)
        good = suspect[finite]
        if good.numel():
            r = rows[finite]
            m = r.mean(1)
            mean[good] = m.to(mean.dtype)
            norm[good] = torch.linalg.vector_norm(r, dim=1).to(norm.dtype)
            std[good] = (torch.linalg.vector_norm(r - m[:, None], dim=1) / math.sqrt(d)).float()
            constant[good] = (r.amax(1) == r.amin(1)).cpu()
            ok[good] = True
    stats[:, 0], stats[:, 1], stats[:, 2] = mean.cpu().float(), std.cpu().float(), norm.cpu().float()
    bad = ~ok.cpu()
    stats[bad] = float("nan")
    flags[bad] |= FLAG_NONFINITE
    if d >= min_elements:
        flags[constant & ~bad] |= FLAG_CONSTANT
    return stats, flags


def thumbnails(x: torch.Tensor, size: int = 32, features: int = 64) -> torch.Tensor:
    """Small float32 copies of samples for display: images pooled to at most ``size`` pixels a side,
    anything else flattened to its first ``features`` values."""
    t = x.detach().cpu()
    if not t.is_floating_point():
        t = t.float()
    t = torch.nan_to_num(t.float(), nan=0.0, posinf=0.0, neginf=0.0)
    if is_image_batch(t):
        img = t if t.dim() == 4 else t[:, None]
        h, w = img.shape[-2:]
        if max(h, w) > size:
            scale = size / max(h, w)
            img = F.adaptive_avg_pool2d(img, (max(1, round(h * scale)), max(1, round(w * scale))))
        return img.contiguous()
    return _rows(t)[:, :features].contiguous().clone()


def cat_thumbnails(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` of thumbnails from batches of different sizes (sequences padded per batch,
    images of several sizes): each is zero-padded to the largest size along every dimension but the first.

    Example:
        >>> cat_thumbnails([torch.ones(2, 24), torch.ones(1, 25)]).shape
        torch.Size([3, 25])
    """
    shape = [max(p.shape[d] for p in parts) for d in range(1, parts[0].dim())]
    padded = []
    for p in parts:
        pad: list[int] = []
        for d in reversed(range(1, p.dim())):
            pad += [0, shape[d - 1] - p.shape[d]]
        padded.append(F.pad(p, pad) if any(pad) else p)
    return torch.cat(padded)


# ---------------------------------------------------------------------- streaming accumulator
def _empty(dtype: torch.dtype, *shape: int) -> torch.Tensor:
    return torch.zeros((0, *shape), dtype=dtype)


class SplitStats:
    """Streaming, mergeable statistics of one split of a data set.

    Call :meth:`update` with each batch's inputs, targets and the dataset indices of its samples.
    Memory grows by about 60 bytes per sample (hashes, labels, three scalars), plus the bounded
    top-k thumbnails.

    Args:
        name: the split's name (``"train"``, ``"val"``).
        task: what the targets are: ``"multiclass"`` (integer class indices, also per pixel),
            ``"binary"`` (0/1), ``"multilabel"`` (``(N, K)`` 0/1), ``"regression"``; ``"auto"``:
            integer targets are classes, float targets of 0/1 are binary (one per sample) or
            multilabel, other float targets regression.
        num_classes: the number of classes; labels at or above it are out of range.
        ignore_index: a sentinel label (e.g. ``-100``) that is neither counted nor out of range.
        top_k: how many extreme samples to keep per axis and direction, with thumbnails.
        near_duplicates: also keep the average hash of image samples.
        max_examples: how many example indices to keep per problem.
        min_elements: samples with fewer elements are never called constant.
    """

    def __init__(
        self,
        name: str,
        task: DataTask = "auto",
        num_classes: int | None = None,
        ignore_index: int | None = None,
        top_k: int = 8,
        near_duplicates: bool = False,
        max_examples: int = 10,
        min_elements: int = 8,
    ) -> None:
        if task not in DATA_TASKS:
            raise ValueError(f"SplitStats(task={task!r}): unknown task; pass one of {list(DATA_TASKS)}.")
        self.name = name
        self.task: str = task
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.top_k = top_k
        self.near_duplicates = near_duplicates
        self.max_examples = max_examples
        self.min_elements = min_elements
        self.count = 0
        self.input_shape: tuple[int, ...] | None = None
        self.input_dtype: str | None = None
        self.image_like = False
        self._index: list[torch.Tensor] = []
        self._hash: list[torch.Tensor] = []
        self._target_hash: list[torch.Tensor] = []
        self._label: list[torch.Tensor] = []
        self._stats: list[torch.Tensor] = []
        self._flags: list[torch.Tensor] = []
        self._ahash: list[torch.Tensor] = []
        self.class_counts = torch.zeros(0, dtype=torch.float64)
        self.dense_labels = False  # more than one class label per sample (per pixel, per token)
        self.token_labels = False  # integer (N, T) targets: one token of a vocabulary per position
        self.label_positions = 0  # class labels seen, ignore_index included
        self.token_counts = torch.zeros(0, dtype=torch.float64)  # per id, over integer (N, T) inputs
        self.sequence_length: int | None = None
        self.ignored = 0
        self.out_of_range = 0
        self.out_of_range_examples: list[tuple[int, float]] = []
        self.target_sum: torch.Tensor | None = None
        self.target_sum_sq: torch.Tensor | None = None
        self.target_values = 0
        self.label_positives: torch.Tensor | None = None
        self.feature_min: torch.Tensor | None = None
        self.feature_max: torch.Tensor | None = None
        self.extremes: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._finished: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ update
    def update(self, inputs: torch.Tensor, targets: torch.Tensor | None, indices: torch.Tensor) -> None:
        """Add one batch: ``inputs`` ``(N, ...)``, ``targets`` ``(N, ...)`` or ``None``, ``indices`` ``(N,)``."""
        x = inputs.detach().cpu()
        n = int(x.shape[0]) if x.dim() else 1
        if n == 0:
            return
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).cpu()
        if idx.numel() != n:
            raise ValueError(f"SplitStats.update: {n} samples but {idx.numel()} indices.")
        self._finished = None
        if self.input_shape is None:
            self.input_shape = tuple(x.shape[1:])
            self.input_dtype = str(x.dtype).replace("torch.", "")
            self.image_like = is_image_batch(x)
        self.count += n
        self._index.append(idx)
        self._hash.append(sample_hashes(x))
        stats, flags = sample_statistics(x, self.min_elements)
        if self.near_duplicates and is_image_batch(x):
            self._ahash.append(average_hash(x))
        if x.dim() == 2 and x.is_floating_point() and x.shape[1] >= 2:
            self._update_features(x)
        if _is_tokens(x):
            self._update_tokens(x)
        label = torch.full((n,), NO_LABEL, dtype=torch.int64)
        target_hash = torch.zeros(n, dtype=torch.int64)
        if targets is not None:
            t = torch.as_tensor(targets).detach().cpu()
            if t.dim() == 0 or t.shape[0] != n:
                raise ValueError(
                    f"SplitStats.update: {n} inputs but targets of shape {tuple(t.shape)}; pass `target_key=`."
                )
            target_hash = sample_hashes(t)[:, 0]
            label, bad = self._update_targets(t, idx)
            flags[bad] |= FLAG_BAD_TARGET
        self._target_hash.append(target_hash)
        self._label.append(label)
        self._stats.append(stats)
        self._flags.append(flags)
        self._update_extremes(x, stats, idx)

    def _update_tokens(self, x: torch.Tensor) -> None:
        ids = x.reshape(-1).long()
        ids = ids[ids >= 0]
        if ids.numel():
            counts = torch.bincount(ids, minlength=self.token_counts.numel()).double()
            if counts.numel() > self.token_counts.numel():
                counts[: self.token_counts.numel()] += self.token_counts
                self.token_counts = counts
            else:
                self.token_counts += counts
        self.sequence_length = int(x.shape[1])

    def _update_features(self, x: torch.Tensor) -> None:
        finite = torch.isfinite(x)
        lo = torch.where(finite, x, torch.inf).amin(0).double()
        hi = torch.where(finite, x, -torch.inf).amax(0).double()
        if self.feature_min is None or self.feature_min.shape != lo.shape:
            self.feature_min, self.feature_max = lo, hi
        else:
            assert self.feature_max is not None
            self.feature_min = torch.minimum(self.feature_min, lo)
            self.feature_max = torch.maximum(self.feature_max, hi)

    def _resolve_task(self, t: torch.Tensor) -> str:
        if self.task != "auto":
            return self.task
        if not t.is_floating_point():
            return "multiclass"
        return "binary" if t.numel() == t.shape[0] else "multilabel"

    def _update_targets(self, t: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = t.shape[0]
        rows = t.reshape(n, -1)
        label = torch.full((n,), NO_LABEL, dtype=torch.int64)
        bad = torch.zeros(n, dtype=torch.bool)
        if rows.is_floating_point():
            bad |= ~torch.isfinite(rows).all(1)
            values = torch.nan_to_num(rows.double(), nan=0.0, posinf=0.0, neginf=0.0)
            if self.target_sum is None or self.target_sum.numel() != values.shape[1]:
                self.target_sum = values.sum(0)
                self.target_sum_sq = (values * values).sum(0)
            else:
                assert self.target_sum_sq is not None
                self.target_sum += values.sum(0)
                self.target_sum_sq += (values * values).sum(0)
            self.target_values += n
        task = self._resolve_task(t)
        if task in ("binary", "multilabel") and self.task == "auto":
            finite = rows[torch.isfinite(rows)]
            if finite.numel() and not bool(((finite == 0) | (finite == 1)).all()):
                task = "regression"  # float targets other than 0/1: regression from now on
                self.class_counts = torch.zeros(0, dtype=torch.float64)
                self.label_positives = None
        self.task = task if self.task == "auto" or task == "regression" else self.task
        if task == "regression":
            return label, bad
        if task == "multilabel":
            values = torch.nan_to_num(rows.double())
            pos = (values == 1).sum(0).double()
            self.label_positives = pos if self.label_positives is None else self.label_positives + pos
            self._out_of_range(rows, ~((values == 0) | (values == 1)) & torch.isfinite(rows), idx)
            return label, bad
        if rows.shape[1] > 1:
            self.dense_labels = True
            # integer (N, T) labels beyond 0/1 (multi-hot rows are labels, not tokens)
            self.token_labels = self.token_labels or (
                t.dim() == 2 and not rows.is_floating_point() and bool((rows > 1).any())
            )
        self.label_positions += int(rows.numel())
        labels = rows if not rows.is_floating_point() else torch.nan_to_num(rows, nan=-1.0)
        labels = labels.to(torch.int64)
        if rows.is_floating_point():
            non_integer = (rows != torch.round(rows)) | ~torch.isfinite(rows)
            labels = torch.where(non_integer, torch.full_like(labels, -(2**40)), labels)
        keep = torch.ones_like(labels, dtype=torch.bool)
        if self.ignore_index is not None:
            ignored = labels == self.ignore_index
            self.ignored += int(ignored.sum())
            keep &= ~ignored
        upper = 2 if task == "binary" else self.num_classes
        out = keep & ((labels < 0) | (labels >= upper if upper is not None else torch.zeros_like(keep)))
        self._out_of_range(rows, out, idx)
        valid = labels[keep & ~out]
        if valid.numel():
            size = max(int(valid.max()) + 1, self.class_counts.numel(), upper or 0)
            counts = torch.bincount(valid, minlength=size).double()
            if self.class_counts.numel() < size:
                self.class_counts = torch.cat(
                    [self.class_counts, torch.zeros(size - self.class_counts.numel(), dtype=torch.float64)]
                )
            self.class_counts += counts
        if rows.shape[1] == 1:
            label = labels[:, 0].clone()
        return label, bad

    def _out_of_range(self, rows: torch.Tensor, out: torch.Tensor, idx: torch.Tensor) -> None:
        if not bool(out.any()):
            return
        rows_out = torch.nonzero(out.any(1)).flatten()
        self.out_of_range += int(out.sum())
        for r in rows_out[: max(0, self.max_examples - len(self.out_of_range_examples))].tolist():
            self.out_of_range_examples.append((int(idx[r]), float(rows[r][out[r]][0])))

    def _update_extremes(self, x: torch.Tensor, stats: torch.Tensor, idx: torch.Tensor) -> None:
        k = self.top_k
        if k <= 0:
            return
        finite = torch.isfinite(stats).all(1)
        plans: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        needed: set[int] = set()
        for axis, direction in EXTREMES:
            col = AXES.index(axis)
            v = stats[:, col] if direction == "high" else -stats[:, col]
            v = torch.where(finite, v.double(), torch.tensor(-math.inf, dtype=torch.float64))
            key = f"{axis}_{direction}"
            old_v, old_i, old_t = self.extremes.get(key, (_empty(torch.float64), _empty(torch.int64), None))
            if old_v.numel() >= k and bool((v <= old_v.min()).all()):
                continue
            cand = torch.cat([old_v, v])
            order = torch.argsort(cand, descending=True, stable=True)[:k]
            order = order[torch.isfinite(cand[order])]
            plans.append((key, cand, order))
            needed.update((order[order >= old_v.numel()] - old_v.numel()).tolist())
        if not plans:
            return
        rows = torch.tensor(sorted(needed), dtype=torch.int64)
        thumbs = thumbnails(x[rows]) if rows.numel() else None
        lookup = torch.full((idx.numel(),), -1, dtype=torch.int64)
        lookup[rows] = torch.arange(rows.numel())
        for key, cand, order in plans:
            old_v, old_i, old_t = self.extremes.get(key, (_empty(torch.float64), _empty(torch.int64), None))
            m = old_v.numel()
            is_new = order >= m
            src = order.clone()
            src[is_new] = m + lookup[order[is_new] - m]
            pool = [t for t in (old_t, thumbs) if t is not None and t.numel()]
            if not pool or order.numel() == 0:
                continue
            all_t = cat_thumbnails(pool) if len(pool) > 1 else pool[0]
            all_i = torch.cat([old_i, idx])
            self.extremes[key] = (cand[order].clone(), all_i[order].clone(), all_t[src].clone())

    # ------------------------------------------------------------------ merge
    def merge(self, other: SplitStats) -> SplitStats:
        """Add ``other`` (another shard of the same split) into this one and return ``self``."""
        if other.count == 0:
            return self
        if self.count == 0 and self.input_shape is None:
            self.input_shape, self.input_dtype, self.image_like = (
                other.input_shape,
                other.input_dtype,
                other.image_like,
            )
        if self.task == "auto" or other.task == "regression":
            self.task = other.task
        self._finished = None
        self.count += other.count
        for name in ("_index", "_hash", "_target_hash", "_label", "_stats", "_flags", "_ahash"):
            getattr(self, name).extend(getattr(other, name))
        size = max(self.class_counts.numel(), other.class_counts.numel())
        merged = torch.zeros(size, dtype=torch.float64)
        merged[: self.class_counts.numel()] += self.class_counts
        merged[: other.class_counts.numel()] += other.class_counts
        self.class_counts = merged
        self.dense_labels = bool(
            getattr(self, "dense_labels", False) or getattr(other, "dense_labels", False)
        )
        self.token_labels = bool(
            getattr(self, "token_labels", False) or getattr(other, "token_labels", False)
        )
        self.label_positions = getattr(self, "label_positions", 0) + getattr(other, "label_positions", 0)
        mine, theirs = (
            getattr(self, "token_counts", torch.zeros(0)),
            getattr(other, "token_counts", torch.zeros(0)),
        )
        tokens = torch.zeros(max(mine.numel(), theirs.numel()), dtype=torch.float64)
        tokens[: mine.numel()] += mine
        tokens[: theirs.numel()] += theirs
        self.token_counts = tokens
        self.sequence_length = self.sequence_length or getattr(other, "sequence_length", None)
        self.ignored += other.ignored
        self.out_of_range += other.out_of_range
        self.out_of_range_examples = sorted(self.out_of_range_examples + other.out_of_range_examples)[
            : self.max_examples
        ]
        self.target_values += other.target_values
        for name in ("target_sum", "target_sum_sq", "label_positives"):
            a, b = getattr(self, name), getattr(other, name)
            setattr(self, name, b if a is None else (a if b is None else a + b))
        if other.feature_min is not None:
            if self.feature_min is None:
                self.feature_min, self.feature_max = other.feature_min, other.feature_max
            else:
                self.feature_min = torch.minimum(self.feature_min, other.feature_min)
                self.feature_max = torch.maximum(self.feature_max, other.feature_max)  # type: ignore[arg-type]
        for key, (v, i, t) in other.extremes.items():
            if key not in self.extremes:
                self.extremes[key] = (v, i, t)
                continue
            v0, i0, t0 = self.extremes[key]
            cand = torch.cat([v0, v])
            # ties broken by the dataset index, so every rank merges to the same top-k
            all_i = torch.cat([i0, i])
            order = sorted(range(cand.numel()), key=lambda j: (-float(cand[j]), int(all_i[j])))[: self.top_k]
            all_t = cat_thumbnails([t0, t]) if t0.numel() and t.numel() else (t0 if t0.numel() else t)
            self.extremes[key] = (cand[order], all_i[order], all_t[order])
        return self

    # ------------------------------------------------------------------ finished arrays
    def arrays(self) -> dict[str, torch.Tensor]:
        """The per-sample arrays, concatenated and sorted by dataset index."""
        if self._finished is None:
            if not self._index:
                self._finished = {
                    "index": _empty(torch.int64),
                    "hash": _empty(torch.int64, 2),
                    "target_hash": _empty(torch.int64),
                    "label": _empty(torch.int64),
                    "stats": _empty(torch.float32, 3),
                    "flags": _empty(torch.uint8),
                    "ahash": _empty(torch.int64),
                }
            else:
                index = torch.cat(self._index)
                order = torch.argsort(index, stable=True)
                out = {
                    "index": index[order],
                    "hash": torch.cat(self._hash)[order],
                    "target_hash": torch.cat(self._target_hash)[order],
                    "label": torch.cat(self._label)[order],
                    "stats": torch.cat(self._stats)[order],
                    "flags": torch.cat(self._flags)[order],
                }
                ahash = torch.cat(self._ahash) if self._ahash else _empty(torch.int64)
                out["ahash"] = ahash[order] if ahash.numel() == index.numel() else _empty(torch.int64)
                self._finished = out
                # keep one chunk: cheaper to merge and to pickle
                self._index, self._hash = [out["index"]], [out["hash"]]
                self._target_hash, self._label = [out["target_hash"]], [out["label"]]
                self._stats, self._flags = [out["stats"]], [out["flags"]]
                self._ahash = [out["ahash"]] if out["ahash"].numel() else []
        return self._finished

    @property
    def nbytes(self) -> int:
        """Bytes held by the per-sample arrays and the thumbnails."""
        total = 0
        for name in ("_index", "_hash", "_target_hash", "_label", "_stats", "_flags", "_ahash"):
            total += sum(t.numel() * t.element_size() for t in getattr(self, name))
        for v, i, t in self.extremes.values():
            total += v.numel() * 8 + i.numel() * 8 + t.numel() * t.element_size()
        return total

    def __getstate__(self) -> dict[str, Any]:
        self.arrays()
        state = dict(self.__dict__)
        state["_finished"] = None
        return state


# ---------------------------------------------------------------------- analysis
Status = Literal["pass", "warn", "fail"]


@dataclass
class DataIssue:
    """One verdict of the data inspection.

    Attributes:
        issue: what kind (``"duplicates"``, ``"train_val_overlap"``, ``"nonfinite_inputs"``, ...).
        status: ``"pass"``, ``"warn"`` or ``"fail"``.
        message: one line a person can act on.
        split: the split it is about (``None`` for all of them).
        numbers: counts and example indices (plain Python values).
    """

    issue: str
    status: Status
    message: str
    split: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataReport:
    """What :func:`analyse_splits` found.

    Attributes:
        issues: every verdict, problems first in a fixed order, then one ``"summary"`` pass.
        splits: per split, a plain summary (samples, duplicates, classes, ...).
        stats: per split, the ``(N, 3)`` per-sample mean/std/norm as numpy, sorted by index.
        labels: per split, the per-sample class label (``NO_LABEL`` when there is none).
        indices: per split, the dataset indices in the same order.
        extremes: per split, ``{"mean_high": (values, indices, thumbnails), ...}``.
        outliers: per split, ``[(index, axis, z), ...]`` beyond the outlier threshold.
        flagged: per split, ``{reason: [indices]}`` for blank, near-constant and NaN samples.
        duplicate_pairs: ``[(split_a, index_a, split_b, index_b), ...]`` examples to show.
        image_like: per split, whether the inputs are images.
    """

    issues: list[DataIssue] = field(default_factory=list)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    extremes: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(default_factory=dict)
    outliers: dict[str, list[tuple[int, str, float]]] = field(default_factory=dict)
    flagged: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    duplicate_pairs: list[tuple[str, int, str, int]] = field(default_factory=list)
    image_like: dict[str, bool] = field(default_factory=dict)

    @property
    def problems(self) -> list[DataIssue]:
        """The ``warn`` and ``fail`` issues."""
        return [i for i in self.issues if i.status in ("warn", "fail")]

    def issue(self, name: str, split: str | None = None) -> DataIssue | None:
        """The first issue of kind ``name`` (and ``split``, if given), or ``None``."""
        for i in self.issues:
            if i.issue == name and (split is None or i.split == split):
                return i
        return None

    def markdown(self) -> str:
        """A Markdown summary: one table of the splits, then the verdicts."""
        cols = [
            ("samples", "samples"),
            ("unique", "unique"),
            ("duplicates", "duplicates"),
            ("NaN/Inf", "nonfinite"),
            ("blank", "constant"),
            ("classes", "classes"),
            ("imbalance", "imbalance_ratio"),
            ("input", "input"),
        ]

        def cell(v: Any) -> str:
            return sig(v) if isinstance(v, float) else str(v if v is not None else "")

        rows = [[name, *(cell(s.get(key, "")) for _, key in cols)] for name, s in self.splits.items()]
        header = ["split", *(c for c, _ in cols)]
        lines = [markdown_table(header, rows, max_rows=len(rows), max_cols=len(header))]
        icon = {"pass": "✓", "warn": "⚠", "fail": "✗"}
        lines.append("")
        for i in self.issues:
            lines.append(f"- {icon[i.status]} **{i.issue}**: {i.message}")
        for split, found in self.outliers.items():
            if found:
                shown = ", ".join(f"#{idx} ({axis} z={z:.1f})" for idx, axis, z in found[:8])
                lines.append(f"- {split}: most extreme samples {shown}")
        return "\n".join(lines)


_ORDER = (
    "nonfinite_inputs",
    "nonfinite_targets",
    "labels_out_of_range",
    "train_val_overlap",
    "duplicates",
    "conflicting_labels",
    "near_duplicates",
    "blank_samples",
    "missing_classes",
    "class_imbalance",
    "sorted_unshuffled",
    "constant_features",
    "outliers",
    "summary",
)


def _examples(values: np.ndarray, limit: int) -> list[int]:
    return [int(v) for v in values[:limit]]


def _fmt_idx(values: list[int], limit: int = 5) -> str:
    shown = ", ".join(f"#{v}" for v in values[:limit])
    return shown + (", …" if len(values) > limit else "")


def _group_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group ids (inverse) and group sizes of rows of an ``(N, k)`` int64 array."""
    if keys.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def _duplicate_groups(inverse: np.ndarray, counts: np.ndarray, index: np.ndarray) -> list[np.ndarray]:
    """Index arrays of each group with more than one member, ordered by the smallest index."""
    dup_groups = np.flatnonzero(counts > 1)
    if dup_groups.size == 0:
        return []
    member = np.isin(inverse, dup_groups)
    rows = np.flatnonzero(member)
    order = np.argsort(inverse[rows], kind="stable")
    rows = rows[order]
    splits = np.flatnonzero(np.diff(inverse[rows])) + 1
    groups = np.split(index[rows], splits)
    groups.sort(key=lambda g: int(g.min()))
    return groups


def _robust_z(values: np.ndarray, groups: np.ndarray | None, min_group: int = 20) -> np.ndarray:
    """|value - median| / (1.4826 MAD), within each group of at least ``min_group`` samples."""
    z = np.zeros_like(values, dtype=np.float64)
    finite = np.isfinite(values)

    def fill(mask: np.ndarray) -> None:
        v = values[mask]
        if v.size >= 3:
            z[mask] = robust_z(v)

    if groups is None:
        fill(finite)
        return z
    labels, sizes = np.unique(groups[finite], return_counts=True)
    small = np.zeros_like(finite)
    for label, size in zip(labels, sizes):
        mask = finite & (groups == label)
        if size >= min_group:
            fill(mask)
        else:
            small |= mask
    if small.any():
        fill(small)
    return z


def analyse_splits(
    splits: dict[str, SplitStats],
    train: str = "train",
    imbalance_ratio: float = 5.0,
    near_constant_ratio: float = 0.01,
    outlier_z: float = 12.0,
    max_examples: int = 10,
    balanced_by: Callable[[Any], str | None] | str | None = None,
    extra: tuple[DataIssue, ...] = (),
) -> DataReport:
    """Turn merged :class:`SplitStats` into verdicts.

    Args:
        splits: the statistics of each split, by name; ``train`` is compared with every other.
        train: the name of the training split.
        imbalance_ratio: warn when the largest class has at least this many times the samples of
            the smallest (present) class; judged for one label per sample only (per-token and
            per-pixel labels are skewed by nature: the ratio is in the summary, not a warning).
        near_constant_ratio: a sample whose standard deviation is below this fraction of the
            median standard deviation of its class (of the split without labels) is near-constant.
            Compared within class, so a class of dim or low-contrast samples is not flagged.
        outlier_z: warn about samples whose mean, std or norm is more than this many robust
            standard deviations (1.4826 MAD) from the median of their class.
        max_examples: example indices per verdict.
        balanced_by: how training already answers an imbalance (a class-weighted loss, a weighted
            sampler: see ``imbalance_answer``), in words or as ``balanced_by(class_counts)``; the
            imbalance is then a ``pass`` that says so (for a held-out split: "in training ...").
        extra: verdicts found outside the statistics (the training loader's order), judged and
            counted with the others.
    """
    report = DataReport()
    issues: list[DataIssue] = []
    arrays = {name: s.arrays() for name, s in splits.items() if s.count}

    for name, s in splits.items():
        a = arrays.get(name)
        summary: dict[str, Any] = {
            "samples": s.count,
            "input": f"{s.input_dtype}{list(s.input_shape)}" if s.input_shape is not None else "",
            "task": s.task,
        }
        summary.update(token_summary(s))
        report.splits[name] = summary
        report.image_like[name] = s.image_like
        if a is None:
            continue
        index = a["index"].numpy()
        stats = a["stats"].numpy()
        flags = a["flags"].numpy()
        label = a["label"].numpy()
        report.stats[name] = stats
        report.labels[name] = label
        report.indices[name] = index
        report.extremes[name] = {
            key: (v.numpy(), i.numpy(), t.numpy()) for key, (v, i, t) in s.extremes.items() if v.numel()
        }
        has_labels = bool((label != NO_LABEL).any())
        groups = label if has_labels else None

        # NaN / Inf
        bad = np.flatnonzero(flags & FLAG_NONFINITE)
        summary["nonfinite"] = int(bad.size)
        flagged: dict[str, list[int]] = {}
        if bad.size:
            ex = _examples(index[bad], max_examples)
            flagged["NaN/Inf"] = ex
            issues.append(
                DataIssue(
                    "nonfinite_inputs",
                    "fail",
                    f"{name}: {bad.size} of {s.count} samples have NaN/Inf inputs ({_fmt_idx(ex)}); "
                    "drop or impute them before training.",
                    name,
                    {"count": int(bad.size), "examples": ex},
                )
            )
        bad_t = np.flatnonzero(flags & FLAG_BAD_TARGET)
        if bad_t.size:
            ex = _examples(index[bad_t], max_examples)
            issues.append(
                DataIssue(
                    "nonfinite_targets",
                    "fail",
                    f"{name}: {bad_t.size} samples have NaN/Inf targets ({_fmt_idx(ex)}); drop them or fix the labels.",
                    name,
                    {"count": int(bad_t.size), "examples": ex},
                )
            )
        if s.out_of_range:
            ex_pairs = s.out_of_range_examples[:max_examples]
            shown = ", ".join(f"#{i} → {v:g}" for i, v in ex_pairs[:5])
            upper = 2 if s.task in ("binary", "multilabel") else s.num_classes
            valid = f"[0, {upper})" if upper is not None else "labels >= 0"
            hint = (
                "; pass ignore_index= if it is a sentinel"
                if s.ignore_index is None and any(v < 0 for _, v in ex_pairs)
                else ""
            )
            issues.append(
                DataIssue(
                    "labels_out_of_range",
                    "fail",
                    f"{name}: {s.out_of_range} labels outside {valid} ({shown}); fix the labels{hint}.",
                    name,
                    {
                        "count": int(s.out_of_range),
                        "examples": [i for i, _ in ex_pairs],
                        "values": [v for _, v in ex_pairs],
                    },
                )
            )

        # blank and near-constant samples, compared within class
        constant = (flags & FLAG_CONSTANT) > 0
        std = stats[:, 1]
        near = np.zeros_like(constant)
        legit_blank: list[int] = []
        if groups is not None:
            for c in np.unique(groups):
                mask = groups == c
                frac_constant = constant[mask].mean()
                if frac_constant > 0.5 and mask.sum() >= 2:
                    legit_blank.append(int(c))
                    constant[mask] = False  # a class that is mostly blank is blank by nature
                    continue
                ref = np.nanmedian(std[mask & ~constant]) if (mask & ~constant).any() else np.nan
                if np.isfinite(ref) and ref > 0 and (mask & ~constant).sum() >= 5:
                    near |= mask & ~constant & (std < near_constant_ratio * ref)
        else:
            ok = ~constant & np.isfinite(std)
            ref = np.median(std[ok]) if ok.any() else np.nan
            if np.isfinite(ref) and ref > 0 and ok.sum() >= 5:
                near = ok & (std < near_constant_ratio * ref)
        near &= np.isfinite(std)
        summary["constant"] = int(constant.sum())
        summary["near_constant"] = int(near.sum())
        if constant.any() or near.any():
            ex_c = _examples(index[constant], max_examples)
            ex_n = _examples(index[near], max_examples)
            if ex_c:
                flagged["blank"] = ex_c
            if ex_n:
                flagged["near-constant"] = ex_n
            kind = "blank images" if s.image_like else "constant samples"
            parts = []
            if constant.any():
                parts.append(f"{int(constant.sum())} {kind} (every value equal: {_fmt_idx(ex_c)})")
            if near.any():
                parts.append(
                    f"{int(near.sum())} near-constant (std < {near_constant_ratio:g} of their class's median: "
                    f"{_fmt_idx(ex_n)})"
                )
            issues.append(
                DataIssue(
                    "blank_samples",
                    "warn",
                    f"{name}: " + " and ".join(parts) + "; look at them and drop corrupted ones.",
                    name,
                    {
                        "constant": int(constant.sum()),
                        "near_constant": int(near.sum()),
                        "examples": ex_c + ex_n,
                        "blank_classes": legit_blank,
                    },
                )
            )
        if legit_blank:
            summary["blank_classes"] = legit_blank
        report.flagged[name] = flagged

        # exact duplicates within the split, and conflicting targets
        inverse, counts = _group_keys(a["hash"].numpy())
        summary["unique"] = int(counts.size)
        summary["duplicates"] = int(s.count - counts.size)
        groups_dup = _duplicate_groups(inverse, counts, index)
        if groups_dup:
            ex_groups = [[int(v) for v in g[:5]] for g in groups_dup[:max_examples]]
            for g in groups_dup[:8]:
                report.duplicate_pairs.append((name, int(g[0]), name, int(g[1])))
            shown = "; ".join(" = ".join(f"#{v}" for v in g[:3]) for g in ex_groups[:3])
            issues.append(
                DataIssue(
                    "duplicates",
                    "warn",
                    f"{name}: {s.count - counts.size} exact duplicates in {len(groups_dup)} groups ({shown}); "
                    "deduplicate, they overweight those samples.",
                    name,
                    {"count": int(s.count - counts.size), "groups": len(groups_dup), "examples": ex_groups},
                )
            )
            th = a["target_hash"].numpy()
            pair_keys = np.stack([inverse, th], 1)
            _, pair_inverse = np.unique(pair_keys, axis=0, return_inverse=True)
            pair_inverse = pair_inverse.reshape(-1)
            distinct_targets = np.zeros(counts.size, dtype=np.int64)
            first = np.unique(np.stack([inverse, pair_inverse], 1), axis=0)
            np.add.at(distinct_targets, first[:, 0], 1)
            conflicted = np.flatnonzero(distinct_targets > 1)
            if conflicted.size:
                ex_conf = [
                    [int(v) for v in g[:5]]
                    for g in groups_dup
                    if distinct_targets[inverse[np.searchsorted(index, g[0])]] > 1
                ][:max_examples]
                shown = "; ".join(" = ".join(f"#{v}" for v in g[:3]) for g in ex_conf[:3])
                issues.append(
                    DataIssue(
                        "conflicting_labels",
                        "warn",
                        f"{name}: {conflicted.size} groups of identical inputs carry different targets ({shown}); "
                        "the labels are noisy there: fix or drop them.",
                        name,
                        {"groups": int(conflicted.size), "examples": ex_conf},
                    )
                )

        # class balance
        if s.task in ("multiclass", "binary") and s.class_counts.numel():
            cc = s.class_counts.numpy()
            summary["classes"] = int((cc > 0).sum())
            present = cc[cc > 0]
            ratio = float(present.max() / present.min()) if present.size >= 2 else 1.0
            summary["imbalance_ratio"] = round(ratio, 3)
            summary["class_counts"] = [int(c) for c in cc]
            if s.ignore_index is not None:
                summary["ignored_labels"] = int(s.ignored)
            dense = bool(getattr(s, "dense_labels", False))
            if dense:
                summary["dense_labels"] = True
            # judged for one label per sample only: per-token and per-pixel labels are skewed by
            # nature (a vocabulary is Zipfian, background dominates a mask); the ratio is in the summary
            if ratio >= imbalance_ratio and not dense:
                big, small = (
                    int(np.argmax(np.where(cc > 0, cc, -1))),
                    int(np.argmin(np.where(cc > 0, cc, np.inf))),
                )
                counts = f"{ratio:.1f}:1 (class {big}: {int(cc[big])}, class {small}: {int(cc[small])})"
                numbers = {"ratio": round(ratio, 3), "class_counts": [int(c) for c in cc]}
                # judged on the training split's classes: a held-out split may lack the rarest one
                seen = splits[train].class_counts if train in splits else None
                classes = cc if seen is None or len(seen) < len(cc) else seen.numpy()
                how = balanced_by(classes) if callable(balanced_by) else balanced_by
                if how:
                    status: Status = "pass"
                    text = f"{name}: classes are imbalanced {counts}, and {how}: nothing to add."
                    if name != train:  # a held-out split keeps the data's imbalance; training answers it
                        text = f"{name}: classes are imbalanced {counts}; in training {how}: nothing to add."
                    numbers["balanced_by"] = how
                else:
                    status = "warn"
                    text = (
                        f"{name}: classes are imbalanced {counts}; weight the loss or resample, and set the "
                        "final bias from the priors."
                    )
                issues.append(DataIssue("class_imbalance", status, text, name, numbers))
        elif s.task == "multilabel" and s.label_positives is not None:
            summary["classes"] = int((s.label_positives > 0).sum())

        # constant tabular features
        if s.feature_min is not None and name == train:
            assert s.feature_max is not None
            const = torch.nonzero((s.feature_min == s.feature_max) | ~torch.isfinite(s.feature_min)).flatten()
            summary["features"] = int(s.feature_min.numel())
            if const.numel():
                ex = [int(v) for v in const[: max_examples * 2]]
                # a few constant columns are common in healthy data (the blank border pixels of
                # flattened digits): a note; a large share of them is a preprocessing problem
                share = const.numel() / max(1, s.feature_min.numel())
                issues.append(
                    DataIssue(
                        "constant_features",
                        "warn" if share > CONSTANT_FEATURES_WARN_SHARE else "pass",
                        f"{name}: {const.numel()} of {s.feature_min.numel()} features never vary "
                        f"(features {', '.join(map(str, ex[:8]))}{', …' if const.numel() > 8 else ''}); "
                        "they carry no information: drop them.",
                        name,
                        {"count": int(const.numel()), "features": ex},
                    )
                )

        # outliers along mean / std / norm, within class
        found: list[tuple[int, str, float]] = []
        z_all = np.zeros((stats.shape[0], len(AXES)))
        keep = ~((flags & FLAG_NONFINITE) > 0) & ~constant
        for j in range(len(AXES)):
            col = np.where(keep, stats[:, j].astype(np.float64), np.nan)
            if AXES[j] in ("std", "norm"):  # scales: compare ratios, not differences
                col = np.log(np.where(col > 0, col, np.nan))
            z_all[:, j] = _robust_z(col, groups)
        zmax = z_all.max(1) if z_all.size else np.zeros(0)
        worst = np.argsort(-zmax, kind="stable")
        for r in worst[: max(8, max_examples)]:
            if zmax[r] <= 0:
                break
            found.append((int(index[r]), AXES[int(np.argmax(z_all[r]))], float(zmax[r])))
        report.outliers[name] = found
        beyond = np.flatnonzero(zmax > outlier_z)
        summary["outliers"] = int(beyond.size)
        if beyond.size:
            order = beyond[np.argsort(-zmax[beyond], kind="stable")]
            ex = _examples(index[order], max_examples)
            flagged["outlier"] = ex[:8]
            top = order[0]
            issues.append(
                DataIssue(
                    "outliers",
                    "warn",
                    f"{name}: {beyond.size} samples lie more than {outlier_z:g} robust SDs from their class along "
                    f"mean/std/norm (worst #{int(index[top])}: {AXES[int(np.argmax(z_all[top]))]} "
                    f"z={zmax[top]:.0f}); look at them: outliers often uncover preprocessing bugs.",
                    name,
                    {
                        "count": int(beyond.size),
                        "examples": ex,
                        "z": [round(float(zmax[r]), 2) for r in order[:max_examples]],
                    },
                )
            )

    # missing classes (against num_classes, or the labels seen in any split)
    # token labels are ids of a vocabulary, not classes that must all occur: no missing-class verdict
    class_splits = {
        n: s
        for n, s in splits.items()
        if s.task in ("multiclass", "binary") and s.count and not getattr(s, "token_labels", False)
    }
    if class_splits:
        declared = [s.num_classes for s in class_splits.values() if s.num_classes is not None]
        if any(s.task == "binary" for s in class_splits.values()):
            declared.append(2)
        expected = max(declared) if declared else max(s.class_counts.numel() for s in class_splits.values())
        for name, s in class_splits.items():
            cc = torch.zeros(expected, dtype=torch.float64)
            cc[: min(expected, s.class_counts.numel())] = s.class_counts[:expected]
            missing = [int(c) for c in torch.nonzero(cc == 0).flatten()]
            if missing and expected > 0:
                basis = "of num_classes=" + str(expected) if declared else f"of the {expected} classes seen"
                issues.append(
                    DataIssue(
                        "missing_classes",
                        "warn",
                        f"{name}: {len(missing)} {basis} have no sample (classes "
                        f"{', '.join(map(str, missing[:10]))}{', …' if len(missing) > 10 else ''}); "
                        "the model cannot learn or be evaluated on them.",
                        name,
                        {"missing": missing, "expected_classes": expected},
                    )
                )
    for name, s in splits.items():
        if s.task == "multilabel" and s.label_positives is not None:
            never = [int(c) for c in torch.nonzero(s.label_positives == 0).flatten()]
            if never:
                issues.append(
                    DataIssue(
                        "missing_classes",
                        "warn",
                        f"{name}: labels {', '.join(map(str, never[:10]))} are never positive; the model cannot "
                        "learn them.",
                        name,
                        {"missing": never},
                    )
                )

    # train / other split overlap
    if train in arrays:
        train_hash = arrays[train]["hash"].numpy()
        train_index = arrays[train]["index"].numpy()
        for name, a in arrays.items():
            if name == train:
                continue
            other = a["hash"].numpy()
            both = np.concatenate([train_hash, other])
            _, inverse = np.unique(both, axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            inv_train, inv_other = inverse[: len(train_hash)], inverse[len(train_hash) :]
            shared = np.isin(inv_other, inv_train)
            report.splits[name]["in_train"] = int(shared.sum())
            if shared.any():
                rows = np.flatnonzero(shared)[:max_examples]
                first_train = {}
                for pos in np.argsort(inv_train, kind="stable")[::-1]:
                    first_train[int(inv_train[pos])] = int(train_index[pos])
                pairs = [(int(a["index"][r]), first_train[int(inv_other[r])]) for r in rows]
                for o, t in pairs[:8]:
                    report.duplicate_pairs.append((name, o, train, t))
                shown = ", ".join(f"{name} #{o} = {train} #{t}" for o, t in pairs[:3])
                issues.append(
                    DataIssue(
                        "train_val_overlap",
                        "warn",
                        f"{name}: {int(shared.sum())} of {len(other)} samples also occur in {train} ({shown}); "
                        f"remove them from {name}: they inflate its scores.",
                        name,
                        {"count": int(shared.sum()), "examples": [list(p) for p in pairs]},
                    )
                )

    # near-duplicates: same average hash, different bytes (within and across splits)
    near_names = [n for n, a in arrays.items() if a["ahash"].numel()]
    if near_names:
        keys, owners, idxs, exact = [], [], [], []
        for n in near_names:
            a = arrays[n]
            ok = (a["flags"].numpy() & (FLAG_CONSTANT | FLAG_NONFINITE)) == 0
            keys.append(a["ahash"].numpy()[ok])
            exact.append(a["hash"].numpy()[ok])
            idxs.append(a["index"].numpy()[ok])
            owners.extend([n] * int(ok.sum()))
        ak = np.concatenate(keys)
        ex = np.concatenate(exact)
        ix = np.concatenate(idxs)
        own = np.array(owners)
        if ak.size:
            _, a_inv, a_counts = np.unique(ak, return_inverse=True, return_counts=True)
            _, e_inv = np.unique(ex, axis=0, return_inverse=True)
            distinct = np.zeros(a_counts.size, dtype=np.int64)
            pairs_u = np.unique(np.stack([a_inv.reshape(-1), e_inv.reshape(-1)], 1), axis=0)
            np.add.at(distinct, pairs_u[:, 0], 1)
            near_groups = np.flatnonzero(distinct > 1)
            if near_groups.size:
                examples = []
                for gid in near_groups[:max_examples]:
                    rows = np.flatnonzero(a_inv.reshape(-1) == gid)[:4]
                    examples.append([f"{own[r]} #{int(ix[r])}" for r in rows])
                for g in examples[:4]:
                    sa, ia = g[0].split(" #")
                    sb, ib = g[1].split(" #")
                    report.duplicate_pairs.append((sa, int(ia), sb, int(ib)))
                shown = "; ".join(" ~ ".join(g[:2]) for g in examples[:3])
                issues.append(
                    DataIssue(
                        "near_duplicates",
                        "warn",
                        f"{'+'.join(near_names)}: {near_groups.size} groups of near-duplicate images (same 8x8 "
                        f"average hash, different bytes: {shown}); look at them and deduplicate.",
                        None,
                        {"groups": int(near_groups.size), "examples": examples},
                    )
                )

    issues.extend(extra)
    order = {k: i for i, k in enumerate(_ORDER)}
    issues.sort(key=lambda i: order.get(i.issue, len(order)))
    total = sum(s.count for s in splits.values())
    problems = [i for i in issues if i.status != "pass"]
    if not problems:
        text = ", ".join(f"{n} {s.count}" for n, s in splits.items())
        message = (
            f"{text} samples: no duplicates, train/val overlap, NaN/Inf, blank samples, labels out of range, "
            "missing classes, imbalance or outliers found"
        )
    else:
        message = f"{len(problems)} problem(s) in {total} samples; see the other findings"
    tokens = "; ".join(
        w for w in (_token_words(n, report.splits[n], s.ignore_index) for n, s in splits.items()) if w
    )
    if tokens:
        message += f" (tokens: {tokens})"
    issues.append(
        DataIssue(
            "summary",
            "pass",
            message,
            None,
            {n: {k: v for k, v in s.items() if k != "class_counts"} for n, s in report.splits.items()},
        )
    )
    report.issues = issues
    return report
