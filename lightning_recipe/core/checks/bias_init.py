"""The "init well" step without Lightning: find the final layer, resolve the task, fit the target
statistics to the layer's width, compute the bias and word the finding.

:class:`~lightning_recipe.callbacks.bias_init.FinalBiasInit` is the Lightning adapter; every
function here raises :class:`~lightning_recipe.findings.Skip` when the bias cannot be set (the
message names the argument to pass), and returns plain values otherwise.

Example:
    >>> import torch
    >>> from lightning_recipe.core.stats import TargetStats
    >>> stats = TargetStats.from_targets(torch.tensor([0, 0, 0, 1]), "multiclass", num_classes=2)
    >>> init = bias_from_stats(stats, "multiclass", width=2, layer="head")[1]
    >>> [round(v, 2) for v in torch.softmax(init.bias, 0).tolist()]
    [0.75, 0.25]
    >>> status, message, numbers = bias_finding(
    ...     "multiclass", "head", "Linear", 2, "4 training targets", stats, init
    ... )
    >>> status, message.split(";")[0]
    ('pass', "set the final bias of 'head' (Linear, 2 outputs) to log(prior) of 4 training targets")
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from lightning_recipe.core.batches import split_batch
from lightning_recipe.core.budget import OneTimeBudget
from lightning_recipe.core.checks.data_inspector import budget_samples
from lightning_recipe.core.data_scan import ScanPlan, is_map_style, plan_split
from lightning_recipe.core.init_values import (
    InitBias,
    data_losses,
    default_loss,
    init_bias,
    uninformative_label,
)
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.stats import (
    UNSIZED_MAX_BATCHES,
    TargetStats,
    collect_target_stats,
    is_one_shot,
    targets_from_dataset,
)
from lightning_recipe.core.tasks import infer_task
from lightning_recipe.core.tracing import find_layer, trace_layers
from lightning_recipe.findings import ArgumentError, Skip

__all__ = [
    "MANUAL_OPTIMIZATION",
    "FinalLayer",
    "bias_finding",
    "bias_from_stats",
    "budgeted_target_stats",
    "check_arguments",
    "check_layer_and_index",
    "check_manual_optimization",
    "checked_given",
    "checked_mean",
    "checked_priors",
    "expected_losses",
    "figure_inputs",
    "final_layer",
    "first_batch",
    "given_bias",
    "last_class",
    "loss_scalars",
    "merge_stats",
    "read_first_batch",
    "resolve_task",
    "resume_finding",
    "split_first_batch",
    "subset_plan",
    "target_stats",
    "unsized_batches",
]

#: why it does not run under manual optimization unless told what to set
MANUAL_OPTIMIZATION = (
    "skipped, because the module uses manual optimization: its last layer and the loss passed to "
    "backward need not be the task's (a GAN's discriminator, say); pass `task=` or `layer=` to set it"
)

_WHAT = {
    "multiclass": "log(prior)",
    "binary": "log-odds of the label prior",
    "multilabel": "log-odds of the label priors",
    "regression": "the target mean",
}


# ---------------------------------------------------------------------- arguments
def check_layer_and_index(owner: str, layer: Any, ignore_index: Any) -> None:
    """``TypeError`` naming ``owner`` unless ``layer`` is ``None`` or a module name and
    ``ignore_index`` is ``None`` or an integer label (shared by the two steps at init)."""
    if layer is not None and (not isinstance(layer, str) or not layer):
        raise TypeError(f"{owner}(layer={layer!r}): pass the qualified name of a module, e.g. 'head.fc'.")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f"{owner}(ignore_index={ignore_index!r}): pass an integer label or None.")


def check_arguments(
    task: Any,
    layer: Any,
    ignore_index: Any,
    max_batches: Any,
    input_key: Any,
    target_key: Any,
    priors: Any,
    target_mean: Any,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Validate FinalBiasInit's arguments (``task``, ``layer`` and ``ignore_index``, ``max_batches``, the
    keys, then ``priors`` / ``target_mean``: :func:`checked_given`); returns ``(priors, target_mean)``."""
    owner = "FinalBiasInit"
    from lightning_recipe.core.arguments import check_positive_int
    from lightning_recipe.core.batches import validate_key_spec
    from lightning_recipe.core.tasks import check_task_argument

    check_task_argument(task, owner)
    check_layer_and_index(owner, layer, ignore_index)
    check_positive_int(owner, "max_batches", max_batches, allow_none=True)
    validate_key_spec(input_key, owner, "input_key")
    validate_key_spec(target_key, owner, "target_key")
    return checked_given(task, priors, target_mean)


