"""BatchInspector without Lightning: the findings of an inspected batch and the text it logs.

The statistics and diagnoses are :mod:`lightning_recipe.core.inputs`; this module turns them into
findings (each problem once, a ``pass`` for a clean first batch) and words the Text cards:
``channel_stats``, ``rows`` (tabular samples) and ``decoded`` (token ids).

Example:
    >>> import torch
    >>> from lightning_recipe.core.inputs import input_stats
    >>> stats = input_stats(torch.rand(16, 4) * 255, "tabular")
    >>> seen = set()
    >>> [(status, message.split(" (")[0]) for status, message, _ in batch_findings(stats, seen, first=True)]
    [('warn', 'inputs are not normalised')]
    >>> batch_findings(stats, seen, first=False)   # the same problem again: no new finding
    []
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lightning_recipe.core.alignment import label_map, mask_alignment
from lightning_recipe.core.format import sig
from lightning_recipe.core.inputs import (
    CONSTANT_STD,
    NORMALISED_SCALE,
    InputStats,
    diagnose_inputs,
    markdown_table,
)
from lightning_recipe.core.tasks import LabelConvention, relation_to_inputs

__all__ = [
    "IGNORE_INDEX",
    "MaskAlignment",
    "batch_findings",
    "batch_numbers",
    "check_arguments",
    "denormalized",
    "grid_title",
    "histogram_values",
    "label_text",
    "labels_shifted_twice",
    "loss_ignore_index",
    "mask_of",
    "naming",
    "padding_in_loss",
    "rows_table",
    "sample_labels",
    "split_inspected",
    "stats_table",
    "tokens_text",
    "with_once",
]

Verdict = tuple[str, str, dict[str, Any]]

#: The label of a position the loss ignores: PyTorch's ``cross_entropy`` default and the Hugging
#: Face convention (its models' losses and data collators use it).
IGNORE_INDEX = -100


def label_text(target: Any, class_names: Sequence[str] | None = None) -> str:
    """A short label for one sample's target: a class name, a number, or the active labels of a multi-hot row.

    Example:
        >>> label_text(torch.tensor(3)), label_text(torch.tensor(2.5)), label_text(torch.tensor([0.0, 1, 1]))
        ('3', '2.5', '1,2')
        >>> label_text(torch.tensor(1), ["cat", "dog"])
        'dog'
    """
    t = torch.as_tensor(target).detach().cpu()
    if t.numel() == 1:
        v = t.reshape(()).item()
        if not t.is_floating_point() or (float(v).is_integer() and class_names is not None):
            i = int(v)
            if class_names is not None and 0 <= i < len(class_names):
                return str(class_names[i])
            return str(i)
        return sig(v)
    flat = t.reshape(-1)
    if bool(((flat == 0) | (flat == 1)).all()):
        active = torch.nonzero(flat).reshape(-1).tolist()
        names = [
            str(class_names[i]) if class_names is not None and i < len(class_names) else str(i)
            for i in active
        ]
        text = ",".join(names[:4]) + ("…" if len(names) > 4 else "")
        return text or "none"
    return ",".join(sig(v, 2) for v in flat[:3].tolist()) + ("…" if flat.numel() > 3 else "")


def mask_of(sample: torch.Tensor, targets: Any) -> np.ndarray | None:
    """The per-pixel targets of the first ``len(sample)`` images as an ``(n, H, W)`` label map
    (:func:`~lightning_recipe.core.alignment.label_map`), or ``None`` when the targets are no masks."""
    if not isinstance(targets, torch.Tensor) or not sample.dim() or targets.shape[:1] < sample.shape[:1]:
        return None
    found = label_map(sample, targets[: len(sample)].detach().cpu())
    return None if found is None else found.numpy()


def sample_labels(
    targets: Any, n: int, class_names: Sequence[str] | None = None, masks: np.ndarray | None = None
) -> list[str] | None:
    """The labels of the first ``n`` samples, or ``None`` when the targets are not one tensor row per
    sample; for ``masks`` (:func:`mask_of`), the classes each one holds.

    Example:
        >>> sample_labels(torch.tensor([2, 0]), 2)
        ['2', '0']
        >>> sample_labels(None, 2, masks=np.array([[[0, 1], [1, 1]], [[0, 0], [0, 0]]]))
        ['mask 0,1', 'mask 0']
    """
    if masks is not None:
        out = []
        for m in masks:
            names = [label_text(torch.tensor(int(c)), class_names) for c in np.unique(m)]
            out.append("mask " + ",".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else ""))
        return out
    if isinstance(targets, torch.Tensor) and targets.dim() and targets.shape[0] >= n:
        return [label_text(t, class_names) for t in targets[:n].detach().cpu()]
    return None


def naming(err: Exception, argument: str) -> str:
    """The reason in ``err`` as one line that ends by naming the argument resolving it."""
    text = str(err).strip().rstrip(".")
    return text + ("." if f"`{argument}=`" in text else f"; pass `{argument}=`.")


# ---------------------------------------------------------------------- findings
def batch_numbers(stats: InputStats) -> dict[str, Any]:
    """The numbers every finding of a batch carries."""
    return {
        "layout": stats.layout,
        "shape": list(stats.shape),
        "mean": stats.overall_mean,
        "std": stats.overall_std,
        "min": stats.overall_min,
        "max": stats.overall_max,
    }


def batch_findings(
    stats: InputStats,
    seen: set[str],
    first: bool,
    scale: float = NORMALISED_SCALE,
    constant_std: float = CONSTANT_STD,
) -> list[Verdict]:
    """``(status, message, numbers)`` of one inspected batch: each diagnosis whose code is not in
    ``seen`` (added to it), and, for the ``first`` batch without any, a ``pass`` with its numbers."""
    numbers = batch_numbers(stats)
    diagnoses = diagnose_inputs(stats, scale=scale, constant_std=constant_std)
    out: list[Verdict] = []
    for d in diagnoses:
        if d.code not in seen:
            seen.add(d.code)
            out.append((d.status, d.message, {**numbers, **d.numbers}))
    if first and not diagnoses:
        message = (
            f"{stats.layout} inputs {tuple(stats.shape)} ({stats.dtype}): mean {sig(stats.overall_mean)}, "
            f"std {sig(stats.overall_std)}, range {sig(stats.overall_min)} to {sig(stats.overall_max)}; no NaN/Inf"
        )
        out.append(("pass", message, numbers))
    return out


def _loss_mask(
    batch: Mapping, labels: torch.Tensor, convention: LabelConvention
) -> tuple[str, torch.Tensor] | None:
    """The mask saying which label positions are padding: the decoder's in an encoder-decoder batch
    (never the encoder's ``attention_mask``: the labels are another sequence, whatever its length)."""
    lowered = {str(k).lower(): k for k in batch}
    seq2seq = (
        convention.encoder_decoder or "decoder_input_ids" in lowered or "decoder_attention_mask" in lowered
    )
    name = "decoder_attention_mask" if seq2seq else "attention_mask"
    mask = batch.get(lowered[name]) if name in lowered else None
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(labels.shape):
        return None
    return str(lowered[name]), mask


def _trailing_pads(labels: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Per position: a ``pad_id`` after the last other label of its row (padding at the end)."""
    is_pad = labels == pad_id
    # a position is trailing padding when it and every position after it are pad ids
    return is_pad.flip(1).long().cumprod(1).flip(1).bool()


def padding_in_loss(
    batch: Any, labels: Any, ignore_index: int = IGNORE_INDEX, convention: LabelConvention | None = None
) -> Verdict | None:
    """A ``warn`` when padding positions (``attention_mask == 0``) carry a label the loss trains on.

    Applies to dict batches whose ``attention_mask`` (``decoder_attention_mask`` in an
    encoder-decoder batch) has the shape of integer ``labels`` ``(N, T)``: a loss position is one
    whose label is not ``ignore_index``. In an encoder-decoder batch without a decoder mask
    (``convention.encoder_decoder``, the usual Hugging Face seq2seq batch), the padding is the run of
    ``convention.pad_id`` that ends a label row. ``None`` when no padding position is in the loss,
    or the batch has no such mask.

    Example:
        >>> ids = torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0]])
        >>> batch = {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": ids.clone()}
        >>> status, message, numbers = padding_in_loss(batch, batch["labels"])
        >>> status, numbers["padding_in_loss"], numbers["loss_positions"]
        ('warn', 3, 8)
        >>> batch["labels"][batch["attention_mask"] == 0] = -100        # the fix
        >>> padding_in_loss(batch, batch["labels"]) is None
        True
    """
    convention = convention or LabelConvention()
    if not isinstance(batch, Mapping) or not isinstance(labels, torch.Tensor) or labels.dim() != 2:
        return None
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        return None
    in_loss = labels.detach() != ignore_index
    found = _loss_mask(batch, labels, convention)
    if found is not None:
        key, mask = found
        padding = mask.detach().to(labels.device) == 0
        where = f"{key} == 0 but labels != {ignore_index}"
        fix = f"`labels[{key} == 0] = {ignore_index}`"
    elif convention.encoder_decoder and convention.pad_id is not None and convention.pad_id != ignore_index:
        key, padding = "pad_token_id", _trailing_pads(labels.detach(), convention.pad_id)
        where = (
            f"labels == pad_token_id {convention.pad_id} after the end of each target sequence, in an "
            "encoder-decoder batch without a decoder_attention_mask"
        )
        fix = f"`labels[labels == {convention.pad_id}] = {ignore_index}`"
    else:
        return None
    counts = torch.stack([in_loss.sum(), (in_loss & padding).sum(), padding.sum()]).cpu().tolist()
    loss_positions, bad, pads = (int(c) for c in counts)
    if bad == 0:
        return None
    frac = bad / max(loss_positions, 1)
    message = (
        f"the loss trains on padding: {bad} of the {loss_positions} loss positions ({frac:.1%}) are padding "
        f"({where}); the model learns to predict padding and the loss "
        f"is diluted by it. Set the labels of padded positions to {ignore_index} "
        f"({fix}; Hugging Face's DataCollatorForLanguageModeling and "
        "DataCollatorForSeq2Seq do it). If your loss ignores another label, pass `ignore_index=`; if it "
        "masks padding itself, `check_padding=False`."
    )
    numbers = {
        "padding_in_loss": bad,
        "loss_positions": loss_positions,
        "padding_positions": pads,
        "padding_fraction": frac,
        "ignore_index": ignore_index,
        "mask_key": key,
    }
    return "warn", message, numbers


def labels_shifted_twice(
    batch: Any, labels: Any, ignore_index: int = IGNORE_INDEX, convention: LabelConvention | None = None
) -> Verdict | None:
    """A ``warn`` when a Hugging Face causal language model, which shifts its labels by one inside its
    loss (``convention.shifts_inside``), gets labels that already are the input ids one position
    ahead: shifted twice, it learns to predict the token after the next.

    Example:
        >>> ids = torch.tensor([[5, 6, 7, 8, 9], [4, 2, 6, 1, 3]])
        >>> shifted = torch.cat([ids[:, 1:], torch.full((2, 1), -100)], 1)
        >>> causal = LabelConvention(shifts_inside="GPT2LMHeadModel")
        >>> labels_shifted_twice({"input_ids": ids, "labels": shifted}, shifted, convention=causal)[0]
        'warn'
        >>> labels_shifted_twice({"input_ids": ids, "labels": ids}, ids, convention=causal) is None  # as HF wants
        True
    """
    if convention is None or convention.shifts_inside is None or not isinstance(batch, Mapping):
        return None
    if not isinstance(labels, torch.Tensor) or labels.dim() != 2 or labels.shape[1] < 3:
        return None
    if relation_to_inputs(labels, batch, ignore_index) != "shifted":
        return None
    message = (
        f"the labels are already the input ids one position ahead (labels[:, t] == input_ids[:, t + 1]), "
        f"and {convention.shifts_inside} shifts them by one again inside its loss: it learns to predict "
        "the token after the next. Pass `labels=input_ids` (padding set to "
        f"{ignore_index}); the model does the shift"
    )
    return "warn", message, {"model": convention.shifts_inside, "relation": "shifted"}


# ---------------------------------------------------------------------- what is logged
def stats_table(stats: InputStats) -> str:
    """``channel_stats``: the batch's numbers, then mean/std/min/max per channel or feature (at most 32)."""
    rows = [
        [i, float(stats.mean[i]), float(stats.std[i]), float(stats.min[i]), float(stats.max[i])]
        for i in range(min(len(stats.mean), 32))
    ]
    head = (
        f"**{stats.layout}** batch {tuple(stats.shape)} `{stats.dtype}`: mean {sig(stats.overall_mean, 4)}, "
        f"std {sig(stats.overall_std, 4)}, min {sig(stats.overall_min, 4)}, max {sig(stats.overall_max, 4)}, "
        f"NaN {stats.nan}, Inf {stats.inf}\n\n"
    )
    return head + markdown_table([stats.channel_name, "mean", "std", "min", "max"], rows, max_rows=32)


def rows_table(sample: torch.Tensor, labels: list[str] | None) -> str:
    """``rows``: tabular samples ``(n, F)`` as a Markdown table, the label first (16 rows, 14 columns at most)."""
    header = ["#", *(["label"] if labels else []), *[f"x{j}" for j in range(sample.shape[1])]]
    rows = [
        [i, *([labels[i]] if labels else []), *sample[i].double().tolist()] for i in range(sample.shape[0])
    ]
    return markdown_table(header, rows, max_rows=min(sample.shape[0], 16), max_cols=14)


def tokens_text(
    sample: torch.Tensor, labels: list[str] | None, decode: Callable[[torch.Tensor], str] | None
) -> str:
    """``decoded``: each sample's token ids through ``decode`` (the first 64 ids without it), the label in bold."""
    lines = []
    for i in range(sample.shape[0]):
        ids = sample[i].reshape(-1)
        if decode is not None:
            try:
                text = str(decode(ids))
            except Exception as err:
                raise RuntimeError(
                    f"BatchInspector(decode=...): the callable failed on token ids of shape "
                    f"{tuple(ids.shape)}: {type(err).__name__}: {err}"
                ) from err
        else:
            shown = ids[:64].tolist()
            text = " ".join(str(t) for t in shown) + (" …" if ids.numel() > 64 else "")
        label = f" **[{labels[i]}]**" if labels else ""
        text = text.replace("\n", " ")
        lines.append(f"{i}.{label} `{text}`" if decode is None else f"{i}.{label} {text}")
    return "\n\n".join(lines)


def denormalized(
    sample: torch.Tensor, denormalize: Callable[[torch.Tensor], torch.Tensor] | None
) -> torch.Tensor:
    """The image samples as float, through ``denormalize`` (on a copy) when given."""
    shown = sample.float()
    if denormalize is None:
        return shown
    try:
        return torch.as_tensor(denormalize(shown.clone())).float()
    except Exception as err:
        raise RuntimeError(
            f"BatchInspector(denormalize=...): the callable failed on a CPU tensor of shape "
            f"{tuple(shown.shape)}: {type(err).__name__}: {err}"
        ) from err


def grid_title(stats: InputStats, step: int, denormalized: bool) -> str:
    """The title of the image grid: step, shape, dtype, mean and std of the batch."""
    return (
        f"step {step}: {tuple(stats.shape)} {stats.dtype}, mean {sig(stats.overall_mean)}, "
        f"std {sig(stats.overall_std)}" + (" (denormalized)" if denormalized else "")
    )


def no_targets(batch: Any) -> None:
    """A ``target_key`` that finds no targets: the inputs alone are still worth showing."""
    return None


def loss_ignore_index(module: torch.nn.Module) -> int:
    """The ``ignore_index`` of the first loss module of ``module`` that sets one other than -100, else -100."""
    for sub in module.modules():
        value = getattr(sub, "ignore_index", None)
        if isinstance(sub, torch.nn.modules.loss._Loss) and isinstance(value, int) and value != IGNORE_INDEX:
            return value
    return IGNORE_INDEX


def check_arguments(
    owner: str,
    num_samples: Any,
    denormalize: Any,
    decode: Any,
    class_names: Any,
    normalised_scale: Any,
    constant_std: Any,
    ignore_index: Any,
) -> None:
    """Validate BatchInspector's counts, callables, names, thresholds and ``ignore_index``."""
    from lightning_recipe.core.arguments import check_positive_int

    check_positive_int(owner, "num_samples", num_samples)
    for name, fn in (("denormalize", denormalize), ("decode", decode)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{owner}({name}={fn!r}): pass a callable or None.")
    if class_names is not None and (isinstance(class_names, str) or not isinstance(class_names, Sequence)):
        raise TypeError(f"{owner}(class_names={class_names!r}): pass a list of names, one per class index.")
    for name, value in (("normalised_scale", normalised_scale), ("constant_std", constant_std)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{owner}({name}={value!r}): pass a positive number.")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(
            f"{owner}(ignore_index={ignore_index!r}): pass the integer label your loss ignores "
            "(e.g. -100) or None."
        )


def split_inspected(batch: Any, input_key: Any, target_key: Any) -> tuple[Any, str | None, str | None]:
    """``(parts, code, message)``: the split batch, or the inputs alone when the targets cannot be
    inferred (code ``"no_targets"``), or ``None`` when the inputs cannot (code ``"split"``); the
    message names the argument that resolves it. ``ArgumentError`` (an explicit key that does not
    fit) propagates."""
    from lightning_recipe.core.batches import split_batch
    from lightning_recipe.core.errors import ArgumentError

    try:
        return split_batch(batch, input_key=input_key, target_key=target_key), None, None
    except ArgumentError:
        raise
    except ValueError as err:
        target_err = err
    try:
        parts = split_batch(batch, input_key=input_key, target_key=no_targets)
    except ArgumentError:
        raise
    except ValueError as err:
        return None, "split", f"skipped, because {naming(err, 'input_key')}"
    message = f"labels skipped (the inputs are shown), because {naming(target_err, 'target_key')}"
    return parts, "no_targets", message


def with_once(verdicts: list[Any], extra: Mapping[str, Verdict | None], seen: set[str]) -> list[Any]:
    """The batch's verdicts with each verdict of ``extra`` (by its code, once per run) first; any of
    them replaces the first batch's ``pass``.

    Example:
        >>> seen = set()
        >>> with_once([("pass", "clean", {})], {"padding_in_loss": ("warn", "padding", {})}, seen)
        [('warn', 'padding', {})]
        >>> with_once([], {"padding_in_loss": ("warn", "padding", {})}, seen)   # said already
        []
    """
    new = {code: v for code, v in extra.items() if v is not None and code not in seen}
    if not new:
        return verdicts
    seen.update(new)
    return [*new.values(), *(v for v in verdicts if v[0] != "pass")]


def _binomial_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``, summed in log space (no overflow for large ``n``).

    Example:
        >>> round(_binomial_tail(2, 3, 0.5), 3), _binomial_tail(0, 5000, 0.08)
        (0.5, 1.0)
    """
    if k <= 0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k, n + 1)
    ]
    top = max(terms, default=-math.inf)
    return 0.0 if top == -math.inf else min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


class MaskAlignment:
    """Per-pixel targets against their images (:func:`~lightning_recipe.core.alignment.mask_alignment`),
    summed over the inspected batches (at most :attr:`per_batch` samples each, subsampled to at most
    :attr:`max_side` pixels a side) until :attr:`least` samples with a mask boundary were seen.

    :meth:`add` returns a ``warn`` when more of them fit their images better mirrored than as given
    than healthy masks do by chance: at least :attr:`count`, and so many that a rate of
    :attr:`base_rate` (healthy digits, photographs, coarse or dilated masks and noisy images came to
    0-9%) would give as many with a chance below :attr:`alpha` (16 samples: 7 at least; 128: 22);
    and one mirroring accounts for :attr:`dominant` of them (a real bug applies one transform; masks
    off the edges for another reason fit some random mirroring). After the warning, or after
    :attr:`most` samples without one, it stops scoring; the callback records it once (``with_once``).

    Example:
        >>> x = torch.zeros(8, 1, 16, 16)
        >>> x[:, :, 4:12, 2:7] = 1.0
        >>> masks = (x[:, 0] > 0.5).long()
        >>> MaskAlignment().add(x, masks, step=0) is None           # masks on their squares
        True
        >>> status, message, numbers = MaskAlignment().add(x, masks.flip(-1), step=0)
        >>> status, numbers["misaligned"], numbers["how"]
        ('warn', 8, 'mirrored left-right')
    """

    least, count, base_rate, alpha, dominant = 8, 3, 0.08, 1e-3, 0.7
    per_batch, max_side, most = 16, 256, 256

    def __init__(self) -> None:
        self.bounded = self.misaligned = 0
        self.how: Counter[str] = Counter()
        self.examples: list[tuple[int, int]] = []
        self.done = False

    def add(self, x: torch.Tensor, targets: Any, step: int) -> Verdict | None:
        """Score one batch; the ``warn`` when the sums so far show misaligned masks, else ``None``."""
        if self.done or not isinstance(targets, torch.Tensor) or x.dim() not in (3, 4) or targets.dim() < 3:
            return None
        stride = max(1, -(-max(x.shape[-2:]) // self.max_side))
        x = x[: self.per_batch, ..., ::stride, ::stride]
        targets = targets[: self.per_batch, ..., ::stride, ::stride]
        found = mask_alignment(x, targets)
        self.bounded += len(found.bounded)
        self.misaligned += len(found.misaligned)
        self.how.update(found.how)
        self.examples += [(step, i) for i in found.misaligned][: max(0, 10 - len(self.examples))]
        n, k = self.bounded, self.misaligned
        if n < self.least or k < self.count or _binomial_tail(k, n, self.base_rate) > self.alpha:
            self.done = n >= self.most  # judged on enough samples: silent from here on
            return None
        how, most = self.how.most_common(1)[0]
        if most < self.dominant * k:
            return None
        self.done = True
        shown = ", ".join(f"sample {i} at step {s}" for s, i in self.examples[:5])
        message = (
            f"the per-pixel targets fit their images' outlines better {how} than as given in {k} of {n} "
            f"samples ({shown}): is a flip, 180° rotation or transpose applied to the images and not to "
            "their masks, or the other way round (the recipe's labels not flipped with the images)? Draw "
            "one random transform per sample and apply it to both."
        )
        numbers = {"misaligned": k, "judged": n, "how": how, "examples": [list(e) for e in self.examples]}
        return "warn", message, numbers


def histogram_values(x: torch.Tensor, limit: int) -> torch.Tensor:
    """At most ``limit`` of the batch's values (evenly spaced through it) as a float CPU tensor."""
    flat = x.detach().reshape(-1)
    if flat.numel() > limit:
        flat = flat[torch.linspace(0, flat.numel() - 1, limit, device=flat.device).long()]
    return flat.float().cpu()
