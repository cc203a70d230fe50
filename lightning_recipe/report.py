"""Findings, the error raised for a failed check, and the run's recipe report.

Every recipe callback turns what it measured into :class:`Finding` objects (a verdict, a one-line
message a person can act on, and the numbers behind it) kept in its ``findings`` attribute.
:class:`RecipeReport` gathers the findings of every recipe callback of the run into one Markdown
card in TensorBoard's Text tab (``recipe/0_report``: a headline, then failures and warnings first),
``recipe_report.json`` in the log dir, HParams metrics and the custom-scalars page
(:mod:`lightning_recipe.dashboard`).

Example:
    >>> f = Finding("LossAtInitCheck", "fail", "loss at init 812.6, expected 2.30 (ln 10)", {"measured": 812.6})
    >>> f.is_problem, f.to_dict()["status"]
    (True, 'fail')
    >>> print(findings_table([f]).splitlines()[2])
    | verify loss @ init | LossAtInitCheck | ✗ fail | loss at init 812.6, expected 2.30 (ln 10) | measured=812.6 |
    >>> headline({"pass": 11, "warn": 1, "fail": 2, "skipped": 0})
    '2 fail, 1 warn, 11 pass'
    >>> print(report_markdown([f, Finding("FixedSeed", "pass", "seed 7")]).splitlines()[4])
    | ✗\xa0fail | LossAtInitCheck | loss at init 812.6, expected 2.30 (ln 10) |
"""

from __future__ import annotations

import json
import logging
import math
import os
import textwrap
import time
from collections.abc import Iterable
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from typing_extensions import override

from lightning_recipe import dashboard
from lightning_recipe import writer as recipe_logging
from lightning_recipe.core.budget import skip_unused_hooks
from lightning_recipe.core.format import sig
from lightning_recipe.findings import (
    _ICON,
    RECIPE_STEPS,
    STATUSES,
    Finding,
    RecipeCheckError,
    RecipeWarning,
    Status,
    plain,
)

__all__ = [
    "RECIPE_STEPS",
    "REPORT_TAG",
    "STATUSES",
    "Finding",
    "RecipeCheckError",
    "RecipeReport",
    "RecipeWarning",
    "Status",
    "findings_table",
    "headline",
    "report_markdown",
]

#: The report's tag in TensorBoard's Text tab: the digit sorts it before every other recipe text.
REPORT_TAG = "recipe/0_report"
#: Most urgent first: the order of the report card and of the headline.
_SEVERITY = ("fail", "warn", "skipped", "pass")
#: Message lines of the card are broken at this many characters, so that the table fits the Text
#: tab's card without squeezing the status and check columns into broken words.
_WRAP = 72

log = logging.getLogger(__name__)


def _fmt_number(value: Any) -> str:
    value = plain(value)
    if isinstance(value, float):
        return sig(value, 4)
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
        value = plain(value)
        if isinstance(value, dict) or (
            isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)
        ):
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


def headline(counts: dict[str, int]) -> str:
    """``"2 fail, 1 warn, 11 pass"``: the counts, most urgent first (zeros left out)."""
    parts = [f"{counts[s]} {s}" for s in ("fail", "warn", "pass", "skipped") if counts.get(s)]
    return ", ".join(parts) or "no findings"


