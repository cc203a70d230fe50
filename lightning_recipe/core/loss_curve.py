"""Read a training-loss curve as it arrives: non-finite, flat, rising, hockey stick.

The recipe's "verify decreasing training loss". Per-batch losses are noisy, so every decision
here is made on robust summaries, never on single values:

* the curve is cut into windows of ``window`` values; each window is summarised by its **median**
  (the smoothed loss) and its median absolute deviation (MAD, the noise);
* **non-finite**: any ``nan``/``inf`` value, reported at once with its step;
* **the early checks**, once, after the first ``check_after`` steps, in this order (an order that
  cannot contradict the numbers a message quotes):

  1. **rising**: Spearman's rank correlation of loss against step, as a z-score
     ``z = r * sqrt(n - 1)``, is ``>= 3`` *and* the median of the last tenth is above that of the
     first tenth;
  2. **not falling, above the start**: the median of the last tenth is above the start
     (``min(first value, median of the first 3)``) by more than 3 x the late noise (1.4826 x MAD):
     a loss that spiked and settled above where it began has not learned anything;
  3. **hockey stick** (below);
  4. **flat** (not falling): ``z > -3`` (no evidence of any decrease: a frozen model or an LR of
     0 gives ``|z| < 3`` 99.7% of the time) *and* the smoothed loss did not fall meaningfully
     (by more than 20%, from the start or the first tenth's median to the last tenth's). A curve that fell 4x is never "not falling", whatever the trend test says of
     its flat tail;
  5. otherwise **decreasing**: a rank test ignores the scale and the shape of the noise, so a
     well-initialised model that starts low and decreases slowly is still "decreasing";
* **rising later**: two consecutive window medians above the best window median so far by more
  than ``max(0.5 * (initial - best), 6 * standard error of a window median)``, i.e. the loss gave
  back more than half of the progress it had made, well beyond the noise;
* **hockey stick** (positive losses only): the loss falls from its value at step 0 at least 3x
  within the first few steps (to the median around step ``min(20, max(3, n // 10))``) (``min(20, max(3, n // 10))``) and then by less than 1.5x over the rest of the first
  ``check_after`` steps: the network spent its first steps learning the output bias.

Memory is bounded: the first ``check_after`` values (thinned by two whenever they exceed
``max_early_points``) and the last ``history`` window summaries.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tracker = LossTracker(window=10, check_after=100)
    >>> steps = np.arange(100)
    >>> noisy = 2.3 * np.exp(-steps / 60) + rng.normal(0, 0.1, 100)      # noisy but decreasing
    >>> [e.kind for e in tracker.update(noisy.tolist(), steps.tolist())]
    ['decreasing']
    >>> flat = LossTracker(window=10, check_after=100)
    >>> [e.kind for e in flat.update((2.3 + rng.normal(0, 0.1, 100)).tolist(), steps.tolist())]
    ['flat']
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lightning_recipe.core.robust import MAD_TO_SD, median_mad

__all__ = ["HockeyStick", "LossEvent", "LossTracker", "hockey_stick", "robust_summary", "trend_z"]

EventKind = Literal["non_finite", "flat", "rising", "hockey_stick", "decreasing"]

#: |z| of the rank-trend test below which the first ``check_after`` steps count as flat.
TREND_Z = 3.0
#: A later rise must exceed this many standard errors of a window median ...
RISE_Z = 6.0
#: ... and give back more than this fraction of the progress made so far.
RISE_FRACTION = 0.5
#: A fall of the smoothed loss (from the start or the median of the first tenth of the early values,
#: whichever is higher, to the median of the last tenth) larger than this fraction of its starting
#: level is a meaningful fall: such a curve is never judged "not falling".
MEANINGFUL_FALL = 0.2
#: Hockey stick: the loss falls at least this many times within the first few steps (a curve that
#: falls 4x in its first 5 steps clears it with a margin) ...
HOCKEY_EARLY_DROP = 3.0
#: ... and by less than this factor over the rest of the first ``check_after`` steps.
HOCKEY_LATE_DROP = 1.5
#: Standard error of the median of n normal values is about this times sigma / sqrt(n); sigma is
#: 1.4826 x MAD.
_MEDIAN_SE = 1.2533 * MAD_TO_SD


@dataclass
class LossEvent:
    """Something the tracker found: ``kind``, the step it refers to and the numbers behind it."""

    kind: EventKind
    step: int
    numbers: dict[str, Any] = field(default_factory=dict)


#: ``(median, MAD)`` of a sequence (the shared helper of :mod:`lightning_recipe.core.robust`).
robust_summary = median_mad


def trend_z(values: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation of ``values`` with their index, as a z-score (``r * sqrt(n-1)``).

    Negative: decreasing. ``0.0`` for fewer than 3 values or a constant series.
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n < 3 or float(np.ptp(x)) <= 1e-12 * max(float(np.abs(x).max()), 1e-300):
        return 0.0
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.arange(n, dtype=np.float64)
    # average ranks over ties
    sorted_x = x[order]
    boundaries = np.flatnonzero(np.diff(sorted_x) != 0) + 1
    for block in np.split(np.arange(n), boundaries):
        if block.size > 1:
            ranks[order[block]] = ranks[order[block]].mean()
    t = np.arange(n, dtype=np.float64)
    rc, tc = ranks - ranks.mean(), t - t.mean()
    denom = math.sqrt(float((rc * rc).sum()) * float((tc * tc).sum()))
    if denom == 0.0:
        return 0.0
    r = float((rc * tc).sum()) / denom
    return r * math.sqrt(n - 1)


@dataclass
class HockeyStick:
    """The shape of the start of a loss curve.

    Attributes:
        start: the first value (the loss at init); ``after_few``: smoothed loss after ``few_steps``;
        end: median of the last tenth; ``early_drop = start / after_few``;
        ``late_drop = after_few / end``; ``is_hockey_stick``.
    """

    few_steps: int
    start: float
    after_few: float
    end: float
    early_drop: float
    late_drop: float
    is_hockey_stick: bool


def hockey_stick(
    values: Sequence[float] | np.ndarray,
    stride: int = 1,
    early_drop: float = HOCKEY_EARLY_DROP,
    late_drop: float = HOCKEY_LATE_DROP,
) -> HockeyStick | None:
    """Measure the hockey-stick shape of the first values of a positive loss (``None`` if not applicable).

    ``stride`` is the number of steps between consecutive values (when the early values were thinned).
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n < 12 or not np.all(np.isfinite(x)) or float(x.min()) <= 0.0:
        return None
    few_steps = min(20, max(3, (n * stride) // 10))
    k = max(few_steps // max(stride, 1), 2)
    half = max(1, k // 3)
    start = float(x[0])  # the loss at init: a spike after step 0 does not move it
    after_few = float(np.median(x[max(k - half, 3) : k + half + 1]))
    tail = max(n // 10, 3)
    end = float(np.median(x[-tail:]))
    ed = start / after_few
    ld = after_few / end
    return HockeyStick(
        few_steps=k * max(stride, 1),
        start=start,
        after_few=after_few,
        end=end,
        early_drop=ed,
        late_drop=ld,
        is_hockey_stick=bool(ed >= early_drop and ld < late_drop),
    )


class LossTracker:
    """Streaming, bounded reader of a loss curve (see the module docstring for the rules).

    Args:
        window: values per smoothing window.
        check_after: the step after which the early checks (flat, rising, hockey stick) run once.
        max_early_points: keep at most this many of the early values (thinned by two beyond).
        history: window summaries kept for the later checks and for plotting.

    Attributes:
        smoothed: ``(step, median)`` of the recent windows.
        early_done: the early checks have run.
        reported: kinds already reported (each is reported once).
    """

    def __init__(
        self, window: int = 10, check_after: int = 100, max_early_points: int = 4096, history: int = 256
    ):
        self.window = int(window)
        self.check_after = int(check_after)
        self.max_early_points = int(max_early_points)
        self.history = int(history)
        self.early: list[float] = []
        self.early_stride = 1
        self._early_seen = 0
        self.windows: deque[tuple[int, float, float]] = deque(maxlen=self.history)
        self.initial: float | None = None
        self.best: float | None = None
        self.best_step: int | None = None
        self.count = 0
        self.early_done = False
        self.reported: set[str] = set()
        self._above = 0

    # ------------------------------------------------------------------ streaming
    def update(self, values: Sequence[float], steps: Sequence[int]) -> list[LossEvent]:
        """Add one window of ``values`` (and the global step of each); return what was found."""
        events: list[LossEvent] = []
        vals = np.asarray(values, dtype=np.float64)
        if vals.size == 0:
            return events
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.argmax(bad))
            if "non_finite" not in self.reported:
                self.reported.add("non_finite")
                last = self.windows[-1][1] if self.windows else None
                events.append(
                    LossEvent("non_finite", int(steps[i]), {"value": float(vals[i]), "last_smoothed": last})
                )
            vals = vals[:i]
            steps = list(steps)[:i]
        if vals.size:
            self._add_early(vals, steps)
            events.extend(self._add_window(vals, int(steps[-1])))
        if (
            not self.early_done
            and steps
            and int(steps[-1]) + 1 >= self.check_after
            and "non_finite" not in self.reported
        ):
            events.extend(self.early_check(int(steps[-1])))
        return events

    def _add_early(self, vals: np.ndarray, steps: Sequence[int]) -> None:
        if self.early_done:
            return
        for v in vals.tolist():
            if self._early_seen % self.early_stride == 0:
                self.early.append(v)
            self._early_seen += 1
            if len(self.early) >= self.max_early_points:
                self.early = self.early[::2]
                self.early_stride *= 2

    def _add_window(self, vals: np.ndarray, step: int) -> list[LossEvent]:
        med, mad = robust_summary(vals)
        self.windows.append((step, med, mad))
        self.count += int(vals.size)
        if self.initial is None:
            self.initial = med
        if self.best is None or med < self.best:
            self.best, self.best_step = med, step
            self._above = 0
            return []
        return self._rising_check(step, med)

    def noise(self) -> float:
        """Standard error of a window median, from the recent windows' MADs."""
        mads = [m for _, _, m in list(self.windows)[-8:]]
        return _MEDIAN_SE * float(np.median(mads)) / math.sqrt(max(self.window, 1)) if mads else 0.0

    def _rising_check(self, step: int, med: float) -> list[LossEvent]:
        if len(self.windows) < 3 or "rising" in self.reported:
            return []
        assert self.best is not None and self.initial is not None
        progress = max(self.initial - self.best, 0.0)
        margin = max(RISE_FRACTION * progress, RISE_Z * self.noise(), 1e-9 * abs(self.best))
        if med > self.best + margin:
            self._above += 1
        else:
            self._above = 0
        if self._above < 2:
            return []
        self.reported.add("rising")
        return [
            LossEvent(
                "rising",
                step,
                {
                    "smoothed": med,
                    "best": self.best,
                    "best_step": self.best_step,
                    "initial": self.initial,
                    "margin": margin,
                },
            )
        ]

    # ------------------------------------------------------------------ the early checks
    def early_check(self, step: int) -> list[LossEvent]:
        """Run the flat / rising / hockey-stick checks on the early values (once)."""
        self.early_done = True
        x = np.asarray(self.early, dtype=np.float64)
        if x.size < 12:
            return []
        z = trend_z(x)
        tenth = max(x.size // 10, 3)
        first, last = float(np.median(x[:tenth])), float(np.median(x[-tenth:]))
        numbers: dict[str, Any] = {
            "trend_z": z,
            "first_smoothed": first,
            "last_smoothed": last,
            "values": int(x.size) * self.early_stride,
            "steps": step + 1,
        }
        # Decided in an order that cannot contradict the numbers in the message: a curve whose
        # smoothed loss fell by a meaningful amount is never "not falling" nor "rising", and the
        # hockey-stick shape (a drop in the first steps, flat after) is named before any trend test,
        # which over a window that starts with the drop may see only the flat part.
        _, late_mad = robust_summary(x[-tenth:])
        start = min(float(x[0]), float(np.median(x[:3])))
        top = max(start, first)
        numbers["start"] = start
        numbers["fell"] = bool(top - last > MEANINGFUL_FALL * abs(top))
        numbers["above_start"] = bool(last > start + 3 * MAD_TO_SD * late_mad)
        events: list[LossEvent] = []
        if z >= TREND_Z and last > first:
            if "rising" not in self.reported:
                self.reported.add("rising")
                events.append(LossEvent("rising", step, {**numbers, "best": first, "smoothed": last}))
            return events
        if numbers["above_start"]:
            self.reported.add("flat")
            return [LossEvent("flat", step, numbers)]
        shape = hockey_stick(x, self.early_stride)
        if shape is not None and shape.is_hockey_stick:
            self.reported.add("hockey_stick")
            return [LossEvent("hockey_stick", step, {**numbers, **shape.__dict__})]
        if z > -TREND_Z and not numbers["fell"]:
            self.reported.add("flat")
            return [LossEvent("flat", step, numbers)]
        return [LossEvent("decreasing", step, numbers)]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "early": list(self.early),
            "early_stride": self.early_stride,
            "early_seen": self._early_seen,
            "windows": [list(w) for w in self.windows],
            "initial": self.initial,
            "best": self.best,
            "best_step": self.best_step,
            "count": self.count,
            "early_done": self.early_done,
            "reported": sorted(self.reported),
            "above": self._above,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.early = [float(v) for v in state.get("early", [])]
        self.early_stride = int(state.get("early_stride", 1))
        self._early_seen = int(state.get("early_seen", len(self.early)))
        self.windows = deque(
            ((int(s), float(m), float(d)) for s, m, d in state.get("windows", [])), maxlen=self.history
        )
        self.initial = state.get("initial")
        self.best = state.get("best")
        self.best_step = state.get("best_step")
        self.count = int(state.get("count", 0))
        self.early_done = bool(state.get("early_done", False))
        self.reported = set(state.get("reported", []))
        self._above = int(state.get("above", 0))
