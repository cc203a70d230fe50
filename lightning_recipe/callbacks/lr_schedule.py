"""LRScheduleAudit: the recipe's "do not trust learning rate decay defaults"."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.checks.lr_schedule import (
    CROSS_CHECK_STEP,
    Curve,
    RunPlan,
    SchedulerConfig,
    Tracked,
    audit,
    cross_check,
    cross_check_points,
    monitor_modes,
)
from lightning_recipe.core.schedules import LRCurveReport, decimate
from lightning_recipe.findings import Finding
from lightning_recipe.plots.lr_schedule import schedule_figure

__all__ = ["LRScheduleAudit"]


class LRScheduleAudit(RecipeCallback):
    """Simulate every LR scheduler over the planned run before training, and flag early decays.

    Recipe, "do not trust learning rate decay defaults": *"your code could secretly be driving your
    learning rate to zero too early."*

    Before the first step, every scheduler in ``trainer.lr_scheduler_configs`` is stepped, on a copy
    with dummy parameters, exactly as Lightning will step it over the whole planned run, and each LR
    curve is read: **early decay** (``fail``: near zero for more than ``max_near_zero_fraction`` of
    the run), **cycles** (``warn``), a scheduler that **raises** (``fail``), a ``OneCycleLR`` **cut
    short** (``warn``), else ``pass``; ``ReduceLROnPlateau`` is ``skipped``, unless its ``mode`` is
    the wrong way round for its metric (``fail``). Once during the run the
    real LR is compared with the simulation (a ``warn`` when the scheduler is stepped more or less
    often than configured). TensorBoard: ``recipe/lr_schedule/schedule`` (figure) and
    ``recipe/lr_schedule/simulated_lr`` (scalars; ``simulated_lr_<i>`` per curve when there are several).

    Args:
        min_ratio: "near zero" means below this fraction of the curve's peak LR.
        max_near_zero_fraction: flag an early decay when more of the run than this is near zero.
        max_simulated_steps: simulate at most this many optimizer steps (a longer run is judged on
            this prefix, and the message says so).
        log_scalars: also write the simulated LR as scalars (at most 200 points per curve).
        on_fail: ``"warn"`` (default) or ``"raise"`` a ``RecipeCheckError`` before the first step.

    Attributes:
        findings: one finding per optimizer (``pass``/``warn``/``fail``), ``skipped`` for what
            cannot be simulated.
        curves: ``{label: LRCurveReport}`` of the last audit.
        simulated: ``{label: np.ndarray}``, the simulated LR at every optimizer step of the run.

    Example:
        >>> import torch, warnings
        >>> from lightning_recipe.demos import TinyClassifier, classification_data, tiny_trainer
        >>> class ImageNetDecay(TinyClassifier):
        ...     def configure_optimizers(self):
        ...         opt = torch.optim.SGD(self.parameters(), lr=0.1)
        ...         sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)  # epochs, per batch
        ...         return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        >>> audit = LRScheduleAudit()
        >>> trainer = tiny_trainer(max_epochs=4, callbacks=[audit], default_root_dir=getfixture("tmp_path"))
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(ImageNetDecay(), classification_data(n=400, batch_size=8))  # 200 steps
        >>> audit.findings[0].status, audit.findings[0].message[:77]
        ('fail', 'StepLR(step_size=30, gamma=0.1) drives the LR below 0.001x its peak at 60% of')

    See the README section "`LRScheduleAudit`: the whole schedule, before training".
    """

    #: The real LR is compared with the simulation at this optimizer step (or the run's last) and at
    #: the first step of the second epoch.
    CROSS_CHECK_STEP = CROSS_CHECK_STEP

    def __init__(
        self,
        min_ratio: float = 1e-3,
        max_near_zero_fraction: float = 0.25,
        max_simulated_steps: int = 200_000,
        log_scalars: bool = True,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail=on_fail)
        for name, value in (("min_ratio", min_ratio), ("max_near_zero_fraction", max_near_zero_fraction)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"LRScheduleAudit({name}={value!r}): pass a number between 0 and 1.")
            if not 0.0 < float(value) < 1.0:
                raise ValueError(
                    f"LRScheduleAudit({name}={value!r}): pass a number strictly between 0 and 1."
                )
        check_positive_int("LRScheduleAudit", "max_simulated_steps", max_simulated_steps)
        self.min_ratio = float(min_ratio)
        self.max_near_zero_fraction = float(max_near_zero_fraction)
        self.max_simulated_steps = max_simulated_steps
        self.log_scalars = bool(log_scalars)
        self.curves: dict[str, LRCurveReport] = {}
        self.simulated: dict[str, np.ndarray] = {}
        self._audited = False
        self._audited_step: int | None = None
        self._restored_findings: list[dict[str, Any]] = []
        self._reset_cross_check()

    def _reset_cross_check(self) -> None:
        self._tracked: list[Tracked] = []
        self._checkpoints: list[int] = []  # simulation indices at which the real LR is compared
        self._next_check: int | None = None
        self._manual = False
        self._start_step = 0
        self._batches = 0

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_skip(trainer):
            return
        if self._audited:
            # Resumed: the audit ran at the start of the original run; show its verdicts again
            # without warning or raising twice.
            if not self.findings:
                self.findings = [Finding(**f) for f in self._restored_findings]
            return
        self._audit(trainer, pl_module)

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._next_check is None:
            return
        if self._manual:  # the user steps the optimizers: one simulated step per training batch
            index = self._batches
            self._batches += 1
        else:
            index = int(trainer.global_step) - self._start_step
        if index < self._next_check or self.should_skip(trainer):
            return
        self._cross_check(trainer, index)

    # ------------------------------------------------------------------ checkpoint
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "audited": self._audited,
            "audited_step": self._audited_step,
            "findings": [f.to_dict() for f in self.findings],
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._audited = bool(state_dict.get("audited", False))
        self._audited_step = state_dict.get("audited_step")
        self._restored_findings = list(state_dict.get("findings", []))

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(_tracked=[], _checkpoints=[], _next_check=None)  # live optimizers stay out
        return state

    # ------------------------------------------------------------------ the audit
    def _audit(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Read the run's scheduler configs and length, simulate and judge them, record, log."""
        self._reset_cross_check()
        self._manual = not pl_module.automatic_optimization
        self._start_step = int(trainer.global_step)
        plan = RunPlan(
            max_epochs=trainer.max_epochs if trainer.max_epochs is not None else -1,
            max_steps=int(trainer.max_steps),
            batches_per_epoch=float(trainer.num_training_batches),
            accumulate_grad_batches=int(trainer.accumulate_grad_batches),
            start_step=self._start_step,
            start_epoch=int(trainer.current_epoch),
            manual=self._manual,
            custom_step=type(pl_module).lr_scheduler_step is not LightningModule.lr_scheduler_step,
        )
        configs = [
            SchedulerConfig(c.scheduler, c.interval, c.frequency, c.monitor, c.reduce_on_plateau)
            for c in trainer.lr_scheduler_configs
        ]
        result = audit(
            configs,
            plan,
            {id(o) for o in trainer.optimizers},
            min_ratio=self.min_ratio,
            max_near_zero_fraction=self.max_near_zero_fraction,
            max_simulated_steps=self.max_simulated_steps,
            keep=(pl_module, trainer),
            monitor_modes=monitor_modes(trainer.callbacks),  # type: ignore[attr-defined]
        )
        self.curves = {c.label: c.report for c in result.curves}
        self.simulated = {c.label: c.lrs.copy() for c in result.curves}
        for status, message, numbers in result.verdicts:
            self.record(trainer, status, message, numbers)
        if result.curves:
            self._log(trainer, result.curves, plan.steps_per_epoch)
        self._audited = True
        self._audited_step = self._start_step
        self._tracked = result.tracked
        if self._manual and self._start_step != 0:
            # a resumed manual run: global_step counts every optimizer's steps, not batches
            self._tracked = []
        self._checkpoints = cross_check_points(
            self._tracked, plan.steps_per_epoch, self._start_step, self.CROSS_CHECK_STEP
        )
        self._next_check = self._checkpoints[0] if self._checkpoints else None

    def _cross_check(self, trainer: Trainer, index: int) -> None:
        self._checkpoints = [p for p in self._checkpoints if p > index]
        self._next_check = self._checkpoints[0] if self._checkpoints else None
        live = {id(c.scheduler) for c in trainer.lr_scheduler_configs}
        step = int(trainer.global_step)
        verdict = cross_check(self._tracked, index, live, manual=self._manual, global_step=step)
        if verdict is not None:
            self._tracked, self._checkpoints, self._next_check = [], [], None
            self.record(trainer, *verdict)

    # ------------------------------------------------------------------ evidence
    def _log(self, trainer: Trainer, curves: list[Curve], steps_per_epoch: float) -> None:
        if not trainer.is_global_zero:
            return
        start = int(trainer.global_step)
        if self.log_scalars:
            for i, curve in enumerate(curves):
                tag = "recipe/lr_schedule/simulated_lr" + (f"_{i}" if len(curves) > 1 else "")
                idx, values = decimate(curve.lrs, 200)
                for step, value in zip(idx.tolist(), values.tolist()):
                    writer.log_scalars(trainer, {tag: value}, start + int(step))
        data = [(c.label, c.lrs.copy(), c.report) for c in curves]
        min_ratio = self.min_ratio
        writer.log_figure(
            trainer,
            "recipe/lr_schedule/schedule",
            partial(schedule_figure, data, min_ratio, steps_per_epoch, start),
            start,
        )
