"""Learning-rate schedules: simulate them on a throwaway copy, then read the LR curve.

The recipe's "do not trust learning rate decay defaults": a schedule written for another data set
(ImageNet decays by 10 on epoch 30) or stepped in the wrong unit (per batch instead of per epoch)
silently drives the learning rate to zero long before the end of training. This module answers,
before the first step, what the LR will be at every optimizer step of the planned run.

* :func:`detached_schedulers` deep-copies schedulers together with their optimizer, with every
  parameter replaced by a one-element dummy and the optimizer state left empty, so the copy is
  small, shares nothing with the real run, and stepping it changes nothing there.
* :func:`simulate_lr` steps the copy the way Lightning does (``interval="step"`` after every
  ``frequency``-th batch that stepped the optimizer, ``interval="epoch"`` after every
  ``frequency``-th epoch) and records the LR of every parameter group at every optimizer step.
* :func:`analyse_lr` reads one LR curve: its peak, where it first falls below a fraction of the
  peak, how much of the run it spends there, whether it cycles, warm-up, constant.

Thresholds (the defaults of :func:`analyse_lr`, documented in the README section):

* "near zero" means below ``min_ratio = 1e-3`` of the curve's peak. Ten-fold step decays at 1/3
  and 2/3 of the run (1e-2 of the peak) and even ImageNet's three decays (1e-3) are not near zero;
  the tail of a cosine or linear decay to 0 is (the last 2% and 0.1% of the run).
* ``early_decay``: more than ``max_near_zero_fraction = 0.25`` of the run (counted after warm-up,
  i.e. once the LR first reached half its peak) is spent near zero.
* ``cycles``: the LR first reaches near zero by ``early_cycle_fraction = 0.05`` of the run and
  does so at least ``min_cycles = 5`` times: a decay meant to span the run (``CosineAnnealingLR``'s
  ``T_max``) that is counted in the wrong unit and so restarts over and over.

Example:
    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    >>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    >>> sim = simulate_lr([(sched, "step", 1)], opt, batches_per_epoch=100, max_epochs=10)
    >>> sim.lrs.shape, opt.param_groups[0]["lr"]          # the real optimizer is untouched
    ((1000, 1), 0.1)
    >>> report = analyse_lr(sim.lrs[:, 0], total_steps=sim.total_steps)
    >>> report.verdict, f"{report.first_near_zero_fraction:.0%}"
    ('early_decay', '12%')
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lightning_recipe.core.plain import decimate as decimate  # moved there; importable from here

__all__ = [
    "LRCurveReport",
    "Simulation",
    "analyse_lr",
    "decimate",
    "describe_scheduler",
    "detached_schedulers",
    "is_plateau_scheduler",
    "simulate_lr",
]

Verdict = Literal["ok", "constant", "zero", "early_decay", "cycles"]

#: Scheduler attributes that say how long a schedule is or how hard it decays, in display order.
_DESCRIBED = (
    "step_size",
    "milestones",
    "gamma",
    "T_max",
    "T_0",
    "T_mult",
    "total_steps",
    "total_iters",
    "eta_min",
)


def is_plateau_scheduler(scheduler: Any) -> bool:
    """True for ``ReduceLROnPlateau`` (it follows a metric, so it cannot be simulated)."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def describe_scheduler(scheduler: Any) -> str:
    """``StepLR(step_size=30, gamma=0.1)``: the class and the attributes that set its length."""
    parts = []
    for name in _DESCRIBED:
        value = getattr(scheduler, name, None)
        if value is None or callable(value):
            continue
        if name == "milestones":
            value = (
                sorted(dict(value)) if isinstance(value, dict) or hasattr(value, "elements") else list(value)
            )
        parts.append(f"{name}={value!r}" if not isinstance(value, float) else f"{name}={value:g}")
    children = getattr(scheduler, "_schedulers", None)
    if isinstance(children, (list, tuple)) and children and not parts:
        parts = [describe_scheduler(child) for child in children]
    return f"{type(scheduler).__name__}({', '.join(parts)})"


def detached_schedulers(
    schedulers: Sequence[Any], optimizer: torch.optim.Optimizer, keep: Iterable[Any] = ()
) -> tuple[list[Any], torch.optim.Optimizer]:
    """Deep-copy ``schedulers`` and the ``optimizer`` they drive, sharing nothing with the originals.

    Every parameter becomes a one-element dummy and the optimizer state (Adam's moments) is left
    empty, so the copy costs almost nothing whatever the model size. Objects in ``keep`` (the
    LightningModule, the Trainer: a ``lr_lambda`` may be a bound method of the module) are shared
    instead of copied; the copy only reads them.

    Raises:
        Exception: whatever ``copy.deepcopy`` raises for a scheduler that cannot be copied.
    """
    memo: dict[int, Any] = {}
    for obj in keep:
        memo[id(obj)] = obj
    for group in optimizer.param_groups:
        for p in group["params"]:
            dtype = p.dtype if p.dtype.is_floating_point else torch.float32
            memo[id(p)] = torch.zeros(1, dtype=dtype)
    memo[id(optimizer.state)] = defaultdict(dict)
    copied_schedulers, copied_optimizer = copy.deepcopy((list(schedulers), optimizer), memo)
    return copied_schedulers, copied_optimizer


