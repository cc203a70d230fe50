"""DumbBaselines' verdict ("dumb baselines, human baseline"), without Lightning.

The scores of the predictors that never look at the input come from
:mod:`lightning_recipe.core.baselines`; this module decides what the monitored metric is compared
with (:func:`resolve_comparison`, :class:`Comparison`), when it beat the baseline, and what the
finding says at the end of fit (:func:`judge`). A reason not to score the baselines at all is
raised as :class:`~lightning_recipe.findings.Skip` (the message is the finding's).

Example:
    >>> from lightning_recipe.core.baselines import BaselineScores
    >>> scores = BaselineScores("multiclass", "cross_entropy", 2.3, "accuracy", 0.1, 100)
    >>> rule = Comparison("val_loss", *resolve_comparison("DumbBaselines", "val_loss", "auto", "auto"))
    >>> rule.beats(2.0, scores.loss), rule.beats(2.29, scores.loss)
    (True, False)
    >>> status, message, _ = judge(rule, scores, [(0, 10, 2.0)], beaten_at=(0, 10, 2.0))
    >>> status, message
    ('pass', "val_loss beat the class-prior predictor's cross_entropy loss (2.3) first at epoch 0, step 10 (2); best 2")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from lightning_recipe.core.baselines import (
    BaselineScores,
    baseline_scores,
    baseline_sums,
    constant_prediction,
)
from lightning_recipe.core.batches import KeySpec, split_batch
from lightning_recipe.core.stats import (
    UNSIZED_MAX_BATCHES,
    TargetStats,
    collect_target_stats,
    is_one_shot,
    targets_from_dataset,
)
from lightning_recipe.core.tasks import (
    SequenceObjective,
    TaskLiteral,
    class_dim,
    infer_sequence_objective,
    infer_task,
)
from lightning_recipe.findings import Skip

__all__ = [
    "NO_VALIDATION",
    "CompareTo",
    "Comparison",
    "Mode",
    "Point",
    "Reducer",
    "Resolved",
    "check_arguments",
    "check_compare_to",
    "check_streams",
    "history_state",
    "judge",
    "load_history",
    "point",
    "resolve_comparison",
    "resolve_task",
    "score_baselines",
    "sum_over_loader",
    "task_from_batch",
    "token_objective",
    "validate_choices",
]

CompareTo = Literal["auto", "loss", "accuracy", "mae"]
Mode = Literal["auto", "min", "max"]
#: ``(epoch, global_step, value)`` of the monitored metric at one validation.
Point = tuple[int, int, float]
#: The task, the class count (multiclass) and the token objective (token targets) of a run.
Resolved = tuple[TaskLiteral, int | None, SequenceObjective | None]

NO_VALIDATION = (
    "no validation data to score the baselines on; pass `val_dataloaders=` to `Trainer.fit` "
    "or a datamodule with `val_dataloader()`"
)


def check_arguments(owner: str, monitor: Any, human_baseline: Any, margin: Any, ignore_index: Any) -> None:
    """Raise ``ValueError``/``TypeError`` for a bad ``monitor``, ``human_baseline``, ``margin`` or
    ``ignore_index`` (the message names ``owner`` and the argument)."""
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(
            f"{owner}(monitor={monitor!r}): pass the name of a logged validation metric, e.g. 'val_loss'."
        )
    if human_baseline is not None and (
        isinstance(human_baseline, bool)
        or not isinstance(human_baseline, (int, float))
        or not math.isfinite(human_baseline)
    ):
        raise ValueError(
            f"{owner}(human_baseline={human_baseline!r}): pass a finite number in the units of "
            f"monitor={monitor!r}, or None."
        )
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin < 1.0:
        raise ValueError(f"{owner}(margin={margin!r}): pass a fraction in [0, 1), e.g. 0.01.")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f"{owner}(ignore_index={ignore_index!r}): pass an integer label or None.")


def validate_choices(
    owner: str,
    mode: Any,
    compare_to: Any,
    task: Any,
    loss: Any,
    num_classes: Any,
    max_batches: Any,
    shift: Any,
) -> None:
    """Raise ``ValueError`` for a ``mode``, ``compare_to``, ``task``, ``loss``, ``num_classes``,
    ``max_batches`` or ``shift`` the check cannot use (the message names ``owner`` and the argument)."""
    from lightning_recipe.core.arguments import check_choice, check_positive_int
    from lightning_recipe.core.baselines import LOSSES
    from lightning_recipe.core.tasks import check_shift_argument, check_task_argument

    check_shift_argument(shift, owner)
    check_choice(owner, "mode", mode, ("auto", "min", "max"))
    check_choice(owner, "compare_to", compare_to, ("auto", "loss", "accuracy", "mae"))
    check_task_argument(task, owner)
    check_choice(owner, "loss", loss, ("auto", *LOSSES))
    check_positive_int(owner, "num_classes", num_classes, allow_none=True, minimum=2)
    check_positive_int(owner, "max_batches", max_batches, allow_none=True)


def history_state(
    history: list[Point], beaten_at: Point | None, human_reached_at: Point | None
) -> dict[str, Any]:
    """The checkpoint state: the monitored metric at every validation and the first points that beat the baselines."""
    return {
        "history": [list(p) for p in history],
        "beaten_at": None if beaten_at is None else list(beaten_at),
        "human_reached_at": None if human_reached_at is None else list(human_reached_at),
    }


def load_history(state: dict[str, Any]) -> tuple[list[Point], Point | None, Point | None]:
    """``(history, beaten_at, human_reached_at)`` from :func:`history_state`."""
    beaten, human = state.get("beaten_at"), state.get("human_reached_at")
    history = [point(p) for p in state.get("history", [])]
    return history, None if beaten is None else point(beaten), None if human is None else point(human)


def point(p: Sequence[Any]) -> Point:
    """A :data:`Point` from a checkpoint's list."""
    return (int(p[0]), int(p[1]), float(p[2]))


