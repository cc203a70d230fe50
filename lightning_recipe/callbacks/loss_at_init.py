"""LossAtInitCheck: the recipe's "verify loss @ init"."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import RecipeCallback, check_choice
from lightning_recipe.callbacks.bias_init import applied_bias_init
from lightning_recipe.core.batches import KeySpec, first_tensor
from lightning_recipe.core.init_values import (
    EVIDENCE_KEYS,
    LOSS_KINDS,
    diagnose,
    loss_evidence,
    resolve_loss,
)
from lightning_recipe.core.stats import TargetStats, targets_from_dataset
from lightning_recipe.core.tasks import check_task_argument, infer_task
from lightning_recipe.core.tracing import find_layer

__all__ = ["LossAtInitCheck"]

LossArg = Literal["auto", "cross_entropy", "bce", "mse", "l1", "huber"]
TaskArg = Literal["auto", "multiclass", "binary", "multilabel", "regression"]


class LossAtInitCheck(RecipeCallback):
    """Check that the loss of the very first training step is the value a well-initialised net shows.

    Recipe, "verify loss @ init": *"Verify that your loss starts at the correct loss value. E.g. if
    you initialize your final layer correctly you should measure -log(1/n_classes) on a softmax at
    initialization. The same default values can be derived for L2 regression, Huber losses, etc."*

    It observes the loss your own ``training_step`` returns at step 0, before any parameter update
    (``on_before_backward``; it never recomputes it), and compares it with the loss of the constant
    prediction the final layer's bias implies, computed exactly from that batch's targets:
    ``ln C`` for a zero bias or ``H(prior)`` for a prior bias (cross-entropy), ``ln 2`` or the mean
    binary entropy (BCE with logits), ``E[y^2]`` or ``Var[y]`` (MSE), the L1 and Huber analogues.
    Random final weights add a little spread to the logits, so a healthy default initialisation
    lands slightly above that value; ``rtol`` bounds the difference. On a mismatch it says what is
    likely wrong: logits far too confident, a loss summed instead of averaged, a regression bias
    far from the target mean, a loss that is another function (``nll_loss`` on raw logits, softmax
    applied twice, ...). To recognise these it watches the final layer's output during that same
    step with a forward hook (read only).

    Under ``precision="16-mixed"`` the loss Lightning hands the hook is multiplied by the
    ``GradScaler``'s scale; it is divided back out. Under manual optimization the loss passed to
    ``manual_backward`` need not be the task loss (a GAN's discriminator loss): the check then
    runs only when told what to expect (``task=`` or ``loss=``), else it records ``skipped``.

    ``loss="auto"`` uses cross-entropy for multiclass targets, BCE with logits for binary and
    multilabel targets, and for regression whichever of MSE, L1 and Huber (``delta=1``) fits the
    measured value on that step's outputs.

    TensorBoard: ``recipe/loss_at_init/measured``, ``recipe/loss_at_init/expected`` and
    ``recipe/loss_at_init/uninformative`` (the zero-bias value), all at step 0.

    Args:
        task: ``"auto"`` (inferred from the targets and the final layer's output) or one of
            ``"multiclass"``, ``"binary"``, ``"multilabel"``, ``"regression"``.
        loss: ``"auto"``, ``"cross_entropy"``, ``"bce"`` (with logits), ``"mse"``, ``"l1"`` or ``"huber"``.
        rtol: relative tolerance between measured and expected loss (0.3: 30 %).
        layer: qualified name of the final layer; default: the last module with parameters that
            runs in the training step.
        input_key: where the inputs are in a batch (dict key, position, or callable).
        target_key: where the targets are in a batch (dict key, position, or callable).
        ignore_index: multiclass: the label cross-entropy ignores (PyTorch's ``-100``).
        on_fail: ``"warn"`` (default) or ``"raise"`` (``RecipeCheckError`` before the first
            optimizer step).

    Attributes:
        findings: one finding: ``pass``, ``warn`` or ``fail`` with the diagnosis, or ``skipped``.
        measured: the loss observed at step 0 (``None`` until then).
        expected: the loss a well-initialised network shows on that batch.

    Raises:
        ValueError: for an unknown ``task``, ``loss`` or ``on_fail``, a ``rtol`` that is not
            positive, or a ``layer`` that is not in the model.

    Example:
        >>> import torch
        >>> from torch.nn import functional as F
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from lightning.pytorch import LightningModule, Trainer
        >>> class Model(LightningModule):
        ...     def __init__(self, scale=1.0):
        ...         super().__init__()
        ...         self.head = torch.nn.Linear(8, 10)
        ...         self.head.weight.data *= scale
        ...     def training_step(self, batch, batch_idx):
        ...         return F.cross_entropy(self.head(batch[0]), batch[1])
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> _ = torch.manual_seed(0)
        >>> data = DataLoader(TensorDataset(torch.randn(64, 8), torch.arange(64) % 10), batch_size=32)
        >>> def run(model):
        ...     check = LossAtInitCheck()
        ...     Trainer(max_steps=1, callbacks=[check], logger=False, enable_progress_bar=False,
        ...             enable_model_summary=False, enable_checkpointing=False,
        ...             default_root_dir=getfixture("tmp_path")).fit(model, data)
        ...     return check.findings[0]
        >>> run(Model()).status
        'pass'
        >>> finding = run(Model(scale=100.0))
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
    ) -> None:
        super().__init__(on_fail=on_fail)
        owner = "LossAtInitCheck"
        check_task_argument(task, owner)
        check_choice(owner, "loss", loss, ("auto", *LOSS_KINDS))
        if (
            isinstance(rtol, bool)
            or not isinstance(rtol, (int, float))
            or not math.isfinite(rtol)
            or rtol <= 0
        ):
            raise ValueError(f"{owner}(rtol={rtol!r}): pass a positive number, e.g. 0.3 for 30 %.")
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise TypeError(f"{owner}(layer={layer!r}): pass the qualified name of a module, e.g. 'head.fc'.")
        self.validate_keys(owner, input_key, target_key)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise TypeError(f"{owner}(ignore_index={ignore_index!r}): pass an integer label or None.")
        self.task = task
        self.loss = loss
        self.rtol = float(rtol)
        self.layer = layer
        self.input_key = input_key
        self.target_key = target_key
        self.ignore_index = ignore_index
        self.measured: float | None = None
        self.expected: float | None = None
        self._done = False
        self._handles: list[Any] = []
        self._targets: torch.Tensor | None = None
        self._last: tuple[str, nn.Module, torch.Tensor | None] | None = None

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

    # ------------------------------------------------------------------ hooks
    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._done or self._handles or self.should_skip(trainer):
            return
        if trainer.global_step != 0:
            self._done = True  # resumed mid-training: there is no loss at init to observe
            return
        if not pl_module.automatic_optimization and self.task == "auto" and self.loss == "auto":
            self._skip(
                trainer,
                "skipped, because the module uses manual optimization: the loss passed to backward need not be "
                "the task loss (a GAN's, say); pass `task=` (and `loss=`) to check it",
            )
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
        self._arm(pl_module)

    @override
    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if not self._handles:
            return
        self._disarm()
        self._done = True
        self._check(trainer, pl_module, loss)

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self._handles:  # no backward in this batch (training_step returned None): try the next one
            self._disarm()

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._disarm()
        if not self._done and not self.should_skip(trainer) and trainer.global_step > 0:
            self._skip(trainer, "never saw a loss at step 0 (no backward in the first step)")

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._disarm()

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
        state["_handles"] = []
        state["_last"] = None
        state["_targets"] = None
        return state

    # ------------------------------------------------------------------ observing the step
    def _arm(self, pl_module: LightningModule) -> None:
        names = {id(m): n for n, m in pl_module.named_modules()}
        if self.layer is not None:
            modules = [find_layer(pl_module, self.layer, "LossAtInitCheck(layer=...)")]
        else:
            modules = [m for m in pl_module.modules() if any(True for _ in m.parameters(recurse=False))]

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = first_tensor(output)
            self._last = (names.get(id(module), ""), module, None if out is None else out.detach())

        self._last = None
        self._handles = [m.register_forward_hook(hook) for m in modules]

    def _disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _skip(self, trainer: Trainer, reason: str) -> None:
        self._done = True
        self._disarm()
        self.record(trainer, "skipped", reason)

    # ------------------------------------------------------------------ the check
    def _local(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> dict[str, Any]:
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(
                "the loss passed to backward is not a scalar tensor; the check needs one loss value per step"
            )
        measured = float(loss.detach().float())
        if pl_module.automatic_optimization and trainer.accumulate_grad_batches > 1:
            measured *= trainer.accumulate_grad_batches  # Lightning divides the loss before backward
        measured /= _loss_scale(trainer)
        targets = self._targets
        assert targets is not None
        name, module, out = self._last if self._last is not None else ("", None, None)
        if module is None:
            raise ValueError("no layer with parameters ran in the training step; pass `layer=`")
        bias = getattr(module, "bias", None)
        bias = bias.detach() if isinstance(bias, torch.Tensor) else None
        if bias is not None:
            width = int(bias.numel())
        elif out is not None and out.dim() >= 2:
            width = int(out.shape[-1])
        else:
            width = 1
        task = self.task
        if task == "auto":
            task = "multiclass" if self.loss == "cross_entropy" else infer_task(targets, out)
        source = "model"
        stats: TargetStats | None = None
        init = applied_bias_init(trainer)
        if init is not None and init.layer_name == name:
            source = "FinalBiasInit"
            stats = init.stats
        if stats is None:
            stats = self._data_stats(trainer, task, width)
        kind = resolve_loss(self.loss, task, measured, targets, bias, out, width)
        ev = loss_evidence(
            measured, task, kind, targets, bias, out, stats, width=width, ignore_index=self.ignore_index
        )
        return {"ev": ev, "task": task, "kind": kind, "layer": name, "source": source}

    def _data_stats(self, trainer: Trainer, task: str, width: int) -> TargetStats | None:
        """The training targets' statistics from the dataset itself (no iteration), if it exposes them."""
        try:
            loader = self.first_dataloader(trainer.train_dataloader)
            targets = targets_from_dataset(getattr(loader, "dataset", None))
            if targets is None:
                return None
            return TargetStats.from_targets(
                torch.as_tensor(targets),
                task,  # type: ignore[arg-type]
                num_classes=width if task == "multiclass" else None,
                ignore_index=self.ignore_index if task == "multiclass" else None,
            )
        except (ValueError, TypeError, RuntimeError):
            return None

    def _check(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        local: dict[str, Any] | None = None
        reason = ""
        try:
            local = self._local(trainer, pl_module, loss)
        except ValueError as err:
            reason = str(err)
        finally:
            self._targets = None
            self._last = None
        if not self.decide(trainer, local is not None, all_=True):
            self.record(
                trainer, "skipped", reason or "another process could not run the check; see its warning"
            )
            return
        assert local is not None
        ev = local["ev"]
        if trainer.world_size > 1:  # the same numbers, hence the same verdict, on every rank
            vec = torch.tensor([ev[k] for k in EVIDENCE_KEYS], dtype=torch.float64)
            vec = self.all_reduce_sum(trainer, vec) / trainer.world_size
            ev = {k: float(v) for k, v in zip(EVIDENCE_KEYS, vec.tolist())}
        verdict = diagnose(ev, local["task"], local["kind"], rtol=self.rtol, bias_source=local["source"])
        self.measured, self.expected = ev["measured"], verdict.expected
        step = int(trainer.global_step)
        scalars = {
            "recipe/loss_at_init/measured": ev["measured"],
            "recipe/loss_at_init/expected": verdict.expected,
            "recipe/loss_at_init/uninformative": ev["zero"],
        }
        recipe_logging.log_scalars(trainer, {k: v for k, v in scalars.items() if math.isfinite(v)}, step)
        numbers: dict[str, Any] = {
            "measured": ev["measured"],
            "expected": verdict.expected,
            "expected_is": verdict.label,
            "uninformative": ev["zero"],
            "task": local["task"],
            "loss": local["kind"],
            "layer": local["layer"],
            "bias_from": local["source"],
            "cause": verdict.cause,
        }
        if math.isfinite(ev["spread"]):
            numbers["logit_std"] = ev["spread"]
        self.record(trainer, verdict.status, verdict.message, numbers)  # type: ignore[arg-type]


def _loss_scale(trainer: Trainer) -> float:
    """The factor the precision plugin multiplied the loss by before ``on_before_backward`` (1 if none).

    Under ``precision="16-mixed"`` Lightning's ``MixedPrecision.pre_backward`` scales the loss with
    its ``GradScaler`` and then calls the hook with the scaled tensor.
    """
    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
    if scaler is None or not callable(getattr(scaler, "is_enabled", None)) or not scaler.is_enabled():
        return 1.0
    try:
        scale = float(scaler.get_scale())
    except (RuntimeError, TypeError, ValueError):
        return 1.0
    return scale if math.isfinite(scale) and scale > 0 else 1.0
