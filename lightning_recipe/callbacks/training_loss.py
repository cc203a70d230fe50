"""TrainingLossCheck: the recipe's "verify decreasing training loss"."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.checks.training_loss import (
    METRIC_KEYS,
    MIN_LOSSES,
    Verdict,
    decreasing_verdict,
    event_verdict,
    metric_loss,
    no_loss_verdict,
    pack_window,
    returned_loss,
    too_short_verdict,
    unpack_window,
)
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.loss_curve import LossEvent, LossTracker

__all__ = ["TrainingLossCheck"]

_METRIC_KEYS = METRIC_KEYS  # the old private name


class TrainingLossCheck(RecipeCallback):
    """Watch the training loss: flag it when it does not fall, rises, turns non-finite, or hockey-sticks.

    Recipe, "verify decreasing training loss": *"Did your training loss go down as it should?"*

    Each batch's loss (what ``training_step`` returns, or the logged metric ``monitor``) stays on the
    device and is read once per ``window`` batches (under DDP one all-reduce: every rank judges the
    mean over ranks). Robust rules (:mod:`lightning_recipe.core.loss_curve`): **non-finite**
    (``fail``), **not falling** after ``check_after_steps`` (``warn``), **rising** (``warn``/``fail``),
    **hockey stick** (``warn``: the first steps learned the output bias), else a ``pass`` at the end.
    TensorBoard: ``recipe/training_loss/smoothed`` (median of each window) and
    ``recipe/training_loss/trend_z`` (at ``check_after_steps``).

    Args:
        monitor: the logged metric to read instead of the loss ``training_step`` returns. ``None``: the
            returned loss, else the first of ``train_loss_step``, ``train_loss``, ``loss_step``, ``loss``,
            ``train/loss``.
        window: batches per smoothing window (the loss is read from the device once per window).
        check_after_steps: run the flat / hockey-stick checks once, after this many optimizer steps
            (or at the end of a shorter run with at least 12 values).
        log_smoothed: log the smoothed loss as a scalar.
        on_fail: ``"warn"`` (default) or ``"raise"`` a ``RecipeCheckError`` on a ``fail``.

    Attributes:
        findings: the findings of the run (a ``pass`` at the end when nothing was wrong).
        tracker: the :class:`~lightning_recipe.core.loss_curve.LossTracker` (smoothed history).

    Raises:
        ValueError: ``monitor`` names a metric that is not logged.

    Example:
        >>> import warnings
        >>> from lightning_recipe.demos import TinyClassifier, classification_data, tiny_trainer
        >>> check = TrainingLossCheck(check_after_steps=40)
        >>> trainer = tiny_trainer(max_steps=40, callbacks=[check], default_root_dir=getfixture("tmp_path"))
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(TinyClassifier(lr=0.0), classification_data())     # LR 0: the loss cannot fall
        >>> [(f.status, f.message.split(":")[0]) for f in check.findings]
        [('warn', 'the training loss is not falling')]

    See the README section "`TrainingLossCheck`: is the loss going down?".
    """

    def __init__(
        self,
        monitor: str | None = None,
        window: int = 10,
        check_after_steps: int = 100,
        log_smoothed: bool = True,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail=on_fail)
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise TypeError(
                f"TrainingLossCheck(monitor={monitor!r}): pass the name of a logged metric (a string) or None "
                "to read the loss training_step returns."
            )
        check_positive_int("TrainingLossCheck", "window", window, minimum=3)
        check_positive_int("TrainingLossCheck", "check_after_steps", check_after_steps, minimum=MIN_LOSSES)
        self.monitor = monitor
        self.window = window
        self.check_after_steps = check_after_steps
        self.log_smoothed = bool(log_smoothed)
        self.tracker = LossTracker(window=window, check_after=check_after_steps)
        self._pending: list[torch.Tensor | float | None] = []
        self._pending_steps: list[int] = []
        self._source: str | None = None
        self._no_loss_reported = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self.tracker = LossTracker(window=self.window, check_after=self.check_after_steps)
            self._pending, self._pending_steps = [], []
            self._source, self._no_loss_reported = None, False

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.should_skip(trainer) or self._done():
            return
        self._pending.append(self._loss(trainer, pl_module, outputs))
        self._pending_steps.append(max(int(trainer.global_step) - 1, 0))
        if len(self._pending) >= self.window:
            self._flush(trainer)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_skip(trainer):
            return
        if self._pending and not self._done():
            self._flush(trainer)
        if not self._done() and not self._no_loss_reported:
            self._finish(trainer)

    # ------------------------------------------------------------------ checkpoint
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "tracker": self.tracker.state_dict(),
            "pending": [None if v is None else float(v) for v in self._pending],
            "pending_steps": list(self._pending_steps),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tracker = LossTracker(window=self.window, check_after=self.check_after_steps)
        self.tracker.load_state_dict(state_dict.get("tracker", {}))
        self._pending = list(state_dict.get("pending", []))
        self._pending_steps = [int(s) for s in state_dict.get("pending_steps", [])]

    # ------------------------------------------------------------------ reading the loss
    def _done(self) -> bool:
        return "non_finite" in self.tracker.reported

    def _loss(self, trainer: Trainer, pl_module: LightningModule, outputs: Any) -> torch.Tensor | None:
        """This batch's loss (a 0-d tensor, left on its device), or ``None`` when there is none to read."""
        if self.monitor is None:
            value = returned_loss(outputs)
            if value is not None:
                if pl_module.automatic_optimization and trainer.accumulate_grad_batches > 1:
                    # Lightning divides the returned loss by accumulate_grad_batches
                    value = value * trainer.accumulate_grad_batches
                self._source = "training_step"
                return value
            if self._source == "training_step":
                # a step that returned nothing (a skipped batch): a logged metric would be a stale value
                return None
        metrics = trainer.callback_metrics
        if self.monitor is not None and self.monitor not in metrics:
            raise ArgumentError(
                f"TrainingLossCheck(monitor={self.monitor!r}): no such logged metric; the logged metrics are "
                f"{sorted(metrics)}; pass one of them, or monitor=None to read the loss training_step returns."
            )
        key = self.monitor or next((k for k in METRIC_KEYS if k in metrics), None)
        value = None if key is None else metric_loss(metrics[key])
        if value is not None:
            self._source = f"metric {key!r}"
        return value

    def _flush(self, trainer: Trainer) -> None:
        pending, steps = self._pending, self._pending_steps
        self._pending, self._pending_steps = [], []
        means, kept_steps = unpack_window(self.all_reduce_sum(trainer, pack_window(pending)), steps)
        if not means:
            if not self._no_loss_reported and self.tracker.count == 0:
                self._no_loss_reported = True
                self._say(trainer, no_loss_verdict())
            return
        events = self.tracker.update(means, kept_steps)
        if self.log_smoothed and self.tracker.windows and self.tracker.windows[-1][0] == kept_steps[-1]:
            smoothed = self.tracker.windows[-1][1]
            writer.log_scalars(trainer, {"recipe/training_loss/smoothed": smoothed}, kept_steps[-1])
        self._handle(trainer, events)

    # ------------------------------------------------------------------ findings
    def _finish(self, trainer: Trainer) -> None:
        """At the end of fit: the early checks of a short run, then a ``pass`` if nothing was wrong."""
        step = int(trainer.global_step)
        if not self.tracker.early_done:
            if len(self.tracker.early) < MIN_LOSSES:
                self._say(trainer, too_short_verdict(self.tracker.count, self.check_after_steps))
                return
            self._handle(trainer, self.tracker.early_check(max(step - 1, 0)))
        t = self.tracker
        if not any(f.is_problem for f in self.findings) and t.windows and t.initial is not None:
            self._say(trainer, decreasing_verdict(t.initial, t.windows[-1][1], t.best, step, self._source))

    def _handle(self, trainer: Trainer, events: list[LossEvent]) -> None:
        for event in events:
            if "trend_z" in event.numbers:
                z = event.numbers["trend_z"]
                writer.log_scalars(trainer, {"recipe/training_loss/trend_z": z}, event.step)
            verdict = event_verdict(event, self._source)
            if verdict is not None:
                self._say(trainer, verdict)

    def _say(self, trainer: Trainer, verdict: Verdict) -> None:
        self.record(trainer, *verdict)
