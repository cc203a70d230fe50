"""UpdateHealth: the recipe's "activations inside the net can display odd artifacts", per layer."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from functools import partial
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from lightning_recipe import writer
from lightning_recipe.callbacks.base import OnFail, RecipeCallback
from lightning_recipe.core.budget import check_overhead
from lightning_recipe.core.checks import update_health as health_checks
from lightning_recipe.core.checks.update_health import HealthState, PendingCheck
from lightning_recipe.core.health import DEFAULT_ACTIVATIONS, layer_of_parameters
from lightning_recipe.plots.update_health import health_figure

__all__ = ["UpdateHealth"]

_TAG = "recipe/update_health"
_OWNER = "UpdateHealth"
_EVERY = health_checks.EVERY


class UpdateHealth(RecipeCallback):
    """Watch every layer's updates, gradients and activations, cheaply, every N steps.

    Recipe, "visualize ... activations inside the net can sometimes display odd artifacts and hint at
    problems". At each *check*, per layer: ``log10(‖Δw‖/‖w‖)`` of that step (rule of thumb: -3),
    ``‖grad‖``, and per ReLU-like module the fraction of units zero on the whole batch; between checks,
    an integer comparison. Findings (``numbers["problem"]``, once per run): ``no_gradient``,
    ``zero_gradient``, ``unchanged``, ``no_optimizer``, ``eval_mode``, ``update_ratio`` (warn),
    ``gradients_not_reset``, ``dead_layer`` (fail); at the end a ``pass``, or ``skipped``. TensorBoard:
    ``recipe/update_health/`` scalars per layer and site, their aggregates, and the figure ``layers``.

    Args:
        every_n_train_steps: a check every this many optimizer steps (step 0 included). ``None``:
            every 50 steps at most, within ``overhead``, and at least ``patience + 2`` checks in the run.
        patience: checks the evidence must hold on before a finding.
        max_layers: per-layer scalars for at most this many layers (and sites), evenly spread.
        figure_every_n_train_steps: the figure at the first check, the first after each multiple of this,
            and the last (at the end of fit); ``None``: none.
        activation_types: module classes whose exactly-zero outputs mark dead units; ``()`` hooks nothing.
        check_eval_mode: look for submodules left in eval mode.
        overhead: the fraction of training time the checks and figures may take (default cadence).
        on_fail: ``"warn"`` or ``"raise"`` (``RecipeCheckError`` for the ``fail`` findings).

    Attributes:
        findings: the findings of the run.
        last_check: the latest check: ``step``, ``layers`` (name -> ``log10_update_ratio``, ``grad_norm``)
            and ``dead_fraction`` (site -> fraction).
        checks: number of checks completed (kept across a resume).

    Raises:
        ValueError, TypeError: for invalid arguments.

    Example:
        >>> from lightning_recipe.demos import TinyClassifier, classification_data, tiny_trainer
        >>> health = UpdateHealth(every_n_train_steps=2, figure_every_n_train_steps=None)
        >>> trainer = tiny_trainer(max_steps=4, callbacks=[health], default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(TinyClassifier(hidden=16), classification_data())
        >>> health.checks, sorted(health.last_check["layers"])
        (2, ['head', 'net.0'])

    See the README section "Inside the net: UpdateHealth".
    """

    RULE_OF_THUMB = health_checks.RULE_OF_THUMB
    HIGH_LOG10_RATIO = health_checks.HIGH_LOG10_RATIO
    SPIKE_LOG10_RATIO = health_checks.SPIKE_LOG10_RATIO
    HISTORY = health_checks.HISTORY

    def __init__(
        self,
        every_n_train_steps: int | None = None,
        patience: int = 3,
        max_layers: int = 16,
        figure_every_n_train_steps: int | None = 500,
        activation_types: Iterable[type[nn.Module]] = DEFAULT_ACTIVATIONS,
        check_eval_mode: bool = True,
        overhead: float = 0.01,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail)
        self.overhead = check_overhead(_OWNER, overhead)
        self.activation_types: tuple[type[nn.Module], ...] = health_checks.check_arguments(
            every_n_train_steps, patience, max_layers, figure_every_n_train_steps, activation_types, check_eval_mode
        )  # fmt: skip
        self.every_n_train_steps, self.patience, self.max_layers = every_n_train_steps, patience, max_layers
        self.figure_every_n_train_steps, self.check_eval_mode = figure_every_n_train_steps, check_eval_mode
        self._owner: dict[int, tuple[str, str]] = {}  # id(parameter) -> (layer, parameter name)
        self._pending: PendingCheck | None = None
        self._disabled: str | None = None
        self._fresh()

    def _fresh(self) -> None:
        """The state of a new fit."""
        self._state, self._next_due, self.last_check = HealthState(), 0, {}
        self._cadence = health_checks.new_cadence(self.every_n_train_steps, self.overhead, self.patience)
        self._last_summary = None
        self._history: dict[str, deque[float]] = {}
        self._orphans: list[tuple[str, nn.Parameter, torch.Tensor]] = []
        self._release()

    @property
    def checks(self) -> int:
        return self._state.checks

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(every_n_train_steps=self.every_n_train_steps or _EVERY)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        self._fresh()
        self._disabled = health_checks.unsupported_strategy(type(trainer.strategy).__name__)

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.is_fitting(trainer):
            return
        self.start_cadence(trainer, self._cadence)
        if self._state.last_check_step is not None:  # resumed: the next check after the last one
            self._cadence.next_due = max(self._cadence.next_due, self._next_due)
        if self._disabled:
            self.record(trainer, "skipped", self._disabled, {"problem": "unsupported_strategy"})
            return
        self._owner = layer_of_parameters(pl_module)
        self.record_all(trainer, health_checks.restated_verdicts(self._state), raise_on_fail=False)
        self._orphans = health_checks.find_orphans(pl_module, trainer.optimizers)

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is not None or trainer.global_step < self._cadence.next_due or self._disabled:
            return
        if self.should_skip(trainer):
            return
        step = int(trainer.global_step)
        self._cadence.next_due = step + 1  # until the check closes and schedules the next one
        trainable = health_checks.trainable_ids(trainer.optimizers) if self.check_eval_mode else None
        self._pending = health_checks.start_check(step, pl_module, self.activation_types, trainable)

    @override
    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if self._pending is not None:
            self._pending.stop_probe()  # the forward pass is over (and recomputation is not a new one)
        if self._armed:
            health_checks.note_backward(self._armed.values())

    @override
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if (self._pending is None and not self._armed) or self._disabled or self.should_skip(trainer):
            return
        verdicts = health_checks.optimizer_step(
            self._state, self._pending, self._armed, self._owner, optimizer, int(trainer.global_step),
            self.any_rank(trainer),
        )  # fmt: skip
        self.record_all(trainer, verdicts)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        check = self._pending
        if check is None:
            return
        check.stop_probe()
        if not check.optimizers and trainer.global_step <= check.step:
            return  # accumulating gradients: the optimizer steps on a later batch
        self._pending = None
        self._finish(trainer, pl_module, check)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._release()
        if not self.is_fitting(trainer) or self._disabled:
            return
        # the figure of the last check, unless it was drawn at that check already
        summary, every = self._last_summary, self.figure_every_n_train_steps
        if trainer.is_global_zero and health_checks.last_figure_due(self._state, summary, every):
            self._figure(trainer, pl_module, summary)
        if not any(f.is_problem for f in self.findings):
            self.record_all(
                trainer, [health_checks.final_verdict(self.checks, self.patience, self.last_check)]
            )

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._release()

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._release()
        super().teardown(trainer, pl_module, stage)

    @override
    def state_dict(self) -> dict[str, Any]:
        return self._state.state_dict()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._state = HealthState.from_state_dict(state_dict)
        self._next_due = self._state.next_due(self.every_n_train_steps or _EVERY)

    def __getstate__(self) -> dict[str, Any]:
        # in-flight measurements hold live tensors and parameters: not part of a pickled callback
        state = super().__getstate__()
        state.update(_pending=None, _armed={}, _owner={}, _orphans=[])
        return state

    # ------------------------------------------------------------------ helpers
    def _release(self) -> None:
        health_checks.release(self._pending)
        self._pending, self._armed = None, {}

    def _figure(self, trainer: Trainer, pl_module: LightningModule, summary: Any) -> None:
        kwargs = health_checks.figure_data(summary, self._history, pl_module)  # numpy: picklable
        writer.log_figure(trainer, f"{_TAG}/layers", partial(health_figure, **kwargs), summary.step)

    def _finish(self, trainer: Trainer, pl_module: LightningModule, check: PendingCheck) -> None:
        self._owner = health_checks.refresh_owner(self._owner, check, pl_module)
        state, reduce_sum = self._state, partial(self.all_reduce_sum, trainer)
        summary, eval_any = health_checks.close_check(
            state, check, self._owner, reduce_sum, trainer.world_size
        )
        self.last_check = summary.numbers()
        figure = bool(summary.layers) and state.figure_due(self.figure_every_n_train_steps, check.step)
        if trainer.is_global_zero:
            writer.log_scalars(trainer, health_checks.scalars(summary, self.max_layers, _TAG), summary.step)
            if figure:
                self._figure(trainer, pl_module, summary)
        health_checks.remember(self._history, summary)
        self._last_summary = summary if summary.layers else None
        self.cadence_taken(trainer, self._cadence, check.step, collective=True)
        orphans, self._orphans = self._orphans, []
        verdicts = health_checks.closing_verdicts(
            state, check, summary, eval_any, self.patience, orphans, self._owner, pl_module, self.any_rank(trainer)
        )  # fmt: skip
        self.record_all(trainer, verdicts)
