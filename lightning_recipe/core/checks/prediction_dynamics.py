"""PredictionDynamics' bookkeeping ("visualize prediction dynamics"), without Lightning.

* :func:`spread_batch`: samples spread evenly over a loader's dataset, collated as the loader would;
  :func:`cut_batch` keeps ``num_samples`` of them on the CPU, with their inputs and targets.
* :func:`resolve_output` / :func:`call_failed`: what the model returned on them, or why it is
  ``skipped`` (raised as :class:`~lightning_recipe.findings.Skip`; the message is the finding's).
* :func:`predictions_for`: the per-sample numbers of the figures, by task.
* :func:`sequence_objective` / :func:`top_tokens`: a language model's fixed batch: logits lined up
  with the token each position predicts (the next one for a causal LM), and the most probable
  tokens at one labelled position per sample (the readable view of a large vocabulary).
* :class:`Trajectories`: the logged steps, per-sample values and jitter (the checkpoint state).

Example:
    >>> import torch
    >>> trace = Trajectories()
    >>> targets = torch.tensor([0, 1])
    >>> trace.add(0, "multiclass", torch.zeros(2, 2), targets)[0]
    {'mean_true_prob': 0.5}
    >>> scalars, probs, predicted = trace.add(5, "multiclass", torch.tensor([[2.0, 0.0], [0.0, 2.0]]), targets)
    >>> trace.steps, sorted(scalars), predicted.tolist()
    ([0, 5], ['jitter', 'mean_true_prob'], [0, 1])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import IterableDataset, default_collate

from lightning_recipe.core.batches import KeySpec, map_tensors, split_batch
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.tasks import (
    SequenceObjective,
    ShiftArg,
    class_dim,
    infer_sequence_objective,
    infer_task,
)
from lightning_recipe.findings import Skip

__all__ = [
    "NO_DATA",
    "TOP_K_CLASSES",
    "Trajectories",
    "add_point",
    "call_failed",
    "call_failure",
    "check_arguments",
    "cut_batch",
    "describe_call",
    "figure_arguments",
    "line_up",
    "predictions_for",
    "resolve_output",
    "restored_batch",
    "sequence_objective",
    "spread_batch",
    "take_batch",
    "thumbnails",
    "top_tokens",
    "validate_arguments",
]

#: Above this many classes per token, the predictions figure shows the top-k tokens, not a heatmap.
TOP_K_CLASSES = 20

NO_DATA = "found no data to take a fixed batch from (no validation or training samples)."


def spread_batch(loader: Any, num_samples: int) -> Any:
    """``num_samples`` samples spread evenly over the loader's dataset, collated as the loader would;
    the first batch of an iterable dataset; ``None`` for an empty loader."""
    dataset = getattr(loader, "dataset", None)
    indexable = (
        dataset is not None
        and not isinstance(dataset, IterableDataset)
        and hasattr(dataset, "__getitem__")
        and hasattr(dataset, "__len__")
        and getattr(loader, "batch_size", 1) is not None
    )
    if indexable and len(dataset) > 0:
        idx = np.unique(np.linspace(0, len(dataset) - 1, min(num_samples, len(dataset))).round().astype(int))
        collate = getattr(loader, "collate_fn", None) or default_collate
        return collate([dataset[int(i)] for i in idx])
    for batch in loader:  # iterable datasets: the first batch
        return batch
    return None


def cut_batch(
    batch: Any, num_samples: int, input_key: KeySpec, target_key: KeySpec
) -> tuple[Any, Any, torch.Tensor]:
    """``(batch, inputs, targets)`` of the first ``num_samples`` samples, detached copies on the CPU.

    Raises:
        ValueError: when the batch has no targets (the message names ``target_key=``).
    """
    parts = split_batch(batch, input_key=input_key, target_key=target_key, require_targets=True)
    assert parts.targets is not None
    size = parts.targets.shape[0] if parts.targets.dim() else None

    def cut(t: torch.Tensor) -> torch.Tensor:
        t = t[:num_samples] if t.dim() and t.shape[0] == size else t
        return t.detach().cpu().clone()

    kept = map_tensors(batch, cut)
    parts = split_batch(kept, input_key=input_key, target_key=target_key, require_targets=True)
    assert parts.targets is not None
    return kept, parts.inputs, parts.targets


def describe_call(call: ModelCall, module: nn.Module, batch: Any) -> str:
    """How ``call`` calls ``module`` on ``batch`` (or tries first), in the messages' words: ``pl_module(inputs)``."""
    words = ModelCall(call.forward, call.input_key, call.target_key)
    words.convention = call.convention or call.candidates(module, batch)[0]
    return words.describe().replace("module", "pl_module")


