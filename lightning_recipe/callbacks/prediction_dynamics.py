"""PredictionDynamics: the recipe's "visualize prediction dynamics"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer
from lightning_recipe.callbacks.base import OnFail, RecipeCallback
from lightning_recipe.core.batches import KeySpec, map_tensors
from lightning_recipe.core.budget import Cadence
from lightning_recipe.core.checks.prediction_dynamics import (
    Trajectories,
    add_point,
    call_failure,
    figure_arguments,
    predictions_for,
    resolve_output,
    restored_batch,
    sequence_objective,
    take_batch,
    validate_arguments,
)
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tasks import SequenceObjective, ShiftArg, TaskArg
from lightning_recipe.findings import Skip
from lightning_recipe.plots.prediction_dynamics import figure_builders

__all__ = ["PredictionDynamics", "predictions_for"]

_PREFIX = "recipe/prediction_dynamics/"
_POINT_EVERY = 50  # steps between two points (scalars; figures when they fit the budget)
_FIGURES_COST_S = 0.15  # a guess of what drawing the two figures costs, before the first is drawn
Source = Literal["val", "train"]


class PredictionDynamics(RecipeCallback):
    """Plot the model's predictions on one fixed batch over the course of training.

    Recipe, "visualize prediction dynamics": *"I like to visualize model predictions on a fixed
    test batch during the course of training. [...] Very low or very high learning rates are also
    easily noticeable in the amount of jitter."* Every 50 steps the model runs in eval mode on
    ``num_samples`` validation samples: ``recipe/prediction_dynamics/trajectories`` and
    ``.../predictions`` (Images; at step 0, at the end and within ``overhead`` in between),
    ``.../jitter``, ``.../mean_true_prob`` or ``.../mean_abs_error`` (Scalars). Rank zero only.
    See the README section "Seeing the run".

    Args:
        num_samples: how many samples the fixed batch holds (panels in the figure; at most 64).
        every_n_train_steps: log (figures included) at step 0 and every this many optimizer steps;
            ``None`` (default): scalars every 50 steps, figures within ``overhead``.
        overhead: the fraction of training time this callback may spend (with the default cadence).
        source: ``"val"`` (falls back to the training data) or ``"train"``.
        task: ``"auto"``, ``"multiclass"``, ``"binary"``, ``"multilabel"`` or ``"regression"``.
        input_key, target_key: where inputs and targets are in a batch (key, position or callable).
        class_names: names for class indices, shown in the panel titles.
        forward: ``callable(pl_module, inputs) -> output``, when the model is called another way.
        on_fail: ``"warn"`` or ``"raise"`` (it only ever records ``skipped``).
        shift: how far token targets run ahead of the logits (1: a causal LM), or ``"auto"``.

    Attributes:
        findings: ``skipped`` when it cannot run (the message names the argument to pass).
        task, steps, jitter: the task it plots, the steps logged, the jitter at each step after the first.

    Raises:
        ValueError: for a bad ``num_samples``, ``every_n_train_steps``, ``source`` or ``task``.
        TypeError: for a ``forward`` or ``class_names`` of the wrong type.

    Example:
        >>> from lightning_recipe.demos import TinyClassifier, classification_data, tiny_trainer
        >>> dynamics = PredictionDynamics(num_samples=4, every_n_train_steps=2)
        >>> trainer = tiny_trainer(max_steps=4, callbacks=[dynamics], default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(TinyClassifier(num_classes=3), classification_data(num_classes=3))
        >>> dynamics.task, dynamics.steps, len(dynamics.jitter)
        ('multiclass', [0, 2, 4], 2)
    """

    def __init__(
        self,
        num_samples: int = 16,
        every_n_train_steps: int | None = None,
        overhead: float = 0.01,
        source: Source = "val",
        task: TaskArg = "auto",
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        class_names: Sequence[str] | None = None,
        forward: Callable[[LightningModule, Any], Any] | None = None,
        on_fail: OnFail = "warn",
        shift: ShiftArg = "auto",
    ) -> None:
        super().__init__(on_fail=on_fail)
        owner = type(self).__name__
        self.overhead = validate_arguments(
            owner, num_samples, every_n_train_steps, overhead, source, task, class_names, forward, shift
        )
        self.validate_keys(owner, input_key, target_key)
        self.num_samples, self.every_n_train_steps, self.source = num_samples, every_n_train_steps, source
        self.task_argument, self.input_key, self.target_key = task, input_key, target_key
        self.class_names = list(class_names) if class_names is not None else None
        self.forward, self.shift = forward, shift
        self._reset()

    def _reset(self) -> None:
        self.task: str | None = None
        self._trace, self._disabled = Trajectories(), False
        self._batch: Any = None
        self._inputs: Any = None
        self._targets: torch.Tensor | None = None
        self._source_used: str | None = None
        self._objective: SequenceObjective | None = None
        self._aligned = False  # the objective was inferred (it may be None: no token targets)
        self._call = ModelCall(self.forward, self.input_key, self.target_key)
        self._points = self.every_n_train_steps or _POINT_EVERY
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray, Any] | None = None
        self._figured: int | None = None
        self._figures = Cadence(
            self.every_n_train_steps, base=_POINT_EVERY, share=self.overhead, first_cost_s=_FIGURES_COST_S
        )

    @property
    def steps(self) -> list[int]:
        return self._trace.steps

    @property
    def jitter(self) -> list[float]:
        return self._trace.jitter

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(source=self.source, num_samples=self.num_samples)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._reset()

    # ------------------------------------------------------------------ hooks
    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_skip(trainer) or not trainer.is_global_zero:
            return
        self.start_cadence(trainer, self._figures)
        if self._inputs is None:
            self._take_batch(trainer, pl_module)
        if trainer.global_step == 0 and not self.steps:
            self._log(trainer, pl_module, 0)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self._points or (self.steps and self.steps[-1] == step):
            return
        if self._disabled or not trainer.is_global_zero or self.should_skip(trainer):
            return
        self._log(trainer, pl_module, int(step))

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # the budgeted cadence always shows the end of fit (a fixed cadence logs what it was asked to)
        if self._figures.fixed or self._disabled or not trainer.is_global_zero or self.should_skip(trainer):
            return
        step = int(trainer.global_step)
        if self.steps and self.steps[-1] == step:
            if self._figured != step:
                self._redraw(trainer, step)
            return
        self._log(trainer, pl_module, step, figures=True)

    def _skip(self, trainer: Trainer, message: str, numbers: dict[str, Any] | None = None) -> None:
        self._disabled = True  # then its hooks return at once
        self.record(trainer, "skipped", message, numbers)

    def _take_batch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        with preserved_state(pl_module):
            loaders = [("val", self.val_dataloader(trainer))] if self.source == "val" else []
            loaders.append(("train", self.first_dataloader(self.train_dataloader(trainer))))
            try:
                taken = take_batch(loaders, self.num_samples, self.input_key, self.target_key)
            except Skip as err:
                self._skip(trainer, str(err))
                return
        self._batch, self._inputs, self._targets, self._source_used = taken

    def _log(self, trainer: Trainer, pl_module: LightningModule, step: int, figures: bool = False) -> None:
        if self._disabled or self._inputs is None or self._targets is None:
            return
        batch = trainer.precision_plugin.convert_input(
            map_tensors(self._batch, lambda t: t.to(pl_module.device))
        )
        try:
            result = self._call(pl_module, batch, context=trainer.precision_plugin.forward_context())
        except Exception as err:
            message = call_failure(self._call, pl_module, batch, self._inputs, err)
            self._skip(trainer, message, {"error": type(err).__name__})
            self.warn(f"{self.name}: {self.findings[-1].message}")
            return
        output = None if result.logits is None else result.logits.detach().float().cpu()
        try:
            self.task = resolve_output(output, self._targets, self.task, self.task_argument)
        except Skip as err:
            self._skip(trainer, str(err))
            return
        assert output is not None
        if not self._aligned:
            self._aligned = True
            self._objective = sequence_objective(
                output, self._targets, self._batch, pl_module, result.loss, self.shift
            )
        scalars, self._last = add_point(self._trace, step, self.task, self._objective, output, self._targets)
        writer.log_scalars(trainer, {_PREFIX + k: v for k, v in scalars.items()}, step)
        if figures or self.cadence_due(self._figures, step):
            self._redraw(trainer, step)

    def _redraw(self, trainer: Trainer, step: int) -> None:
        """Draw the figures of the last point (at ``step``), and schedule the next ones."""
        if self._last is None:
            return
        self._figured = step
        args = figure_arguments(
            self._trace, str(self.task), self._last, self._inputs, self.class_names, step, self._objective
        )
        for name, build in zip(("trajectories", "predictions"), figure_builders(*args)):
            writer.log_figure(trainer, _PREFIX + name, build, step)
        self.cadence_taken(trainer, self._figures, step)

    # ------------------------------------------------------------------ checkpoint state
    @override
    def state_dict(self) -> dict[str, Any]:
        parts = {"batch": self._batch, "inputs": self._inputs, "targets": self._targets, "task": self.task}
        return {**parts, **self._trace.state_dict(), "source_used": self._source_used}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._batch, self._inputs, self._targets, call = restored_batch(state_dict, self.forward)
        self._call = call or self._call
        self.task = state_dict.get("task") if self.task_argument == "auto" else self.task_argument
        self._trace = Trajectories.from_state(state_dict)
        self._source_used = state_dict.get("source_used")
