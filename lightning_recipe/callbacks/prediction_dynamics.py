"""PredictionDynamics: the recipe's "visualize prediction dynamics"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_choice, check_positive_int
from lightning_recipe.core.batches import KeySpec, first_tensor, map_tensors
from lightning_recipe.core.budget import Cadence, check_overhead
from lightning_recipe.core.checks.prediction_dynamics import (
    NO_DATA,
    Trajectories,
    call_failed,
    cut_batch,
    describe_call,
    line_up,
    predictions_for,
    resolve_output,
    sequence_objective,
    spread_batch,
)
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tasks import SequenceObjective, ShiftArg, check_shift_argument, check_task_argument
from lightning_recipe.findings import Skip
from lightning_recipe.plots.prediction_dynamics import (
    predictions_figure,
    top_tokens_figure,
    trajectory_figure,
)
from lightning_recipe.plots.style import is_image_like, to_display_images

__all__ = ["PredictionDynamics", "predictions_for"]

_PREFIX = "recipe/prediction_dynamics/"
#: Steps between two points (scalars; figures when they fit the budget) of the default cadence.
_POINT_EVERY = 50
Source = Literal["val", "train"]


class PredictionDynamics(RecipeCallback):
    """Plot the model's predictions on one fixed batch over the course of training.

    Recipe, "visualize prediction dynamics": *"I like to visualize model predictions on a fixed
    test batch during the course of training. [...] Very low or very high learning rates are also
    easily noticeable in the amount of jitter."* At the start of fit it keeps ``num_samples``
    samples spread over the validation data (on the CPU and in the checkpoint); at step 0 and every
    50 steps (or every ``every_n_train_steps``) the model runs on them in eval mode, called as its own step calls
    it (``core.model_call``), and TensorBoard gets ``recipe/prediction_dynamics/trajectories`` and
    ``.../predictions`` (Images), ``.../jitter`` and ``.../mean_true_prob`` or ``.../mean_abs_error``
    (Scalars). A language model's ``(N, T, V)`` logits are lined up with the token each position
    predicts (``core.tasks.infer_sequence_objective``: the next one for a causal LM), and a
    vocabulary of more than 20 tokens is shown as the top-5 tokens at one position per sample.
    Rank zero only. See the README section "PredictionDynamics".

    Cost: by default the figures (the costly part) are drawn at step 0, at the end of fit, and in
    between as often as ``overhead`` allows (this callback's time over the training time so far);
    an explicit ``every_n_train_steps`` draws them at every point instead, whatever they cost.

    Args:
        num_samples: how many samples the fixed batch holds (panels in the figure; at most 64).
        every_n_train_steps: log (figures included) at step 0 and every this many optimizer steps;
            ``None`` (default): scalars every 50 steps, figures within ``overhead``.
        overhead: the fraction of training time this callback may spend (with the default cadence).
        source: ``"val"`` (falls back to the training data) or ``"train"``.
        task: ``"auto"`` (inferred from targets and outputs), ``"multiclass"``, ``"binary"``,
            ``"multilabel"`` or ``"regression"``.
        input_key: where the inputs are in a batch (dict key, position or callable).
        target_key: where the targets are.
        class_names: names for class indices, shown in the panel titles.
        forward: ``callable(pl_module, inputs) -> output`` when the model is not called the way the
            batch and ``forward``'s signature suggest.
        on_fail: ``"warn"`` or ``"raise"`` (it only ever records ``skipped``).
        shift: token targets: ``"auto"`` (inferred), or the positions the targets run ahead of the
            logits (1: a causal language model, ``logits[:, t]`` predict ``labels[:, t + 1]``).

    Attributes:
        findings: ``skipped`` when it cannot run (the message names the argument to pass).
        task: the task it plots (after the first log).
        steps: the global steps logged so far.
        jitter: the jitter at each logged step after the first.

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
        task: str = "auto",
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        class_names: Sequence[str] | None = None,
        forward: Callable[[LightningModule, Any], Any] | None = None,
        on_fail: OnFail = "warn",
        shift: ShiftArg = "auto",
    ) -> None:
        super().__init__(on_fail=on_fail)
        owner = type(self).__name__
        check_shift_argument(shift, owner)
        check_positive_int(owner, "num_samples", num_samples)
        if num_samples > 64:
            raise ValueError(
                f"{owner}(num_samples={num_samples!r}): at most 64 samples fit in a readable figure."
            )
        check_positive_int(owner, "every_n_train_steps", every_n_train_steps, allow_none=True)
        self.overhead = check_overhead(owner, overhead)
        check_choice(owner, "source", source, ("val", "train"))
        check_task_argument(task, owner)
        self.validate_keys(owner, input_key, target_key)
        if class_names is not None and (
            isinstance(class_names, str) or not isinstance(class_names, Sequence)
        ):
            raise TypeError(
                f"{owner}(class_names={class_names!r}): pass a list of names, one per class index."
            )
        if forward is not None and not callable(forward):
            raise TypeError(f"{owner}(forward={forward!r}): pass a callable(pl_module, inputs) or None.")
        self.num_samples = num_samples
        self.every_n_train_steps = every_n_train_steps
        self.source = source
        self.task_argument = task
        self.input_key = input_key
        self.target_key = target_key
        self.class_names = list(class_names) if class_names is not None else None
        self.forward = forward
        self.shift = shift
        self._reset()

    def _reset(self) -> None:
        self.task: str | None = None
        self._trace = Trajectories()
        self._batch: Any = None
        self._inputs: Any = None
        self._targets: torch.Tensor | None = None
        self._source_used: str | None = None
        self._disabled = False
        self._objective: SequenceObjective | None = None
        self._aligned = False  # the objective was inferred (it may be None: no token targets)
        self._call = ModelCall(self.forward, self.input_key, self.target_key)
        self._points = self.every_n_train_steps or _POINT_EVERY
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray, Any] | None = None
        self._figured: int | None = None
        self._figures = Cadence(self.every_n_train_steps, base=_POINT_EVERY, share=self.overhead)

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

    # ------------------------------------------------------------------ work
    def _skip(self, trainer: Trainer, message: str, numbers: dict[str, Any] | None = None) -> None:
        self._disabled = True
        self.record(trainer, "skipped", message, numbers)

    def _take_batch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        batch = None
        with preserved_state(pl_module):
            loaders = [("val", self.val_dataloader(trainer))] if self.source == "val" else []
            for name, loader in [*loaders, ("train", self.first_dataloader(self.train_dataloader(trainer)))]:
                batch = None if loader is None else spread_batch(loader, self.num_samples)
                if batch is not None:
                    self._source_used = name
                    break
        if batch is None:
            self._skip(trainer, NO_DATA)
            return
        try:
            self._batch, self._inputs, self._targets = cut_batch(
                batch, self.num_samples, self.input_key, self.target_key
            )
        except ValueError as err:
            self._skip(trainer, f"skipped, because {err}")

    def _log(self, trainer: Trainer, pl_module: LightningModule, step: int, figures: bool = False) -> None:
        if self._disabled or self._inputs is None or self._targets is None:
            return
        batch = map_tensors(self._batch, lambda t: t.to(pl_module.device))
        try:
            result = self._call(pl_module, batch, context=trainer.precision_plugin.forward_context())
        except Exception as err:
            shape = tuple(t.shape) if isinstance(t := first_tensor(self._inputs), torch.Tensor) else None
            how = describe_call(self._call, pl_module, batch)
            self._skip(trainer, call_failed(how, shape, err), {"error": type(err).__name__})
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
        output, targets, view = line_up(self._objective, output, self._targets)
        scalars, preds, decided = self._trace.add(step, self.task, output, targets)
        writer.log_scalars(trainer, {_PREFIX + k: v for k, v in scalars.items()}, step)
        self._last = (preds.copy(), decided.copy(), targets.float().numpy().copy(), view)
        if figures or self.cadence_due(self._figures, step):
            self._redraw(trainer, step)

    def _redraw(self, trainer: Trainer, step: int) -> None:
        """Draw the figures of the last point (at ``step``), and schedule the next ones."""
        if self._last is None:
            return
        self._figured = step
        self._submit_figures(trainer, step, *self._last)
        self.cadence_taken(trainer, self._figures, step)

    def _submit_figures(
        self,
        trainer: Trainer,
        step: int,
        preds: np.ndarray,
        decided: np.ndarray,
        targets: np.ndarray,
        view: Any,
    ) -> None:
        task, names = str(self.task), list(self.class_names) if self.class_names else None
        steps = np.asarray(self.steps, dtype=np.float64)
        values = np.asarray(self._trace.values, dtype=np.float64)  # (T, N)
        causal = self._objective is not None and self._objective.causal
        ylabel = "p(true next token)" if causal else None
        x = self._inputs if isinstance(self._inputs, torch.Tensor) else None
        image = x is not None and x.is_floating_point() and is_image_like(tuple(x.shape))
        thumbs = to_display_images(x.float().numpy()) if image and x is not None else None

        # partials of module-level plot functions with numpy arguments: picklable for the render process
        trajectories = partial(
            trajectory_figure, task, steps, values, targets, preds, decided, thumbs, names, step, ylabel
        )
        if view is not None:
            predictions = partial(top_tokens_figure, view, names, step, next_token=causal)
        else:
            predictions = partial(predictions_figure, task, targets, preds, names, step)
        writer.log_figure(trainer, _PREFIX + "trajectories", trajectories, step)
        writer.log_figure(trainer, _PREFIX + "predictions", predictions, step)

    # ------------------------------------------------------------------ checkpoint state
    @override
    def state_dict(self) -> dict[str, Any]:
        parts = {"batch": self._batch, "inputs": self._inputs, "targets": self._targets, "task": self.task}
        return {**parts, **self._trace.state_dict(), "source_used": self._source_used}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._inputs = state_dict.get("inputs")
        self._targets = state_dict.get("targets")
        self._batch = state_dict.get("batch")
        if self._batch is None and self._inputs is not None:  # a checkpoint that kept the inputs only
            self._batch = [self._inputs, self._targets]
            self._call = ModelCall(self.forward or _positional, input_key=0, target_key=1)
        self.task = state_dict.get("task") if self.task_argument == "auto" else self.task_argument
        self._trace = Trajectories.from_state(state_dict)
        self._source_used = state_dict.get("source_used")


def _positional(module: Any, inputs: Any) -> Any:
    return module(inputs)
