"""Findings, the error raised for a failed check, and the run's recipe report.

Every recipe callback turns what it measured into :class:`Finding` objects (a verdict, a one-line
message a person can act on, and the numbers behind it) kept in its ``findings`` attribute.
:class:`RecipeReport` gathers the findings of every recipe callback of the run into one Markdown
table in TensorBoard's Text tab (``recipe/report``) and ``recipe_report.json`` in the log dir.

Example:
    >>> f = Finding("LossAtInitCheck", "fail", "loss at init 812.6, expected 2.30 (ln 10)", {"measured": 812.6})
    >>> f.is_problem, f.to_dict()["status"]
    (True, 'fail')
    >>> print(findings_table([f]).splitlines()[2])
    | verify loss @ init | LossAtInitCheck | ✗ fail | loss at init 812.6, expected 2.30 (ln 10) | measured=812.6 |
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from typing_extensions import override

from lightning_recipe import logging as recipe_logging

__all__ = [
    "RECIPE_STEPS",
    "STATUSES",
    "Finding",
    "RecipeCheckError",
    "RecipeReport",
    "RecipeWarning",
    "Status",
    "findings_table",
]

log = logging.getLogger(__name__)

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
        out["numbers"] = {k: _plain(v) for k, v in self.numbers.items()}
        return out

    def __str__(self) -> str:
        return f"[{self.status}] {self.check}: {self.message}"


class RecipeCheckError(RuntimeError):
    """Raised by a check with ``on_fail="raise"`` when it fails; ``finding`` holds the verdict."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(str(finding))
        self.finding = finding


def _plain(value: Any) -> Any:
    """Make ``value`` JSON-friendly (tensors and numpy values become Python numbers/lists)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _fmt_number(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(_fmt_number(v) for v in value[:6])
        return f"[{shown}{', …' if len(value) > 6 else ''}]"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _numbers_cell(numbers: dict[str, Any], limit: int = 160) -> str:
    """The scalar numbers of a finding, compact (nested structures stay in the JSON report)."""
    parts: list[str] = []
    for key, value in numbers.items():
        value = _plain(value)
        if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
            continue
        part = f"{key}={_fmt_number(value)}"
        if sum(len(p) + 2 for p in parts) + len(part) > limit:
            parts.append("…")
            break
        parts.append(part)
    return ", ".join(parts)


def findings_table(findings: Iterable[Finding]) -> str:
    """Render findings as one Markdown table, in recipe order."""
    order = {name: i for i, name in enumerate(RECIPE_STEPS)}
    rows = sorted(findings, key=lambda f: order.get(f.check, len(order)))
    lines = ["| recipe step | check | status | message | numbers |", "| --- | --- | --- | --- | --- |"]
    for f in rows:
        lines.append(
            f"| {_cell(f.step)} | {_cell(f.check)} | {_ICON[f.status]} | {_cell(f.message)} | {_cell(_numbers_cell(f.numbers))} |"
        )
    return "\n".join(lines)


def collect_findings(trainer: Trainer) -> list[Finding]:
    """Every finding of every callback of ``trainer`` that has a ``findings`` list."""
    found: list[Finding] = []
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, RecipeReport):
            continue
        for f in getattr(cb, "findings", None) or []:
            if isinstance(f, Finding):
                found.append(f)
    return found


class RecipeReport(Callback):
    """Gather the findings of every recipe callback into one report.

    While training, a Markdown table (recipe step, check, status, message, numbers) is written to
    TensorBoard's Text tab under ``recipe/report`` whenever new findings arrive; at the end of fit
    ``recipe_report.json`` is written to the log dir and a short summary is printed (rank zero).

    Args:
        filename: name of the JSON file written to the trainer's log dir.
        print_summary: print a one-line-per-finding summary at the end of fit.

    Attributes:
        findings: all findings of the last run, in recipe order.
        path: where the JSON report was written (``None`` before the end of fit).

    Example:
        >>> import torch
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> from lightning_recipe import FixedSeed, RecipeReport
        >>> report = RecipeReport(print_summary=False)
        >>> trainer = Trainer(max_steps=1, logger=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, enable_checkpointing=False,
        ...                   callbacks=[FixedSeed(7), report], default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(BoringModel())
        >>> [f.check for f in report.findings]
        ['FixedSeed']
    """

    def __init__(self, filename: str = "recipe_report.json", print_summary: bool = True) -> None:
        if not isinstance(filename, str) or not filename:
            raise ValueError(f"RecipeReport(filename={filename!r}): pass a non-empty file name.")
        self.filename = filename
        self.print_summary = print_summary
        self.findings: list[Finding] = []
        self.path: str | None = None
        self._dirty = False
        self._last_table = ""

    def notify(self, trainer: Trainer) -> None:
        """Called by recipe callbacks when they record a finding: the table is rewritten soon."""
        self._dirty = True

    def refresh(self, trainer: Trainer) -> None:
        """Rewrite the Markdown table now if findings changed (rank zero writes)."""
        self.findings = collect_findings(trainer)
        if not self.findings:
            self._dirty = False
            return
        table = findings_table(self.findings)
        if table != self._last_table:
            recipe_logging.log_text(trainer, "recipe/report", _report_markdown(self.findings), trainer.global_step)
            self._last_table = table
        self._dirty = False

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self._dirty:
            self.refresh(trainer)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.refresh(trainer)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.refresh(trainer)
        recipe_logging.drain()
        self._write(trainer)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.refresh(trainer)
        self._write(trainer)

    def _write(self, trainer: Trainer) -> None:
        self.findings = collect_findings(trainer)
        if not trainer.is_global_zero:
            return
        directory = recipe_logging.log_dir(trainer)
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, self.filename)
        counts = {s: sum(f.status == s for f in self.findings) for s in STATUSES}
        payload = {"summary": counts, "findings": [f.to_dict() for f in self.findings]}
        with open(self.path, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
        if self.print_summary:
            _print_summary(self.findings, counts, self.path)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {}


def _report_markdown(findings: list[Finding]) -> str:
    counts = {s: sum(f.status == s for f in findings) for s in STATUSES}
    head = " · ".join(f"{_ICON[s]}: {counts[s]}" for s in STATUSES if counts[s])
    return f"**Recipe report** ({head})\n\n" + findings_table(findings)


def _print_summary(findings: list[Finding], counts: dict[str, int], path: str) -> None:
    lines = ["lightning_recipe report: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])]
    for f in findings:
        lines.append(f"  {f.status:>7}  {f.check}: {f.message}")
    lines.append(f"  (full report: {path})")
    rank_zero_info("\n".join(lines))
