"""The LR-schedule audit's verdicts: simulate every scheduler over the planned run and read the curves.

The recipe's "do not trust learning rate decay defaults". No Lightning here: the callback reads
``trainer.lr_scheduler_configs`` and the run's length into :class:`SchedulerConfig` and
:class:`RunPlan`; :func:`audit` simulates (with :func:`~lightning_recipe.core.schedules.simulate_lr`)
and judges them, returning ``(status, message, numbers)`` verdicts in the order they are recorded;
:func:`cross_check` compares the real optimizer's LR with the simulation once during the run.

Example:
    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    >>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)  # ImageNet's, per batch
    >>> plan = RunPlan(max_epochs=4, max_steps=-1, batches_per_epoch=50)
    >>> result = audit([SchedulerConfig(sched, "step")], plan, {id(opt)})
    >>> status, message, numbers = result.verdicts[0]
    >>> status, message[:77]
    ('fail', 'StepLR(step_size=30, gamma=0.1) drives the LR below 0.001x its peak at 60% of')
    >>> opt.param_groups[0]["lr"], [c.label for c in result.curves]        # the real one is untouched
    (0.1, ['SGD'])
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lightning_recipe.core.plain import LR_SEVERITY
from lightning_recipe.core.schedules import (
    LRCurveReport,
    Simulation,
    analyse_lr,
    describe_scheduler,
    is_plateau_scheduler,
    simulate_lr,
)
from lightning_recipe.findings import Status

__all__ = [
    "CROSS_CHECK_STEP",
    "SEVERITY",
    "Audit",
    "Curve",
    "RunPlan",
    "SchedulerConfig",
    "Tracked",
    "Verdict",
    "audit",
    "cross_check",
    "cross_check_points",
    "judge",
    "metric_sense",
    "mismatch",
    "monitor_modes",
    "plateau_verdict",
    "read_curves",
]

#: ``(status, message, numbers)``: one finding, before the callback records it.
Verdict = tuple[Status, str, dict[str, Any]]

#: How bad a curve's verdict is (the worst curve of an optimizer speaks for it): core.plain's.
SEVERITY = LR_SEVERITY
#: The real LR is compared with the simulation at this optimizer step (or the run's last), and at
#: the first step of the second epoch (an epoch-long schedule shows there).
CROSS_CHECK_STEP = 200
_LENGTH_ARGS = ("step_size", "milestones", "T_max", "T_0", "total_steps", "total_iters")
_MANUAL_NOTE = (
    "; simulated as configured (interval/frequency): under manual optimization your code steps "
    "the scheduler, so the real LR is compared with this curve during the run"
)


@dataclass(frozen=True)
class SchedulerConfig:
    """What the audit needs of one of Lightning's ``LRSchedulerConfig`` (read by the callback)."""

    scheduler: Any
    interval: str = "epoch"
    frequency: int = 1
    monitor: str | None = None
    reduce_on_plateau: bool = False

    @property
    def plateau(self) -> bool:
        """Follows a metric (``ReduceLROnPlateau``): cannot be simulated."""
        return self.reduce_on_plateau or is_plateau_scheduler(self.scheduler)


@dataclass(frozen=True)
class RunPlan:
    """The planned run: its length and where it stands (non-zero ``start_*`` on resume).

    ``max_epochs``/``max_steps`` are ``-1`` when unbounded; ``batches_per_epoch`` is ``inf`` for an
    iterable dataset. ``manual``: manual optimization; ``custom_step``: the module overrides
    ``lr_scheduler_step``.
    """

    max_epochs: int
    max_steps: int
    batches_per_epoch: float
    accumulate_grad_batches: int = 1
    start_step: int = 0
    start_epoch: int = 0
    manual: bool = False
    custom_step: bool = False

    @property
    def has_end(self) -> bool:
        return not (self.max_steps < 0 and (self.max_epochs < 0 or math.isinf(self.batches_per_epoch)))

    @property
    def steps_per_epoch(self) -> float:
        b, k = self.batches_per_epoch, self.accumulate_grad_batches
        return math.inf if math.isinf(b) else math.ceil(b / k)

    @property
    def start_batch(self) -> int:
        spe = self.steps_per_epoch
        if math.isinf(spe):
            return 0
        return int(max(self.start_step - self.start_epoch * spe, 0) * self.accumulate_grad_batches)