@dataclass
class Simulation:
    """The LR of every parameter group at every simulated optimizer step.

    Attributes:
        lrs: ``(simulated_steps, n_groups)`` float64, the LR used by each optimizer step.
        total_steps: optimizer steps in the planned run.
        steps_per_epoch: optimizer steps per epoch (``inf`` for an iterable dataset).
        scheduler_steps: how many times each scheduler was stepped.
        error: the exception a scheduler raised while stepped (the real run would raise too).
        error_step: the optimizer step after which it raised.
        step_counts: ``(simulated_steps, n_schedulers)``: how many times each scheduler had been
            stepped before each optimizer step (to compare with the real schedulers' counts).
    """

    lrs: np.ndarray
    total_steps: int
    steps_per_epoch: float
    scheduler_steps: list[int] = field(default_factory=list)
    error: str | None = None
    error_step: int | None = None
    step_counts: np.ndarray | None = None

    @property
    def simulated_steps(self) -> int:
        return int(self.lrs.shape[0])

    @property
    def truncated(self) -> bool:
        """True when the run is longer than what was simulated (``max_simulated_steps``)."""
        return self.error is None and self.simulated_steps < self.total_steps


def _group_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]


def simulate_lr(
    schedulers: Sequence[tuple[Any, str, int]],
    optimizer: torch.optim.Optimizer,
    *,
    batches_per_epoch: float,
    max_epochs: int = -1,
    max_steps: int = -1,
    accumulate_grad_batches: int = 1,
    start_epoch: int = 0,
    start_batch: int = 0,
    start_step: int = 0,
    max_simulated_steps: int = 200_000,
    keep: Iterable[Any] = (),
    copy_first: bool = True,
) -> Simulation:
    """Step copies of ``schedulers`` over the planned run, as Lightning would, and record the LRs.

    Args:
        schedulers: ``(scheduler, interval, frequency)`` for every scheduler that drives
            ``optimizer`` (stepped together, as in the real run). ``interval`` is ``"step"`` or
            ``"epoch"``.
        optimizer: the optimizer they drive.
        batches_per_epoch: training batches per epoch (``inf`` for an iterable dataset).
        max_epochs: epochs of the run (``-1``: unbounded, then ``max_steps`` ends it).
        max_steps: optimizer steps of the run (``-1``: unbounded, then ``max_epochs`` ends it).
        accumulate_grad_batches: batches per optimizer step.
        start_epoch, start_batch, start_step: where the run stands (non-zero on resume).
        max_simulated_steps: stop simulating after this many optimizer steps.
        keep: objects shared with, not copied into, the copy (see :func:`detached_schedulers`).
        copy_first: simulate on copies (``False`` steps the given objects: only for copies).

    Raises:
        ValueError: when the run has no planned end (``max_epochs`` and ``max_steps`` both ``-1``,
            or an iterable dataset without ``max_steps``).
    """
    steps_per_epoch = (
        math.inf
        if math.isinf(batches_per_epoch)
        else math.ceil(batches_per_epoch / max(accumulate_grad_batches, 1))
    )
    if max_steps < 0 and (max_epochs < 0 or math.isinf(batches_per_epoch)):
        raise ValueError("the run has no planned end: set max_steps (or max_epochs with a sized dataset)")
    planned = math.inf if max_epochs < 0 else steps_per_epoch * max_epochs
    total = int(min(planned, max_steps) if max_steps >= 0 else planned)
    if copy_first:
        scheds, opt = detached_schedulers([s for s, _, _ in schedulers], optimizer, keep)
    else:
        scheds, opt = [s for s, _, _ in schedulers], optimizer
    plan = [(s, interval, max(int(freq), 1)) for s, (_, interval, freq) in zip(scheds, schedulers)]
    n_groups = len(opt.param_groups)
    remaining = max(total - start_step, 0)
    limit = min(remaining, max_simulated_steps)
    lrs = np.empty((limit, n_groups), dtype=np.float64)
    step_counts = np.zeros((limit, len(plan)), dtype=np.int64)
    counts = [0] * len(plan)
    k = max(int(accumulate_grad_batches), 1)
    n = 0
    epoch, batch = start_epoch, start_batch
    error: str | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()" and the like
        try:
            while n < limit:
                last_batch = not math.isinf(batches_per_epoch) and batch + 1 >= batches_per_epoch
                if (batch + 1) % k == 0 or last_batch:
                    lrs[n] = _group_lrs(opt)
                    step_counts[n] = counts
                    n += 1
                    for i, (sched, interval, freq) in enumerate(plan):
                        if interval == "step" and (batch + 1) % freq == 0:
                            sched.step()
                            counts[i] += 1
                if last_batch:
                    for i, (sched, interval, freq) in enumerate(plan):
                        if interval == "epoch" and (epoch + 1) % freq == 0:
                            sched.step()
                            counts[i] += 1
                    epoch += 1
                    batch = 0
                else:
                    batch += 1
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
    return Simulation(
        lrs=lrs[:n],
        total_steps=remaining,
        steps_per_epoch=steps_per_epoch,
        scheduler_steps=counts,
        error=error,
        error_step=start_step + n if error is not None else None,
        step_counts=step_counts[:n],
    )


