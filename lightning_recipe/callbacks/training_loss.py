"""TrainingLossCheck: the recipe's "verify decreasing training loss"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.loss_curve import TREND_Z, LossEvent, LossTracker

__all__ = ["TrainingLossCheck"]

#: Metric names tried, in order, when ``training_step`` returns no loss (manual optimization).
_METRIC_KEYS = ("train_loss_step", "train_loss", "loss_step", "loss", "train/loss", "training_loss")


class TrainingLossCheck(RecipeCallback):
    """Watch the training loss: flag it when it does not fall, rises, turns non-finite, or hockey-sticks.

    Recipe, "verify decreasing training loss": *"Did your training loss go down as it should?"*, and
    "init well": *"Setting these correctly will [...] eliminate 'hockey stick' loss curves where in
    the first few iteration your network is basically just learning the bias."*

    The loss of every training batch is taken from what ``training_step`` returns (a tensor or the
    ``"loss"`` of a dict; un-scaled for gradient accumulation), or from the logged metric
    ``monitor`` (also the fallback when ``training_step`` returns no single loss: manual
    optimization, a dict without ``"loss"``). Once the returned loss is the source, a batch that
    returns nothing (a skipped batch) is left out rather than read from a stale logged metric; when
    no loss can be read at all the check records ``skipped``. Values stay on the device and are read once per ``window`` batches (one transfer;
    under DDP one all-reduce, so every rank judges the mean loss over ranks and decides the same).
    The rules, robust to batch noise (details in :mod:`lightning_recipe.core.loss_curve`):

    * **non-finite** (``fail``): a ``nan``/``inf`` loss, reported at the end of its window;
    * **flat** (``warn``): after ``check_after_steps`` steps, no evidence of any decrease: a rank
      correlation of loss against step with ``z > -3`` *and* a smoothed loss that did not fall by
      more than 20% (a curve that fell 4x is never "not falling"). A slowly but steadily decreasing curve
      (a well-initialised model that starts low) passes: the test asks "is there a trend", not
      "is it large";
    * **rising**: a significant upward trend over the first ``check_after_steps`` steps, or later
      two window medians that give back more than half of the progress made, well beyond the
      noise (``fail`` when the loss is back above where it started, else ``warn``);
    * **hockey stick** (``warn``, decided before the trend test): the loss falls 3x or more from
      step 0 within the first few steps,
      then less than 1.5x over the rest of the first ``check_after_steps``: the network spent its
      first steps learning the output bias (see ``FinalBiasInit``).

    TensorBoard: ``recipe/training_loss/smoothed`` (median of each window, the noise removed) and
    ``recipe/training_loss/trend_z`` (at ``check_after_steps``).

    Args:
        monitor: the logged metric to read (``trainer.callback_metrics``) instead of the loss that
            ``training_step`` returns. ``None``: the returned loss, else the first of
            ``train_loss_step``, ``train_loss``, ``loss_step``, ``loss``, ``train/loss``.
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
        >>> import torch, warnings
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> class Frozen(BoringModel):                       # LR 0: the loss cannot fall
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.0)
        >>> check = TrainingLossCheck(check_after_steps=40)
        >>> trainer = Trainer(max_steps=40, limit_val_batches=0, logger=False, enable_checkpointing=False,
        ...                   enable_progress_bar=False, enable_model_summary=False, callbacks=[check],
        ...                   default_root_dir=getfixture("tmp_path"))
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(Frozen())
        >>> [(f.status, f.message.split(":")[0]) for f in check.findings]
        [('warn', 'the training loss is not falling')]
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
        check_positive_int("TrainingLossCheck", "check_after_steps", check_after_steps, minimum=12)
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
        if self._done() or self._no_loss_reported:
            return
        step = int(trainer.global_step)
        if not self.tracker.early_done:
            if len(self.tracker.early) >= 12:
                self._handle(trainer, self.tracker.early_check(max(step - 1, 0)))
            else:
                self.record(
                    trainer,
                    "skipped",
                    f"the run has only {self.tracker.count} training losses; the checks need at least 12 "
                    f"(and judge the trend after check_after_steps={self.check_after_steps})",
                )
                return
        if not any(f.is_problem for f in self.findings) and self.tracker.windows:
            first = self.tracker.initial
            last = self.tracker.windows[-1][1]
            self.record(
                trainer,
                "pass",
                f"the training loss decreases: smoothed {first:.4g} -> {last:.4g} over {step} steps",
                {
                    "initial_smoothed": first,
                    "final_smoothed": last,
                    "best_smoothed": self.tracker.best,
                    "steps": step,
                    "source": self._source,
                },
            )

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
            value = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = torch.tensor(float(value))
            if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
                value = value.detach().reshape(())
                if pl_module.automatic_optimization and trainer.accumulate_grad_batches > 1:
                    # Lightning divides the returned loss by accumulate_grad_batches
                    value = value * trainer.accumulate_grad_batches
                self._source = "training_step"
                return value
            if self._source == "training_step":
                # a step that returned nothing (a skipped batch): a logged metric would be a stale value
                return None
        metrics = trainer.callback_metrics
        if self.monitor is not None:
            if self.monitor not in metrics:
                raise ArgumentError(
                    f"TrainingLossCheck(monitor={self.monitor!r}): no such logged metric; the logged metrics are "
                    f"{sorted(metrics)}; pass one of them, or monitor=None to read the loss training_step returns."
                )
            key: str | None = self.monitor
        else:
            key = next((k for k in _METRIC_KEYS if k in metrics), None)
        if key is None:
            return None
        value = metrics[key]
        if isinstance(value, torch.Tensor):
            if value.numel() != 1 or value.is_complex():
                return None  # not a single loss value
            value = value.detach().reshape(())
        else:
            try:
                value = torch.tensor(float(value))
            except (TypeError, ValueError):
                return None
        self._source = f"metric {key!r}"
        return value

    def _flush(self, trainer: Trainer) -> None:
        pending, steps = self._pending, self._pending_steps
        self._pending, self._pending_steps = [], []
        device = next((v.device for v in pending if isinstance(v, torch.Tensor)), torch.device("cpu"))
        values = torch.stack(
            [
                torch.zeros((), device=device) if v is None else torch.as_tensor(v, device=device).float()
                for v in pending
            ]
        ).double()
        present = torch.tensor([v is not None for v in pending], dtype=torch.float64, device=device)
        both = self.all_reduce_sum(trainer, torch.stack([values, present])).cpu()
        sums, counts = both[0], both[1]
        keep = counts > 0
        if not bool(keep.any()):
            if not self._no_loss_reported and self.tracker.count == 0:
                self._no_loss_reported = True
                self.record(
                    trainer,
                    "skipped",
                    "found no training loss: training_step returned none and no metric named "
                    f"{', '.join(_METRIC_KEYS[:4])} is logged; return the loss or pass monitor=",
                )
            return
        means = (sums[keep] / counts[keep]).tolist()
        kept_steps = [s for s, k in zip(steps, keep.tolist()) if k]
        events = self.tracker.update(means, kept_steps)
        if self.log_smoothed and self.tracker.windows and self.tracker.windows[-1][0] == kept_steps[-1]:
            recipe_logging.log_scalars(
                trainer, {"recipe/training_loss/smoothed": self.tracker.windows[-1][1]}, kept_steps[-1]
            )
        self._handle(trainer, events)

    # ------------------------------------------------------------------ findings
    def _handle(self, trainer: Trainer, events: list[LossEvent]) -> None:
        for event in events:
            n = event.numbers
            numbers = {**n, "step": event.step, "source": self._source}
            if "trend_z" in n:
                recipe_logging.log_scalars(
                    trainer, {"recipe/training_loss/trend_z": n["trend_z"]}, event.step
                )
            if event.kind == "non_finite":
                last = n.get("last_smoothed")
                before = f" (smoothed loss before: {last:.4g})" if last is not None else ""
                self.record(
                    trainer,
                    "fail",
                    f"the training loss became {n['value']} at step {event.step}{before}: lower the learning rate "
                    "or clip gradients (Trainer(gradient_clip_val=...)), and look for log(0), division by zero or "
                    "non-finite inputs",
                    numbers,
                )
            elif event.kind == "flat" and n.get("above_start"):
                self.record(
                    trainer,
                    "warn",
                    f"the training loss is not falling: after {n['steps']} steps the smoothed loss is "
                    f"{n['last_smoothed']:.4g}, above the {n['start']:.4g} it started at (rank-trend "
                    f"z={n['trend_z']:+.1f}); the learning rate is probably too high (or the loss has the wrong sign)",
                    numbers,
                )
            elif event.kind == "flat":
                self.record(
                    trainer,
                    "warn",
                    f"the training loss is not falling: over the first {n['steps']} steps the smoothed loss went "
                    f"from {n['first_smoothed']:.4g} to {n['last_smoothed']:.4g} (rank-trend z={n['trend_z']:+.1f}; "
                    f"a decreasing curve has z <= -{TREND_Z:g}); check that the LR is not 0 or far too small, that "
                    "the optimizer holds the model's parameters, and that the loss depends on the model's output "
                    "(nothing detached)",
                    numbers,
                )
            elif event.kind == "rising":
                if "trend_z" in n:
                    status = "fail" if n["last_smoothed"] > n["first_smoothed"] else "warn"
                    message = (
                        f"the training loss rises over the first {n['steps']} steps: smoothed "
                        f"{n['first_smoothed']:.4g} -> {n['last_smoothed']:.4g} (rank-trend z={n['trend_z']:+.1f}); "
                        "the learning rate is probably too high, or the loss has the wrong sign"
                    )
                else:
                    status = "fail" if n["smoothed"] > n["initial"] else "warn"
                    message = (
                        f"the training loss is rising: smoothed {n['smoothed']:.4g} at step {event.step}, up from "
                        f"its best {n['best']:.4g} at step {n['best_step']} (it started at {n['initial']:.4g}); lower "
                        "the learning rate or clip gradients"
                    )
                self.record(trainer, status, message, numbers)
            elif event.kind == "hockey_stick":
                rest = max(int(n["steps"]) - int(n["few_steps"]), 0)
                self.record(
                    trainer,
                    "warn",
                    f"hockey-stick loss curve: the smoothed loss fell {n['early_drop']:.1f}x in the first "
                    f"{n['few_steps']} steps ({n['start']:.4g} -> {n['after_few']:.4g}) but only "
                    f"{n['late_drop']:.2f}x over the next {rest}: the network spent its first steps learning the "
                    "output bias; initialise the final layer's bias from the targets (FinalBiasInit)",
                    numbers,
                )