@dataclass
class Curve:
    """One parameter group's simulated LR curve and its reading."""

    label: str
    lrs: np.ndarray
    report: LRCurveReport


@dataclass
class Tracked:
    """A simulated optimizer, kept to compare its real LR with the simulation once during the run."""

    names: str
    optimizer: torch.optim.Optimizer
    schedulers: list[Any]
    lrs: np.ndarray  # (steps, groups)
    counts: np.ndarray  # (steps, schedulers): scheduler steps taken before each optimizer step
    start_counts: list[int | None]


@dataclass
class Audit:
    """What :func:`audit` found: the verdicts in order, the curves read, the optimizers to cross-check."""

    verdicts: list[Verdict] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    tracked: list[Tracked] = field(default_factory=list)


def scheduler_count(scheduler: Any) -> int | None:
    """How many times a torch scheduler has been stepped (its ``last_epoch``), if it says."""
    value = getattr(scheduler, "last_epoch", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ---------------------------------------------------------------------- the audit
def audit(
    configs: Sequence[SchedulerConfig],
    plan: RunPlan,
    trained: Iterable[int],
    *,
    min_ratio: float = 1e-3,
    max_near_zero_fraction: float = 0.25,
    max_simulated_steps: int = 200_000,
    keep: Iterable[Any] = (),
    monitor_modes: Mapping[str, tuple[str, str]] | None = None,
) -> Audit:
    """Simulate and judge every scheduler of the run (``trained``: ids of the run's optimizers).

    ``keep``: objects a copied scheduler may share instead of copying (the module, the trainer).
    ``monitor_modes``: ``{metric: (mode, who)}`` of the run's other callbacks that follow a metric
    (``EarlyStopping``, ``ModelCheckpoint``), to check a ``ReduceLROnPlateau``'s ``mode`` against.
    """
    monitor_modes = dict(monitor_modes or {})
    result = Audit()
    if not configs:
        result.verdicts.append(
            ("pass", "no LR scheduler: the LR stays constant (the recipe's advice until the very end)", {})
        )
        return result
    if not plan.has_end:
        result.verdicts.append(
            (
                "skipped",
                "the run has no planned end (max_epochs=-1 and max_steps=-1, or an iterable dataset without "
                "max_steps): there is no run to simulate the schedule over; set max_steps",
                {},
            )
        )
        return result
    groups = _group_by_optimizer(configs, set(trained), result.verdicts, monitor_modes)
    for opt_index, (optimizer, opt_configs) in enumerate(groups):
        _audit_optimizer(
            result, optimizer, opt_configs, plan, (opt_index, len(groups)),
            min_ratio, max_near_zero_fraction, max_simulated_steps, keep,
        )  # fmt: skip
    return result


# ---------------------------------------------------------------------- ReduceLROnPlateau
#: Words of a metric's name that say which way is better (whole words of the name split at
#: non-letters and case changes; the long words also inside a word: "valAccuracy", "top1acc").
_HIGHER_WORDS = frozenset(
    [
        "acc",
        "accuracy",
        "f1",
        "fbeta",
        "auc",
        "auroc",
        "auprc",
        "ap",
        "map",
        "precision",
        "recall",
        "iou",
        "miou",
        "jaccard",
        "dice",
        "r2",
        "bleu",
        "rouge",
        "psnr",
        "ssim",
        "correct",
    ]
)
_LOWER_WORDS = frozenset(
    ["loss", "losses", "error", "err", "mse", "mae", "rmse", "nll", "perplexity", "ppl", "cer", "wer"]
)
_INSIDE = {"accuracy": "max", "precision": "max", "recall": "max", "loss": "min", "error": "min"}


def metric_sense(name: str) -> str | None:
    """``"max"`` when the metric's name says higher is better (accuracy, F1, AUC, IoU...), ``"min"``
    when it says lower is (loss, error, MSE, perplexity...), ``None`` when it does not say or says both.

    Example:
        >>> metric_sense("val_acc"), metric_sense("val/loss"), metric_sense("valAccuracy"), metric_sense("score")
        ('max', 'min', 'max', None)
    """
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower()
    words = set(re.split(r"[^a-z0-9]+", spaced))
    senses = {"max" for w in words if w in _HIGHER_WORDS} | {"min" for w in words if w in _LOWER_WORDS}
    low = name.lower()
    senses |= {sense for word, sense in _INSIDE.items() if word in low}
    return senses.pop() if len(senses) == 1 else None


def monitor_modes(callbacks: Iterable[Any]) -> dict[str, tuple[str, str]]:
    """``{metric: (mode, callback name)}`` of the callbacks that follow a metric with a ``mode``
    (Lightning's ``EarlyStopping`` and ``ModelCheckpoint``, and ours)."""
    modes: dict[str, tuple[str, str]] = {}
    for cb in callbacks:
        monitor, mode = getattr(cb, "monitor", None), getattr(cb, "mode", None)
        if isinstance(monitor, str) and mode in ("min", "max"):
            modes.setdefault(monitor, (mode, type(cb).__name__))
    return modes


def plateau_verdict(config: SchedulerConfig, monitor_modes: Mapping[str, tuple[str, str]]) -> Verdict:
    """A ``ReduceLROnPlateau`` cannot be simulated (it follows a metric), but its ``mode`` can be
    checked: ``fail`` when it counts the metric's improvements as getting worse (``mode="min"`` on
    an accuracy, or against the ``mode`` of an ``EarlyStopping`` / ``ModelCheckpoint`` on the same
    metric): it then cuts the LR every ``patience + 1`` epochs while the model improves, driving it
    to zero. Otherwise ``skipped`` (its decays depend on the data)."""
    scheduler = config.scheduler
    name = type(scheduler).__name__
    monitor = config.monitor
    mode = getattr(scheduler, "mode", None)
    skipped: Verdict = (
        "skipped",
        f"{name}{f' follows {monitor!r}' if monitor else ' follows a metric'}: its decays depend on the data "
        "and cannot be simulated before training",
        {},
    )
    if not monitor or mode not in ("min", "max"):
        return skipped
    other = monitor_modes.get(monitor)
    if other is not None and other[0] in ("min", "max") and other[0] != mode:
        why = f"{other[1]} follows it with mode={other[0]!r}"
        expected = other[0]
    elif (sense := metric_sense(monitor)) is not None and sense != mode:
        why = "its name says " + ("higher" if sense == "max" else "lower") + " is better"
        expected = sense
    else:
        return skipped
    patience = getattr(scheduler, "patience", None)
    every = f"every patience + 1 = {patience + 1} epochs" if isinstance(patience, int) else "repeatedly"
    factor = getattr(scheduler, "factor", None)
    cut = f" (x{factor:g} each time)" if isinstance(factor, float) else ""
    message = (
        f"{name}(mode={mode!r}) follows {monitor!r}, but {why}: it counts every improvement as no "
        f"improvement and cuts the LR {every}{cut} while the model gets better, driving it towards "
        f"zero; pass mode={expected!r}"
    )
    return "fail", message, {"monitor": monitor, "mode": mode, "expected_mode": expected}


def _group_by_optimizer(
    configs: Sequence[SchedulerConfig],
    trained: set[int],
    verdicts: list[Verdict],
    monitor_modes: Mapping[str, tuple[str, str]],
) -> list[tuple[torch.optim.Optimizer, list[SchedulerConfig]]]:
    """The configs that can be simulated, by optimizer; a ``skipped`` verdict for each of the others."""
    for config in configs:
        if config.plateau:
            verdicts.append(plateau_verdict(config, monitor_modes))
    groups: dict[int, tuple[torch.optim.Optimizer, list[SchedulerConfig]]] = {}
    for config in configs:
        if config.plateau:
            continue
        optimizer = getattr(config.scheduler, "optimizer", None)
        if not isinstance(optimizer, torch.optim.Optimizer):
            message = (
                f"{type(config.scheduler).__name__} has no `optimizer` attribute holding a torch optimizer; "
                "it cannot be simulated on a copy"
            )
            verdicts.append(("skipped", message, {}))
            continue
        if id(optimizer) not in trained:
            message = (
                f"{describe_scheduler(config.scheduler)} drives a {type(optimizer).__name__} that is not one of "
                "the optimizers configure_optimizers returned: not simulated; build the scheduler on the "
                "optimizer you return"
            )
            verdicts.append(("skipped", message, {}))
            continue
        groups.setdefault(id(optimizer), (optimizer, []))[1].append(config)
    return list(groups.values())


def _audit_optimizer(
    result: Audit,
    optimizer: torch.optim.Optimizer,
    configs: list[SchedulerConfig],
    plan: RunPlan,
    position: tuple[int, int],
    min_ratio: float,
    max_near_zero_fraction: float,
    max_simulated_steps: int,
    keep: Iterable[Any],
) -> None:
    """Simulate the schedulers of one optimizer, read its curves and judge them (into ``result``)."""
    names = " + ".join(describe_scheduler(c.scheduler) for c in configs)
    torch_schedulers = all(isinstance(c.scheduler, torch.optim.lr_scheduler.LRScheduler) for c in configs)
    if plan.custom_step and not torch_schedulers:
        message = (
            f"{names}: the module overrides lr_scheduler_step and the scheduler is not a torch "
            "LRScheduler; it cannot be simulated with scheduler.step()"
        )
        result.verdicts.append(("skipped", message, {}))
        return
    try:
        sim = simulate_lr(
            [(c.scheduler, c.interval, c.frequency) for c in configs],
            optimizer,
            batches_per_epoch=plan.batches_per_epoch,
            max_epochs=plan.max_epochs,
            max_steps=plan.max_steps,
            accumulate_grad_batches=plan.accumulate_grad_batches,
            start_epoch=plan.start_epoch,
            start_batch=plan.start_batch,
            start_step=plan.start_step,
            max_simulated_steps=max_simulated_steps,
            keep=keep,
        )
    except Exception as err:  # a scheduler that cannot be deep-copied
        message = f"{names} could not be copied to simulate it ({type(err).__name__}: {err})"
        result.verdicts.append(("skipped", message, {}))
        return
    if len(sim.lrs) and not np.isfinite(sim.lrs).all():
        message = (
            f"{names} gives a non-finite LR in the simulation (first at optimizer step "
            f"{plan.start_step + int(np.argmax(~np.isfinite(sim.lrs).all(axis=1)))}): check its lr_lambda / "
            "settings; not judged"
        )
        result.verdicts.append(("skipped", message, {}))
        return
    curves = read_curves(sim, type(optimizer).__name__, *position, min_ratio, max_near_zero_fraction)
    result.curves.extend(curves)
    result.verdicts.append(judge(sim, configs, names, curves, plan, min_ratio))
    if not plan.custom_step and sim.error is None and sim.step_counts is not None and len(sim.lrs):
        schedulers = [c.scheduler for c in configs]
        counts = [scheduler_count(x) for x in schedulers]
        result.tracked.append(Tracked(names, optimizer, schedulers, sim.lrs, sim.step_counts, counts))


def read_curves(
    sim: Simulation,
    optimizer_name: str,
    opt_index: int = 0,
    n_opts: int = 1,
    min_ratio: float = 1e-3,
    max_near_zero_fraction: float = 0.25,
) -> list[Curve]:
    """One :class:`Curve` per parameter group, labelled ``SGD``, ``SGD 1``, ``SGD group 0`` ..."""
    curves = []
    n_groups = sim.lrs.shape[1]
    for g in range(n_groups):
        report = analyse_lr(
            sim.lrs[:, g], sim.total_steps, min_ratio=min_ratio, max_near_zero_fraction=max_near_zero_fraction
        )
        label = optimizer_name
        if n_opts > 1:
            label = f"{label} {opt_index}"
        if n_groups > 1:
            label = f"{label} group {g}"
        curves.append(Curve(label, sim.lrs[:, g].copy(), report))
    return curves


# ---------------------------------------------------------------------- verdicts on one optimizer
def judge(
    sim: Simulation,
    configs: Sequence[SchedulerConfig],
    names: str,
    curves: Sequence[Curve],
    plan: RunPlan,
    min_ratio: float = 1e-3,
) -> Verdict:
    """The verdict on one optimizer's simulated schedule (its worst curve speaks for it)."""
    if sim.error is not None:
        verdict = _raises(sim, configs, names)
    else:
        verdict = _curve_verdict(sim, configs, names, curves, plan, min_ratio)
    if not plan.manual:
        return verdict
    status, message, numbers = verdict
    return status, message + _MANUAL_NOTE, {**numbers, "manual_optimization": True}


def _raises(sim: Simulation, configs: Sequence[SchedulerConfig], names: str) -> Verdict:
    total = sim.total_steps
    fix = (
        f"pass total_steps=trainer.estimated_stepping_batches ({total})"
        if any(type(c.scheduler).__name__ == "OneCycleLR" for c in configs)
        else f"make its length match this run's {total} optimizer steps"
    )
    return (
        "fail",
        f"{names} raises when stepped after optimizer step {sim.error_step} of {total} "
        f"({sim.error}): the real run will stop there; {fix}",
        {"error": sim.error, "error_step": sim.error_step, "total_steps": total},
    )


def _curve_verdict(
    sim: Simulation,
    configs: Sequence[SchedulerConfig],
    names: str,
    curves: Sequence[Curve],
    plan: RunPlan,
    min_ratio: float,
) -> Verdict:
    total, spe = sim.total_steps, plan.steps_per_epoch
    worst = max(curves, key=lambda c: SEVERITY[c.report.verdict])
    r = worst.report
    numbers = {**r.numbers(), "scheduler": names, "steps_per_epoch": spe, "truncated": sim.truncated}
    where = f" ({worst.label})" if len(curves) > 1 else ""
    prefix = f"of the first {sim.simulated_steps} simulated steps, " if sim.truncated else ""
    if r.verdict == "early_decay":
        assert r.first_near_zero_fraction is not None
        return (
            "fail",
            f"{names}{where} drives the LR below {min_ratio:g}x its peak at {r.first_near_zero_fraction:.0%} "
            f"of training and keeps it there for {prefix}{r.near_zero_fraction:.0%} of the {total} steps (down to "
            f"{_ratio(r.min_ratio_reached)}x): {hint(configs, total, spe, plan.max_epochs)}",
            numbers,
        )
    if r.verdict == "cycles":
        assert r.first_near_zero_fraction is not None
        return (
            "warn",
            f"{names}{where} takes the LR to {_ratio(r.min_ratio_reached)}x its peak already at "
            f"{r.first_near_zero_fraction:.1%} of training, and {r.near_zero_episodes} times in all: "
            f"{hint(configs, total, spe, plan.max_epochs)}",
            numbers,
        )
    if r.verdict == "zero" and all(c.report.verdict == "zero" for c in curves):
        return "warn", f"{names}: the LR is 0 for the whole run; nothing will train", numbers
    for config, count in zip(configs, sim.scheduler_steps):
        planned = getattr(config.scheduler, "total_steps", None)
        one_cycle = type(config.scheduler).__name__ == "OneCycleLR"
        if one_cycle and isinstance(planned, int) and count < 0.5 * planned:
            return (
                "warn",
                f"OneCycleLR(total_steps={planned}) is stepped only {count} times in this run: it ends at "
                f"{r.final_ratio:.0%} of its peak LR without annealing; pass "
                f"total_steps=trainer.estimated_stepping_batches ({total})",
                numbers,
            )
    return "pass", f"{names}{where}: {summary(r, prefix, min_ratio)}", numbers


def summary(r: LRCurveReport, prefix: str = "", min_ratio: float = 1e-3) -> str:
    """The shape of a curve that passed: warm-up or start, where it ends, time near zero."""
    if r.verdict == "constant":
        return f"the LR stays at {r.peak:.3g} over the {r.total_steps} steps"
    parts = []
    if r.warmup_steps:
        parts.append(f"warms up to {r.peak:.3g} by step {r.peak_step}")
    else:
        parts.append(f"starts at {r.initial:.3g}")
    parts.append(f"ends at {r.final_ratio:.2g} of its peak")
    if r.near_zero_fraction > 0:
        parts.append(f"near zero (< {min_ratio:g}x peak) for {prefix}{r.near_zero_fraction:.1%} of the run")
    return ", ".join(parts) + f" ({r.total_steps} steps)"


def hint(configs: Sequence[SchedulerConfig], total: int, steps_per_epoch: float, max_epochs: int) -> str:
    """What to change: the unit the scheduler is stepped in, its length arguments, this run's length."""
    config = configs[0]
    args = [a for a in _LENGTH_ARGS if getattr(config.scheduler, a, None) is not None]
    what = "/".join(args) if args else "its length settings"
    per_epoch = "" if math.isinf(steps_per_epoch) else f", {int(steps_per_epoch)} per epoch"
    if config.interval == "step":
        every = (
            "every optimizer step" if config.frequency == 1 else f"every {config.frequency} optimizer steps"
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


def _ratio(value: float) -> str:
    return "0" if value == 0 else f"{value:.0e}"


# ---------------------------------------------------------------------- cross-check with the real run
def cross_check_points(
    tracked: Sequence[Tracked], steps_per_epoch: float, start_step: int, at: int = CROSS_CHECK_STEP
) -> list[int]:
    """Simulation indices at which to compare the real LR: step ``at`` (or the last simulated one) and
    the first step of the second epoch."""
    if not tracked:
        return []
    length = min(len(t.lrs) for t in tracked)
    points = {min(at, length - 1)}
    if math.isfinite(steps_per_epoch) and 0 < steps_per_epoch < length:
        points.add(int(steps_per_epoch) - start_step % int(steps_per_epoch))
    return sorted(p for p in points if p >= 0)


def cross_check(
    tracked: Sequence[Tracked], index: int, live: set[int], *, manual: bool = False, global_step: int = 0
) -> Verdict | None:
    """Compare the real LR of every tracked optimizer with the simulation at ``index``; the first
    mismatch as a verdict, ``None`` when they agree.

    ``live``: ids of the schedulers the run steps now (replaced ones, e.g. by StochasticWeightAveraging,
    are not compared).
    """
    for t in tracked:
        if index >= len(t.lrs) or any(id(x) not in live for x in t.schedulers):
            continue  # past the simulation, or the schedulers were replaced
        for g, group in enumerate(t.optimizer.param_groups[: t.lrs.shape[1]]):
            try:
                real = float(group["lr"])
            except (KeyError, TypeError, ValueError, RuntimeError):
                continue
            simulated = float(t.lrs[index, g])
            if abs(real - simulated) > 1e-6 * max(abs(real), abs(simulated)):
                where = f"batch {index}" if manual else f"step {global_step}"
                return mismatch(t, index, g, real, simulated, where, manual)
    return None


def mismatch(
    t: Tracked, index: int, group: int, real: float, simulated: float, where: str, manual: bool = False
) -> Verdict:
    """Why the real LR differs from the simulated one: the scheduler stepped more, less, or neither."""
    counts = [scheduler_count(x) for x in t.schedulers]
    real_counts = [None if s is None or c is None else c - s for c, s in zip(counts, t.start_counts)]
    expected = [int(c) for c in t.counts[index]]
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
        "manual_optimization": manual,
    }
    head = f"the real LR ({real:.6g}) differs from the configured schedule ({simulated:.6g}) at {where}" + (
        f" (param group {group})" if len(t.optimizer.param_groups) > 1 else ""
    )
    counted = (
        f"{t.names} was stepped {_counts(real_counts)} times, the configuration steps it {_counts(expected)}"
    )
    if more:
        fix = (
            "make interval=/frequency= in configure_optimizers say how your training_step steps it, so the "
            "audit simulates the schedule the run follows"
            if manual
            else "remove the manual call (Lightning steps it by its interval='step'/'epoch')"
        )
        return (
            "warn",
            f"{head}: the scheduler is stepped more often than configured (a manual .step() in "
            f"training_step?): {counted}; {fix}",
            numbers,
        )
    if fewer:
        fix = (
            "under manual optimization Lightning does not step schedulers: call "
            "self.lr_schedulers().step() in training_step as configured"
            if manual
            else "something skips its .step() (an lr_scheduler_step override?)"
        )
        message = f"{head}: the scheduler is stepped less often than configured: {counted}; {fix}"
        return "warn", message, numbers
    if known:
        return (
            "skipped",
            f"{head}, though the scheduler was stepped as configured: something else sets the LR "
            "(an optimizer_step override, a callback, a param-group write); the audited curve is not "
            "the one this run follows",
            numbers,
        )
    return (
        "warn",
        f"{head}: the scheduler is stepped more often than configured (a manual .step() in "
        "training_step?), or something else sets the LR; the audited curve is not the one this run follows",
        numbers,
    )


def _counts(values: Sequence[Any]) -> str:
    return "/".join("?" if v is None else str(v) for v in values)
