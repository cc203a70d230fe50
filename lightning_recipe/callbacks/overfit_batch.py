"""OverfitBatchCheck: the recipe's "overfit one batch"."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks._shadow import ShadowTrainer, ShadowUnsupported
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.callbacks.batch_independence import agree
from lightning_recipe.core.batches import KeySpec
from lightning_recipe.core.budget import check_one_time, shared_budget
from lightning_recipe.core.checks.overfit_batch import (  # the thresholds: importable from here as before
    CLASSIFICATION_TARGET,  # noqa: F401
    DIVERGED,  # noqa: F401
    R2_TARGET,  # noqa: F401
    RELATIVE_TARGET,  # noqa: F401
    SMOOTHING_SLACK,  # noqa: F401
    OverfitConfig,
    OverfitOutcome,
    batch_examples,
    overfit,
)
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.shadow import local_batchnorm
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tasks import TaskArg, check_task_argument
from lightning_recipe.findings import Finding
from lightning_recipe.plots.overfit_batch import summary_figure

__all__ = ["OverfitBatchCheck"]


class OverfitBatchCheck(RecipeCallback):
    """Train a copy of the model on a few examples and check that it reaches the lowest loss.

    Recipe, "overfit one batch": *"Overfit a single batch of only a few examples (e.g. as little
    as two) [...] and verify that we can reach the lowest achievable loss (e.g. zero)."* On the
    first training batch, before the first optimizer step, a deep copy of the module trains on
    ``num_samples`` examples of that batch with the user's own ``training_step`` and the first
    optimizer of ``configure_optimizers`` (schedulers not stepped), for at most ``max_steps``
    steps. ``pass`` when the loss reaches the lowest achievable value (classification: 0.05; regression:
    R² >= 0.99 or 1% of the initial loss; label smoothing: its floor), ``fail`` when it plateaus
    above it or rises (the message names the likely cause), ``warn`` when still falling at the end.
    The real model, optimizer, logger, batch and random state are untouched.

    TensorBoard: ``recipe/overfit_batch/loss`` (the copy's loss per step) and the figure
    ``recipe/overfit_batch/summary`` (loss curve; label against prediction per example).

    Args:
        num_samples: how many examples of the first batch to overfit (2 to a few dozen).
        max_steps: the most optimizer steps for the copy.
        patience: steps without meaningful improvement before the loss counts as a plateau.
        target_loss: the loss to reach when it has a known non-zero minimum; ``None``: judged automatically.
        task: ``"auto"``, ``"multiclass"``, ``"binary"``, ``"multilabel"`` or ``"regression"``.
        input_key: where the inputs are in the batch (for the predictions in the figure).
        target_key: where the targets are in the batch.
        forward: ``callable(module, inputs) -> outputs`` when the module is not called the usual way
            (predictions only; by default inferred: ``module(inputs)``, ``module(**batch)``...).
        augment_off: ``callable(module_copy)`` run on the copy before training, to switch off
            augmentation or noise done inside the module.
        prepare_batch: ``callable(batch) -> batch`` applied to the examples before training.
        log_figure: log the summary figure.
        one_time: the share of the planned run the one-time checks may take together (README
            "Cost"): the finding says the steps and seconds against this check's part. The copy
            still trains to the target, a plateau or ``max_steps`` (fewer steps could turn a
            ``pass`` into a ``warn``). ``None`` (default alone): no budget.
        on_fail: ``"warn"`` (default) or ``"raise"`` a ``RecipeCheckError`` on a ``fail``.

    Attributes:
        findings: one finding (``pass``, ``warn``, ``fail``, or ``skipped`` with the reason).
        losses: the copy's loss at each step (the last one after the final update).

    Raises:
        ValueError: for bad arguments.
        RecipeCheckError: when the check fails under ``on_fail="raise"``.

    Example:
        >>> import torch
        >>> from lightning_recipe.demos import TinyClassifier, classification_data
        >>> _ = torch.manual_seed(0)
        >>> batch = next(iter(classification_data()))
        >>> OverfitBatchCheck(num_samples=4).check(TinyClassifier(hidden=32, lr=0.5), batch).status
        'pass'

    See the README section "`OverfitBatchCheck` ("overfit one batch")".
    """

    def __init__(
        self,
        num_samples: int = 8,
        max_steps: int = 300,
        patience: int = 50,
        target_loss: float | None = None,
        task: TaskArg = "auto",
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        augment_off: Callable[[nn.Module], Any] | None = None,
        prepare_batch: Callable[[Any], Any] | None = None,
        log_figure: bool = True,
        one_time: float | None = None,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail)
        owner = self.name
        self.one_time_share = check_one_time(owner, one_time)
        check_positive_int(owner, "num_samples", num_samples, minimum=1)
        check_positive_int(owner, "max_steps", max_steps, minimum=1)
        check_positive_int(owner, "patience", patience, minimum=2)
        if target_loss is not None and (
            isinstance(target_loss, bool)
            or not isinstance(target_loss, (int, float))
            or not math.isfinite(target_loss)
        ):
            raise ValueError(
                f"{owner}(target_loss={target_loss!r}): pass a finite number, or None to judge automatically."
            )
        check_task_argument(task, owner)
        self.validate_keys(owner, input_key, target_key)
        for arg, value in (
            ("forward", forward),
            ("augment_off", augment_off),
            ("prepare_batch", prepare_batch),
        ):
            if value is not None and not callable(value):
                raise TypeError(f"{owner}({arg}={value!r}): pass a callable or None.")
        self.num_samples = num_samples
        self.max_steps = max_steps
        self.patience = patience
        self.target_loss = None if target_loss is None else float(target_loss)
        self.task = task
        self.input_key = input_key
        self.target_key = target_key
        self.forward = forward
        self.augment_off = augment_off
        self.prepare_batch = prepare_batch
        self.log_figure = bool(log_figure)
        self.losses: list[float] = []
        self._done = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(num_samples=self.num_samples, max_steps=self.max_steps)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._done = False

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._done or self.should_skip(trainer):
            return
        self._done = True
        self._run(trainer, pl_module, batch)

    def check(self, pl_module: LightningModule, batch: Any, trainer: Trainer | None = None) -> Finding:
        """Overfit ``num_samples`` examples of ``batch`` with a copy of ``pl_module`` now."""
        return self._run(trainer, pl_module, batch)

    @override
    def state_dict(self) -> dict[str, Any]:
        return self.one_time_state(self._done)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = self.load_one_time_state(state_dict)

    # ------------------------------------------------------------------ work
    def _run(self, trainer: Trainer | None, pl_module: LightningModule, batch: Any) -> Finding:
        with preserved_state(pl_module):
            outcome = self._overfit(trainer, pl_module, batch)
        self.losses = outcome.losses
        status, message, numbers = agree(self, trainer, outcome.status, outcome.message, outcome.numbers)
        plot = outcome.plot
        if trainer is not None and trainer.is_global_zero:
            for k, value in enumerate(self.losses):
                if math.isfinite(value):
                    recipe_logging.log_scalars(trainer, {"recipe/overfit_batch/loss": value}, k)
            if self.log_figure and plot is not None:
                verdict = f"{status}: {message}"
                recipe_logging.log_figure(
                    trainer,
                    "recipe/overfit_batch/summary",
                    partial(summary_figure, plot, verdict),
                    trainer.global_step,
                )
        return self.record(trainer, status, message, numbers)  # type: ignore[arg-type]

    def _overfit(self, trainer: Trainer | None, pl_module: LightningModule, batch: Any) -> OverfitOutcome:
        examples = batch_examples(batch, self.num_samples)
        if examples is None:
            return OverfitOutcome(
                "skipped", "the batch holds no tensor with a batch dimension; pass `prepare_batch=`", {}
            )
        small, n = examples
        if self.prepare_batch is not None:
            small = self.prepare_batch(small)
        try:
            shadow = ShadowTrainer(pl_module, trainer)
        except ShadowUnsupported as err:
            return OverfitOutcome("skipped", f"cannot train a copy of the module: {err}", {})
        local_batchnorm(shadow.module)
        if self.augment_off is not None:
            self.augment_off(shadow.module)
        share = self.one_time_share
        budget = None if share is None or trainer is None else shared_budget(trainer, share)
        config = OverfitConfig(self.max_steps, self.patience, self.target_loss, self.task)
        call = ModelCall(forward=self.forward, input_key=self.input_key, target_key=self.target_key)
        start = time.perf_counter()
        outcome = overfit(shadow, small, n, config, call)
        if budget is not None:
            budget.charge(self.name, time.perf_counter() - start)
            steps = outcome.numbers.get("steps", len(outcome.losses))
            outcome.message += "; " + budget.note(self.name, steps, short=False)
            outcome.numbers["budget_s"] = budget.allowance_s(self.name)
        return outcome