def resolve_comparison(owner: str, monitor: str, mode: str, compare_to: str) -> tuple[str, str]:
    """``(compare_to, mode)`` with ``"auto"`` resolved; raises ``ValueError`` for an inconsistent explicit pair."""
    if compare_to == "auto":
        name = monitor.lower()
        if "acc" in name:
            compare_to = "accuracy"
        elif "mae" in name or "l1" in name or "abs" in name:
            compare_to = "mae"
        elif "loss" not in name and mode == "max":
            compare_to = "accuracy"
        else:
            compare_to = "loss"
    natural = "max" if compare_to == "accuracy" else "min"
    if mode == "auto":
        mode = natural
    elif mode != natural:
        raise ValueError(
            f"{owner}(mode={mode!r}, compare_to={compare_to!r}): {'an accuracy' if natural == 'max' else 'a loss or error'} "
            f"is better when {'higher' if natural == 'max' else 'lower'}; pass mode={natural!r} or another `compare_to=`."
        )
    return compare_to, mode


@dataclass(frozen=True)
class Comparison:
    """How the monitored metric is compared with a baseline (arguments of ``DumbBaselines``)."""

    monitor: str
    compare_to: str
    mode: str
    margin: float = 0.01
    human_baseline: float | None = None

    def threshold(self, baseline: float) -> float:
        """The value to beat: the baseline, moved ``margin`` of its distance to a perfect score."""
        perfect = 1.0 if self.compare_to == "accuracy" else 0.0
        room = abs(perfect - baseline) * self.margin
        return baseline - room if self.mode == "min" else baseline + room

    def beats(self, value: float, baseline: float) -> bool:
        if not math.isfinite(value):
            return False
        threshold = self.threshold(baseline)
        return value < threshold if self.mode == "min" else value > threshold

    def reaches_human(self, value: float) -> bool:
        if self.human_baseline is None or not math.isfinite(value):
            return False
        return value <= self.human_baseline if self.mode == "min" else value >= self.human_baseline

    def best(self, history: Sequence[Point]) -> Point | None:
        finite = [p for p in history if math.isfinite(p[2])]
        if not finite:
            return None
        return min(finite, key=lambda p: p[2]) if self.mode == "min" else max(finite, key=lambda p: p[2])

    def baseline_words(self, scores: BaselineScores) -> str:
        """``"the class-prior predictor's cross_entropy loss"`` and the like."""
        if self.compare_to == "accuracy":
            return (
                "the most-frequent-token predictor's accuracy"
                if scores.tokens
                else "the majority-class predictor's accuracy"
            )
        if self.compare_to == "mae":
            return "the mean predictor's MAE"
        if scores.task == "regression":
            return f"the mean predictor's {scores.loss_name} loss"
        if scores.tokens:
            return f"the token-prior (unigram) predictor's {scores.loss_name} loss"
        return f"the class-prior predictor's {scores.loss_name} loss"

    def human_words(self, reached_at: Point | None) -> str:
        if self.human_baseline is None:
            return ""
        if reached_at is not None:
            epoch, step, _ = reached_at
            return f"; human baseline {self.human_baseline:.4g} reached at epoch {epoch}, step {step}"
        return f"; human baseline {self.human_baseline:.4g} not reached"