def report_markdown(findings: list[Finding], json_name: str | None = None) -> str:
    """The report card of TensorBoard's Text tab: a headline, one table of three columns (status,
    check, message) with failures and warnings first, then the numbers behind each finding."""
    counts = {s: sum(f.status == s for f in findings) for s in STATUSES}
    order = {name: i for i, name in enumerate(RECIPE_STEPS)}
    rows = sorted(findings, key=lambda f: (_SEVERITY.index(f.status), order.get(f.check, len(order))))
    where = f" (every number: `{json_name}` in the log dir)" if json_name else ""
    lines = [f"**{headline(counts)}**{where}", "", "| status | check | message |", "| --- | --- | --- |"]
    for f in rows:
        message = "<br>".join(_cell(line) for line in textwrap.wrap(f.message, _WRAP) or [""])
        lines.append(f"| {_ICON[f.status].replace(' ', chr(0xA0))} | {_cell(f.check)} | {message} |")
    numbers = [(f, _numbers_cell(f.numbers)) for f in rows]
    numbers = [(f, cell) for f, cell in numbers if cell]
    if numbers:
        lines += ["", "| check | numbers |", "| --- | --- |"]
        lines += [f"| {_cell(f.check)} | {_cell(cell)} |" for f, cell in numbers]
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

    While training, the report card is written to TensorBoard's Text tab under ``recipe/0_report``
    (the first card there) whenever new findings arrive: a headline ("2 fail, 1 warn, 11 pass"), a
    table of status, check and message with failures and warnings first, then the numbers. At the
    end of fit ``recipe_report.json`` is written to the log dir, a short summary is printed (rank
    zero), and the dashboard is completed (:mod:`lightning_recipe.dashboard`): the custom-scalars
    layout built from the run's tags, and the HParams metrics ``recipe/report/fail``, ``warn``,
    ``pass`` and ``best_<monitor>``. With ``Trainer(logger=False)`` nothing is written; the findings
    and the summary remain.

    Args:
        filename: name of the JSON file written to the trainer's log dir.
        print_summary: print a one-line-per-finding summary at the end of fit.
        log_hparams: write the run's hyperparameters and the recipe's metrics to the HParams tab
            (``False`` when something else writes them, e.g. ``lightning_recipe.tune``).

    Attributes:
        findings: all findings of the last run, in recipe order.
        path: where the JSON report was written (``None`` before the end of fit, and when the trainer
            has no logger).

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
        >>> [f.check for f in report.findings], report.path  # logger=False: no file written
        (['FixedSeed'], None)
    """

    def __init__(
        self, filename: str = "recipe_report.json", print_summary: bool = True, log_hparams: bool = True
    ) -> None:
        if not isinstance(filename, str) or not filename:
            raise ValueError(f"RecipeReport(filename={filename!r}): pass a non-empty file name.")
        self.filename = filename
        self.print_summary = print_summary
        self.log_hparams = bool(log_hparams)
        self.findings: list[Finding] = []
        self.path: str | None = None
        self._dirty = False
        self._last_table = ""
        self._best: float | None = None
        self._dashboard_done = False
        self._train_clock: list[float | None] = [None, None]
        self.cost: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        skip_unused_hooks(cls, Callback)

    def notify(self, trainer: Trainer) -> None:
        """Called by recipe callbacks when they record a finding: the table is rewritten soon."""
        self._dirty = True

    def refresh(self, trainer: Trainer) -> None:
        """Rewrite the Markdown table now if findings changed (rank zero writes)."""
        self.findings = collect_findings(trainer)
        if not self.findings:
            self._dirty = False
            return
        table = report_markdown(self.findings, self.filename)
        if table != self._last_table:
            recipe_logging.log_text(trainer, REPORT_TAG, table, trainer.global_step)
            self._last_table = table
        self._dirty = False

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # before Lightning logs its hyperparameters: TensorBoard keeps the first HParams session
        self._best, self._dashboard_done, self._last_table = None, False, ""
        if self.log_hparams:
            dashboard.write_hparams_session(trainer, pl_module)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        monitor, mode = dashboard.monitor_of(trainer)
        value = trainer.callback_metrics.get(monitor)
        if value is None:
            return
        value = float(value)
        if math.isfinite(value) and (
            self._best is None or (value < self._best if mode == "min" else value > self._best)
        ):
            self._best = value

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # appended last, so this runs after every one-time check of on_train_start: training begins
        self._train_clock = [time.perf_counter(), None]

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._train_clock[1] = time.perf_counter()

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
        self._dashboard(trainer, "success")

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.refresh(trainer)
        self._write(trainer)
        self._dashboard(trainer, "failure")

    def _dashboard(self, trainer: Trainer, status: str) -> None:
        if self._dashboard_done or not trainer.is_global_zero:
            return
        self._dashboard_done = True
        counts = {s: sum(f.status == s for f in self.findings) for s in STATUSES}
        dashboard.write_end_of_fit(trainer, counts, self._best, status, hparams=self.log_hparams)

    def _write(self, trainer: Trainer) -> None:
        self.findings = collect_findings(trainer)
        self.cost = collect_cost(trainer, self._train_clock)
        if not trainer.is_global_zero:
            return
        counts = {s: sum(f.status == s for f in self.findings) for s in STATUSES}
        self.path = None
        if trainer.loggers:  # ``Trainer(logger=False)``: no file, as Lightning writes no logs then
            directory = recipe_logging.log_dir(trainer)
            os.makedirs(directory, exist_ok=True)
            self.path = os.path.join(directory, self.filename)
            payload = {"summary": counts, "findings": [f.to_dict() for f in self.findings], "cost": self.cost}
            with open(self.path, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=2)
        if self.cost.get("callbacks"):
            recipe_logging.log_text(trainer, "recipe/cost", cost_markdown(self.cost), trainer.global_step)
        if self.print_summary:
            _print_summary(self.findings, counts, self.path)
            if self.cost.get("callbacks"):
                rank_zero_info(cost_line(self.cost))

    @override
    def state_dict(self) -> dict[str, Any]:
        return {}


def _print_summary(findings: list[Finding], counts: dict[str, int], path: str | None) -> None:
    lines = ["lightning_recipe report: " + headline(counts)]
    for f in findings:
        lines.append(f"  {f.status:>7}  {f.check}: {f.message}")
    if path is not None:
        lines.append(f"  (full report: {path})")
    rank_zero_info("\n".join(lines))


# ---------------------------------------------------------------------- what the recipe cost
def collect_cost(trainer: Trainer, clock: list[float | None]) -> dict[str, Any]:
    """Per recipe callback: seconds before training (one-time checks), during it, and in figures.

    ``train_s`` is the wall time of the training loop (from the end of the one-time checks to the
    end of training); ``during_pct`` is each callback's share of it.
    """
    start, end = clock
    train_s = None if start is None else (end if end is not None else time.perf_counter()) - start
    rows: dict[str, Any] = {}
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        meter = cb.__dict__.get("_cost")
        if meter is None:
            continue
        name = type(cb).__name__
        while name in rows:
            name += "'"
        rows[name] = {
            "before_s": round(meter.before_s, 4),
            "during_s": round(meter.during_s, 4),
            "render_s": round(meter.render_s, 4),
            "points": int(meter.points),
            "during_pct": None if not train_s else round(100.0 * meter.during_s / train_s, 3),
        }
    before = sum(r["before_s"] for r in rows.values())
    during = sum(r["during_s"] for r in rows.values())
    return {
        "train_s": None if train_s is None else round(train_s, 3),
        "before_s": round(before, 3),
        "during_s": round(during, 3),
        "during_pct": None if not train_s else round(100.0 * during / train_s, 3),
        "callbacks": rows,
    }


def cost_markdown(cost: dict[str, Any]) -> str:
    """The cost of each callback as a Markdown table, most expensive first."""
    lines = [
        f"**Recipe cost**: {cost['before_s']:.2f} s of one-time checks before training; "
        f"{cost['during_s']:.2f} s during training"
        + (
            f" ({cost['during_pct']:.1f}% of {cost['train_s']:.1f} s)"
            if cost.get("during_pct") is not None
            else ""
        ),
        "",
        "| callback | before training (s) | during training (s) | % of training | of which figures (s) | points |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rows = sorted(cost["callbacks"].items(), key=lambda kv: -(kv[1]["before_s"] + kv[1]["during_s"]))
    for name, r in rows:
        pct = "" if r["during_pct"] is None else f"{r['during_pct']:.2f}"
        lines.append(
            f"| {name} | {r['before_s']:.3f} | {r['during_s']:.3f} | {pct} | {r['render_s']:.3f} | {r['points'] or ''} |"
        )
    return "\n".join(lines)


def cost_line(cost: dict[str, Any]) -> str:
    """One line for the printed summary: the totals and the three most expensive callbacks."""
    top = sorted(cost["callbacks"].items(), key=lambda kv: -(kv[1]["before_s"] + kv[1]["during_s"]))[:3]
    worst = ", ".join(f"{n} {r['before_s'] + r['during_s']:.2f} s" for n, r in top)
    share = f" ({cost['during_pct']:.1f}% of training)" if cost.get("during_pct") is not None else ""
    return (
        f"  cost: one-time checks {cost['before_s']:.2f} s, during training {cost['during_s']:.2f} s{share}; "
        f"most: {worst} (recipe/cost in TensorBoard)"
    )


skip_unused_hooks(RecipeReport, Callback)  # Lightning skips the per-batch hooks it does not override