@dataclass
class LRCurveReport:
    """What one LR curve does over the run.

    Attributes:
        verdict: ``"ok"``, ``"constant"``, ``"zero"`` (the LR is 0 throughout), ``"early_decay"``
            (near zero for too much of the run) or ``"cycles"`` (reaches near zero early, repeatedly).
        initial, peak, final, minimum: LR values.
        peak_step: first step at the peak.
        warmup_steps: steps before the LR first reaches half its peak (0 without warm-up).
        first_near_zero_step: first step after warm-up with the LR below ``min_ratio`` x peak.
        first_near_zero_fraction: the same as a fraction of the run (``None`` if never).
        near_zero_fraction: fraction of the run (after warm-up) spent below ``min_ratio`` x peak.
        near_zero_episodes: how many separate times the LR goes below it.
        final_ratio: ``final / peak``; ``min_ratio_reached``: ``minimum / peak`` after warm-up.
    """

    verdict: Verdict
    initial: float
    peak: float
    final: float
    minimum: float
    peak_step: int
    warmup_steps: int
    first_near_zero_step: int | None
    first_near_zero_fraction: float | None
    near_zero_fraction: float
    near_zero_episodes: int
    final_ratio: float
    min_ratio_reached: float
    total_steps: int

    def numbers(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def analyse_lr(
    lrs: Sequence[float] | np.ndarray,
    total_steps: int | None = None,
    *,
    min_ratio: float = 1e-3,
    max_near_zero_fraction: float = 0.25,
    early_cycle_fraction: float = 0.05,
    min_cycles: int = 5,
) -> LRCurveReport:
    """Read one LR curve (the LR at every optimizer step) against the thresholds above.

    Args:
        lrs: the LR at each simulated step.
        total_steps: steps in the planned run (defaults to ``len(lrs)``); fractions use
            ``len(lrs)`` when only a prefix was simulated.
        min_ratio: "near zero" is below this fraction of the peak.
        max_near_zero_fraction: ``early_decay`` when more of the run than this is near zero.
        early_cycle_fraction, min_cycles: ``cycles`` when the LR is first near zero by this
            fraction of the run and goes there at least ``min_cycles`` times.
    """
    x = np.abs(np.asarray(lrs, dtype=np.float64).ravel())
    n = int(x.size)
    total = int(total_steps) if total_steps is not None else n
    span = max(min(total, n), 1)
    if n == 0:
        return LRCurveReport("constant", 0.0, 0.0, 0.0, 0.0, 0, 0, None, None, 0.0, 0, 1.0, 1.0, total)
    peak = float(x.max())
    peak_step = int(np.argmax(x))
    initial, final = float(x[0]), float(x[-1])
    if peak <= 0.0 or not math.isfinite(peak):
        verdict: Verdict = "zero" if peak <= 0.0 else "ok"
        return LRCurveReport(
            verdict, initial, peak, final, float(x.min()), peak_step, 0, None, None, 0.0, 0, 0.0, 0.0, total
        )
    warmup = int(np.argmax(x >= 0.5 * peak))
    after = x[warmup:]
    threshold = min_ratio * peak * (1.0 - 1e-9)
    low = after < threshold
    below = int(low.sum())
    first = int(np.argmax(low)) + warmup if below else None
    episodes = int(low[0]) + int(np.count_nonzero(low[1:] & ~low[:-1])) if below else 0
    near_zero_fraction = below / span
    minimum = float(after.min())
    constant = bool(np.all(np.abs(x - peak) <= 1e-12 * peak))
    if constant:
        verdict = "constant"
    elif near_zero_fraction > max_near_zero_fraction:
        verdict = "early_decay"
    elif first is not None and first <= early_cycle_fraction * span and episodes >= min_cycles:
        verdict = "cycles"
    else:
        verdict = "ok"
    return LRCurveReport(
        verdict=verdict,
        initial=initial,
        peak=peak,
        final=final,
        minimum=minimum,
        peak_step=peak_step,
        warmup_steps=warmup,
        first_near_zero_step=first,
        first_near_zero_fraction=None if first is None else first / span,
        near_zero_fraction=near_zero_fraction,
        near_zero_episodes=episodes,
        final_ratio=final / peak,
        min_ratio_reached=minimum / peak,
        total_steps=total,
    )