def _never_compared(monitor: str, missing: list[str] | None) -> str:
    if missing:
        return f"no metric {monitor!r} was logged during validation; pass `monitor=` one of {missing}"
    if missing is not None:
        return (
            f"no metric {monitor!r} was logged during validation; log it with "
            f"`self.log({monitor!r}, ...)` in `validation_step`, or pass `monitor=`"
        )
    return "validation never ran during training, so the model was never compared with the baselines"


def judge(
    rule: Comparison,
    scores: BaselineScores,
    history: Sequence[Point],
    beaten_at: Point | None = None,
    human_reached_at: Point | None = None,
    missing: list[str] | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """The verdict at the end of fit: ``(status, message, numbers)``.

    ``pass`` when the metric beat the baseline at some validation (``beaten_at``), ``warn`` when it
    never did, ``skipped`` when it was never compared (``missing``: the metrics logged instead, an
    empty list when validation ran without logging any, ``None`` when validation never ran).
    """
    baseline = scores.value(rule.compare_to)
    what = rule.baseline_words(scores)
    numbers: dict[str, Any] = {
        "monitor": rule.monitor,
        "baseline": baseline,
        **scores.tags(),
        "loss": scores.loss_name,
        "evaluations": len(history),
    }
    if rule.human_baseline is not None:
        numbers["human_baseline"] = rule.human_baseline
    if not history:
        return "skipped", _never_compared(rule.monitor, missing), numbers
    best = rule.best(history)
    human = rule.human_words(human_reached_at)
    if best is not None:
        numbers.update(best_value=best[2], best_epoch=best[0], best_step=best[1])
    if beaten_at is not None:
        epoch, step, value = beaten_at
        numbers.update(beaten_epoch=epoch, beaten_step=step)
        best_text = f"; best {best[2]:.4g}" if best is not None else ""
        return (
            "pass",
            f"{rule.monitor} beat {what} ({baseline:.4g}) first at epoch {epoch}, step {step} "
            f"({value:.4g}){best_text}{human}",
            numbers,
        )
    best_text = f"{best[2]:.4g}" if best is not None else "not finite"
    return (
        "warn",
        f"{rule.monitor} never beat {what}: best {best_text} vs {baseline:.4g} in {len(history)} "
        f"validation(s){human}; the model learned nothing a constant does not know: check that labels "
        "match inputs, that inputs reach the net, and the learning rate",
        numbers,
    )


def check_streams(train_loader: Any, val_loader: Any) -> None:
    """Raise :class:`Skip` without validation data, or for a one-shot stream (reading its targets
    would take batches away from the real run)."""
    if val_loader is None:
        raise Skip(NO_VALIDATION)
    for role, loader in (("training", train_loader), ("validation", val_loader)):
        if loader is not None and is_one_shot(loader):
            data = getattr(loader, "dataset", loader)
            raise Skip(
                f"the {role} data ({type(data).__name__}) is a one-shot stream (`iter()` hands out the same "
                "iterator each time): reading its targets would take batches away from the real run; give "
                "the dataset an `__iter__` that starts a new pass on each call (a generator)"
            )


def check_compare_to(compare_to: str, task: str) -> None:
    """Raise :class:`Skip` when the baseline ``compare_to`` names does not exist for ``task``."""
    if compare_to != "loss" and (compare_to == "mae") != (task == "regression"):
        raise Skip(
            f"compare_to={compare_to!r} does not fit a {task} task (its baselines have a loss and "
            f"{'a mean absolute error' if task == 'regression' else 'an accuracy'}); pass "
            f"`compare_to=` {'loss' if task == 'regression' else 'loss or accuracy'!r}"
        )


def resolve_task(
    targets: torch.Tensor, outputs: torch.Tensor | None, task: str, num_classes: int | None
) -> tuple[TaskLiteral, int | None]:
    """The task and (multiclass) class count, from the targets and the model's outputs on one batch.

    Raises:
        ValueError: for an ambiguous task (the message lists the ``task=`` values that resolve it).
    """
    resolved: TaskLiteral = infer_task(targets, outputs, task)
    if resolved == "multiclass" and num_classes is None and outputs is not None and outputs.dim() >= 2:
        num_classes = int(outputs.shape[class_dim(targets, outputs) or 1])
    return resolved, num_classes


def task_from_batch(
    batch: Any,
    forward: Callable[[Any], tuple[Any, Any]],
    task: str,
    num_classes: int | None,
    input_key: KeySpec,
    target_key: KeySpec,
    shift: Any,
    ignore_index: int | None,
    module: Any,
) -> Resolved:
    """The task, class count and token objective from one validation ``batch`` and the model's
    ``forward(batch) -> (logits, loss)`` on it (a forward that cannot run: the targets alone)."""
    if batch is None:
        raise Skip("the validation dataloader yielded no batch; pass validation data to `Trainer.fit`")
    parts = split_batch(batch, input_key=input_key, target_key=target_key, require_targets=True)
    assert parts.targets is not None
    outputs = loss = None
    if task in ("auto", "multiclass"):
        try:
            outputs, loss = forward(batch)
        except Exception:  # a forward that cannot be called on the batch: infer from the targets alone
            outputs = None
    outputs = None if outputs is None else outputs.detach().float().cpu()
    resolved, classes = resolve_task(parts.targets, outputs, task, num_classes)
    return (
        resolved,
        classes,
        token_objective(resolved, parts.targets, outputs, batch, module, loss, shift, ignore_index),
    )


def token_objective(
    task: str,
    targets: torch.Tensor,
    outputs: torch.Tensor | None,
    batch: Any,
    module: Any,
    loss: Any,
    shift: Any,
    ignore_index: int | None,
) -> SequenceObjective | None:
    """The token objective of a multiclass task (:func:`~lightning_recipe.core.tasks.infer_sequence_objective`
    from one batch, the model and its own ``loss`` on it); ``None`` for other tasks and targets."""
    if task != "multiclass":
        return None
    return infer_sequence_objective(
        targets, outputs, batch=batch, module=module, loss=loss, computes_loss=loss is not None,
        shift=shift, ignore_index=ignore_index,
    )  # fmt: skip


def sum_over_loader(
    loader: Any,
    prediction: torch.Tensor,
    task: TaskLiteral,
    loss: str,
    ignore_index: int | None = None,
    input_key: KeySpec = None,
    target_key: KeySpec = None,
    max_batches: int | None = None,
    shift: int = 0,
) -> torch.Tensor:
    """:func:`~lightning_recipe.core.baselines.baseline_sums` of ``prediction`` over a loader's targets
    (at most ``max_batches`` batches; an unsized loader is read for at most ``UNSIZED_MAX_BATCHES``;
    ``shift``: token targets from position ``shift`` on, those a causal LM predicts)."""
    total = torch.zeros(3, dtype=torch.float64)
    limit = max_batches
    if limit is None:
        try:
            len(loader)
        except TypeError:  # an iterable data set, possibly endless: an estimate from its start
            limit = UNSIZED_MAX_BATCHES
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            break
        parts = split_batch(batch, input_key=input_key, target_key=target_key, require_targets=True)
        assert parts.targets is not None
        total += baseline_sums(prediction, _shifted(parts.targets, shift), task, loss, ignore_index)
    return total


def _shifted(targets: Any, shift: int) -> Any:
    """Token targets ``(N, T)`` from position ``shift`` on (a causal LM's position t predicts t + 1)."""
    t = torch.as_tensor(targets)
    return t[:, shift:] if shift and t.dim() == 2 else t


@dataclass(frozen=True)
class Reducer:
    """How the processes of a distributed run agree (identity on one process): ``all_true(flag)``
    (every rank says so), ``sum(tensor)`` and ``max(value)`` over ranks. Every rank calls them."""

    world_size: int = 1
    all_true: Callable[[bool], bool] = bool
    sum: Callable[[torch.Tensor], torch.Tensor] = torch.as_tensor
    max: Callable[[float], float] = float


def score_baselines(
    train_loader: Any,
    val_loader: Any,
    task: TaskLiteral,
    loss: str,
    num_classes: int | None = None,
    *,
    input_key: KeySpec = None,
    target_key: KeySpec = None,
    ignore_index: int | None = None,
    max_batches: int | None = None,
    progress: bool = False,
    reducer: Reducer | None = None,
    shift: int = 0,
    tokens: bool = False,
) -> BaselineScores:
    """Learn the constant predictions from the training targets and score them on the validation ones.

    Targets are read from the datasets when they expose them, else from the loaders (at most
    ``max_batches``); under DDP (``reducer``) the statistics and sums of all ranks are merged.
    Token targets (``tokens``): the class prior is the unigram predictor (training token
    frequencies, ``ignore_index`` left out); ``shift`` leaves out the first ``shift`` positions,
    which a causal language model never predicts.

    Raises:
        ValueError: targets not found, labels out of range, no target at all.
    """
    reducer = reducer or Reducer()

    def collect(dataset: Any) -> TargetStats:
        if shift and dataset is not None:  # the fast path, shifted like the loader's targets
            targets = targets_from_dataset(dataset)
            if targets is not None:
                stats = TargetStats.from_targets(
                    _shifted(targets, shift), task, num_classes=num_classes, ignore_index=ignore_index
                )
                stats.source = "dataset"
                return stats
            dataset = None
        return collect_target_stats(
            task,
            dataset=dataset,
            dataloader=train_loader,
            target_key=target_key,
            num_classes=num_classes,
            max_batches=max_batches,
            ignore_index=ignore_index,
            progress=progress,
            transfer=(lambda t: _shifted(t, shift)) if shift else None,
        )

    stats = collect(getattr(train_loader, "dataset", None))
    if reducer.world_size > 1 and not reducer.all_true(stats.source == "dataset"):
        if stats.source == "dataset":  # every rank must count its own shard
            stats = collect(None)
        size = int(reducer.max(float(stats.num_outputs))) if task == "multiclass" else None
        stats = TargetStats.from_tensor(task, reducer.sum(stats.to_tensor(size)))
    prediction = constant_prediction(stats)
    targets = targets_from_dataset(getattr(val_loader, "dataset", None))
    fast = targets is not None
    if reducer.world_size > 1:
        fast = reducer.all_true(fast)
    if fast:
        assert targets is not None
        sums = baseline_sums(prediction, _shifted(targets, shift), task, loss, ignore_index)
    else:
        total = sum_over_loader(
            val_loader, prediction, task, loss, ignore_index, input_key, target_key, max_batches, shift
        )
        sums = reducer.sum(total)
    return baseline_scores(sums, task, loss, tokens=tokens)
