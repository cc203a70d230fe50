"""DumbBaselines: the recipe's "dumb baselines" and "human baseline"."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer
from lightning_recipe.callbacks.base import OnFail, RecipeCallback
from lightning_recipe.core.baselines import BaselineScores
from lightning_recipe.core.batches import KeySpec
from lightning_recipe.core.checks import dumb_baselines as checks
from lightning_recipe.core.checks.data_inspector import loss_weighting
from lightning_recipe.core.checks.dumb_baselines import CompareTo, Comparison, Mode, Point
from lightning_recipe.core.losses import declared_regression_loss, resolve_loss
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tasks import ShiftArg, TaskArg
from lightning_recipe.findings import Skip
from lightning_recipe.plots.dumb_baselines import comparison_figure

__all__ = ["DumbBaselines"]

_TAG = "recipe/dumb_baselines"


class DumbBaselines(RecipeCallback):
    """Score dumb baselines on the validation data, draw them next to the model's metric, say when it beat them.

    Recipe, "dumb baselines" and "human baseline": *"we are also armed with (...) the performance
    of a few dumb baselines (we better beat these), and we have a rough sense of the performance of
    a human (we hope to reach this)."* From the training targets it builds predictors that never
    look at the input (class prior and majority class; the mean for regression) and scores them on
    the validation targets (token targets of a language model: the unigram token prior, from the
    positions a causal LM predicts): ``recipe/dumb_baselines/prior_loss``, ``.../majority_accuracy`` (or
    ``.../mean_loss``, ``.../mean_mae``) and ``.../human_baseline`` at step 0 and after every
    validation. At the end of fit: the figure ``.../comparison`` and the verdict, ``pass`` when
    ``monitor`` beat the baseline at some validation, ``warn`` when it never did, ``skipped`` (naming
    the argument to pass) when it cannot tell. See the README section "DumbBaselines".

    Args:
        monitor: the validation metric to compare, as logged.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (``"max"`` for an accuracy).
        compare_to: ``"loss"``, ``"accuracy"``, ``"mae"`` or ``"auto"`` (from ``monitor``'s name).
        task: ``"auto"`` (from the targets and one forward pass), or a task name.
        loss: ``"auto"`` (by task), ``"cross_entropy"``, ``"bce"``, ``"mse"``, ``"l1"`` or ``"huber"``.
        human_baseline: a score a person reaches, in the units of ``monitor``.
        margin: beat the baseline by this fraction of its distance to a perfect score.
        num_classes: multiclass: the number of classes (default: the model's output width).
        ignore_index: multiclass: a label to leave out (``-100``, as ``F.cross_entropy``), or ``None``.
        input_key: where the inputs are in a batch; target_key: where the targets are.
        max_batches: read at most this many batches when targets come from a dataloader (unsized: 100).
        log_figure: log the ``comparison`` figure.
        on_fail: accepted for symmetry; the verdict is ``pass``, ``warn`` or ``skipped``.
        shift: token targets: ``"auto"`` (inferred), or how many leading positions the model never
            predicts (1: a causal language model).

    Attributes:
        findings: one finding at the end of fit; scores: the ``BaselineScores`` (after the start).
        baseline: the baseline value the monitored metric is compared with.
        history: ``(epoch, global_step, value)`` of the monitored metric at every validation;
            beaten_at / human_reached_at: the first that beat the baseline / reached ``human_baseline``.

    Raises:
        ValueError: for a bad argument, or a ``mode`` that contradicts ``compare_to``.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from lightning_recipe.demos import TinyClassifier, tiny_trainer
        >>> x = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
        >>> data = DataLoader(TensorDataset(x, x[:, :3].argmax(dim=1)), batch_size=32)
        >>> baselines = DumbBaselines(monitor="val_loss")
        >>> trainer = tiny_trainer(max_epochs=3, limit_val_batches=1.0, callbacks=[baselines],
        ...                        default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(TinyClassifier(in_features=4, num_classes=3, lr=0.5), data, data)
        >>> round(baselines.scores.loss, 2), baselines.findings[0].status, baselines.beaten_at[0]
        (1.08, 'pass', 0)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: Mode = "auto",
        compare_to: CompareTo = "auto",
        task: TaskArg = "auto",
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
        shift: ShiftArg = "auto",
    ) -> None:
        super().__init__(on_fail)
        owner = self.name
        checks.validate_choices(owner, mode, compare_to, task, loss, num_classes, max_batches, shift)
        checks.check_arguments(owner, monitor, human_baseline, margin, ignore_index)
        self.validate_keys(owner, input_key, target_key)
        self.monitor, self.task, self.loss, self.margin = monitor, task, loss, float(margin)
        self.compare_to, self.mode = checks.resolve_comparison(owner, monitor, mode, compare_to)
        self.human_baseline = None if human_baseline is None else float(human_baseline)
        self.num_classes, self.ignore_index, self.max_batches = num_classes, ignore_index, max_batches
        self.input_key, self.target_key = input_key, target_key
        self.log_figure, self.shift = bool(log_figure), shift
        self.scores: BaselineScores | None = None
        self.baseline: float | None = None
        self.beaten_at: Point | None = None
        self.human_reached_at: Point | None = None
        self.history: list[Point] = []
        self._rule = Comparison(self.monitor, self.compare_to, self.mode, self.margin, self.human_baseline)
        self._active = False
        self._missing: list[str] | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor)

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
        scores, reason = self.agreed(
            trainer, lambda: self._compute(trainer, pl_module), "compute the baselines"
        )
        if scores is None:
            self._active = False
            self.record(trainer, "skipped", reason)
            return
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
        assert value is not None and self.baseline is not None
        metric = torch.as_tensor(value, dtype=torch.float64).detach().reshape(-1)[0]
        if trainer.world_size > 1:  # the same number on every rank, even if logged without sync_dist
            metric = trainer.strategy.reduce(metric.to(trainer.strategy.root_device), reduce_op="mean").cpu()
        current = float(metric)
        now = (int(trainer.current_epoch), int(trainer.global_step), current)
        self.history.append(now)
        if self.beaten_at is None and self._rule.beats(current, self.baseline):
            self.beaten_at = now
        if self.human_reached_at is None and self._rule.reaches_human(current):
            self.human_reached_at = now

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active or not self.is_fitting(trainer):
            return
        self._active = False
        assert self.scores is not None
        verdict = checks.judge(
            self._rule, self.scores, self.history, self.beaten_at, self.human_reached_at, self._missing
        )
        self.record(trainer, *verdict)
        if self.log_figure and trainer.is_global_zero and self.history and self.baseline is not None:
            self._log_comparison(trainer)

    @override
    def state_dict(self) -> dict[str, Any]:
        return checks.history_state(self.history, self.beaten_at, self.human_reached_at)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history, self.beaten_at, self.human_reached_at = checks.load_history(state_dict)

    def _compute(self, trainer: Trainer, pl_module: LightningModule) -> BaselineScores:
        val_loader = self.val_dataloader(trainer)
        train = self.train_dataloader(trainer) if val_loader is not None else None
        train_loader = None if train is None else self.first_dataloader(train)
        checks.check_streams(train_loader, val_loader)
        reducer = checks.Reducer(
            trainer.world_size,
            lambda flag: self.decide(trainer, flag, all_=True),
            lambda tensor: self.all_reduce_sum(trainer, tensor),
            lambda value: self.all_reduce_max(trainer, value),
        )
        # iterating a dataloader draws a seed from the global RNG and advances its private
        # generators (shuffle order): put both back so that training sees the same batches
        with preserved_state(None, loaders=[train_loader, val_loader]):
            try:  # an ambiguous task, targets not found, labels out of range
                task, num_classes, objective = self._resolve_task(trainer, pl_module, val_loader)
                weighted = loss_weighting(pl_module) if self.compare_to == "loss" else None
                if weighted is not None:  # its loss is not the one the constants are scored with
                    raise Skip(f"{weighted}: {self.monitor} is not comparable with the unweighted loss of "
                               "the constant baselines; compare an unweighted metric (`monitor=`, "
                               "`compare_to=\"accuracy\"` or `\"mae\"`)")  # fmt: skip
                declared = declared_regression_loss(pl_module) if task == "regression" else None
                loss = resolve_loss(
                    task, declared if self.loss == "auto" and declared else self.loss, self.name
                )
                checks.check_compare_to(self.compare_to, task)
                return checks.score_baselines(
                    train_loader, val_loader, task, loss, num_classes, input_key=self.input_key,
                    target_key=self.target_key, ignore_index=self.ignore_index, max_batches=self.max_batches,
                    progress=trainer.is_global_zero, reducer=reducer,
                    shift=objective.shift if objective else 0, tokens=objective is not None,
                )  # fmt: skip
            except ValueError as err:
                raise Skip(str(err)) from err

    def _resolve_task(self, trainer: Trainer, pl_module: LightningModule, loader: Any) -> checks.Resolved:
        """The task, class count and token objective from one validation batch and the model's output on it."""
        call = ModelCall(input_key=self.input_key, target_key=self.target_key)

        def forward(batch: Any) -> tuple[Any, Any]:
            moved = self.loop_batch(trainer, batch)
            result = call(pl_module, moved, context=trainer.precision_plugin.forward_context())
            return result.logits, result.loss

        keys = (self.input_key, self.target_key, self.shift, self.ignore_index, pl_module)
        return checks.task_from_batch(next(iter(loader), None), forward, self.task, self.num_classes, *keys)

    def _log_baselines(self, trainer: Trainer) -> None:
        if self.scores is None:
            return
        values = {f"{_TAG}/{k}": v for k, v in self.scores.tags().items() if math.isfinite(v)}
        values.update({} if self.human_baseline is None else {f"{_TAG}/human_baseline": self.human_baseline})
        writer.log_scalars(trainer, values, trainer.global_step)

    def _log_comparison(self, trainer: Trainer) -> None:
        assert self.scores is not None and self.baseline is not None
        steps, values = (np.asarray([p[i] for p in self.history], dtype=np.float64) for i in (1, 2))
        label = f"dumb baseline: {self._rule.baseline_words(self.scores)[4:]}"
        beaten = None if self.beaten_at is None else (float(self.beaten_at[1]), float(self.beaten_at[2]))
        args = (steps, values, self.monitor, float(self.baseline), label, self.human_baseline, beaten)
        writer.log_figure(
            trainer, f"{_TAG}/comparison", partial(comparison_figure, *args), trainer.global_step
        )