def check_manual_optimization(
    automatic_optimization: bool, task: str, layer: str | None, given: bool
) -> None:
    """:class:`Skip` (:data:`MANUAL_OPTIMIZATION`) under manual optimization, unless the ``task``, the
    ``layer`` or the values to set (``given``) are passed."""
    if not automatic_optimization and task == "auto" and layer is None and not given:
        raise Skip(MANUAL_OPTIMIZATION)


def checked_priors(priors: Any) -> torch.Tensor:
    """``priors=`` as a flat float64 tensor of frequencies in [0, 1]; ``TypeError``/``ValueError`` otherwise."""
    try:
        p = torch.as_tensor(priors, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"FinalBiasInit(priors={priors!r}): pass a sequence of class frequencies.") from err
    if p.numel() == 0 or not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or bool((p > 1).any()):
        raise ValueError(
            f"FinalBiasInit(priors={priors!r}): pass frequencies between 0 and 1 (one per class, summing to 1, "
            "or one per label)."
        )
    return p


def checked_mean(mean: Any) -> torch.Tensor:
    """``target_mean=`` as a flat float64 tensor of finite numbers; ``TypeError``/``ValueError`` otherwise."""
    try:
        m = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"FinalBiasInit(target_mean={mean!r}): pass a number or one number per output."
        ) from err
    if m.numel() == 0 or not bool(torch.isfinite(m).all()):
        raise ValueError(f"FinalBiasInit(target_mean={mean!r}): pass finite numbers.")
    return m


