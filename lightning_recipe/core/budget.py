"""The overhead budget: what each recipe callback costs, and cadences that keep it under a share of training.

Every guarded hook of a :class:`~lightning_recipe.callbacks.base.RecipeCallback` is timed (two
``perf_counter`` calls); the figures a hook draws are timed too (CPU time; inline by default, else
on the rendering thread or process) and charged to the same callback. :class:`CostMeter` keeps the sums, split into the work done
before the first training step (one-time checks) and during training.

A periodic callback asks a :class:`Cadence` whether a step is due. On steps that are not due this
is one integer compare. A fixed cadence (``every=N``) takes step 0 and every multiple of ``N``; a
budgeted one (``every=None``) takes step 0, then the next point ``base`` steps later, stretched
so that the callback's cost over the training time so far stays under ``share``; the interval is
capped so that ``min_points`` points fit in the planned run (points a verdict needs are never
given up). The callback takes its last point itself, at the end of fit. With ``first_cost_s`` (what
one point is guessed to cost, e.g. its figures) a budgeted cadence does not take step 0: its first
point waits until the training time so far affords it (a short run draws at its end only).

Example:
    >>> cadence = Cadence(every=None, base=10, share=0.01)
    >>> cadence.start(planned_steps=1000)
    >>> cadence.due(0)
    True
    >>> cadence.taken(0, cost_s=0.0, elapsed_s=0.0, step_time_s=0.0)   # the first point: `base` later
    >>> cadence.next_due, cadence.due(5)
    (10, False)
    >>> # so far 0.2 s of cost in 0.1 s of training: 1% allows the next point ~4000 steps later, but
    >>> # the planned run must hold min_points=2 points: at most 1000 steps apart
    >>> cadence.taken(10, cost_s=0.2, elapsed_s=0.1, step_time_s=0.01)
    >>> cadence.next_due
    1010
    >>> late = Cadence(every=None, base=10, share=0.01, first_cost_s=0.1)   # figures: when affordable
    >>> late.start(1000); late.due(0), late.recheck(10, 0.0, 5.0, 0.01), late.next_due   # 10 s needed
    (False, False, 510)
    >>> fixed = Cadence(every=25, base=10, share=0.01)   # fixed: step 0 and the multiples of 25
    >>> fixed.start(1000); fixed.taken(0, cost_s=9.0, elapsed_s=0.0, step_time_s=0.01); fixed.next_due
    25
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Cadence",
    "CostMeter",
    "charge_render",
    "check_overhead",
    "current_meter",
    "is_before",
    "set_running",
    "skip_unused_hooks",
    "split_share",
]

#: The phase of a hook: the work before the first training step, or the periodic work of training.
_BEFORE = frozenset({"setup", "on_fit_start", "on_train_start", "on_sanity_check_start"})

_local = threading.local()


@dataclass
class CostMeter:
    """Wall seconds a callback spent in its hooks and in rendering its figures.

    Attributes:
        before_s: seconds before the first training step (``setup``, ``on_fit_start``, ``on_train_start``).
        during_s: seconds during training (every other hook, and the figures it submitted).
        render_s: the part of both spent rendering figures (CPU time of the rendering thread).
        points: periodic points taken (filled in by :class:`Cadence` users).
    """

    before_s: float = 0.0
    during_s: float = 0.0
    render_s: float = 0.0
    points: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def total_s(self) -> float:
        return self.before_s + self.during_s

    def add(self, hook: str, seconds: float) -> None:
        if hook in _BEFORE:
            self.before_s += seconds
        else:
            self.during_s += seconds

    def add_render(self, phase_before: bool, seconds: float, in_hook: bool = False) -> None:
        """``seconds`` of rendering; ``in_hook``: drawn inside the hook, whose wall time holds them."""
        with self._lock:  # the rendering thread adds while the training thread reads
            self.render_s += seconds
            if in_hook:
                return
            if phase_before:
                self.before_s += seconds
            else:
                self.during_s += seconds

    def reset(self) -> None:
        self.before_s = self.during_s = self.render_s = 0.0
        self.points = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def set_running(owner: tuple[CostMeter, bool] | None) -> tuple[CostMeter, bool] | None:
    """Make ``owner`` (a meter, and whether its hook runs before training) the running hook's; returns
    the previous one, to restore."""
    previous = getattr(_local, "running", None)
    _local.running = owner
    return previous


def is_before(hook: str) -> bool:
    return hook in _BEFORE


def current_meter() -> tuple[CostMeter, bool] | None:
    """The meter of the hook running on this thread and whether it is a before-training hook."""
    return getattr(_local, "running", None)


def charge_render(owner: tuple[CostMeter, bool] | None, job: Any, in_hook: bool = False) -> Any:
    """Wrap a rendering job so that its CPU time is charged to ``owner`` (see :func:`current_meter`);
    ``in_hook``: the job runs inside the hook (its wall time is counted already)."""
    if owner is None:
        return job

    def timed(*args: Any) -> None:
        start = time.thread_time()
        try:
            job(*args)
        finally:
            owner[0].add_render(owner[1], time.thread_time() - start, in_hook)

    return timed


#: The hooks Lightning calls at every batch, of every callback, each inside a profiler context (about
#: 3 us per callback and hook: 16 callbacks cost 5% of an 8 ms step).
PER_BATCH_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
)


def skip_unused_hooks(cls: type, base: type) -> None:
    """Set the per-batch hooks ``cls`` inherits from ``base`` (Lightning's ``Callback``) unchanged to
    ``None``: ``Trainer._call_callback_hooks`` calls only callable hooks, so it skips them.

    A hook ``cls`` defines is called as usual, and ``super().<hook>()`` in it works (an ancestor's
    ``None`` becomes ``base``'s no-op again); one inherited from another class is kept.

    Example:
        >>> class Base:
        ...     def on_train_batch_end(self, *args): ...
        ...     def on_before_backward(self, *args): ...
        >>> class Check(Base):
        ...     def on_before_backward(self, *args): return "called"
        >>> skip_unused_hooks(Check, Base)
        >>> Check.on_train_batch_end is None, Check().on_before_backward()
        (True, 'called')
    """
    for name in PER_BATCH_HOOKS:
        if not hasattr(base, name):
            continue
        if name in vars(cls):
            for ancestor in cls.__mro__[1:]:
                if ancestor is not base and name in vars(ancestor) and vars(ancestor)[name] is None:
                    delattr(ancestor, name)
            continue
        impl = next((vars(k)[name] for k in cls.__mro__[1:] if vars(k).get(name) is not None), None)
        if impl is None or impl is vars(base).get(name):
            setattr(cls, name, None)
        elif getattr(cls, name) is None:  # a None of one base hides another base's hook
            setattr(cls, name, impl)


def split_share(total: float, names: list[str]) -> dict[str, float]:
    """An equal share of ``total`` for each name."""
    return {name: total / len(names) for name in names} if names else {}


class Cadence:
    """When a periodic callback's next point is due; see the module docstring.

    Args:
        every: a fixed interval in steps (``None``: budgeted).
        base: the shortest interval of a budgeted cadence.
        share: the fraction of training time the callback may spend.
        min_points: points (step 0 included) a budgeted cadence fits in the planned run.
        first_cost_s: a budgeted cadence's guess of one point's cost: then its first point is not step
            0 but the first due step whose training time so far affords it (``None``: step 0).
    """

    __slots__ = (
        "base",
        "every",
        "first_cost_s",
        "last",
        "min_points",
        "next_due",
        "planned",
        "share",
        "taken_points",
    )

    def __init__(
        self,
        every: int | None,
        base: int,
        share: float,
        min_points: int = 2,
        first_cost_s: float | None = None,
    ) -> None:
        self.every, self.base, self.share, self.min_points = (
            every,
            max(1, int(base)),
            float(share),
            min_points,
        )
        self.first_cost_s = first_cost_s
        self.planned: int | None = None
        self.next_due = 0
        self.taken_points = 0
        self.last: int | None = None

    @property
    def fixed(self) -> bool:
        return self.every is not None

    @property
    def waits_for_budget(self) -> bool:
        """A budgeted cadence whose first point waits until it is affordable (see ``first_cost_s``)."""
        return self.every is None and self.first_cost_s is not None

    def start(self, planned_steps: float | int | None, step: int = 0) -> None:
        """At the start of training: the planned number of optimizer steps (``None``/inf: unknown)."""
        planned = None
        if planned_steps is not None and math.isfinite(float(planned_steps)) and planned_steps > 0:
            planned = int(planned_steps)
        self.planned = planned
        self.taken_points, self.last = 0, None
        self.next_due = step if self.every is None else math.ceil(step / self.every) * self.every
        if self.waits_for_budget:
            self.next_due = step + self.base

    def due(self, step: int) -> bool:
        """Whether ``step`` is due (one integer compare)."""
        return step >= self.next_due

    def cap(self) -> int | None:
        """The longest interval that still fits ``min_points`` points in the planned run."""
        if self.planned is None:
            return None
        return max(1, self.planned // max(1, self.min_points - 1))

    def taken(self, step: int, cost_s: float, elapsed_s: float, step_time_s: float) -> None:
        """A point was taken at ``step``; ``cost_s``: the callback's cost during training so far,
        ``elapsed_s``: training time so far, ``step_time_s``: seconds per step so far."""
        if self.every is not None:
            self.next_due = (step // self.every + 1) * self.every
        else:
            self.next_due = step + self.interval(cost_s, elapsed_s, step_time_s)
        self.taken_points += 1
        self.last = step

    def recheck(self, step: int, cost_s: float, elapsed_s: float, step_time_s: float) -> bool:
        """At a due step of a budgeted cadence: whether it is still due with the cost known now
        (figures of earlier points finish rendering after they were scheduled); else postpone."""
        if self.every is None and self.taken_points == 0 and self.first_cost_s is not None:
            afford = (cost_s + self.first_cost_s) / self.share if self.share > 0 else math.inf
            if elapsed_s >= afford:
                return True
            wait = (
                (afford - elapsed_s) / step_time_s if step_time_s > 0 and math.isfinite(afford) else 1 << 62
            )
            self.next_due = step + max(self.base, math.ceil(wait))
            return False
        if self.every is not None or self.last is None or self.taken_points == 0:
            return True
        self.next_due = max(self.next_due, self.last + self.interval(cost_s, elapsed_s, step_time_s))
        return step >= self.next_due

    def interval(self, cost_s: float, elapsed_s: float, step_time_s: float) -> int:
        """The budgeted interval after a point: ``base``, stretched to keep ``cost/elapsed <= share``."""
        n = self.base
        if self.share > 0 and step_time_s > 0 and self.taken_points > 0:
            per_point = cost_s / self.taken_points
            # after one more point the cost is cost + per_point; the training time must have grown to
            # (cost + per_point) / share by then
            need = ((cost_s + per_point) / self.share - elapsed_s) / step_time_s
            if need > n:
                n = math.ceil(need)
        elif self.share <= 0:
            n = 1 << 62
        limit = self.cap()
        if limit is not None:
            n = min(n, limit)
        return max(1, n)


def check_overhead(owner: str, value: Any) -> float:
    """Validate an ``overhead=`` argument: a fraction of training time in ``(0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(
            f"{owner}(overhead={value!r}): pass the fraction of training time the callback may spend, "
            "between 0 and 1 (e.g. 0.01 for 1%)."
        )
    return float(value)


# ---------------------------------------------------------------------- one-time checks: a budget (issue 14)
#: The one-time checks of one run together may take this share of the planned run...
ONE_TIME_SHARE = 0.05
#: ...or this many seconds, whichever is larger (a short run still gets checks that can conclude).
ONE_TIME_FLOOR_S = 1.0
#: How the budget is split: the weight of each one-time check (any other budgeted check: 1).
ONE_TIME_WEIGHTS: dict[str, float] = {
    "InputIndependentBaseline": 4.0,
    "OverfitBatchCheck": 2.0,
    "DataInspector": 1.0,
    "FinalBiasInit": 1.0,
}

__all__ += [
    "ONE_TIME_FLOOR_S",
    "ONE_TIME_SHARE",
    "ONE_TIME_WEIGHTS",
    "OneTimeBudget",
    "check_one_time",
    "plan_budget",
    "shared_budget",
    "steps_within",
]

_plans: Any = None  # WeakKeyDictionary trainer -> OneTimeBudget, created on first use


def check_one_time(owner: str, value: Any) -> float | None:
    """Validate a ``one_time=`` argument: ``None`` (no budget) or a share of the planned run in ``(0, 1]``.

    Example:
        >>> check_one_time("OverfitBatchCheck", 0.05), check_one_time("OverfitBatchCheck", None)
        (0.05, None)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(
            f"{owner}(one_time={value!r}): pass the share of the planned run the one-time checks may take "
            "together, between 0 and 1 (e.g. 0.05 for 5%), or None for no budget."
        )
    return float(value)


def plan_budget(share: float, planned_s: float | None, floor_s: float = ONE_TIME_FLOOR_S) -> float:
    """The one-time budget in seconds: ``share`` of the planned run, or ``floor_s`` if that is larger.

    ``planned_s`` ``None`` (an endless or unknown run): the floor.

    Example:
        >>> plan_budget(0.05, 600.0), plan_budget(0.05, 6.0), plan_budget(0.05, None)
        (30.0, 1.0, 1.0)
    """
    if planned_s is None or not math.isfinite(planned_s) or planned_s <= 0:
        return float(floor_s)
    return max(share * planned_s, float(floor_s))


def steps_within(seconds: float, step_s: float, minimum: int, maximum: int) -> tuple[int, bool]:
    """How many steps of ``step_s`` seconds fit in ``seconds``, clamped to ``[minimum, maximum]``.

    Returns ``(steps, short)``; ``short``: the minimum (the steps a verdict needs) exceeds the budget.

    Example:
        >>> steps_within(1.0, 0.01, minimum=25, maximum=500)
        (100, False)
        >>> steps_within(0.1, 0.01, minimum=25, maximum=500), steps_within(60.0, 0.01, 25, 500)
        ((25, True), (500, False))
    """
    fit = int(seconds / step_s) if step_s > 0 and math.isfinite(seconds) else maximum
    if fit < minimum:
        return minimum, True
    return min(fit, maximum), False


@dataclass
class OneTimeBudget:
    """The seconds the one-time checks of one run may take together, and how they are split.

    The planned run costs ``step_s * planned_steps``; ``step_s`` (seconds per training step) is
    measured by the first check that trains a copy on full batches (:meth:`observe`). Until then
    :attr:`total_s` is the floor. Each member (a budgeted check, by class name) gets its weighted
    share (:data:`ONE_TIME_WEIGHTS`); what a member spends is charged back (:meth:`charge`), and a
    member's allowance is never below what remains of its share.

    Example:
        >>> budget = OneTimeBudget(share=0.05, planned_steps=10_000, members=["OverfitBatchCheck", "LossAtInitCheck"])
        >>> budget.total_s                       # no step time yet: the floor
        1.0
        >>> budget.observe(0.02)                 # 20 ms per step: the planned run takes 200 s, 5% is 10 s
        >>> budget.total_s, round(budget.allowance_s("OverfitBatchCheck"), 3)
        (10.0, 6.667)
        >>> budget.fraction("LossAtInitCheck")   # of the planned run (for checks that count batches)
        0.016666666666666666
    """

    share: float = ONE_TIME_SHARE
    planned_steps: int | None = None
    members: list[str] = field(default_factory=list)
    floor_s: float = ONE_TIME_FLOOR_S
    step_s: float | None = None
    spent: dict[str, float] = field(default_factory=dict)

    @property
    def planned_s(self) -> float | None:
        """The planned run's training time (``None`` until a step time is known, or for an unknown length)."""
        if self.step_s is None or self.planned_steps is None:
            return None
        return self.step_s * self.planned_steps

    @property
    def total_s(self) -> float:
        return plan_budget(self.share, self.planned_s, self.floor_s)

    def observe(self, step_s: float) -> None:
        """A measured time per training step of the real run (the first measurement is kept)."""
        if self.step_s is None and math.isfinite(step_s) and step_s > 0:
            self.step_s = float(step_s)

    def weight(self, name: str) -> float:
        return ONE_TIME_WEIGHTS.get(name, 1.0)

    def _part(self, name: str) -> float:
        names = self.members if name in self.members else [*self.members, name]
        return self.weight(name) / sum(self.weight(n) for n in names)

    def allowance_s(self, name: str) -> float:
        """Seconds ``name`` may spend in all (its weighted share of :attr:`total_s`)."""
        return self.total_s * self._part(name)

    def fraction(self, name: str) -> float:
        """``name``'s share of the planned run (``share`` times its weight part)."""
        return self.share * self._part(name)

    def charge(self, name: str, seconds: float) -> None:
        self.spent[name] = self.spent.get(name, 0.0) + float(seconds)

    def note(self, name: str, steps: int, short: bool, what: str = "steps") -> str:
        """The sentence a finding adds: the steps run, the seconds used and the budget; ``short``: the
        minimum a verdict needs exceeded the budget (known from the seconds used once charged).

        Example:
            >>> budget = OneTimeBudget(members=["OverfitBatchCheck"])
            >>> budget.charge("OverfitBatchCheck", 0.25)
            >>> budget.note("OverfitBatchCheck", 40, short=True)
            '40 steps, 0.25 s of its 1 s one-time budget (5% of the planned run, at least 1 s)'
        """
        allowed = self.allowance_s(name)
        spent = self.spent.get(name)
        if spent is not None:
            short = spent > allowed
        used = f", {spent:.2g} s" if spent is not None else ""
        of = f"one-time budget ({self.share:.0%} of the planned run, at least {self.floor_s:g} s)"
        if short:
            return f"{steps} {what}{used}: the minimum for a verdict, over its {allowed:.2g} s {of}"
        return f"{steps} {what}{used} of its {allowed:.2g} s {of}"


def shared_budget(trainer: Any, share: float) -> OneTimeBudget:
    """The :class:`OneTimeBudget` of ``trainer``'s run, shared by its budgeted one-time checks.

    Created by the first check that asks: its members are the callbacks of ``trainer.callbacks``
    with a ``one_time_share`` set (their ``one_time=`` argument); the share is the largest of theirs (``share`` when none).
    ``trainer.estimated_stepping_batches`` is the planned run (``inf``: unknown, the floor applies).
    """
    import weakref

    global _plans
    if _plans is None:
        _plans = weakref.WeakKeyDictionary()
    planned = _planned_steps(trainer)
    budget = _plans.get(trainer)
    if budget is not None and budget.planned_steps == planned:
        return budget
    callbacks = list(getattr(trainer, "callbacks", []) or [])
    budgeted = [cb for cb in callbacks if getattr(cb, "one_time_share", None) is not None]
    shares = [float(cb.one_time_share) for cb in budgeted]
    members = [type(cb).__name__ for cb in budgeted]
    budget = OneTimeBudget(max([share, *shares]), planned, members, floor_s=ONE_TIME_FLOOR_S)
    _plans[trainer] = budget
    return budget


def _planned_steps(trainer: Any) -> int | None:
    try:
        planned = float(trainer.estimated_stepping_batches)
    except Exception:  # a trainer that cannot tell (no dataloader yet, an endless iterable)
        return None
    return int(planned) if math.isfinite(planned) and planned > 0 else None
