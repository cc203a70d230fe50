"""GeneralizationCheck: the recipe's "regularize" and "leave it training"."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping as _LightningEarlyStopping
from typing_extensions import override

from lightning_recipe import logging as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback
from lightning_recipe.callbacks.dumb_baselines import DumbBaselines
from lightning_recipe.core.batches import split_batch
from lightning_recipe.core.checks import generalization as core
from lightning_recipe.core.health import train_mode_modules
from lightning_recipe.plots.generalization import generalization_figure

__all__ = ["GeneralizationCheck"]

_TAG = "recipe/generalization"


class GeneralizationCheck(RecipeCallback):
    """Judge the stage of the run from its training and validation losses: underfitting, overfitting or healthy.

    Recipe, "regularize" and "leave it training" (*"networks keep training for unintuitively long
    time"*). Each validation loss is paired with the mean training loss since the previous one; at
    the end of fit the stage is judged (:mod:`lightning_recipe.core.checks.generalization`):
    **overfitting**, **underfitting** (above ``underfit_ratio`` of a dumb baseline), **diverging**
    (``warn``) or **healthy** (``pass``); a second finding says how the run ended (*leave it
    training*, or early stopping on overfitting, a plateau or noise). TensorBoard:
    ``recipe/generalization/gap``, the figure ``.../curves`` and the text ``.../verdict``. See the
    README section "Regularize: GeneralizationCheck".

    Args:
        monitor: the logged validation loss; ``None``: ``val_loss``, ``valid_loss``, ``validation_loss``, ...
        train_monitor: the logged training loss; ``None``: the first of ``train_loss_step``, ``train_loss``,
            ``train/loss``, ``training_loss``, ``loss/train``, ``loss``, else what ``training_step`` returns.
        baseline: a dumb baseline's loss for the underfitting verdict (see above for the default).
        underfit_ratio: underfitting while the training loss is above this fraction of the baseline
            (``None``: 0.5 of a class prior's loss, 0.8 of a mean predictor's).
        min_rise: overfitting needs the validation loss to rise by more than this fraction of its best.
        min_improvement: "still improving" needs a fall of at least this fraction per epoch.
        log_figure: log the ``curves`` figure at the end of fit.
        on_fail: accepted for symmetry; the verdicts are ``pass``, ``warn`` or ``skipped``.

    Attributes:
        findings: the stage verdict and the end-of-run remark, at the end of fit.
        stage: ``"overfitting"``, ``"diverging"``, ``"underfitting"``, ``"healthy"`` or ``"too_short"``.
        history: per validation: ``x`` (epochs trained), ``epoch``, ``step``, ``train``, ``val``.

    Example:
        >>> import warnings
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> class Model(BoringModel):                 # losses scripted by epoch: both still falling
        ...     def training_step(self, batch, batch_idx):
        ...         self.log("train_loss", 1.0 / (self.current_epoch + 1))
        ...         return super().training_step(batch, batch_idx)
        ...     def validation_step(self, batch, batch_idx):
        ...         self.log("val_loss", 1.0 / (self.current_epoch + 1) + 0.1)
        >>> check = GeneralizationCheck(log_figure=False)
        >>> trainer = Trainer(max_epochs=8, limit_train_batches=2, limit_val_batches=1, logger=False,
        ...                   enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        ...                   callbacks=[check], default_root_dir=getfixture("tmp_path"))
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(Model())
        >>> check.stage, check.findings[1].message.split(" (")[0]
        ('healthy', 'max_epochs=8 ended the run while val_loss was still improving ~11% per epoch')
    """

    recipe_step = "regularize"

    def __init__(
        self,
        monitor: str | None = None,
        train_monitor: str | None = None,
        baseline: float | None = None,
        underfit_ratio: float | None = None,
        min_rise: float = 0.05,
        min_improvement: float = 0.002,
        log_figure: bool = True,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail=on_fail)
        core.validate_arguments(
            "GeneralizationCheck", monitor, train_monitor, baseline, underfit_ratio, min_rise, min_improvement
        )
        self.monitor, self.train_monitor, self.baseline = monitor, train_monitor, baseline
        self.underfit_ratio = None if underfit_ratio is None else float(underfit_ratio)
        self.min_rise, self.min_improvement = float(min_rise), float(min_improvement)
        self.log_figure = bool(log_figure)
        self._reset()

    def _reset(self) -> None:
        self.stage: str | None = None
        self.history: dict[str, list[Any]] = {"x": [], "epoch": [], "step": [], "train": [], "val": []}
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._batch_idx = -1
        self._initial: float | torch.Tensor | None = None
        self._input_shape: tuple[int, ...] | None = None
        self._names = [self.train_monitor, self.monitor]
        self._done = self._train_mode_seen = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, train_monitor=self.train_monitor)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._reset()

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.should_skip(trainer):
            return
        self._add_train(trainer, outputs, batch, batch_idx)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_skip(trainer) or self._done:
            return
        if (training := train_mode_modules(pl_module)) and not self._train_mode_seen:
            self._train_mode_seen = True  # Lightning evaluates in eval mode: the step switched it back
            more = f" and {len(training) - 1} more" if len(training) > 1 else ""
            self.record(trainer, "warn", f"'{training[0]}'{more} ran in training mode during validation: "
                        f"{self.monitor} is measured with dropout active and BatchNorm on batch statistics; "
                        "does validation_step (or a hook) call self.train()? Lightning evaluates in eval mode: "
                        "leave it", {"train_mode_modules": training})  # fmt: skip
        self._add_validation(trainer)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_skip(trainer) or self._done:
            return
        self._conclude(trainer, pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        history, (initial, total) = {k: list(v) for k, v in self.history.items()}, (self._initial, self._sum)
        return {"history": history, "initial": None if initial is None else float(initial), "count": self._count,
                "sum": None if total is None else float(total), "input_shape": self._input_shape}  # fmt: skip

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        history = state_dict.get("history", {})
        self.history = {k: list(history.get(k, [])) for k in ("x", "epoch", "step", "train", "val")}
        self._initial = state_dict.get("initial")
        total = state_dict.get("sum")
        self._sum = torch.tensor(total, dtype=torch.float64) if total is not None else None
        self._count = int(state_dict.get("count", 0))
        shape = state_dict.get("input_shape")
        self._input_shape = tuple(shape) if shape is not None else None

    # ------------------------------------------------------------------ reading the losses
    def _metric(self, trainer: Trainer, index: int, keys: tuple[str, ...]) -> torch.Tensor | None:
        metrics = trainer.callback_metrics
        given, arg = ((self.train_monitor, "train_monitor"), (self.monitor, "monitor"))[index]
        key = core.pick_metric(metrics, given, self._names[index], keys, arg, "GeneralizationCheck")
        value = metrics.get(key) if key is not None else None
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            self._names[index] = key
            return value.detach().reshape(()).double()
        return None

    def _add_train(self, trainer: Trainer, outputs: Any, batch: Any, batch_idx: int) -> None:
        value = self._metric(trainer, 0, core.TRAIN_KEYS)
        if value is None:
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if isinstance(loss, torch.Tensor) and loss.numel() == 1:
                value, self._names[0] = loss.detach().reshape(()).double(), self._names[0] or "loss"
        if self._input_shape is None:
            try:
                inputs = split_batch(batch).inputs
            except Exception:  # only for the advice: a batch layout it cannot read is no reason to stop
                inputs = None
            self._input_shape = tuple(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else ()
        self._batch_idx = batch_idx
        if value is None:
            return
        if self._initial is None and not self.history["x"]:
            self._initial = value
        self._sum = value if self._sum is None else self._sum + value.to(self._sum.device)
        self._count += 1

    def _add_validation(self, trainer: Trainer) -> None:
        val = self._metric(trainer, 1, core.VAL_KEYS)
        device = trainer.strategy.root_device
        packed = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float64, device=device)
        if self._sum is not None:
            packed[0], packed[1] = self._sum.to(device), float(self._count)
        if val is not None:
            packed[2], packed[3] = val.to(device), 1.0
        s, c, v, r = self.all_reduce_sum(trainer, packed).tolist()
        self._sum, self._count = None, 0
        if r == 0:
            return
        epoch, batches = trainer.current_epoch, trainer.num_training_batches
        gap = core.add_validation(
            self.history, epoch, self._batch_idx, batches, trainer.global_step, s, c, v, r
        )
        if math.isfinite(gap):
            recipe_logging.log_scalars(trainer, {f"{_TAG}/gap": gap}, trainer.global_step)

    # ------------------------------------------------------------------ the verdicts
    def _conclude(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._done = True
        names = (self._names[0] or "train_loss", self._names[1] or "val_loss")
        stop = next((cb for cb in trainer.callbacks if isinstance(cb, _LightningEarlyStopping)), None)  # type: ignore[attr-defined]
        by = core.ended_by(trainer.should_stop, getattr(stop, "stopped_epoch", None))
        baseline = self._baseline(trainer)
        run = core.judge_run(
            self.history, names, baseline, by, budget=core.budget_name(
                trainer.max_steps, trainer.global_step, trainer.max_epochs, trainer.current_epoch),
            patience=getattr(stop, "patience", None),
            restored_epoch=getattr(stop, "best_epoch", None) if getattr(stop, "restore_best_weights", False) else None,
            advice=core.regularization_advice(core.run_facts(
                pl_module, trainer.optimizers, self.first_dataloader(trainer.train_dataloader), self._input_shape, stop)),
            underfit_ratio=core.underfit_ratio_for(self.underfit_ratio, baseline[1] == "mean predictor"), min_rise=self.min_rise, min_improvement=self.min_improvement,
        )  # fmt: skip
        if run is None:
            self.record(
                trainer, "skipped", core.no_loss_message(bool(self.history["val"]), trainer.callback_metrics)
            )
            return
        verdict, end, h = run.stage, run.end, run.curves
        self.stage = verdict.stage
        self.record(trainer, verdict.status, verdict.message, verdict.numbers)
        if end is not None:
            self.record(trainer, end.status, end.message, end.numbers)
        recipe_logging.log_text(trainer, f"{_TAG}/verdict", core.markdown(verdict, end), trainer.global_step)
        if self.log_figure and trainer.is_global_zero:
            onset = float(h["x"][verdict.onset_index]) if verdict.onset_index is not None else None
            args = (h["x"], h["train"], h["val"], onset, verdict.stage, baseline[0], names)
            build = functools.partial(generalization_figure, *args)  # picklable: the render process draws it
            recipe_logging.log_figure(trainer, f"{_TAG}/curves", build, trainer.global_step)

    def _baseline(self, trainer: Trainer) -> tuple[float | None, str]:
        scores = (cb.scores for cb in trainer.callbacks if isinstance(cb, DumbBaselines))  # type: ignore[attr-defined]
        return core.pick_baseline(self.baseline, scores, self._initial)
