"""LRScheduleAudit: the recipe's "do not trust learning rate decay defaults"."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.schedules import (
    LRCurveReport,
    Simulation,
    analyse_lr,
    decimate,
    describe_scheduler,
    is_plateau_scheduler,
    simulate_lr,
)
from lightning_recipe.findings import Finding
from lightning_recipe.plots.style import new_figure

__all__ = ["LRScheduleAudit"]

_SEVERITY = {"early_decay": 3, "cycles": 2, "zero": 1, "ok": 0, "constant": 0}
_LENGTH_ARGS = ("step_size", "milestones", "T_max", "T_0", "total_steps", "total_iters")


@dataclass
class _Curve:
    """One parameter group's simulated LR curve and its reading."""

    label: str
    lrs: np.ndarray
    report: LRCurveReport


@dataclass
class _Tracked:
    """A simulated optimizer, kept to compare its real LR with the simulation once during the run."""

    names: str
    optimizer: torch.optim.Optimizer
    schedulers: list[Any]
    lrs: np.ndarray  # (steps, groups)
    counts: np.ndarray  # (steps, schedulers): scheduler steps taken before each optimizer step
    start_counts: list[int | None]


def _scheduler_count(scheduler: Any) -> int | None:
    """How many times a torch scheduler has been stepped (its ``last_epoch``), if it says."""
    value = getattr(scheduler, "last_epoch", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class LRScheduleAudit(RecipeCallback):
    """Simulate every LR scheduler over the planned run before training, and flag early decays.

    Recipe, "do not trust learning rate decay defaults": *"in a typical implementation the schedule
    will be based current epoch number, which can vary widely simply depending on the size of your
    dataset. E.g. ImageNet would decay by 10 on epoch 30. [...] your code could secretly be driving
    your learning rate to zero too early."*

    Before the first step, every scheduler in ``trainer.lr_scheduler_configs`` is deep-copied with
    its optimizer (parameters replaced by dummies: the real optimizer and scheduler are never
    touched) and stepped exactly as Lightning will step it (its ``interval`` and ``frequency``,
    gradient accumulation, ``max_epochs``/``max_steps``) over the whole planned run. The LR curve of
    every parameter group is then read:

    * **early decay** (``fail``): the LR spends more than ``max_near_zero_fraction`` of the run
      (after any warm-up) below ``min_ratio`` of its peak, e.g. ``StepLR(step_size=30)`` stepped
      every batch, or ImageNet's epochs on a much longer run;
    * **cycles** (``warn``): the LR first reaches near zero by 5% of the run and does so at
      least 5 times, e.g. ``CosineAnnealingLR(T_max=max_epochs)`` stepped every batch;
    * a scheduler that **raises** while stepped (``fail``), e.g. ``OneCycleLR`` with fewer
      ``total_steps`` than the run has, and a ``OneCycleLR`` **cut short** (``warn``: it is
      stepped less than half its ``total_steps``, so it never anneals).

    Silent (``pass``) on warm-up, cosine or linear decays and OneCycle spanning the run, step decays
    that stay above ``min_ratio`` (ten-fold decays at 1/3 and 2/3 of the run), a constant LR and no
    scheduler. ``ReduceLROnPlateau`` follows a metric and cannot be simulated: ``skipped``.

    The simulation is of the schedule *as configured*. Once during the run (at optimizer step
    ``min(200, run)`` and at the first step of the second epoch) the real optimizer's LR is compared
    with it (a few float reads, no collective): a mismatch is a ``warn`` when the scheduler was
    stepped more (or less) often than configured, e.g. a manual ``scheduler.step()`` inside
    ``training_step`` on top of Lightning's own. Under manual optimization Lightning steps no
    scheduler, the user's code does: the findings say the curve is "as configured", and the same
    cross-check (indexed by training batch) tells whether the code follows it.

    TensorBoard: ``recipe/lr_schedule/schedule`` (the simulated LR over the run, near-zero zone
    shaded) and ``recipe/lr_schedule/simulated_lr`` (scalars at the simulated steps; one tag
    ``simulated_lr_<optimizer>_<group>`` per curve when there are several).

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
        >>> import torch
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> class Model(BoringModel):
        ...     def configure_optimizers(self):
        ...         opt = torch.optim.SGD(self.parameters(), lr=0.1)
        ...         sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)  # ImageNet's
        ...         return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        >>> audit = LRScheduleAudit()
        >>> trainer = Trainer(max_epochs=4, limit_train_batches=50, limit_val_batches=0, logger=False,
        ...                   enable_checkpointing=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, callbacks=[audit],
        ...                   default_root_dir=getfixture("tmp_path"))
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(Model())
        >>> audit.findings[0].status, audit.findings[0].message[:77]
        ('fail', 'StepLR(step_size=30, gamma=0.1) drives the LR below 0.001x its peak at 60% of')
    """


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
        self._tracked: list[_Tracked] = []
        self._checkpoints: list[int] = []  # simulation indices at which the real LR is compared
        self._next_check: int | None = None
        self._manual = False
        self._start_step = 0
        self._batches = 0
        self._note = ""
        self._steps_per_epoch = math.inf

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
        self._reset_cross_check()
        self._audit(trainer, pl_module)
        self._audited = True
        self._audited_step = int(trainer.global_step)
        self._plan_cross_check()

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
        self.curves, self.simulated = {}, {}
        configs = list(trainer.lr_scheduler_configs)
        if not configs:
            self.record(
                trainer,
                "pass",
                "no LR scheduler: the LR stays constant (the recipe's advice until the very end)",
            )
            return
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        max_steps = int(trainer.max_steps)
        batches = float(trainer.num_training_batches)
        if max_steps < 0 and (max_epochs < 0 or math.isinf(batches)):
            self.record(
                trainer,
                "skipped",
                "the run has no planned end (max_epochs=-1 and max_steps=-1, or an iterable dataset without "
                "max_steps): there is no run to simulate the schedule over; set max_steps",
            )
            return
        plateau = [c for c in configs if c.reduce_on_plateau or is_plateau_scheduler(c.scheduler)]
        for config in plateau:
            monitor = f" follows {config.monitor!r}" if config.monitor else " follows a metric"
            self.record(
                trainer,
                "skipped",
                f"{type(config.scheduler).__name__}{monitor}: its decays depend on the data and cannot be "
                "simulated before training",
            )
        self._manual = not pl_module.automatic_optimization
        self._start_step = int(trainer.global_step)
        if self._manual:
            self._note = (
                "; simulated as configured (interval/frequency): under manual optimization your code steps "
                "the scheduler, so the real LR is compared with this curve during the run"
            )
        trained = {id(o) for o in trainer.optimizers}
        groups: dict[int, tuple[torch.optim.Optimizer, list[Any]]] = {}
        for config in configs:
            if config in plateau:
                continue
            optimizer = getattr(config.scheduler, "optimizer", None)
            if not isinstance(optimizer, torch.optim.Optimizer):
                self.record(
                    trainer,
                    "skipped",
                    f"{type(config.scheduler).__name__} has no `optimizer` attribute holding a torch optimizer; "
                    "it cannot be simulated on a copy",
                )
                continue
            if id(optimizer) not in trained:
                self.record(
                    trainer,
                    "skipped",
                    f"{describe_scheduler(config.scheduler)} drives a {type(optimizer).__name__} that is not one of "
                    "the optimizers configure_optimizers returned: not simulated; build the scheduler on the "
                    "optimizer you return",
                )
                continue
            groups.setdefault(id(optimizer), (optimizer, []))[1].append(config)
        custom_step = type(pl_module).lr_scheduler_step is not LightningModule.lr_scheduler_step
        k = int(trainer.accumulate_grad_batches)
        steps_per_epoch = math.inf if math.isinf(batches) else math.ceil(batches / k)
        self._steps_per_epoch = steps_per_epoch
        start_step, start_epoch = int(trainer.global_step), int(trainer.current_epoch)
        start_batch = (
            0 if math.isinf(steps_per_epoch) else max(start_step - start_epoch * steps_per_epoch, 0) * k
        )
        all_curves: list[_Curve] = []
        for opt_index, (optimizer, opt_configs) in enumerate(groups.values()):
            names = " + ".join(describe_scheduler(c.scheduler) for c in opt_configs)
            if custom_step and not all(
                isinstance(c.scheduler, torch.optim.lr_scheduler.LRScheduler) for c in opt_configs
            ):
                self.record(
                    trainer,
                    "skipped",
                    f"{names}: the module overrides lr_scheduler_step and the scheduler is not a torch "
                    "LRScheduler; it cannot be simulated with scheduler.step()",
                )
                continue
            try:
                sim = simulate_lr(
                    [(c.scheduler, c.interval, c.frequency) for c in opt_configs],
                    optimizer,
                    batches_per_epoch=batches,
                    max_epochs=max_epochs,
                    max_steps=max_steps,
                    accumulate_grad_batches=k,
                    start_epoch=start_epoch,
                    start_batch=start_batch,
                    start_step=start_step,
                    max_simulated_steps=self.max_simulated_steps,
                    keep=(pl_module, trainer),
                )
            except Exception as err:  # a scheduler that cannot be deep-copied
                self.record(
                    trainer,
                    "skipped",
                    f"{names} could not be copied to simulate it ({type(err).__name__}: {err})",
                )
                continue
            if len(sim.lrs) and not np.isfinite(sim.lrs).all():
                self.record(
                    trainer,
                    "skipped",
                    f"{names} gives a non-finite LR in the simulation (first at optimizer step "
                    f"{start_step + int(np.argmax(~np.isfinite(sim.lrs).all(axis=1)))}): check its lr_lambda / "
                    "settings; not judged",
                )
                continue
            curves = self._read(sim, optimizer, opt_index, len(groups))
            all_curves.extend(curves)
            self._judge(trainer, sim, opt_configs, names, curves, steps_per_epoch, max_epochs)
            if not custom_step and sim.error is None and sim.step_counts is not None and len(sim.lrs):
                schedulers = [c.scheduler for c in opt_configs]
                self._tracked.append(
                    _Tracked(
                        names,
                        optimizer,
                        schedulers,
                        sim.lrs,
                        sim.step_counts,
                        [_scheduler_count(x) for x in schedulers],
                    )
                )
        if all_curves:
            self._log(trainer, all_curves, steps_per_epoch)

    def _read(
        self, sim: Simulation, optimizer: torch.optim.Optimizer, opt_index: int, n_opts: int
    ) -> list[_Curve]:
        curves = []
        n_groups = sim.lrs.shape[1]
        for g in range(n_groups):
            report = analyse_lr(
                sim.lrs[:, g],
                sim.total_steps,
                min_ratio=self.min_ratio,
                max_near_zero_fraction=self.max_near_zero_fraction,
            )
            label = type(optimizer).__name__
            if n_opts > 1:
                label = f"{label} {opt_index}"
            if n_groups > 1:
                label = f"{label} group {g}"
            self.curves[label] = report
            self.simulated[label] = sim.lrs[:, g].copy()
            curves.append(_Curve(label, sim.lrs[:, g].copy(), report))
        return curves

    def _judge(
        self,
        trainer: Trainer,
        sim: Simulation,
        configs: list[Any],
        names: str,
        curves: list[_Curve],
        steps_per_epoch: float,
        max_epochs: int,
    ) -> None:
        total = sim.total_steps
        if sim.error is not None:
            fix = (
                f"pass total_steps=trainer.estimated_stepping_batches ({total})"
                if any(type(c.scheduler).__name__ == "OneCycleLR" for c in configs)
                else f"make its length match this run's {total} optimizer steps"
            )
            self._say(
                trainer,
                "fail",
                f"{names} raises when stepped after optimizer step {sim.error_step} of {total} "
                f"({sim.error}): the real run will stop there; {fix}",
                {"error": sim.error, "error_step": sim.error_step, "total_steps": total},
            )
            return
        worst = max(curves, key=lambda c: _SEVERITY[c.report.verdict])
        r = worst.report
        numbers = {
            **r.numbers(),
            "scheduler": names,
            "steps_per_epoch": steps_per_epoch,
            "truncated": sim.truncated,
        }
        where = f" ({worst.label})" if len(curves) > 1 else ""
        prefix = f"of the first {sim.simulated_steps} simulated steps, " if sim.truncated else ""
        if r.verdict == "early_decay":
            assert r.first_near_zero_fraction is not None
            self._say(
                trainer,
                "fail",
                f"{names}{where} drives the LR below {self.min_ratio:g}x its peak at {r.first_near_zero_fraction:.0%} "
                f"of training and keeps it there for {prefix}{r.near_zero_fraction:.0%} of the {total} steps (down to "
                f"{_ratio(r.min_ratio_reached)}x): {self._hint(configs, total, steps_per_epoch, max_epochs)}",
                numbers,
            )
            return
        if r.verdict == "cycles":
            assert r.first_near_zero_fraction is not None
            self._say(
                trainer,
                "warn",
                f"{names}{where} takes the LR to {_ratio(r.min_ratio_reached)}x its peak already at "
                f"{r.first_near_zero_fraction:.1%} of training, and {r.near_zero_episodes} times in all: "
                f"{self._hint(configs, total, steps_per_epoch, max_epochs)}",
                numbers,
            )
            return
        if r.verdict == "zero" and all(c.report.verdict == "zero" for c in curves):
            self._say(trainer, "warn", f"{names}: the LR is 0 for the whole run; nothing will train", numbers)
            return
        for config, count in zip(configs, sim.scheduler_steps):
            planned = getattr(config.scheduler, "total_steps", None)
            if (
                type(config.scheduler).__name__ == "OneCycleLR"
                and isinstance(planned, int)
                and count < 0.5 * planned
            ):
                self._say(
                    trainer,
                    "warn",
                    f"OneCycleLR(total_steps={planned}) is stepped only {count} times in this run: it ends at "
                    f"{r.final_ratio:.0%} of its peak LR without annealing; pass "
                    f"total_steps=trainer.estimated_stepping_batches ({total})",
                    numbers,
                )
                return
        self._say(trainer, "pass", f"{names}{where}: {self._summary(r, prefix)}", numbers)

    def _say(self, trainer: Trainer, status: Any, message: str, numbers: dict[str, Any]) -> None:
        """Record one audit verdict; under manual optimization it says the curve is as configured."""
        numbers = {**numbers, "manual_optimization": True} if self._manual else numbers
        self.record(trainer, status, message + self._note, numbers)

    # ------------------------------------------------------------------ cross-check with the real run
    #: The real LR is compared with the simulation at this optimizer step (or the run's last) ...
    CROSS_CHECK_STEP = 200

    def _plan_cross_check(self) -> None:
        """... and at the first step of the second epoch: an epoch-long schedule shows there."""
        if not self._tracked or (self._manual and self._start_step != 0):
            # a resumed manual run: global_step counts every optimizer's steps, not batches
            self._tracked = []
            return
        length = min(len(t.lrs) for t in self._tracked)
        points = {min(self.CROSS_CHECK_STEP, length - 1)}
        steps_per_epoch = self._steps_per_epoch
        if math.isfinite(steps_per_epoch) and 0 < steps_per_epoch < length:
            points.add(int(steps_per_epoch) - self._start_step % int(steps_per_epoch))
        self._checkpoints = sorted(p for p in points if p >= 0)
        self._next_check = self._checkpoints[0] if self._checkpoints else None

    def _cross_check(self, trainer: Trainer, index: int) -> None:
        self._checkpoints = [p for p in self._checkpoints if p > index]
        self._next_check = self._checkpoints[0] if self._checkpoints else None
        live = {id(c.scheduler) for c in trainer.lr_scheduler_configs}
        for tracked in self._tracked:
            if index >= len(tracked.lrs) or any(id(x) not in live for x in tracked.schedulers):
                continue  # past the simulation, or the schedulers were replaced (StochasticWeightAveraging)
            groups = tracked.optimizer.param_groups[: tracked.lrs.shape[1]]
            for g, group in enumerate(groups):
                try:
                    real = float(group["lr"])
                except (KeyError, TypeError, ValueError, RuntimeError):
                    continue
                simulated = float(tracked.lrs[index, g])
                if abs(real - simulated) > 1e-6 * max(abs(real), abs(simulated)):
                    self._mismatch(trainer, tracked, index, g, real, simulated)
                    self._tracked, self._checkpoints, self._next_check = [], [], None
                    return

    def _mismatch(
        self, trainer: Trainer, tracked: _Tracked, index: int, group: int, real: float, simulated: float
    ) -> None:
        where = f"batch {index}" if self._manual else f"step {int(trainer.global_step)}"
        real_counts = [
            None if start is None or _scheduler_count(x) is None else int(_scheduler_count(x)) - start  # type: ignore[operator]
            for x, start in zip(tracked.schedulers, tracked.start_counts)
        ]
        expected = [int(c) for c in tracked.counts[index]]
        known = all(c is not None for c in real_counts)
        more = known and any(r > e for r, e in zip(real_counts, expected))  # type: ignore[operator]
        fewer = known and any(r < e for r, e in zip(real_counts, expected))  # type: ignore[operator]
        numbers = {
            "real_lr": real,
            "simulated_lr": simulated,
            "index": index,
            "group": group,
            "scheduler_steps": real_counts,
            "configured_scheduler_steps": expected,
            "manual_optimization": self._manual,
        }
        head = (
            f"the real LR ({real:.6g}) differs from the configured schedule ({simulated:.6g}) at {where}"
            + (f" (param group {group})" if len(tracked.optimizer.param_groups) > 1 else "")
        )
        counted = f"{tracked.names} was stepped {_counts(real_counts)} times, the configuration steps it {_counts(expected)}"
        if more:
            fix = (
                "make interval=/frequency= in configure_optimizers say how your training_step steps it, so the "
                "audit simulates the schedule the run follows"
                if self._manual
                else "remove the manual call (Lightning steps it by its interval='step'/'epoch')"
            )
            message = (
                f"{head}: the scheduler is stepped more often than configured (a manual .step() in "
                f"training_step?): {counted}; {fix}"
            )
            self.record(trainer, "warn", message, numbers)
        elif fewer:
            fix = (
                "under manual optimization Lightning does not step schedulers: call "
                "self.lr_schedulers().step() in training_step as configured"
                if self._manual
                else "something skips its .step() (an lr_scheduler_step override?)"
            )
            self.record(
                trainer,
                "warn",
                f"{head}: the scheduler is stepped less often than configured: {counted}; {fix}",
                numbers,
            )
        elif known:
            self.record(
                trainer,
                "skipped",
                f"{head}, though the scheduler was stepped as configured: something else sets the LR "
                "(an optimizer_step override, a callback, a param-group write); the audited curve is not "
                "the one this run follows",
                numbers,
            )
        else:
            self.record(
                trainer,
                "warn",
                f"{head}: the scheduler is stepped more often than configured (a manual .step() in "
                "training_step?), or something else sets the LR; the audited curve is not the one this run follows",
                numbers,
            )

    def _summary(self, r: LRCurveReport, prefix: str) -> str:
        if r.verdict == "constant":
            return f"the LR stays at {r.peak:.3g} over the {r.total_steps} steps"
        parts = []
        if r.warmup_steps:
            parts.append(f"warms up to {r.peak:.3g} by step {r.peak_step}")
        else:
            parts.append(f"starts at {r.initial:.3g}")
        parts.append(f"ends at {r.final_ratio:.2g} of its peak")
        if r.near_zero_fraction > 0:
            parts.append(
                f"near zero (< {self.min_ratio:g}x peak) for {prefix}{r.near_zero_fraction:.1%} of the run"
            )
        return ", ".join(parts) + f" ({r.total_steps} steps)"

    @staticmethod
    def _hint(configs: list[Any], total: int, steps_per_epoch: float, max_epochs: int) -> str:
        config = configs[0]
        args = [a for a in _LENGTH_ARGS if getattr(config.scheduler, a, None) is not None]
        what = "/".join(args) if args else "its length settings"
        per_epoch = "" if math.isinf(steps_per_epoch) else f", {int(steps_per_epoch)} per epoch"
        if config.interval == "step":
            every = (
                "every optimizer step"
                if config.frequency == 1
                else f"every {config.frequency} optimizer steps"
            )
            return (
                f"the scheduler is stepped {every} (interval='step'); if {what} count epochs, set "
                f"interval='epoch', otherwise express them in optimizer steps (this run has {total}{per_epoch})"
            )
        epochs = f"{max_epochs} epochs" if max_epochs > 0 else "the run's epochs"
        return (
            f"the scheduler is stepped once per epoch over {epochs} (interval='epoch'); {what} look chosen for "
            f"another data set or run length: scale them to this run ({total} steps{per_epoch})"
        )

    # ------------------------------------------------------------------ evidence
    def _log(self, trainer: Trainer, curves: list[_Curve], steps_per_epoch: float) -> None:
        if not trainer.is_global_zero:
            return
        start = int(trainer.global_step)
        if self.log_scalars:
            for i, curve in enumerate(curves):
                tag = (
                    "recipe/lr_schedule/simulated_lr"
                    if len(curves) == 1
                    else f"recipe/lr_schedule/simulated_lr_{i}"
                )
                idx, values = decimate(curve.lrs, 200)
                for step, value in zip(idx.tolist(), values.tolist()):
                    recipe_logging.log_scalars(trainer, {tag: value}, start + int(step))
        data = [(c.label, c.lrs.copy(), c.report) for c in curves]
        min_ratio = self.min_ratio
        recipe_logging.log_figure(
            trainer,
            "recipe/lr_schedule/schedule",
            lambda: _schedule_figure(data, min_ratio, steps_per_epoch, start),
            start,
        )


def _counts(values: list[Any]) -> str:
    return "/".join("?" if v is None else str(v) for v in values)


def _ratio(value: float) -> str:
    return "0" if value == 0 else f"{value:.0e}"


def _schedule_figure(
    data: list[tuple[str, np.ndarray, LRCurveReport]], min_ratio: float, steps_per_epoch: float, start: int
) -> Any:
    """The simulated LR over the run, the near-zero zone shaded, verdicts in the title."""
    fig = new_figure(7.0, 3.6, dpi=100)
    ax = fig.add_subplot()
    peaks = [r.peak for _, _, r in data if r.peak > 0]
    positive = [float(v[v > 0].min()) for _, v, _ in data if np.any(v > 0)]
    log_scale = bool(peaks and positive and max(peaks) / max(min(positive), 1e-300) > 100)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    total = max(len(v) for _, v, _ in data)
    for i, (label, values, report) in enumerate(data):
        idx, vals = decimate(values, 2000)
        x = start + idx
        y = np.maximum(vals, 1e-300) if log_scale else vals
        color = colors[i % len(colors)]
        ax.plot(x, y, color=color, lw=1.6, label=f"{label}: {report.verdict}")
        if report.peak > 0:
            ax.axhline(min_ratio * report.peak, color=color, lw=0.8, ls=":", alpha=0.8)
            low = values < min_ratio * report.peak * (1 - 1e-9)
            low[: report.warmup_steps] = False
            if low.any():
                ax.fill_between(
                    start + np.arange(len(values)),
                    0,
                    1,
                    where=low,
                    color="#d62728",
                    alpha=0.12,
                    transform=ax.get_xaxis_transform(),
                    lw=0,
                )
    if log_scale:
        ax.set_yscale("log")
        floor = min(positive)
        ax.set_ylim(bottom=max(floor, min(peaks) * min_ratio * 1e-3) / 2)
    if not math.isinf(steps_per_epoch) and steps_per_epoch > 0 and total / steps_per_epoch <= 60:
        for e in range(1, int(total // steps_per_epoch) + 1):
            ax.axvline(start + e * steps_per_epoch, color="0.85", lw=0.6, zorder=0)
    worst = max(data, key=lambda d: _SEVERITY[d[2].verdict])[2]
    title = {
        "early_decay": f"LR near zero for {worst.near_zero_fraction:.0%} of the run (from {worst.first_near_zero_fraction or 0:.0%})",
        "cycles": f"LR reaches near zero at {worst.first_near_zero_fraction or 0:.1%} of the run, {worst.near_zero_episodes} times",
        "zero": "LR is 0",
        "constant": "constant LR",
        "ok": "LR schedule spans the run",
    }[worst.verdict]
    ax.set_title(f"simulated LR over {total} optimizer steps: {title}", fontsize=10)
    ax.set_xlabel(
        "optimizer step (grey lines: epochs; dotted: near-zero threshold; shaded: near zero)", fontsize=8
    )
    ax.set_ylabel("learning rate")
    ax.set_xlim(start, start + max(total - 1, 1))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