def checked_given(
    task: str, priors: Any, target_mean: Any
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``priors=`` and ``target_mean=`` checked against each other and ``task``, as tensors (or ``None``)."""
    if priors is not None and target_mean is not None:
        raise ValueError(
            "FinalBiasInit: pass either priors= (classification) or target_mean= (regression), not both."
        )
    p = None if priors is None else checked_priors(priors)
    m = None if target_mean is None else checked_mean(target_mean)
    if p is not None and task == "regression":
        raise ValueError(
            "FinalBiasInit(task='regression', priors=...): regression takes target_mean=, not priors=."
        )
    if m is not None and task not in ("auto", "regression"):
        raise ValueError(
            f"FinalBiasInit(task={task!r}, target_mean=...): target_mean= is for task='regression'."
        )
    return p, m


def resume_finding(
    done: bool, applied: bool, layer_name: str | None, global_step: int
) -> tuple[str, dict[str, Any]] | None:
    """``(message, numbers)`` of the ``skipped`` finding of a resumed run (``None``: a fresh run at
    step 0, where the bias is set): done in the resumed run, or resumed mid-training without it."""
    if done:
        where = f" of {layer_name!r}" if layer_name else ""
        return (
            f"resumed from a checkpoint: the final bias{where} was set when that run started and is not "
            "re-initialised",
            {"applied": applied, "layer": layer_name},
        )
    if global_step > 0:
        return (
            f"training is already at step {global_step} (resumed without this callback's state); "
            "the bias is not re-initialised mid-training",
            {"global_step": global_step},
        )
    return None


# ---------------------------------------------------------------------- the data
def unsized_batches(limit_train_batches: Any) -> int:
    """How many batches to read from a training loader without ``len()``: ``limit_train_batches`` if
    it is a count, else :data:`~lightning_recipe.core.stats.UNSIZED_MAX_BATCHES`."""
    limit = limit_train_batches
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        return limit
    return UNSIZED_MAX_BATCHES


def first_batch(loader: Any) -> Any:
    """A first batch: the dataset's first items collated (no sampler, no workers), else ``next(iter(loader))``."""
    dataset = getattr(loader, "dataset", None)
    batch_size = getattr(loader, "batch_size", None)
    collate = getattr(loader, "collate_fn", None)
    if (
        dataset is not None
        and batch_size
        and collate is not None
        and not isinstance(dataset, IterableDataset)
    ):
        try:
            n = min(int(batch_size), len(dataset))
            if n > 0:
                return collate([dataset[i] for i in range(n)])
        except Exception:
            pass
    return next(iter(loader))


def read_first_batch(
    module: nn.Module, loader: Any, layer: str | None, given: bool, to_device: Callable[[Any], Any]
) -> tuple[Any, Any]:
    """``(loader, batch)``: the training ``loader`` (``None`` for a one-shot iterator, which is not
    read) and its first batch moved by ``to_device`` (``None`` if none could be read and ``layer``
    names the final layer). The module's and the loader's random states are restored, so training
    draws the same order as without the check."""
    if loader is not None and is_one_shot(loader):
        if layer is None or not given:
            raise Skip(
                "skipped, because the training data is a one-shot iterator: reading targets from it would "
                "take them from training; pass `layer=` and `priors=` / `target_mean=`"
            )
        return None, None
    if loader is None:
        if layer is None:
            raise Skip("found no training dataloader to trace the model with; pass `layer=`")
        return None, None
    with preserved_state(module, loaders=[loader]):
        try:
            return loader, to_device(first_batch(loader))
        except Exception as err:
            if layer is None:
                raise Skip(
                    f"could not read a first training batch ({type(err).__name__}: {err}); pass `layer=`"
                ) from err
    return loader, None


def split_first_batch(batch: Any, input_key: Any, target_key: Any) -> Any:
    """The first batch split into inputs and targets (``None`` without a batch); :class:`Skip` with
    the reason when its layout cannot be read."""
    if batch is None:
        return None
    try:
        return split_batch(batch, input_key=input_key, target_key=target_key, require_targets=False)
    except ValueError as err:
        raise Skip(str(err)) from err


def subset_plan(loader: Any, max_samples: int | None, rank: int = 0, world_size: int = 1) -> ScanPlan | None:
    """A fixed random subset of ``max_samples`` samples (seed 0, sharded over the ranks) to read the
    targets from, when the loader would have to be iterated whole: a map-style dataset longer than
    ``max_samples`` without targets to read directly (no ``targets``/``labels``, not a
    ``TensorDataset``); else ``None`` (the dataset's targets are read, or the loader is iterated as before).

    Example:
        >>> from torch.utils.data import DataLoader
        >>> samples = [{"x": torch.zeros(2), "label": i % 3} for i in range(10_000)]
        >>> plan = subset_plan(DataLoader(samples, batch_size=100), max_samples=4096)
        >>> len(plan.indices), plan.batches
        (4096, 41)
        >>> subset_plan(DataLoader(samples, batch_size=100), max_samples=20_000) is None
        True
    """
    dataset = getattr(loader, "dataset", None)
    if max_samples is None or not isinstance(loader, DataLoader) or not is_map_style(dataset):
        return None
    if loader.batch_size is None and loader.batch_sampler is None:
        return None  # auto-batching off: the dataset yields whole batches
    if len(dataset) <= max_samples or targets_from_dataset(dataset) is not None:
        return None
    return plan_split(loader, None, max_samples, rank, world_size)


def target_stats(
    module: nn.Module,
    loader: Any,
    task: str,
    max_samples: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    **kwargs: Any,
) -> TargetStats:
    """:func:`~lightning_recipe.core.stats.collect_target_stats` of the loader (its dataset first),
    random states restored; ``kwargs`` go to it. ``max_samples``: where the loader would be iterated
    whole, read a fixed random subset of that many samples instead (:func:`subset_plan`; the
    statistics are then ``estimated``). :class:`Skip` when they cannot be computed."""
    try:
        with preserved_state(module, loaders=[loader]):
            plan = (
                subset_plan(loader, max_samples, rank, world_size)
                if kwargs.get("max_batches") is None
                else None
            )
            if plan is not None:
                stats = collect_target_stats(task, dataloader=plan.loader, **kwargs)  # type: ignore[arg-type]
                stats.estimated = True
                stats.subset = max_samples
                return stats
            return collect_target_stats(
                task,  # type: ignore[arg-type]
                dataset=getattr(loader, "dataset", None),
                dataloader=loader,
                **kwargs,
            )
    except ValueError as err:
        raise Skip(f"could not compute the target statistics: {err}") from err


def budgeted_target_stats(
    module: nn.Module, loader: Any, task: str, budget: OneTimeBudget | None, owner: str, **kwargs: Any
) -> tuple[TargetStats, str | None]:
    """:func:`target_stats` within ``owner``'s part of a one-time ``budget`` (``None``: no budget):
    a loader that would be iterated whole is read from a fixed random subset of what that part of
    the planned run trains on (:func:`~lightning_recipe.core.checks.data_inspector.budget_samples`).
    Returns the statistics and the budget sentence of the finding (``None`` when read as without one)."""
    cap = None
    if budget is not None:
        cap = budget_samples(
            budget.fraction(owner), budget.planned_steps, getattr(loader, "batch_size", None)
        )
    start = time.perf_counter()
    stats = target_stats(module, loader, task, max_samples=cap, **kwargs)
    if budget is None or cap is None or stats.subset is None:
        return stats, None
    budget.charge(owner, time.perf_counter() - start)
    return stats, budget.note(owner, cap, False, "samples at most")


def last_class(stats: TargetStats) -> int:
    """The highest class index with a non-zero count (-1 when there is none)."""
    counts = stats.class_counts
    if counts is None or not bool((counts > 0).any()):
        return -1
    return int(torch.nonzero(counts > 0).flatten().max())


# ---------------------------------------------------------------------- the layer and the task
@dataclass
class FinalLayer:
    """The layer whose bias is set, and the model's output on the first batch (if it ran)."""

    name: str
    module: nn.Module
    bias: torch.Tensor
    outputs: torch.Tensor | None

    @property
    def width(self) -> int:
        return int(self.bias.numel())

    @property
    def values_per_sample(self) -> int | None:
        """How many values the model outputs per sample (``None`` when it did not run)."""
        out = self.outputs
        return int(out[0].numel()) if isinstance(out, torch.Tensor) and out.dim() >= 1 and len(out) else None

    def set_bias(self, values: torch.Tensor) -> None:
        """Copy ``values`` into the layer's bias (its shape, dtype and device), outside autograd."""
        with torch.no_grad():
            self.bias.copy_(
                values.reshape(self.bias.shape).to(dtype=self.bias.dtype, device=self.bias.device)
            )


def final_layer(
    module: nn.Module,
    batch: Any,
    layer: str | None,
    call: ModelCall,
    context: contextlib.AbstractContextManager[Any] | None = None,
) -> FinalLayer:
    """Trace one eval-mode forward of ``module`` on ``batch`` (through ``call``) and return the
    final layer: the named ``layer``, else the last parametric leaf that ran. ``batch=None`` (no
    batch to trace with) needs ``layer``. ``context``: the precision context of the forward."""
    outputs = None
    trace = None
    if batch is not None:
        try:
            trace = trace_layers(module, lambda m: call(m, batch, train=False, context=context))
            outputs = trace.output.logits
        except Exception as err:
            if layer is None:
                raise Skip(
                    f"could not run the model's forward on the first batch ({type(err).__name__}: {err}); "
                    "pass `layer=` (and `input_key=`)"
                ) from err
    if layer is not None:
        found, name = find_layer(module, layer, "FinalBiasInit(layer=...)"), layer
    else:
        assert trace is not None
        if trace.final is None:
            raise Skip("the traced forward ran no module with parameters; pass `layer=`")
        found, name = trace.final.module, trace.final.name
    bias = getattr(found, "bias", None)
    if not isinstance(bias, torch.Tensor):
        raise Skip(
            f"the final layer {name!r} ({type(found).__name__}) has no bias, so there is none to set (a "
            "language model's head usually has none; elsewhere build it with bias=True), or pass `layer=`"
        )
    return FinalLayer(name, found, bias, outputs)


def resolve_task(
    task: str,
    targets: torch.Tensor | None,
    outputs: torch.Tensor | None,
    width: int,
    priors: torch.Tensor | None = None,
    target_mean: torch.Tensor | None = None,
) -> str:
    """The task: ``task`` unless ``"auto"``; regression for a ``target_mean``; inferred from the
    targets and outputs (:func:`~lightning_recipe.core.tasks.infer_task`); else from the ``priors``
    (one logit: binary; priors summing to 1: multiclass; otherwise multilabel). :class:`Skip`
    without targets or given values, or when the targets are ambiguous."""
    if targets is None and priors is None and target_mean is None:
        raise Skip(
            "found no targets in the training batch; pass `target_key=`, or `priors=` / `target_mean=`"
        )
    if task != "auto":
        return task
    if target_mean is not None:
        return "regression"
    if targets is not None:
        try:
            return infer_task(targets, outputs)
        except ValueError as err:
            if priors is None:
                raise Skip(str(err)) from err
    assert priors is not None
    if width == 1:
        return "binary"
    return "multiclass" if abs(float(priors.sum()) - 1.0) < 1e-3 else "multilabel"


# ---------------------------------------------------------------------- the bias
def bias_from_stats(
    stats: TargetStats, task: str, width: int, layer: str, output_values: int | None = None
) -> tuple[TargetStats, InitBias, str]:
    """Fit the statistics to the layer's ``width`` (multiclass: pad absent classes, drop unseen
    trailing ones) and compute the bias; returns them with the words for their source.
    ``output_values``: how many values the model outputs per sample; a width-1 regression head
    whose model outputs as many values as each sample has targets runs at every position, and
    gets the mean of all of them. :class:`Skip` when the width does not fit the targets."""
    source = f"{stats.count} training targets"
    if stats.subset is not None:
        source += f" (a fixed random subset of the data: {stats.batches} batches)"
    elif stats.estimated:
        source += f" (estimated from {stats.batches} batches)"
    if task == "multiclass":
        counts = stats.class_counts
        classes = int(counts.numel()) if counts is not None else 0
        seen = last_class(stats) + 1
        if seen > width:
            raise Skip(
                f"the final layer {layer!r} has {width} outputs but the targets have {seen} classes "
                f"(labels up to {seen - 1}); pass `layer=` for the classifier or `task=`"
            )
        if counts is not None and classes < width:
            stats.class_counts = torch.cat([counts, torch.zeros(width - classes, dtype=torch.float64)])
        elif counts is not None and classes > width:
            stats.class_counts = counts[:width]
    elif (
        task == "regression"
        and width == 1
        and stats.num_outputs > 1
        and output_values == stats.num_outputs
        and stats.sum is not None
    ):
        # one output for several target values per sample: the head runs at every position (a
        # sequence or dense regressor); its best constant is the mean of all the values
        assert stats.sum_sq is not None and stats.num_values is not None
        source += (
            f" ({stats.num_outputs} values each, pooled: the layer's one output is applied at every position)"
        )
        stats = TargetStats(
            task="regression",
            count=stats.count,
            sum=stats.sum.sum().reshape(1),
            sum_sq=stats.sum_sq.sum().reshape(1),
            num_values=stats.num_values.sum().reshape(1),
            source=stats.source,
            batches=stats.batches,
            estimated=stats.estimated,
        )
    elif stats.num_outputs != width:
        what = "labels" if task != "regression" else "target values"
        raise Skip(
            f"the final layer {layer!r} has {width} outputs but each sample has {stats.num_outputs} "
            f"{what} (task {task!r}); pass `layer=` or `task=`"
        )
    return stats, init_bias(stats), source


def given_bias(
    task: str,
    width: int,
    layer: str | None,
    priors: torch.Tensor | None = None,
    target_mean: torch.Tensor | None = None,
) -> tuple[TargetStats | None, InitBias, str]:
    """The statistics, bias and source words for a given ``target_mean=`` or ``priors=``."""
    if target_mean is not None:
        mean = target_mean.to(torch.float64)
        if mean.numel() == 1:
            mean = mean.expand(width).clone()
        if mean.numel() != width:
            raise ValueError(
                f"FinalBiasInit(target_mean=...): got {mean.numel()} values but the final layer "
                f"{layer!r} has {width} outputs."
            )
        return None, InitBias(mean, [], 0.0, "regression"), "the given target_mean"
    assert priors is not None
    p = priors.to(torch.float64)
    if p.numel() != width:
        raise ArgumentError(
            f"FinalBiasInit(priors=...): got {p.numel()} priors but the final layer {layer!r} has {width} outputs."
        )
    if task == "multiclass":
        stats = TargetStats("multiclass", count=10**6, class_counts=p / p.sum() * 10**6)
    else:
        stats = TargetStats(
            task,  # type: ignore[arg-type]
            count=10**6,
            sum=p * 10**6,
            sum_sq=p * 10**6,
            num_values=torch.full_like(p, 10**6),
        )
    return stats, init_bias(stats, floor=1e-6), "the given priors"


def expected_losses(task: str, stats: TargetStats | None, bias: torch.Tensor) -> dict[str, float]:
    """The loss the new bias implies (``"bias"``) and the zero bias's (``"zero"``); NaN without statistics."""
    if stats is None:
        return {"bias": float("nan"), "zero": float("nan")}
    return data_losses(default_loss(task), stats, bias)


def merge_stats(
    stats: TargetStats,
    task: str,
    width: int,
    world_size: int,
    reduce_sum: Callable[[torch.Tensor], torch.Tensor],
    reduce_max: Callable[[float], float],
    reduce_any: Callable[[bool], bool],
) -> TargetStats:
    """Sum the statistics over ``world_size`` processes with the given reductions (identical shards,
    e.g. a dataset every rank read whole, count once)."""
    if task == "multiclass":
        size = int(max(reduce_max(float(stats.num_outputs)), width))
        flat = stats.to_tensor(size)
    else:
        d = stats.num_outputs
        if reduce_max(float(d)) != -reduce_max(float(-d)):
            raise Skip("the processes see targets of different widths; pass `target_key=`")
        flat = stats.to_tensor()
    both = reduce_sum(torch.cat([flat, flat * flat]))
    total, total_sq = both[: flat.numel()], both[flat.numel() :]
    world = float(world_size)
    if bool(torch.allclose(total_sq * world, total * total, rtol=1e-9, atol=1e-9)):
        total = total / world  # every rank read the same (whole) data: do not count it world_size times
    merged = TargetStats.from_tensor(task, total)  # type: ignore[arg-type]
    merged.source = stats.source
    merged.estimated = reduce_any(stats.estimated)
    merged.subset = stats.subset
    merged.batches = int(reduce_sum(torch.tensor([float(stats.batches)]))[0])
    return merged


def loss_scalars(task: str, stats: TargetStats | None, bias: torch.Tensor) -> dict[str, float]:
    """The finite ones of ``recipe/bias_init/expected_loss`` and ``recipe/bias_init/uninformative_loss``."""
    data = expected_losses(task, stats, bias)
    scalars = {
        "recipe/bias_init/expected_loss": data["bias"],
        "recipe/bias_init/uninformative_loss": data["zero"],
    }
    return {k: v for k, v in scalars.items() if math.isfinite(v)}


def figure_inputs(task: str, stats: TargetStats | None, bias: torch.Tensor) -> dict[str, Any]:
    """The arrays :func:`~lightning_recipe.plots.bias_init.bias_figure` draws (``bias``, and ``prior``
    or ``mean`` / ``std`` when the statistics are known)."""
    b = bias.detach().cpu().numpy().astype(np.float64)
    if task == "regression":
        return {
            "bias": b,
            "mean": b.copy() if stats is None else stats.mean().numpy(),
            "std": None if stats is None else np.sqrt(stats.var().numpy()),
        }
    return {"bias": b, "prior": None if stats is None else stats.priors().numpy().astype(np.float64)}


def bias_finding(
    task: str,
    layer: str,
    module_type: str,
    width: int,
    source: str,
    stats: TargetStats | None,
    init: InitBias,
) -> tuple[str, str, dict[str, Any]]:
    """``(status, message, numbers)`` of a bias that was set: ``pass``, or ``warn`` when a class or
    label never varies in the data (its bias is floored)."""
    new = init.bias
    data = expected_losses(task, stats, new)
    numbers: dict[str, Any] = {
        "layer": layer,
        "task": task,
        "outputs": width,
        "bias": [round(float(v), 6) for v in new[:64]],
        "expected_loss": data["bias"],
        "uninformative_loss": data["zero"],
    }
    if stats is not None and stats.subset is not None:
        numbers["subset_samples"] = stats.subset
    message = f"set the final bias of {layer!r} ({module_type}, {width} outputs) to {_WHAT[task]} of {source}"
    if math.isfinite(data["bias"]):
        message += (
            f"; loss at init should be {data['bias']:.4g} instead of "
            f"{uninformative_label(default_loss(task), width)}={data['zero']:.4g}"
        )
    if not init.floored:
        return "pass", message, numbers
    shown = init.floored[:10]
    more = f" (+{len(init.floored) - 10} more)" if len(init.floored) > 10 else ""
    if task == "multiclass":
        message += f"; class(es) {shown}{more} never occur"
    else:
        message += f"; label(s) always 0 or always 1: {shown}{more}"
    where = "in the training data"
    if stats is not None and stats.subset is not None:
        where = (
            f"in the {stats.count} training targets read (a fixed random subset: rarer than about 1 in "
            f"{stats.count} can be missing from it; `one_time=None` reads all of it)"
        )
    message += (
        f" {where}: their bias is log({init.floor:.3g}) = {math.log(init.floor):.2f} "
        "(finite, not -inf); check the labels or pass `priors=`"
    )
    numbers["floored"] = init.floored
    return "warn", message, numbers
