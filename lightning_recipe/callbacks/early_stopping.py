"""EarlyStopping: Lightning's early stopping, plus restoring the best weights and a warm-up."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping as _LightningEarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import RecipeCallback, check_positive_int
from lightning_recipe.core.checks import early_stopping as core

__all__ = ["EarlyStopping"]

_REASONS = {
    EarlyStoppingReason.PATIENCE_EXHAUSTED: "patience exhausted",
    EarlyStoppingReason.STOPPING_THRESHOLD: "stopping threshold reached",
    EarlyStoppingReason.DIVERGENCE_THRESHOLD: "divergence threshold reached",
    EarlyStoppingReason.NON_FINITE_METRIC: "non-finite monitored metric",
}


class EarlyStopping(_LightningEarlyStopping, RecipeCallback):
    """Stop when the monitored metric stops improving, and end with the best weights.

    Recipe, "early stopping" and "leave it training": *"Stop training based on your measured
    validation loss to catch your model just as it's about to overfit"*, but *"networks keep
    training for unintuitively long time"*. A drop-in subclass of Lightning's ``EarlyStopping``
    (same arguments, same behaviour) that adds:

    * ``restore_best_weights``: when training ends for any reason (stopped, ``max_epochs``, an
      exception ...), the module has the weights of the best score (one CPU copy, also checkpointed).
    * ``start_from_epoch``: before this epoch nothing stops the run and patience does not count;
      the best score and weights are still tracked. A non-finite metric still stops it.
    * the reason it stopped, the best epoch and score in a finding and ``recipe/early_stopping/`` scalars.
    * resuming keeps the best score and epoch, but a new ``patience`` is honoured (Lightning's: the old).

    Args:
        monitor, min_delta, patience, verbose, mode, strict, check_finite, stopping_threshold,
            divergence_threshold, check_on_train_epoch_end, log_rank_zero_only: as in Lightning's
            ``EarlyStopping``.
        restore_best_weights: load the best weights into the module when training ends.
        start_from_epoch: the first (0-based) epoch at which the run may stop.

    Lightning's own arguments behave as in Lightning (validation, exceptions, ``state_dict`` keys,
    ``verbose`` messages, ``stopping_reason``). See the README section "Early stopping that ends on the best weights".

    Attributes:
        best_score: Lightning's best score (a tensor; a value stopping the run at a threshold is not kept).
        best_epoch, best_step: the epoch and step of the best finite value (``None`` before the first
            check; one that reached ``stopping_threshold`` counts): the weights restored are this epoch's.
        stopped_epoch, stopping_reason: when it stopped (0 if it did not) and why (``EarlyStoppingReason``).
        findings: one finding at the end of fit.

    Raises:
        MisconfigurationException: if ``mode`` is neither ``"min"`` nor ``"max"`` (Lightning's check).
        ValueError: if ``start_from_epoch`` is negative.
        RuntimeError: with ``strict=True``, if ``monitor`` is not among the logged metrics at a check.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> stop = EarlyStopping(monitor="valid_loss", patience=2, restore_best_weights=True)
        >>> class Model(BoringModel):
        ...     def validation_step(self, batch, batch_idx):
        ...         self.log("valid_loss", [0.5, 0.2, 0.3, 0.4, 0.5, 0.6][self.current_epoch])
        >>> trainer = Trainer(max_epochs=6, limit_train_batches=2, limit_val_batches=1, logger=False,
        ...                   enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        ...                   callbacks=[stop], default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(Model())
        >>> stop.best_epoch, stop.stopped_epoch, stop.findings[0].message.split(";")[0]
        (1, 3, 'stopped at epoch 3 (patience exhausted)')
    """

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: Literal["min", "max"] = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        # Lightning validates its own arguments, with its own exceptions and wording
        # (``MisconfigurationException`` for an unknown ``mode``): code that catches them keeps working.
        super().__init__(
            monitor=monitor,
            min_delta=min_delta,
            patience=patience,
            verbose=verbose,
            mode=mode,
            strict=strict,
            check_finite=check_finite,
            stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold,
            check_on_train_epoch_end=check_on_train_epoch_end,
            log_rank_zero_only=log_rank_zero_only,
        )
        check_positive_int("EarlyStopping", "start_from_epoch", start_from_epoch, minimum=0)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = start_from_epoch
        self.best_epoch: int | None = None
        self.best_step: int | None = None
        # the best finite value seen, for the weights and the report; unlike Lightning's ``best_score``
        # it also takes a value that stopped the run at ``stopping_threshold``
        self._best_value: torch.Tensor | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._restored = False
        self._reported = False

    # ------------------------------------------------------------------ lifecycle
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        _LightningEarlyStopping.setup(self, trainer, pl_module, stage)
        RecipeCallback.setup(self, trainer, pl_module, stage)
        if stage == "fit":
            self._restored = False
            self._reported = False

    @override
    def _run_early_stopping_check(self, trainer: Trainer) -> None:
        logs = trainer.callback_metrics
        if trainer.fast_dev_run or not self._validate_condition_metric(logs):
            return
        current = logs[self.monitor].squeeze()
        improved = self._is_new_best(current)  # decided before Lightning's check updates ``best_score``
        if trainer.current_epoch < self.start_from_epoch and not (
            self.check_finite and not torch.isfinite(current)
        ):
            should_stop, reason = self._warm_up_check(current)
        else:
            should_stop, reason = self._evaluate_stopping_criteria(current)
        # every rank must restore the same weights: rank zero's view of "improved" decides
        improved = bool(trainer.strategy.broadcast(improved, src=0))
        if improved:
            self._best_value = current.detach().cpu().clone()
            self.best_epoch = int(trainer.current_epoch)
            self.best_step = int(trainer.global_step)
            if self.restore_best_weights:
                self._best_state = core.keep_state(self._best_state, trainer.lightning_module.state_dict())
        # from here on, Lightning's own code
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = reason
        if reason and self.verbose:
            self._log_info(trainer, reason, self.log_rank_zero_only)

    def _is_new_best(self, current: torch.Tensor) -> bool:
        if not bool(torch.isfinite(current)):
            return False
        if self._best_value is None:
            return True
        # the comparison Lightning makes for ``best_score``, on the same dtype
        return bool(self.monitor_op(current - self.min_delta, self._best_value.to(current.device)))

    def _warm_up_check(self, current: torch.Tensor) -> tuple[bool, str | None]:
        """Before ``start_from_epoch``: nothing stops the run and patience does not count, but the best
        score is tracked as Lightning tracks it."""
        if self.monitor_op(current - self.min_delta, self.best_score.to(current.device)):
            reason = self._improvement_message(current)
            self.best_score = current
            self.wait_count = 0
            return False, reason
        return False, None

    def _restore(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.restore_best_weights or self._restored:
            return
        self._restored = True
        if self._best_state is not None:
            core.load_state(pl_module, self._best_state)
        elif self.best_epoch is not None:
            self.warn(core.no_best_weights(self.best_epoch))

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore(trainer, pl_module)
        self._report(trainer, interrupted=False)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore(trainer, pl_module)
        self._report(trainer, interrupted=True)

    # ------------------------------------------------------------------ findings
    def _report(self, trainer: Trainer, interrupted: bool) -> None:
        if self._reported or not self.is_fitting(trainer):
            return
        self._reported = True
        if self.best_epoch is None:
            self.record(trainer, "skipped", core.never_logged(self.monitor, trainer.callback_metrics))
            return
        best = float(self._best_value if self._best_value is not None else self.best_score)
        stopped = self.stopping_reason != EarlyStoppingReason.NOT_STOPPED
        reason = _REASONS.get(self.stopping_reason, str(self.stopping_reason.value)) if stopped else None
        last_epoch = trainer.current_epoch - (1 if trainer.current_epoch > 0 else 0)
        restored = self.restore_best_weights and self._best_state is not None
        status, message, numbers = core.ending(
            reason, self.stopped_epoch, best, self.best_epoch, self.monitor, restored, interrupted, last_epoch
        )
        numbers.update(best_step=self.best_step, patience=self.patience)
        self.record(trainer, status, message, numbers)
        recipe_logging.log_scalars(
            trainer,
            {"recipe/early_stopping/best_score": best, "recipe/early_stopping/best_epoch": self.best_epoch},
            trainer.global_step,
        )

    # ------------------------------------------------------------------ checkpoint state
    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # Lightning's keys, ``patience`` included
        state["best_epoch"] = self.best_epoch
        state["best_step"] = self.best_step
        state["best_value"] = self._best_value
        state["best_state"] = self._best_state
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # the one deliberate difference: ``patience`` is configuration, so the value passed to this run wins
        super().load_state_dict({**state_dict, "patience": self.patience})
        self.best_epoch = state_dict.get("best_epoch")
        self.best_step = state_dict.get("best_step")
        best_value = state_dict.get("best_value")
        if best_value is None and self.best_epoch is not None:  # saved before ``best_value`` was kept
            best_value = self.best_score
        self._best_value = None if best_value is None else torch.as_tensor(best_value).detach().cpu().clone()
        best_state = state_dict.get("best_state")
        self._best_state = dict(best_state) if best_state is not None else None