def _one_line(err: Exception, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_failed(how: str, shape: tuple[int, ...] | None, err: Exception) -> str:
    """The ``skipped`` message for a model that could not be called on the fixed batch."""
    return (
        f"skipped, because the model could not be called as {how} on the fixed batch's inputs "
        f"{shape} ({type(err).__name__}: {_one_line(err)}); pass `forward=` "
        "(a callable(pl_module, inputs) returning the predictions)."
    )


def resolve_output(
    output: torch.Tensor | None, targets: torch.Tensor, task: str | None, task_argument: str
) -> str:
    """The task to plot ``output`` with; raises :class:`Skip` when it has no row per sample or the task is ambiguous."""
    n = targets.shape[0]
    if output is None or output.dim() == 0 or output.shape[0] != n:
        shape = None if output is None else tuple(output.shape)
        raise Skip(
            f"the model's output {shape} has no row per sample of the fixed batch "
            f"({n} samples); pass `forward=` (a callable(pl_module, inputs))."
        )
    if task is not None:
        return task
    try:
        return infer_task(targets, output, task_argument)
    except ValueError as err:
        raise Skip(f"skipped, because {err}") from err


def predictions_for(
    task: str, output: torch.Tensor, targets: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample numbers for the figures: ``(trajectory_value, predictions, predicted)``.

    * multiclass: the softmax probability of the true class (averaged over positions for dense
      outputs ``(N, C, ...)``), the class probabilities ``(N, C)``, the argmax class;
    * binary: the probability given to the true label, ``p(1)`` as ``(N, 1)``, the 0/1 decision;
    * multilabel: the mean probability given to the true value of each label, ``p`` as ``(N, K)``,
      the number of labels predicted right;
    * regression: the first output, all outputs ``(N, K)``, the first output again.

    Example:
        >>> value, probs, pred = predictions_for("multiclass", torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
        >>> value.tolist(), probs.tolist(), pred.tolist()
        ([0.5], [[0.5, 0.5]], [0])
    """
    out = output.detach().float().cpu()
    y = targets.detach().cpu()
    n = out.shape[0]
    if task == "multiclass":
        if out.dim() == 2:
            probs = torch.softmax(out, dim=1)
            y = y.long().reshape(n)
            valid = (y >= 0) & (y < probs.shape[1])  # ignore_index (-100) and other out-of-range labels
            value = probs.gather(1, y.clamp(0, probs.shape[1] - 1).reshape(n, 1)).reshape(n)
            value = torch.where(valid, value, torch.full_like(value, math.nan))
            return value.numpy(), probs.numpy(), probs.argmax(1).numpy()
        if class_dim(y, out) == -1:
            out = out.movedim(-1, 1)  # (N, T, C) logits: classes last
        return _dense_multiclass(out, y.long(), n)
    if task == "binary":
        p = torch.sigmoid(out.reshape(n, -1)[:, 0])
        t = y.reshape(n, -1)[:, 0].float()
        value = torch.where(t > 0.5, p, 1 - p)
        return value.numpy(), p.reshape(n, 1).numpy(), (p > 0.5).long().numpy()
    if task == "multilabel":
        p = torch.sigmoid(out.reshape(n, -1))
        t = y.reshape(n, -1).float()
        right = torch.where(t > 0.5, p, 1 - p)
        return right.mean(1).numpy(), p.numpy(), ((p > 0.5).float() == t).sum(1).numpy()
    flat = out.reshape(n, -1)
    return flat[:, 0].numpy(), flat.numpy(), flat[:, 0].numpy()


def _dense_multiclass(
    out: torch.Tensor, y: torch.Tensor, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-position classes ``(N, C, ...)``: means over the labelled positions."""
    probs = torch.softmax(out, dim=1)
    k = probs.shape[1]
    # positions labelled ignore_index (-100, padding) or out of range take no part in the means
    valid = ((y >= 0) & (y < k)).reshape(n, -1).float()
    picked = probs.gather(1, y.clamp(0, k - 1).unsqueeze(1)).reshape(n, -1)
    count = valid.sum(1)
    value = (picked * valid).sum(1) / count.clamp_min(1)
    value = torch.where(count > 0, value, torch.full_like(value, math.nan))
    flat = probs.reshape(n, k, -1)
    mean_probs = (flat * valid.unsqueeze(1)).sum(2) / count.clamp_min(1).unsqueeze(1)
    mean_probs = torch.where((count > 0).unsqueeze(1), mean_probs, flat.mean(2))
    return value.numpy(), mean_probs.numpy(), mean_probs.argmax(1).numpy()


@dataclass
class Trajectories:
    """What the fixed batch's predictions did so far.

    Attributes:
        steps: the global steps logged.
        values: per step, the per-sample trajectory values (:func:`predictions_for`).
        jitter: per step after the first, the mean absolute change of the predictions.
        last_pred: the predictions of the last step ``(N, K)``.
    """

    steps: list[int] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    jitter: list[float] = field(default_factory=list)
    last_pred: torch.Tensor | None = None

    def state_dict(self) -> dict[str, Any]:
        """Plain copies for a checkpoint (keys ``steps``, ``values``, ``jitter``, ``last_pred``)."""
        values = [list(v) for v in self.values]
        return {
            "steps": list(self.steps),
            "values": values,
            "jitter": list(self.jitter),
            "last_pred": self.last_pred,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Trajectories:
        """The inverse of :meth:`state_dict`; missing keys start empty."""
        return cls(
            steps=list(state.get("steps", [])),
            values=[list(v) for v in state.get("values", [])],
            jitter=list(state.get("jitter", [])),
            last_pred=state.get("last_pred"),
        )

    def add(
        self, step: int, task: str, output: torch.Tensor, targets: torch.Tensor
    ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """Record one step; return its scalars (``jitter``, ``mean_true_prob`` or ``mean_abs_error``),
        the predictions and the predicted classes."""
        value, preds, decided = predictions_for(task, output, targets)
        pred_tensor = torch.from_numpy(np.ascontiguousarray(preds, dtype=np.float32))
        scalars: dict[str, float] = {}
        if self.last_pred is not None and self.last_pred.shape == pred_tensor.shape:
            jitter = float((pred_tensor - self.last_pred).abs().mean())
            self.jitter.append(jitter)
            scalars["jitter"] = jitter
        self.last_pred = pred_tensor
        self.steps.append(step)
        self.values.append([float(v) for v in value])
        if task == "regression":
            t = targets.reshape(targets.shape[0], -1)[:, 0].float().numpy()
            scalars["mean_abs_error"] = float(np.abs(value - t).mean())
        elif np.isfinite(value).any():  # samples whose labels are all ignore_index have no value
            scalars["mean_true_prob"] = float(np.nanmean(value))
        return scalars, preds, decided


def sequence_objective(
    output: torch.Tensor,
    targets: torch.Tensor,
    batch: Any,
    module: nn.Module | None,
    loss: Any,
    shift: ShiftArg,
) -> SequenceObjective | None:
    """How the fixed batch's ``(N, T, V)`` logits line up with its ``(N, T)`` token targets
    (:func:`~lightning_recipe.core.tasks.infer_sequence_objective`; ``loss``: the model's own
    loss on that batch, or ``None``); ``None`` for other outputs."""
    return infer_sequence_objective(
        targets, output, batch=batch, module=module, loss=loss, computes_loss=loss is not None, shift=shift
    )


def line_up(
    objective: SequenceObjective | None, output: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any] | None]:
    """``(output, targets, top-k view)``: the objective's alignment applied, and the
    :func:`top_tokens` view when the vocabulary exceeds :data:`TOP_K_CLASSES` (else ``None``)."""
    if objective is None:
        return output, targets, None
    output, targets = objective.align(output, targets)
    big = (objective.vocab or 0) > TOP_K_CLASSES
    return output, targets, top_tokens(output, targets, ignore_index=objective.ignore_index) if big else None


def top_tokens(
    output: torch.Tensor,
    targets: torch.Tensor,
    k: int = 5,
    max_rows: int = 8,
    ignore_index: int | None = -100,
) -> dict[str, Any] | None:
    """The ``k`` most probable tokens at one labelled position (the middle one) of each of the first
    ``max_rows`` samples, from lined-up ``(N, T, V)`` logits and ``(N, T)`` targets.

    Returns numpy arrays ``ids``/``probs`` ``(R, k)``, ``true``/``p_true``/``rank`` ``(R,)``,
    and ``rows`` (``"#i t=7"``); ``None`` when no sample has a labelled position.

    Example:
        >>> logits = torch.zeros(2, 3, 30)
        >>> logits[:, :, 7] = 5.0
        >>> view = top_tokens(logits, torch.tensor([[7, 7, -100], [1, 2, 3]]), k=3)
        >>> view["rows"], int(view["ids"][0, 0]), view["rank"].tolist()
        (['#0 t=0', '#1 t=1'], 7, [1, 2])
    """
    probs = torch.softmax(output.detach().float(), dim=-1)
    y = targets.detach().long()
    vocab = probs.shape[-1]
    k = min(k, vocab)
    rows, ids, top_p, true, p_true, rank = [], [], [], [], [], []
    for i in range(min(max_rows, probs.shape[0])):
        valid = (y[i] >= 0) & (y[i] < vocab)
        if ignore_index is not None:
            valid &= y[i] != ignore_index
        positions = torch.nonzero(valid).flatten()
        if positions.numel() == 0:
            continue
        t = int(positions[(positions.numel() - 1) // 2])
        p = probs[i, t]
        values, index = p.topk(k)
        target = int(y[i, t])
        rows.append(f"#{i} t={t}")
        ids.append(index.numpy())
        top_p.append(values.numpy())
        true.append(target)
        p_true.append(float(p[target]))
        rank.append(int((p > p[target]).sum()) + 1)
    if not rows:
        return None
    return {
        "rows": rows,
        "ids": np.stack(ids),
        "probs": np.stack(top_p),
        "true": np.asarray(true),
        "p_true": np.asarray(p_true),
        "rank": np.asarray(rank),
    }


def take_batch(
    loaders: list[tuple[str, Any]], num_samples: int, input_key: KeySpec, target_key: KeySpec
) -> tuple[Any, Any, torch.Tensor, str]:
    """The fixed batch from the first of ``loaders`` (``(name, loader)``) that has data:
    ``(batch, inputs, targets, source)``, detached copies on the CPU.

    Raises:
        Skip: when no loader has data, or the batch has no targets.
    """
    for name, loader in loaders:
        batch = None if loader is None else spread_batch(loader, num_samples)
        if batch is not None:
            try:
                return (*cut_batch(batch, num_samples, input_key, target_key), name)
            except ValueError as err:
                raise Skip(f"skipped, because {err}") from err
    raise Skip(NO_DATA)


def thumbnails(inputs: Any) -> np.ndarray | None:
    """The fixed batch's images for the panels (``None`` when the inputs are no image batch)."""
    from lightning_recipe.core.images import is_image_like
    from lightning_recipe.plots.style import to_display_images

    x = inputs if isinstance(inputs, torch.Tensor) else None
    if x is None or not x.is_floating_point() or not is_image_like(tuple(x.shape)):
        return None
    return to_display_images(x.float().numpy())


def check_arguments(owner: str, num_samples: Any, class_names: Any, forward: Any) -> None:
    """Validate ``num_samples`` (1 to 64), ``class_names`` (a list) and ``forward`` (a callable or ``None``)."""
    from collections.abc import Sequence

    from lightning_recipe.core.arguments import check_positive_int

    check_positive_int(owner, "num_samples", num_samples)
    if num_samples > 64:
        raise ValueError(
            f"{owner}(num_samples={num_samples!r}): at most 64 samples fit in a readable figure."
        )
    if class_names is not None and (isinstance(class_names, str) or not isinstance(class_names, Sequence)):
        raise TypeError(f"{owner}(class_names={class_names!r}): pass a list of names, one per class index.")
    if forward is not None and not callable(forward):
        raise TypeError(f"{owner}(forward={forward!r}): pass a callable(pl_module, inputs) or None.")


def validate_arguments(
    owner: str,
    num_samples: Any,
    every_n_train_steps: Any,
    overhead: Any,
    source: Any,
    task: Any,
    class_names: Any,
    forward: Any,
    shift: Any,
) -> float:
    """Validate PredictionDynamics' arguments (``shift``, those of :func:`check_arguments`,
    ``every_n_train_steps``, ``overhead``, ``source``, ``task``, in this order); returns the overhead."""
    from lightning_recipe.core.arguments import check_choice, check_positive_int
    from lightning_recipe.core.budget import check_overhead
    from lightning_recipe.core.tasks import check_shift_argument, check_task_argument

    check_shift_argument(shift, owner)
    check_arguments(owner, num_samples, class_names, forward)
    check_positive_int(owner, "every_n_train_steps", every_n_train_steps, allow_none=True)
    checked = check_overhead(owner, overhead)
    check_choice(owner, "source", source, ("val", "train"))
    check_task_argument(task, owner)
    return checked


def figure_arguments(
    trace: Trajectories,
    task: str,
    last: tuple[np.ndarray, np.ndarray, np.ndarray, Any],
    inputs: Any,
    class_names: list[str] | None,
    step: int,
    objective: SequenceObjective | None,
) -> tuple[Any, ...]:
    """The arguments of :func:`~lightning_recipe.plots.prediction_dynamics.figure_builders` (numpy)
    for the figures of the last point, ``last`` (:func:`add_point`'s figure data), at ``step``."""
    preds, decided, targets, view = last
    causal = objective is not None and objective.causal
    steps, values = np.asarray(trace.steps, np.float64), np.asarray(trace.values, np.float64)
    names = list(class_names) if class_names else None
    return (task, steps, values, targets, preds, decided, thumbnails(inputs), names, step, view, causal)


def call_failure(call: ModelCall, module: nn.Module, batch: Any, inputs: Any, err: Exception) -> str:
    """The ``skipped`` message when the model could not run on the fixed batch."""
    from lightning_recipe.core.batches import first_tensor

    shape = tuple(t.shape) if isinstance(t := first_tensor(inputs), torch.Tensor) else None
    return call_failed(describe_call(call, module, batch), shape, err)


def _positional(module: Any, inputs: Any) -> Any:
    return module(inputs)


def restored_batch(state: dict[str, Any], forward: Any) -> tuple[Any, Any, Any, ModelCall | None]:
    """``(batch, inputs, targets, call)`` from a checkpoint; ``call`` is ``None`` unless the checkpoint
    kept the inputs only (an older one): then the model is called on them positionally."""
    batch, inputs, targets = state.get("batch"), state.get("inputs"), state.get("targets")
    if batch is None and inputs is not None:
        return (
            [inputs, targets],
            inputs,
            targets,
            ModelCall(forward or _positional, input_key=0, target_key=1),
        )
    return batch, inputs, targets, None


def add_point(
    trace: Trajectories, step: int, task: str, objective: Any, output: torch.Tensor, targets: torch.Tensor
) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray, np.ndarray, Any]]:
    """One point of the trajectories: its scalars, and the figures' data ``(preds, decided, targets, view)``."""
    output, targets, view = line_up(objective, output, targets)
    scalars, preds, decided = trace.add(step, task, output, targets)
    return scalars, (preds.copy(), decided.copy(), targets.float().numpy().copy(), view)
