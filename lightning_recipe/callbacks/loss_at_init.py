"""LossAtInitCheck: the recipe's "verify loss @ init"."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import RecipeCallback, check_choice
from lightning_recipe.callbacks.bias_init import applied_bias_init
from lightning_recipe.core.batches import KeySpec
from lightning_recipe.core.checks.bias_init import check_layer_and_index
from lightning_recipe.core.checks.loss_at_init import (
    MANUAL_OPTIMIZATION,
    FinalOutputWatch,
    check_rtol,
    dataset_stats,
    loss_finding,
    loss_scale,
    mean_evidence,
    measured_loss,
    output_gradient,
    step_evidence,
)
from lightning_recipe.core.init_values import LOSS_KINDS
from lightning_recipe.core.tasks import ShiftArg, TaskArg, check_shift_argument, check_task_argument
from lightning_recipe.core.tracing import find_layer

__all__ = ["LossAtInitCheck"]

LossArg = Literal["auto", "cross_entropy", "bce", "mse", "l1", "huber"]


class LossAtInitCheck(RecipeCallback):
    """Check that the loss of the very first training step is the value a well-initialised net shows.

    Recipe, "verify loss @ init": *"Verify that your loss starts at the correct loss value. E.g. if
    you initialize your final layer correctly you should measure -log(1/n_classes) on a softmax at
    initialization."* It observes the loss your ``training_step`` returns at step 0
    (``on_before_backward``; never recomputed) and compares it with the loss of the constant
    prediction the final bias implies, exactly on that batch's targets (``ln C``, ``H(prior)``,
    ``ln 2``, ``Var[y]``, ...). On a mismatch it names the likely cause (over-confident logits, a
    summed loss, a bias far from the target mean, another loss function), reading the final
    layer's output through a read-only forward hook. Under manual optimization it runs only with
    ``task=`` or ``loss=``.

    TensorBoard (step 0): ``recipe/loss_at_init/measured``, ``recipe/loss_at_init/expected``,
    ``recipe/loss_at_init/uninformative``. See the README section "Init well and verify the loss at init".

    Args:
        task: ``"auto"`` or one of ``"multiclass"``, ``"binary"``, ``"multilabel"``, ``"regression"``.
        loss: ``"auto"``, ``"cross_entropy"``, ``"bce"`` (with logits), ``"mse"``, ``"l1"`` or ``"huber"``.
        rtol: relative tolerance between measured and expected loss (0.3: 30 %).
        layer: qualified name of the final layer; default: the last module with parameters to run.
        input_key: where the inputs are in a batch (dict key, position, or callable).
        target_key: where the targets are in a batch (dict key, position, or callable).
        ignore_index: multiclass: the label cross-entropy ignores (PyTorch's ``-100``).
        shift: token targets: ``"auto"`` (inferred: a causal language model's logits at ``t``
            predict the token at ``t + 1``), or ``0`` / ``1`` positions between logits and targets.
        on_fail: ``"warn"`` (default) or ``"raise"`` (``RecipeCheckError`` before the first step).

    Attributes:
        findings: one finding: ``pass``, ``warn`` or ``fail`` with the diagnosis, or ``skipped``.
        measured: the loss observed at step 0 (``None`` until then).
        expected: the loss a well-initialised network shows on that batch.

    Raises:
        ValueError: for an unknown ``task``, ``loss`` or ``on_fail``, a ``rtol`` that is not
            positive, or a ``layer`` that is not in the model.

    Example:
        >>> from lightning_recipe.demos import TinyClassifier, classification_data, tiny_trainer
        >>> def run(model):
        ...     check = LossAtInitCheck()
        ...     tiny_trainer(max_steps=1, callbacks=[check], default_root_dir=getfixture("tmp_path")).fit(
        ...         model, classification_data())
        ...     return check.findings[0]
        >>> run(TinyClassifier()).status
        'pass'
        >>> finding = run(TinyClassifier(weight_scale=100.0))
        >>> finding.status, "scale down the final layer's weights" in finding.message
        ('fail', True)
    """

    def __init__(
        self,
        task: TaskArg = "auto",
        loss: LossArg = "auto",
        rtol: float = 0.3,
        layer: str | None = None,
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        ignore_index: int | None = -100,
        on_fail: Literal["warn", "raise"] = "warn",
        shift: ShiftArg = "auto",
    ) -> None:
        super().__init__(on_fail=on_fail)
        owner = "LossAtInitCheck"
        check_task_argument(task, owner)
        check_shift_argument(shift, owner)
        check_choice(owner, "loss", loss, ("auto", *LOSS_KINDS))
        self.rtol = check_rtol(owner, rtol)
        check_layer_and_index(owner, layer, ignore_index)
        self.validate_keys(owner, input_key, target_key)
        self.task, self.loss, self.layer, self.shift = task, loss, layer, shift
        self.input_key, self.target_key, self.ignore_index = input_key, target_key, ignore_index
        self.measured: float | None = None
        self.expected: float | None = None
        self._done = False
        self._watch = FinalOutputWatch()
        self._targets: torch.Tensor | None = None
        self._batch: Any = None
        self._grad: torch.Tensor | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(task=self.task, loss=self.loss, layer=self.layer)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        self._done = False
        self.measured = self.expected = None
        if self.layer is not None:
            find_layer(pl_module, self.layer, "LossAtInitCheck(layer=...)")

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._done or self._watch.armed or self.should_skip(trainer):
            return
        if trainer.global_step != 0:
            self._done = True  # resumed mid-training: there is no loss at init to observe
            return
        if not pl_module.automatic_optimization and self.task == "auto" and self.loss == "auto":
            self._skip(trainer, MANUAL_OPTIMIZATION)
            return
        try:
            parts = self.split(batch, self.input_key, self.target_key)
        except ValueError as err:
            self._skip(trainer, str(err))
            return
        if parts.targets is None:
            self._skip(trainer, "found no targets in the training batch; pass `target_key=`")
            return
        self._targets = parts.targets.detach()
        self._batch = batch  # a reference for this step only: its token ids tell a causal LM's labels
        self._watch.arm(pl_module, self.layer)

    @override
    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if not self._watch.armed:
            return
        self._watch.disarm()
        self._done = True
        # on one process only: under DDP the partial backward could run the reducer's sink
        self._grad = output_gradient(loss, self._watch.raw) if trainer.world_size == 1 else None
        self._watch.raw = None
        self._check(trainer, pl_module, loss)

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self._watch.armed:  # no backward in this batch (training_step returned None): try the next one
            self._watch.disarm()
            self._batch = None

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._watch.disarm()
        if not self._done and not self.should_skip(trainer) and trainer.global_step > 0:
            self._skip(trainer, "never saw a loss at step 0 (no backward in the first step)")

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._watch.disarm()

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"done": self._done, "measured": self.measured, "expected": self.expected}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = bool(state_dict.get("done", False))
        self.measured = state_dict.get("measured")
        self.expected = state_dict.get("expected")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_watch"] = FinalOutputWatch()
        state["_targets"] = state["_batch"] = state["_grad"] = None
        return state

    def _skip(self, trainer: Trainer, reason: str) -> None:
        self._done = True
        self._watch.disarm()
        self.record(trainer, "skipped", reason)

    def _local(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> dict[str, Any]:
        accumulate = trainer.accumulate_grad_batches if pl_module.automatic_optimization else 1
        scale = loss_scale(getattr(getattr(trainer, "precision_plugin", None), "scaler", None))
        measured = measured_loss(loss, accumulate, scale)
        assert self._targets is not None
        init = applied_bias_init(trainer)
        dataset = getattr(self.first_dataloader(trainer.train_dataloader), "dataset", None)
        return step_evidence(
            measured, self._targets, self._watch.last, task=self.task, loss=self.loss,
            bias_init=None if init is None else (init.layer_name, init.stats),
            data_stats=lambda task, width: dataset_stats(dataset, task, width, self.ignore_index),
            ignore_index=self.ignore_index, batch=self._batch, model=pl_module,
            model_loss=self._watch.model_loss, shift=self.shift,
            loss_grad=None if self._grad is None else self._grad * (accumulate / scale),
        )  # fmt: skip

    def _check(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        try:
            local, reason = self.agreed(
                trainer, lambda: self._local(trainer, pl_module, loss), "run the check", ValueError
            )
        finally:
            self._targets = self._batch = self._grad = None
            self._watch.last = None
        if local is None:
            self.record(trainer, "skipped", reason)
            return
        ev = local["ev"]
        if trainer.world_size > 1:  # the same numbers, hence the same verdict, on every rank
            ev = mean_evidence(ev, lambda t: self.all_reduce_sum(trainer, t), trainer.world_size)
        status, message, numbers = loss_finding(local, self.rtol, ev)
        self.measured, self.expected = numbers["measured"], numbers["expected"]
        names = ("measured", "expected", "uninformative")
        finite = {f"recipe/loss_at_init/{k}": numbers[k] for k in names if math.isfinite(numbers[k])}
        recipe_logging.log_scalars(trainer, finite, int(trainer.global_step))
        self.record(trainer, status, message, numbers)  # type: ignore[arg-type]
