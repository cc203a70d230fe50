"""What a check concludes: findings, their statuses, and the errors and warnings a check raises.

No Lightning here: a check module in :mod:`lightning_recipe.core.checks` returns :class:`Finding`
objects and a callback records them. :data:`RECIPE_STEPS` is the one list of recipe steps (the
report orders its table by it; the presets build their stages from it).

Example:
    >>> f = Finding("LossAtInitCheck", "fail", "loss at init 812.6, expected 2.30 (ln 10)", {"measured": 812.6})
    >>> f.is_problem, f.step
    (True, 'verify loss @ init')
    >>> raise Skip("no targets in the batch; pass `target_key=`")
    Traceback (most recent call last):
    ...
    lightning_recipe.findings.Skip: no targets in the batch; pass `target_key=`
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lightning_recipe.core.errors import ArgumentError

__all__ = [
    "RECIPE_STEPS",
    "STATUSES",
    "ArgumentError",
    "Finding",
    "RecipeCheckError",
    "RecipeWarning",
    "Skip",
    "Status",
    "plain",
]

Status = Literal["pass", "warn", "fail", "skipped"]
STATUSES: tuple[str, ...] = ("pass", "warn", "fail", "skipped")
_ICON = {"pass": "✓ pass", "warn": "⚠ warn", "fail": "✗ fail", "skipped": "– skipped"}

#: The recipe step each check belongs to, in the order of the recipe.
RECIPE_STEPS: dict[str, str] = {
    "DataInspector": "become one with the data",
    "FixedSeed": "fix random seed",
    "BatchInspector": "visualize just before the net",
    "FinalBiasInit": "init well",
    "LossAtInitCheck": "verify loss @ init",
    "BatchIndependenceCheck": "use backprop to chart dependencies",
    "OverfitBatchCheck": "overfit one batch",
    "InputIndependentBaseline": "input-independent baseline",
    "DumbBaselines": "dumb baselines, human baseline",
    "PredictionDynamics": "visualize prediction dynamics",
    "TrainingLossCheck": "verify decreasing training loss",
    "LRScheduleAudit": "do not trust learning rate decay defaults",
    "UpdateHealth": "activations and updates look odd",
    "FirstLayerFilters": "visualize first-layer weights",
    "EarlyStopping": "early stopping, leave it training",
    "GeneralizationCheck": "regularize",
}


class RecipeWarning(UserWarning):
    """Category of the warnings recipe callbacks emit for ``warn`` and ``fail`` findings."""


@dataclass
class Finding:
    """One verdict of one check.

    Attributes:
        check: the name of the check (usually the callback's class name).
        status: ``"pass"``, ``"warn"``, ``"fail"`` or ``"skipped"``.
        message: one line a person can act on.
        numbers: the measurements behind the verdict (plain Python values).
        step: the recipe step (defaults from :data:`RECIPE_STEPS`).
        global_step: the trainer's global step when the finding was made.
    """

    check: str
    status: Status
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)
    step: str = ""
    global_step: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Finding(status={self.status!r}): pass one of {list(STATUSES)}.")
        if not self.step:
            self.step = RECIPE_STEPS.get(self.check, self.check)

    @property
    def is_problem(self) -> bool:
        """True for ``warn`` and ``fail``."""
        return self.status in ("warn", "fail")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["numbers"] = {k: plain(v) for k, v in self.numbers.items()}
        return out

    def __str__(self) -> str:
        return f"[{self.status}] {self.check}: {self.message}"


class RecipeCheckError(RuntimeError):
    """Raised by a check with ``on_fail="raise"`` when it fails; ``finding`` holds the verdict."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(str(finding))
        self.finding = finding


def plain(value: Any) -> Any:
    """Make ``value`` JSON-friendly (tensors and numpy values become Python numbers/lists)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Skip(Exception):
    """Raised inside a check when it cannot apply to this run; the message says why (and which
    argument would make it apply). The callback records it as a ``skipped`` finding:
    ``skipped, because <message>``."""
