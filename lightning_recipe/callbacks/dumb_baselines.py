"""DumbBaselines: the recipe's "dumb baselines" and "human baseline"."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_choice, check_positive_int
from lightning_recipe.core.baselines import (
    LOSSES,
    BaselineScores,
    baseline_scores,
    baseline_sums,
    constant_prediction,
    resolve_loss,
)
from lightning_recipe.core.batches import KeySpec, first_tensor, split_batch
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.stats import (
    UNSIZED_MAX_BATCHES,
    TargetStats,
    collect_target_stats,
    is_one_shot,
    targets_from_dataset,
)
from lightning_recipe.core.tasks import TaskLiteral, check_task_argument, infer_task
from lightning_recipe.plots.style import new_figure

__all__ = ["DumbBaselines"]

_TAG = "recipe/dumb_baselines"
CompareTo = Literal["auto", "loss", "accuracy", "mae"]
Mode = Literal["auto", "min", "max"]


class _Skip(Exception):
    """The baselines cannot be computed (the message says why and what to pass)."""


class DumbBaselines(RecipeCallback):
    """Score dumb baselines on the validation data, draw them next to the model's, and say when it beat them.

    Recipe, "dumb baselines" and "human baseline": *"we are also armed with (...) the performance
    of a few dumb baselines (we better beat these), and we have a rough sense of the performance of
    a human (we hope to reach this)."*

    At the start of training, from the statistics of the *training* targets, it builds the
    predictors that never look at the input and scores them on the *validation* targets:

    * classification: the **prior** predictor (always the training class frequencies; its loss is
      cross-entropy, or BCE for binary/multilabel) and the **majority** predictor (always the most
      frequent class; its accuracy);
    * regression: the **mean** predictor (always the training mean; its MSE, L1 or Huber loss and
      its mean absolute error).

    TensorBoard: ``recipe/dumb_baselines/prior_loss`` and ``.../majority_accuracy`` (or
    ``.../mean_loss`` and ``.../mean_mae``), and ``.../human_baseline`` when given, are logged at step
    0 and at the end of every validation run, so they draw as flat lines next to ``val_loss``. At
    the end of fit, the figure ``.../comparison`` shows the monitored metric against them.

    The verdict comes at the end of fit, never before: a model whose final bias is set to the
    class priors starts *exactly* at the prior baseline, which is healthy. ``pass``: the monitored
    metric beat the baseline (by ``margin`` of the baseline's distance to perfect) at some
    validation, with the first epoch and step at which it did, and whether and when it reached
    ``human_baseline``. ``warn``: it never did: the model learned nothing a constant does not know
    (labels misaligned with the inputs, inputs not reaching the net, a learning rate far off).
    ``skipped`` (with what to pass): no validation data, no ``monitor`` metric logged, or a task
    that cannot be inferred. ``on_fail`` has no effect: the verdict comes when training is over.

    Args:
        monitor: the validation metric to compare, as logged (``trainer.callback_metrics``).
        mode: ``"min"`` or ``"max"``; ``"auto"``: ``"max"`` for accuracy, else ``"min"``.
        compare_to: which baseline the monitored metric is comparable with: ``"loss"``,
            ``"accuracy"`` or ``"mae"``; ``"auto"`` guesses from the ``monitor`` name (``acc``,
            ``mae``), then from ``mode``, else ``"loss"``. The ``loss`` must be the one the metric
            is (e.g. not a label-smoothed cross-entropy).
        task: ``"auto"`` (from the targets and one forward pass on a validation batch), or one of
            ``"multiclass"``, ``"binary"``, ``"multilabel"``, ``"regression"``.
        loss: the loss the baselines are scored with: ``"auto"`` (cross-entropy, BCE or MSE by
            task), or one of ``"cross_entropy"``, ``"bce"``, ``"mse"``, ``"l1"``, ``"huber"``.
        human_baseline: a score a person reaches, in the units of ``monitor``; drawn and reported.
        margin: the fraction of the baseline's distance to a perfect score (0 for a loss, 1 for
            an accuracy) by which the metric must be better to count as beating it.
        num_classes: multiclass: the number of classes (default: the model's output width).
        ignore_index: multiclass: a sentinel label to leave out; ``-100`` by default, as
            ``F.cross_entropy`` (padding in language-model targets); ``None`` counts every label.
        input_key: where the inputs are in a batch (for the forward pass that infers the task).
        target_key: where the targets are in a batch.
        max_batches: read at most this many batches when the targets must be read from a
            dataloader (not from the dataset); a dataloader without ``len()`` (an iterable data
            set) is read for at most 100 batches unless this is set. A one-shot stream (an
            iterator, a data set whose ``__iter__`` hands out the same iterator) is never read:
            ``skipped``. Reading a dataloader leaves its shuffle order (``generator=``) as it was.
        log_figure: log the ``comparison`` figure at the end of fit.
        on_fail: accepted for symmetry with the other checks; the verdict is ``pass``, ``warn`` or
            ``skipped``.

    Attributes:
        findings: one finding at the end of fit.
        scores: the baselines' :class:`~lightning_recipe.core.baselines.BaselineScores` (``None``
            until training starts).
        baseline: the baseline value the monitored metric is compared with.
        beaten_at: ``(epoch, global_step, value)`` of the first validation that beat it, or ``None``.
        human_reached_at: the same for ``human_baseline``.
        history: ``(epoch, global_step, value)`` of the monitored metric at every validation.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.nn import functional as F
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from lightning.pytorch import LightningModule, Trainer
        >>> class Model(LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Linear(4, 3)
        ...     def forward(self, x):
        ...         return self.net(x)
        ...     def training_step(self, batch, batch_idx):
        ...         return F.cross_entropy(self(batch[0]), batch[1])
        ...     def validation_step(self, batch, batch_idx):
        ...         self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]))
        ...     def configure_optimizers(self):
        ...         return torch.optim.Adam(self.parameters(), lr=0.05)
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(256, 4, generator=g)
        >>> y = x[:, :3].argmax(dim=1)
        >>> data = DataLoader(TensorDataset(x, y), batch_size=32)
        >>> baselines = DumbBaselines(monitor="val_loss")
        >>> trainer = Trainer(max_epochs=3, logger=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, enable_checkpointing=False,
        ...                   callbacks=[baselines], default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(Model(), data, data)
        >>> round(baselines.scores.loss, 2), baselines.findings[0].status, baselines.beaten_at[0]
        (1.08, 'pass', 0)
    """


    def __init__(
        self,
        monitor: str = "val_loss",
        mode: Mode = "auto",
        compare_to: CompareTo = "auto",
        task: str = "auto",
        loss: str = "auto",
        human_baseline: float | None = None,
        margin: float = 0.01,
        num_classes: int | None = None,
        ignore_index: int | None = -100,
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        max_batches: int | None = None,
        log_figure: bool = True,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail)
        owner = self.name
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(
                f"{owner}(monitor={monitor!r}): pass the name of a logged validation metric, e.g. 'val_loss'."
            )
        check_choice(owner, "mode", mode, ("auto", "min", "max"))
        check_choice(owner, "compare_to", compare_to, ("auto", "loss", "accuracy", "mae"))
        check_task_argument(task, owner)
        check_choice(owner, "loss", loss, ("auto", *LOSSES))
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
        check_positive_int(owner, "num_classes", num_classes, allow_none=True, minimum=2)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise TypeError(f"{owner}(ignore_index={ignore_index!r}): pass an integer label or None.")
        check_positive_int(owner, "max_batches", max_batches, allow_none=True)
        self.validate_keys(owner, input_key, target_key)
        self.monitor = monitor
        self.compare_to, self.mode = _resolve_comparison(owner, monitor, mode, compare_to)
        self.task = task
        self.loss = loss
        self.human_baseline = None if human_baseline is None else float(human_baseline)
        self.margin = float(margin)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.input_key = input_key
        self.target_key = target_key
        self.max_batches = max_batches
        self.log_figure = bool(log_figure)
        self.scores: BaselineScores | None = None
        self.baseline: float | None = None
        self.beaten_at: tuple[int, int, float] | None = None
        self.human_reached_at: tuple[int, int, float] | None = None
        self.history: list[tuple[int, int, float]] = []
        self._active = False
        self._missing: list[str] | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor)

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._active = False
            self._missing = None

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_skip(trainer):
            return
        reason = ""
        scores: BaselineScores | None = None
        try:
            scores = self._compute(trainer, pl_module)
        except _Skip as err:
            reason = str(err)
        if not self.decide(trainer, scores is not None, all_=True):
            self._active = False
            self.record(trainer, "skipped", reason or "another process could not compute the baselines")
            return
        assert scores is not None
        self.scores = scores
        self.baseline = scores.value(self.compare_to)
        self._active = True
        self._log_baselines(trainer)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active or self.should_skip(trainer):
            return
        self._log_baselines(trainer)
        value = trainer.callback_metrics.get(self.monitor)
        if not self.decide(trainer, value is not None, all_=True):
            self._missing = sorted(str(k) for k in trainer.callback_metrics)
            return
        assert value is not None
        metric = torch.as_tensor(value, dtype=torch.float64).detach().reshape(-1)[0]
        if trainer.world_size > 1:  # the same number on every rank, even if logged without sync_dist
            metric = trainer.strategy.reduce(metric.to(trainer.strategy.root_device), reduce_op="mean").cpu()
        current = float(metric)
        point = (int(trainer.current_epoch), int(trainer.global_step), current)
        self.history.append(point)
        if self.beaten_at is None and self._beats(current):
            self.beaten_at = point
        if self.human_reached_at is None and self._reaches_human(current):
            self.human_reached_at = point

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active or not self.is_fitting(trainer):
            return
        self._active = False
        self._judge(trainer)
        if self.log_figure and trainer.is_global_zero and self.history and self.baseline is not None:
            self._log_comparison(trainer)

    # ------------------------------------------------------------------ state
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [list(p) for p in self.history],
            "beaten_at": None if self.beaten_at is None else list(self.beaten_at),
            "human_reached_at": None if self.human_reached_at is None else list(self.human_reached_at),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [_point(p) for p in state_dict.get("history", [])]
        beaten = state_dict.get("beaten_at")
        human = state_dict.get("human_reached_at")
        self.beaten_at = None if beaten is None else _point(beaten)
        self.human_reached_at = None if human is None else _point(human)

    # ------------------------------------------------------------------ baselines
    def _compute(self, trainer: Trainer, pl_module: LightningModule) -> BaselineScores:
        val_loader = self.val_dataloader(trainer)
        if val_loader is None:
            raise _Skip(
                "no validation data to score the baselines on; pass `val_dataloaders=` to `Trainer.fit` "
                "or a datamodule with `val_dataloader()`"
            )
        train_loader = self.first_dataloader(self.train_dataloader(trainer))
        for role, loader in (("training", train_loader), ("validation", val_loader)):
            if loader is not None and is_one_shot(loader):
                data = getattr(loader, "dataset", loader)
                raise _Skip(
                    f"the {role} data ({type(data).__name__}) is a one-shot stream (`iter()` hands out the same "
                    "iterator each time): reading its targets would take batches away from the real run; give "
                    "the dataset an `__iter__` that starts a new pass on each call (a generator)"
                )
        # iterating a dataloader draws a seed from the global RNG and advances its private
        # generators (shuffle order): put both back so that training sees the same batches
        with preserved_state(None, loaders=[train_loader, val_loader]):
            return self._scores(trainer, pl_module, train_loader, val_loader)

    def _scores(
        self, trainer: Trainer, pl_module: LightningModule, train_loader: Any, val_loader: Any
    ) -> BaselineScores:
        try:
            task, num_classes = self._resolve_task(trainer, pl_module, val_loader)
            loss = resolve_loss(task, self.loss, self.name)
            if self.compare_to != "loss" and (self.compare_to == "mae") != (task == "regression"):
                raise _Skip(
                    f"compare_to={self.compare_to!r} does not fit a {task} task (its baselines have a loss and "
                    f"{'a mean absolute error' if task == 'regression' else 'an accuracy'}); pass "
                    f"`compare_to=` {'loss' if task == 'regression' else 'loss or accuracy'!r}"
                )
            stats = self._train_stats(trainer, train_loader, task, num_classes)
            prediction = constant_prediction(stats)
            sums = self._val_sums(trainer, val_loader, prediction, task, loss)
            return baseline_scores(sums, task, loss)
        except ValueError as err:  # ambiguous task, targets not found, labels out of range
            raise _Skip(str(err)) from err

    def _resolve_task(
        self, trainer: Trainer, pl_module: LightningModule, val_loader: Any
    ) -> tuple[TaskLiteral, int | None]:
        batch = next(iter(val_loader), None)
        if batch is None:
            raise _Skip("the validation dataloader yielded no batch; pass validation data to `Trainer.fit`")
        parts = split_batch(batch, input_key=self.input_key, target_key=self.target_key, require_targets=True)
        assert parts.targets is not None
        outputs = None
        if self.task == "auto" or (self.num_classes is None and self.task == "multiclass"):
            outputs = self._forward(trainer, pl_module, batch)
        task: TaskLiteral = infer_task(parts.targets, outputs, self.task)
        num_classes = self.num_classes
        if task == "multiclass" and num_classes is None and outputs is not None and outputs.dim() >= 2:
            dense = (
                outputs.dim() >= 3
                and parts.targets.dim() >= 2
                and outputs.shape[-1] != parts.targets.shape[-1]
            )
            num_classes = int(outputs.shape[-1] if dense else outputs.shape[1])
        return task, num_classes

    def _forward(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> torch.Tensor | None:
        """The model's output on one validation batch (for the task and class count), or ``None``."""
        try:
            with preserved_state(pl_module):
                moved = trainer.strategy.batch_to_device(batch, trainer.strategy.root_device)
                inputs = split_batch(moved, input_key=self.input_key, target_key=self.target_key).inputs
                pl_module.eval()
                with torch.no_grad(), trainer.precision_plugin.forward_context():
                    out = pl_module(inputs)
        except Exception:  # a forward with another signature: infer from the targets alone
            return None
        tensor = first_tensor(out)
        return None if tensor is None else tensor.detach().float().cpu()

    def _train_stats(
        self, trainer: Trainer, loader: Any, task: TaskLiteral, num_classes: int | None
    ) -> TargetStats:
        def collect(dataset: Any) -> TargetStats:
            return collect_target_stats(
                task,
                dataset=dataset,
                dataloader=loader,
                target_key=self.target_key,
                num_classes=num_classes,
                max_batches=self.max_batches,
                ignore_index=self.ignore_index,
                progress=trainer.is_global_zero,
            )

        stats = collect(getattr(loader, "dataset", None))
        if trainer.world_size > 1 and not self.decide(trainer, stats.source == "dataset", all_=True):
            if stats.source == "dataset":  # every rank must count its own shard
                stats = collect(None)
            size = None
            if task == "multiclass":
                size = int(self.all_reduce_max(trainer, float(stats.num_outputs)))
            stats = TargetStats.from_tensor(task, self.all_reduce_sum(trainer, stats.to_tensor(size)))
        return stats

    def _val_sums(
        self, trainer: Trainer, loader: Any, prediction: torch.Tensor, task: TaskLiteral, loss: str
    ) -> torch.Tensor:
        targets = targets_from_dataset(getattr(loader, "dataset", None))
        fast = targets is not None
        if trainer.world_size > 1:
            fast = self.decide(trainer, fast, all_=True)
        if fast:
            assert targets is not None
            return baseline_sums(prediction, torch.as_tensor(targets), task, loss, self.ignore_index)
        total = torch.zeros(3, dtype=torch.float64)
        limit = self.max_batches
        if limit is None:
            try:
                len(loader)
            except TypeError:  # an iterable data set, possibly endless: an estimate from its start
                limit = UNSIZED_MAX_BATCHES
        for i, batch in enumerate(loader):
            if limit is not None and i >= limit:
                break
            parts = split_batch(
                batch, input_key=self.input_key, target_key=self.target_key, require_targets=True
            )
            assert parts.targets is not None
            total += baseline_sums(prediction, parts.targets, task, loss, self.ignore_index)
        return self.all_reduce_sum(trainer, total)

    # ------------------------------------------------------------------ verdict
    def _threshold(self) -> float:
        assert self.baseline is not None
        perfect = 1.0 if self.compare_to == "accuracy" else 0.0
        room = abs(perfect - self.baseline) * self.margin
        return self.baseline - room if self.mode == "min" else self.baseline + room

    def _beats(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        threshold = self._threshold()
        return value < threshold if self.mode == "min" else value > threshold

    def _reaches_human(self, value: float) -> bool:
        if self.human_baseline is None or not math.isfinite(value):
            return False
        return value <= self.human_baseline if self.mode == "min" else value >= self.human_baseline

    def _best(self) -> tuple[int, int, float] | None:
        finite = [p for p in self.history if math.isfinite(p[2])]
        if not finite:
            return None
        return min(finite, key=lambda p: p[2]) if self.mode == "min" else max(finite, key=lambda p: p[2])

    def _judge(self, trainer: Trainer) -> None:
        assert self.scores is not None and self.baseline is not None
        scores = self.scores
        what = self._baseline_words()
        numbers: dict[str, Any] = {
            "monitor": self.monitor,
            "baseline": self.baseline,
            **scores.tags(),
            "loss": scores.loss_name,
            "evaluations": len(self.history),
        }
        if self.human_baseline is not None:
            numbers["human_baseline"] = self.human_baseline
        if not self.history:
            if self._missing:
                message = (
                    f"no metric {self.monitor!r} was logged during validation; pass `monitor=` one of "
                    f"{self._missing}"
                )
            elif self._missing is not None:
                message = (
                    f"no metric {self.monitor!r} was logged during validation; log it with "
                    f"`self.log({self.monitor!r}, ...)` in `validation_step`, or pass `monitor=`"
                )
            else:
                message = (
                    "validation never ran during training, so the model was never compared with the baselines"
                )
            self.record(trainer, "skipped", message, numbers)
            return
        best = self._best()
        human = self._human_words()
        if best is not None:
            numbers.update(best_value=best[2], best_epoch=best[0], best_step=best[1])
        if self.beaten_at is not None:
            epoch, step, value = self.beaten_at
            numbers.update(beaten_epoch=epoch, beaten_step=step)
            best_text = f"; best {best[2]:.4g}" if best is not None else ""
            self.record(
                trainer,
                "pass",
                f"{self.monitor} beat {what} ({self.baseline:.4g}) first at epoch {epoch}, step {step} "
                f"({value:.4g}){best_text}{human}",
                numbers,
            )
            return
        best_text = f"{best[2]:.4g}" if best is not None else "not finite"
        self.record(
            trainer,
            "warn",
            f"{self.monitor} never beat {what}: best {best_text} vs {self.baseline:.4g} in {len(self.history)} "
            f"validation(s){human}; the model learned nothing a constant does not know: check that labels "
            "match inputs, that inputs reach the net, and the learning rate",
            numbers,
        )

    def _baseline_words(self) -> str:
        assert self.scores is not None
        if self.compare_to == "accuracy":
            return "the majority-class predictor's accuracy"
        if self.compare_to == "mae":
            return "the mean predictor's MAE"
        if self.scores.task == "regression":
            return f"the mean predictor's {self.scores.loss_name} loss"
        return f"the class-prior predictor's {self.scores.loss_name} loss"

    def _human_words(self) -> str:
        if self.human_baseline is None:
            return ""
        if self.human_reached_at is not None:
            epoch, step, _ = self.human_reached_at
            return f"; human baseline {self.human_baseline:.4g} reached at epoch {epoch}, step {step}"
        return f"; human baseline {self.human_baseline:.4g} not reached"

    # ------------------------------------------------------------------ logging
    def _log_baselines(self, trainer: Trainer) -> None:
        if self.scores is None:
            return
        values = {
            f"{_TAG}/{name}": value for name, value in self.scores.tags().items() if math.isfinite(value)
        }
        if self.human_baseline is not None:
            values[f"{_TAG}/human_baseline"] = self.human_baseline
        recipe_logging.log_scalars(trainer, values, trainer.global_step)

    def _log_comparison(self, trainer: Trainer) -> None:
        steps = np.asarray([p[1] for p in self.history], dtype=np.float64)
        values = np.asarray([p[2] for p in self.history], dtype=np.float64)
        baseline = float(self.baseline) if self.baseline is not None else float("nan")
        label = f"dumb baseline: {self._baseline_words()[4:]}"
        human = self.human_baseline
        beaten = None if self.beaten_at is None else (float(self.beaten_at[1]), float(self.beaten_at[2]))
        monitor = self.monitor

        def build():
            return _comparison_figure(steps, values, monitor, baseline, label, human, beaten)

        recipe_logging.log_figure(trainer, f"{_TAG}/comparison", build, trainer.global_step)


def _point(p: Any) -> tuple[int, int, float]:
    return (int(p[0]), int(p[1]), float(p[2]))


def _resolve_comparison(owner: str, monitor: str, mode: str, compare_to: str) -> tuple[str, str]:
    """``(compare_to, mode)`` with ``"auto"`` resolved; raises for an inconsistent explicit pair."""
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


def _comparison_figure(
    steps: np.ndarray,
    values: np.ndarray,
    monitor: str,
    baseline: float,
    label: str,
    human: float | None,
    beaten: tuple[float, float] | None,
) -> Any:
    fig = new_figure(6.4, 3.6, dpi=100)
    ax = fig.add_subplot()
    ax.plot(steps, values, "o-", color="tab:blue", linewidth=1.6, markersize=4, label=monitor)
    ax.axhline(baseline, color="tab:red", linestyle="--", linewidth=1.4, label=f"{label} ({baseline:.4g})")
    if human is not None:
        ax.axhline(
            human, color="tab:green", linestyle=":", linewidth=1.6, label=f"human baseline ({human:.4g})"
        )
    if beaten is not None:
        ax.plot(
            [beaten[0]],
            [beaten[1]],
            marker="*",
            color="gold",
            markeredgecolor="black",
            markersize=14,
            linestyle="none",
            label="first beat the baseline",
        )
    ax.set_xlabel("global step")
    ax.set_ylabel(monitor)
    ax.set_title("Dumb baselines: the model must beat them", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
