"""OverfitBatchCheck: the recipe's "overfit one batch"."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks._shadow import ShadowTrainer, ShadowUnsupported
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.callbacks.batch_independence import agree
from lightning_recipe.core.batches import KeySpec, batch_size_of, split_batch
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tasks import check_task_argument, infer_task, is_binary_valued
from lightning_recipe.findings import Finding

__all__ = ["OverfitBatchCheck"]

#: Classification reaches "near zero" at this loss (or 2% of the initial loss, if larger).
CLASSIFICATION_TARGET = 0.05
#: Regression (and batches without targets) must lose this fraction of the initial loss...
RELATIVE_TARGET = 0.01
#: ...or explain this fraction of the targets' variance with its predictions (R²).
R2_TARGET = 0.99
#: A loss within this factor of the label-smoothing floor has reached it.
SMOOTHING_SLACK = 1.05
#: A last loss above this multiple of the initial one: the copy diverged.
DIVERGED = 2.0


class OverfitBatchCheck(RecipeCallback):
    """Train a copy of the model on a few examples and check that it reaches the lowest loss.

    Recipe, "overfit one batch": *"Overfit a single batch of only a few examples (e.g. as little
    as two) [...] and verify that we can reach the lowest achievable loss (e.g. zero). I also like
    to visualize in the same plot both the label and the prediction and ensure that they end up
    aligning perfectly once we reach the minimum loss."* On the first training batch, before the
    first optimizer step, this trains a deep copy of the module on ``num_samples`` examples of
    that batch with the user's own ``training_step`` and the first optimizer of
    ``configure_optimizers``, for at most ``max_steps`` steps. Schedulers are not stepped: the
    copy trains at the schedule's working rate (a warm-up's ``initial_lr``, the ``max_lr`` of
    ``OneCycleLR`` / ``CyclicLR``). The real model, optimizer, scheduler, logger, batch and random
    state are untouched: in the copy, ``self.trainer`` is a read-only view of the real trainer,
    ``self.optimizers()`` / ``self.lr_schedulers()`` return the copy's own, ``self.log`` does
    nothing.

    How "lowest achievable" is judged (``target_loss=`` overrides it):

    * classification (integer or 0/1 targets): the loss must fall to ``0.05`` or 2% of the initial
      loss, whichever is larger (cross-entropy and BCE have a minimum of 0);
    * regression: the predictions must explain 99% of the targets' variance on the examples
      (R² >= 0.99), or the loss must fall to 1% of its initial value;
    * no targets in the batch: the loss must fall to 1% of its initial value;
    * label smoothing: with an ``nn.CrossEntropyLoss(label_smoothing=eps)`` in the module, the
      loss must fall to 1.05 times the smoothing floor (the entropy of the smoothed target); a
      multiclass loss that stops with every example right and the same probability ``p < 1`` of
      its class everywhere passes when it is the floor of an ``eps`` that agrees (within 25%)
      with the ``eps = (1 - p) C / (C - 1)`` that ``p`` implies;
    * sequence targets ``(N, T)`` with logits ``(N, T, V)`` or ``(N, V, T)``: positions labelled
      ``-100`` (or outside the classes) are padding, left out of the accuracy and the figure.

    It stops as soon as the target is reached (``pass``). It stops early with a ``fail`` when the
    loss plateaus above the target: over the last ``patience`` steps the (smoothed) loss improved
    by less than 1% of its total improvement so far. The message gives the floor it reached and
    what typically causes it: cross-entropy applied to probabilities (the floor is
    ``ln(1 + (C - 1) / e)``, 1.46 for 10 classes), frozen parameters, a zero learning rate,
    ``Dropout(p=1.0)``. A loss that ends above twice its initial value ``fail``s as "the loss
    rose": the learning rate is too high for the batch. A loss still decreasing at ``max_steps``
    gives a ``warn`` (inconclusive).

    Augmentation: the examples are fixed (those of the first batch, as the dataloader augmented
    them). Augmentation applied inside the module (e.g. in ``training_step``) can be switched off
    in the copy with ``augment_off=``; ``prepare_batch=`` transforms the examples.

    TensorBoard: ``recipe/overfit_batch/loss`` (the copy's loss at each of its steps) and
    ``recipe/overfit_batch/summary``, one figure with the loss curve and, per example, the label
    against the prediction at the end.

    Args:
        num_samples: how many examples of the first batch to overfit (2 to a few dozen).
        max_steps: the most optimizer steps for the copy.
        patience: steps without meaningful improvement before the loss counts as a plateau.
        target_loss: the loss to reach, when the loss has a known non-zero minimum (label
            smoothing, a regularisation term); ``None`` judges as described above.
        task: ``"auto"`` (inferred from the targets and outputs), ``"multiclass"``, ``"binary"``,
            ``"multilabel"`` or ``"regression"``.
        input_key: where the inputs are in the batch (for the predictions in the figure).
        target_key: where the targets are in the batch.
        forward: ``callable(module, inputs) -> outputs`` when the module is not called as
            ``module(inputs)`` (used for predictions only).
        augment_off: ``callable(module_copy)`` run on the copy before training, to switch off
            augmentation or noise done inside the module (e.g. ``lambda m: setattr(m, "augment", False)``).
        prepare_batch: ``callable(batch) -> batch`` applied to the examples before training.
        log_figure: log the summary figure.
        on_fail: ``"warn"`` (default) or ``"raise"`` a ``RecipeCheckError`` on a ``fail``.

    Attributes:
        findings: one finding (``pass``, ``warn``, ``fail``, or ``skipped`` with the reason).
        losses: the copy's loss at each step (the last one after the final update).

    Raises:
        ValueError: for bad arguments.
        RecipeCheckError: when the check fails under ``on_fail="raise"``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.nn import functional as F
        >>> from lightning.pytorch import LightningModule
        >>> class Net(LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
        ...     def forward(self, x):
        ...         return self.net(x)
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         return F.cross_entropy(self(x), y)
        ...     def configure_optimizers(self):
        ...         return torch.optim.Adam(self.parameters(), lr=1e-2)
        >>> _ = torch.manual_seed(0)
        >>> batch = (torch.randn(32, 4), torch.randint(0, 3, (32,)))
        >>> OverfitBatchCheck(num_samples=4).check(Net(), batch).status
        'pass'
    """


    def __init__(
        self,
        num_samples: int = 8,
        max_steps: int = 300,
        patience: int = 50,
        target_loss: float | None = None,
        task: str = "auto",
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        augment_off: Callable[[nn.Module], Any] | None = None,
        prepare_batch: Callable[[Any], Any] | None = None,
        log_figure: bool = True,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail)
        owner = self.name
        check_positive_int(owner, "num_samples", num_samples, minimum=1)
        check_positive_int(owner, "max_steps", max_steps, minimum=1)
        check_positive_int(owner, "patience", patience, minimum=2)
        if target_loss is not None and (
            isinstance(target_loss, bool)
            or not isinstance(target_loss, (int, float))
            or not math.isfinite(target_loss)
        ):
            raise ValueError(
                f"{owner}(target_loss={target_loss!r}): pass a finite number, or None to judge automatically."
            )
        check_task_argument(task, owner)
        self.validate_keys(owner, input_key, target_key)
        for arg, value in (
            ("forward", forward),
            ("augment_off", augment_off),
            ("prepare_batch", prepare_batch),
        ):
            if value is not None and not callable(value):
                raise TypeError(f"{owner}({arg}={value!r}): pass a callable or None.")
        self.num_samples = num_samples
        self.max_steps = max_steps
        self.patience = patience
        self.target_loss = None if target_loss is None else float(target_loss)
        self.task = task
        self.input_key = input_key
        self.target_key = target_key
        self.forward = forward
        self.augment_off = augment_off
        self.prepare_batch = prepare_batch
        self.log_figure = bool(log_figure)
        self.losses: list[float] = []
        self._done = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(num_samples=self.num_samples, max_steps=self.max_steps)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._done = False

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._done or self.should_skip(trainer):
            return
        self._done = True
        self._run(trainer, pl_module, batch)

    def check(self, pl_module: LightningModule, batch: Any, trainer: Trainer | None = None) -> Finding:
        """Overfit ``num_samples`` examples of ``batch`` with a copy of ``pl_module`` now."""
        return self._run(trainer, pl_module, batch)

    @override
    def state_dict(self) -> dict[str, Any]:
        return self.one_time_state(self._done)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = self.load_one_time_state(state_dict)

    # ------------------------------------------------------------------ work
    def _run(self, trainer: Trainer | None, pl_module: LightningModule, batch: Any) -> Finding:
        with preserved_state(pl_module):
            status, message, numbers, plot = self._overfit(trainer, pl_module, batch)
        status, message, numbers = agree(self, trainer, status, message, numbers)
        if trainer is not None and trainer.is_global_zero:
            if self.losses:
                for k, value in enumerate(self.losses):
                    if math.isfinite(value):
                        recipe_logging.log_scalars(trainer, {"recipe/overfit_batch/loss": value}, k)
            if self.log_figure and plot is not None:
                verdict = f"{status}: {message}"
                recipe_logging.log_figure(
                    trainer,
                    "recipe/overfit_batch/summary",
                    lambda: _summary_figure(plot, verdict),
                    trainer.global_step,
                )
        return self.record(trainer, status, message, numbers)  # type: ignore[arg-type]

    def _overfit(
        self, trainer: Trainer | None, pl_module: LightningModule, batch: Any
    ) -> tuple[str, str, dict[str, Any], dict[str, Any] | None]:
        self.losses = []
        n_batch = batch_size_of(batch)
        if n_batch is None:
            return (
                "skipped",
                "the batch holds no tensor with a batch dimension; pass `prepare_batch=`",
                {},
                None,
            )
        n = min(self.num_samples, n_batch)
        small = _take(batch, n_batch, n)
        if self.prepare_batch is not None:
            small = self.prepare_batch(small)
        try:
            shadow = ShadowTrainer(pl_module, trainer)
        except ShadowUnsupported as err:
            return "skipped", f"cannot train a copy of the module: {err}", {}, None
        module = shadow.module
        _local_batchnorm(module)
        if self.augment_off is not None:
            self.augment_off(module)
        try:
            parts = split_batch(small, input_key=self.input_key, target_key=self.target_key)
        except ValueError:
            parts = None
        inputs = parts.inputs if parts is not None else None
        targets = parts.targets if parts is not None else None
        hints = _static_hints(module, shadow.optimizer)
        before = [p.detach().clone() for p in module.parameters()]

        outputs0 = self._predict(shadow, inputs)
        kind, task = _kind(targets, outputs0, self.task)
        smoothing = self._declared_smoothing(module, outputs0, targets, task)
        losses: list[float] = []
        reached = plateau = False
        r2: float | None = None
        target: float | None = None
        try:
            for k in range(self.max_steps):
                value = shadow.step(small, k)
                losses.append(value)
                if not math.isfinite(value):
                    break
                if target is None:
                    target = self._target(kind, value, smoothing)
                    if target is None:
                        self.losses = losses
                        return (
                            "skipped",
                            f"the initial loss is {value:.4g} (not positive), so no relative target applies; "
                            "pass `target_loss=`",
                            {"initial_loss": value},
                            None,
                        )
                if value <= target:
                    reached = True
                    break
                if kind == "regression" and k % 10 == 9:
                    r2 = _r2(self._predict(shadow, inputs), targets)
                    if r2 is not None and r2 >= R2_TARGET:
                        reached = True
                        break
                if _plateaued(losses, self.patience, log_scale=self.target_loss is None):
                    plateau = True
                    break
            if not reached and losses and math.isfinite(losses[-1]):
                final = shadow.loss(small, train_mode=True)
                losses.append(final)
                reached = target is not None and final <= target
                if not reached:  # dropout noise: judge the copy without it too
                    eval_loss = shadow.loss(small, train_mode=False)
                    reached = target is not None and eval_loss <= target
        except ShadowUnsupported as err:
            self.losses = losses
            return "skipped", f"cannot train a copy of the module: {err}", {}, None
        self.losses = losses
        outputs = self._predict(shadow, inputs)
        if kind == "regression":
            r2 = _r2(outputs, targets)
            reached = reached or (r2 is not None and r2 >= R2_TARGET)
        changed = any(not torch.equal(a, p.detach()) for a, p in zip(before, module.parameters()))
        assert target is not None or not losses or not math.isfinite(losses[0])
        initial = losses[0] if losses else float("nan")
        best = min((v for v in losses if math.isfinite(v)), default=float("nan"))
        numbers: dict[str, Any] = {
            "num_samples": n,
            "steps": len(losses) - (0 if reached and len(losses) <= self.max_steps else 1),
            "initial_loss": initial,
            "final_loss": losses[-1] if losses else float("nan"),
            "lowest_loss": best,
            "target_loss": target,
            "kind": kind,
        }
        if r2 is not None:
            numbers["r2"] = r2
        if smoothing is not None:
            numbers["label_smoothing"], numbers["smoothing_floor"] = smoothing
        plot = _plot_data(losses, target, outputs, targets, task)
        if plot is not None and "accuracy" in plot:
            numbers["accuracy"] = plot["accuracy"]
        steps = numbers["steps"]
        if losses and not math.isfinite(losses[-1]):
            finite = [v for v in losses if math.isfinite(v)]
            if initial > 0 and len(finite) > 1 and finite[-1] > DIVERGED * initial:
                return (
                    "fail",
                    f"cannot overfit {n} examples: the loss rose from {initial:.4g} to {finite[-1]:.4g}, then "
                    f"{losses[-1]} at step {len(losses) - 1}: the learning rate{_learning_rate(shadow.optimizer)} "
                    "is too high for this batch; lower it",
                    numbers,
                    plot,
                )
            return (
                "fail",
                f"the loss became {losses[-1]} at step {len(losses) - 1} while overfitting {n} examples "
                f"(from {initial:.4g}); lower the learning rate or look for log(0), division by zero",
                numbers,
                plot,
            )
        if reached:
            how = (
                f"R² {r2:.3f}"
                if kind == "regression" and r2 is not None and r2 >= R2_TARGET
                else f"loss {best:.4g}"
            )
            why = ""
            if smoothing is not None:
                why = f": the floor of label smoothing {smoothing[0]:.3g} is {smoothing[1]:.4g}"
            return (
                "pass",
                f"overfit {n} examples in {steps} steps: {how} (from {initial:.4g}; target "
                f"{_target_text(kind, target)}{why})",
                numbers,
                plot,
            )
        if task == "multiclass" and self.target_loss is None and smoothing is None:
            floor = _smoothing_from_outputs(outputs, targets, best)
            if floor is not None:
                eps, p, classes = floor
                numbers["label_smoothing"], numbers["smoothing_floor"] = eps, _smoothing_floor(eps, classes)
                return (
                    "pass",
                    f"overfit {n} examples in {steps} steps: the loss stopped at {best:.4g} (from {initial:.4g}) "
                    f"with every example right at the same probability {p:.3g}: a floor consistent with label "
                    f"smoothing eps≈{eps:.2g} over {classes} classes",
                    numbers,
                    plot,
                )
        last = losses[-1] if losses else float("nan")
        if not hints and initial > 0 and last > DIVERGED * initial:
            lr = _learning_rate(shadow.optimizer)
            return (
                "fail",
                f"cannot overfit {n} examples: the loss rose from {initial:.4g} to {last:.4g} in {steps} steps "
                f"(lowest {best:.4g}): the learning rate{lr} is too high for this batch; lower it",
                numbers,
                plot,
            )
        hint = _hint(hints, changed, task, outputs, targets, best, self.target_loss is None)
        if plateau or not changed or hints:
            return (
                "fail",
                f"cannot overfit {n} examples: the loss {'plateaued at' if plateau else 'only reached'} {best:.4g} after {steps} steps (from {initial:.4g}; "
                f"lowest achievable {_target_text(kind, target)}); {hint}",
                numbers,
                plot,
            )
        return (
            "warn",
            f"the loss was still decreasing after max_steps={self.max_steps} steps on {n} examples ({initial:.4g} -> "
            f"{best:.4g}, target {_target_text(kind, target)}); raise `max_steps` (or the learning rate) to conclude",
            numbers,
            plot,
        )

    def _target(
        self, kind: str, initial: float, smoothing: tuple[float, float] | None = None
    ) -> float | None:
        if self.target_loss is not None:
            return self.target_loss
        if not initial > 0:
            return None
        if kind == "classification":
            target = max(CLASSIFICATION_TARGET, 2 * RELATIVE_TARGET * initial)
            if smoothing is not None:  # a cross-entropy with label smoothing has a minimum above 0
                target = max(target, SMOOTHING_SLACK * smoothing[1])
            return target
        return RELATIVE_TARGET * initial

    def _declared_smoothing(
        self, module: nn.Module, outputs: torch.Tensor | None, targets: Any, task: str | None
    ) -> tuple[float, float] | None:
        """``(eps, floor)`` of an ``nn.CrossEntropyLoss(label_smoothing=eps)`` inside the module."""
        if self.target_loss is not None or task != "multiclass":
            return None
        eps = max(
            (
                float(m.label_smoothing)
                for m in module.modules()
                if isinstance(m, nn.CrossEntropyLoss) and isinstance(m.label_smoothing, (int, float))
            ),
            default=0.0,
        )
        view = _class_view(outputs, targets)
        if not 0.0 < eps < 1.0 or view is None:
            return None
        classes = int(view[0].shape[1])
        return eps, _smoothing_floor(eps, classes)

    def _predict(self, shadow: ShadowTrainer, inputs: Any) -> torch.Tensor | None:
        if inputs is None:
            return None
        try:
            if self.forward is not None:
                shadow.module.eval()
                with torch.no_grad():
                    out = self.forward(shadow.module, inputs)
            else:
                out = shadow.forward(inputs)
        except Exception:
            return None
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            out = out[0]
        if isinstance(out, dict):
            out = out.get("logits", next((v for v in out.values() if isinstance(v, torch.Tensor)), None))
        return out.detach().float().cpu() if isinstance(out, torch.Tensor) else None


# ---------------------------------------------------------------------- helpers
def _take(batch: Any, n_batch: int, n: int) -> Any:
    """The first ``n`` examples: every tensor with ``n_batch`` rows is sliced (copies, never views)."""
    from lightning_recipe.core.batches import map_tensors

    return map_tensors(batch, lambda t: t[:n].clone() if t.dim() and t.shape[0] == n_batch else t)


class _LocalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A SyncBatchNorm turned local: the copy trains alone, it must not wait for other ranks."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")


def _local_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.SyncBatchNorm):
            m.__class__ = _LocalBatchNorm


def _kind(targets: torch.Tensor | None, outputs: torch.Tensor | None, task: str) -> tuple[str, str | None]:
    """("classification" | "regression" | "unknown", the task or None)."""
    if targets is None or not isinstance(targets, torch.Tensor):
        if task == "auto":
            return "unknown", None
        return ("regression" if task == "regression" else "classification"), task
    try:
        resolved: str | None = infer_task(targets, outputs, task)
    except (ValueError, TypeError):
        resolved = None
    if resolved is None:
        classification = not targets.is_floating_point() or is_binary_valued(targets)
        return ("classification" if classification else "regression"), None
    return ("regression" if resolved == "regression" else "classification"), resolved


def _plateaued(losses: list[float], patience: int, log_scale: bool = True) -> bool:
    """The smoothed loss improved by < 1% of its total improvement over the last ``patience`` steps.

    With ``log_scale`` (a loss whose minimum is 0) improvements are measured on the log of the
    loss, so that a loss still halving near zero does not count as a plateau.
    """
    if len(losses) < patience + 5:
        return False
    w = max(3, patience // 5)
    arr = np.asarray(losses, dtype=np.float64)
    if log_scale and bool(np.all(arr > 0)):
        arr = np.log(arr)
    smooth = np.convolve(arr, np.ones(w) / w, mode="valid")
    if len(smooth) <= patience:
        return False
    best_now = smooth.min()
    best_then = smooth[: len(smooth) - patience].min()
    total = smooth[0] - best_now
    recent = best_then - best_now
    return bool(recent <= 0.01 * max(total, 0.0) + 1e-12 * (1.0 + abs(arr[0])))


def _r2(outputs: torch.Tensor | None, targets: torch.Tensor | None) -> float | None:
    if outputs is None or targets is None or not targets.is_floating_point():
        return None
    y = targets.detach().float().cpu().reshape(-1)
    if outputs.numel() != y.numel():
        return None
    p = outputs.reshape(-1)
    sst = float(((y - y.mean()) ** 2).sum())
    if sst <= 0:
        return None
    return 1.0 - float(((y - p) ** 2).sum()) / sst


def _target_text(kind: str, target: float | None) -> str:
    t = "?" if target is None else f"{target:.3g}"
    if kind == "regression":
        return f"loss <= {t} or R² >= {R2_TARGET}"
    return f"<= {t}"


def _class_view(
    outputs: torch.Tensor | None, targets: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(scores (M, C), labels (M,), example (M,))`` of every labelled position of a multiclass output.

    Outputs ``(N, C, ...)`` with targets ``(N, ...)`` (``F.cross_entropy``'s layout) or ``(N, T, C)``
    with ``(N, T)`` (language models); positions whose label is out of ``[0, C)`` (padding,
    ``ignore_index=-100``) are left out. ``None`` when outputs and targets do not fit that way.
    """
    if outputs is None or not isinstance(targets, torch.Tensor) or targets.is_floating_point():
        return None
    y = targets.detach().cpu().long()
    out = outputs.detach().float().cpu()
    if y.dim() == 0 or out.dim() != y.dim() + 1 or out.shape[0] != y.shape[0] or y.shape[0] == 0:
        return None
    if out.shape[2:] == y.shape[1:]:
        scores = out.movedim(1, -1).reshape(-1, out.shape[1])
    elif out.shape[:-1] == y.shape:
        scores = out.reshape(-1, out.shape[-1])
    else:
        return None
    labels = y.reshape(-1)
    example = torch.arange(y.shape[0]).repeat_interleave(labels.numel() // y.shape[0])
    keep = (labels >= 0) & (labels < scores.shape[1])
    if not bool(keep.any()) or scores.shape[1] < 2:
        return None
    return scores[keep], labels[keep], example[keep]


def _are_probabilities(scores: torch.Tensor) -> bool:
    return bool(
        (scores >= 0).all()
        and (scores <= 1).all()
        and torch.allclose(scores.sum(-1), torch.ones(1), atol=1e-3)
    )


def _smoothing_floor(eps: float, classes: int) -> float:
    """The lowest cross-entropy with label smoothing ``eps`` over ``classes``: the entropy of the smoothed target."""
    high, low = 1.0 - eps + eps / classes, eps / classes
    return -(high * math.log(high)) - (classes - 1) * (low * math.log(low) if low > 0 else 0.0)


def _smoothing_for_floor(loss: float, classes: int) -> float | None:
    """The label smoothing ``eps`` whose floor is ``loss`` (the floor grows with ``eps`` up to ``(C - 1) / C``)."""
    top = (classes - 1) / classes
    if not 0.0 < loss < _smoothing_floor(top, classes):
        return None
    lo, hi = 0.0, top
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _smoothing_floor(mid, classes) < loss else (lo, mid)
    return (lo + hi) / 2


def _smoothing_from_outputs(
    outputs: torch.Tensor | None, targets: Any, loss: float
) -> tuple[float, float, int] | None:
    """``(eps, p, classes)`` when a plateau at ``loss`` is the floor of label smoothing, else ``None``.

    Minimising a smoothed cross-entropy leaves every labelled position right with the same
    probability ``p < 1`` of its class, ``p = 1 - eps (C - 1) / C``. The outputs must show that,
    and the ``eps`` they imply must agree (within 25%) with the ``eps`` whose floor is the loss
    (the loss is measured in training mode, the outputs in eval mode: dropout makes them differ a
    little). A bug that caps the confidence (bounded logits) leaves a loss of about ``-log p``,
    far below the smoothing floor of that ``p``: it does not pass.
    """
    view = _class_view(outputs, targets)
    if view is None or not math.isfinite(loss):
        return None
    scores, labels, _ = view
    probs = scores if _are_probabilities(scores) else scores.softmax(-1)
    if not bool((probs.argmax(-1) == labels).all()):
        return None
    p_true = probs.gather(1, labels.unsqueeze(1)).squeeze(1).double()
    p = float(p_true.mean())
    classes = int(scores.shape[1])
    from_outputs = (1.0 - p) * classes / (classes - 1)
    spread = float(p_true.max() - p_true.min())
    if not 0.005 <= from_outputs < 1.0 or spread > max(0.02, 0.25 * (1.0 - p)):
        return None
    from_loss = _smoothing_for_floor(loss, classes)
    if from_loss is None or abs(from_loss - from_outputs) > 0.25 * max(from_loss, from_outputs):
        return None
    return from_loss, p, classes


def _learning_rate(optimizer: torch.optim.Optimizer) -> str:
    rates = sorted({float(g["lr"]) for g in optimizer.param_groups if isinstance(g.get("lr"), (int, float))})
    if not rates:
        return ""
    return f" ({rates[0]:.3g})" if len(rates) == 1 else f" (up to {rates[-1]:.3g})"


def _static_hints(module: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    hints = []
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        hints.append("all parameters are frozen (requires_grad=False)")
    else:
        ids = {id(p) for p in trainable}
        groups = [g for g in optimizer.param_groups if any(id(p) in ids for p in g["params"])]
        if not groups:
            hints.append("the optimizer holds none of the trainable parameters")
        elif all(float(g.get("lr", 1.0)) == 0.0 for g in groups):
            hints.append("the learning rate is 0")
    for name, m in module.named_modules():
        p = getattr(m, "p", None)
        if isinstance(m, nn.modules.dropout._DropoutNd) and isinstance(p, (int, float)) and p >= 1.0:
            hints.append(f"{name!r} is {type(m).__name__}(p={p}): it zeroes its input in training")
    return hints


def _hint(
    static: list[str],
    changed: bool,
    task: str | None,
    outputs: torch.Tensor | None,
    targets: Any,
    best: float,
    auto: bool,
) -> str:
    if static:
        return "; ".join(static)
    if not changed:
        return "no parameter changed: the loss is not connected to the trainable parameters, or every gradient is 0"
    view = _class_view(outputs, targets) if task == "multiclass" else None
    if view is not None:
        c = int(view[0].shape[1])
        floor = math.log(1 + (c - 1) / math.e)
        if _are_probabilities(view[0]) or abs(best - floor) <= 0.05 * floor:
            return (
                f"the floor of cross-entropy applied to probabilities is ln(1 + {c - 1}/e) = {floor:.3g} for {c} "
                "classes: pass logits (not softmax outputs) to cross_entropy, or use nll_loss(log_softmax(z))"
            )
    head = (
        "if the loss has a non-zero minimum by design (label smoothing, a penalty term), pass `target_loss=`; else "
        if auto
        else ""
    )
    return (
        head
        + "look for a loss that does not match the outputs (activation applied twice, wrong target shape), "
        "augmentation or noise inside the module (`augment_off=`), or a model too small to memorise"
    )


# ---------------------------------------------------------------------- figure
def _plot_data(
    losses: list[float],
    target: float | None,
    outputs: torch.Tensor | None,
    targets: torch.Tensor | None,
    task: str | None,
) -> dict[str, Any] | None:
    data: dict[str, Any] = {"losses": np.asarray(losses, dtype=np.float64), "target": target, "mode": None}
    if outputs is None or targets is None or not isinstance(targets, torch.Tensor):
        return data
    y = targets.detach().cpu()
    out = outputs
    n = y.shape[0] if y.dim() else 0
    if n == 0 or out.shape[0] != n:
        return data
    view = _class_view(out, y) if task == "multiclass" else None
    if view is not None:
        scores, labels, example = view
        probs = scores if _are_probabilities(scores) else scores.softmax(-1)
        pred = scores.argmax(-1)
        p_true = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        # one point per example: its first labelled position
        first = torch.ones_like(example, dtype=torch.bool)
        first[1:] = example[1:] != example[:-1]
        data.update(
            mode="class",
            label=labels[first].numpy().astype(np.float64),
            pred=pred[first].numpy().astype(np.float64),
            p_true=p_true[first].numpy(),
            accuracy=float((pred == labels).float().mean()),
            per_position=bool(labels.numel() > int(first.sum())),
        )
        return data
    if task in ("binary", "multilabel") and out.numel() == y.numel():
        probs = out if bool((out >= 0).all() and (out <= 1).all()) else out.sigmoid()
        yy, pp = y.reshape(-1).float(), probs.reshape(-1)
        data.update(
            mode="scatter",
            label=yy.numpy(),
            pred=pp.numpy(),
            accuracy=float(((pp > 0.5).float() == yy).float().mean()),
            ylabel="predicted probability",
        )
        return data
    if out.numel() == y.numel() and y.is_floating_point():
        data.update(
            mode="scatter", label=y.reshape(-1).numpy(), pred=out.reshape(-1).numpy(), ylabel="prediction"
        )
    return data


def _summary_figure(data: dict[str, Any], verdict: str) -> Any:
    from lightning_recipe.callbacks.batch_independence import _wrap
    from lightning_recipe.plots.style import new_figure

    fig = new_figure(9.0, 3.6, dpi=90)
    ax = fig.add_subplot(1, 2, 1)
    losses = data["losses"]
    steps = np.arange(len(losses))
    positive = bool(len(losses) and np.all(losses[np.isfinite(losses)] > 0))
    ax.plot(steps, losses, color="#1f77b4", lw=1.5, label="loss of the copy")
    finite = losses[np.isfinite(losses)]
    if len(finite):
        ax.annotate(
            f"{finite[-1]:.3g}",
            (len(losses) - 1, finite[-1]),
            textcoords="offset points",
            xytext=(0, 5),
            ha="right",
            fontsize=7,
            color="#1f77b4",
        )
    if data["target"] is not None:
        ax.axhline(data["target"], color="#2ca02c", ls="--", lw=1, label=f"target {data['target']:.3g}")
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("step of the copy", fontsize=8)
    ax.set_ylabel("training loss", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    ax.tick_params(labelsize=7)
    ax2 = fig.add_subplot(1, 2, 2)
    mode = data["mode"]
    if mode == "class":
        idx = np.arange(len(data["label"]))
        ok = data["label"] == data["pred"]
        ax2.scatter(idx, data["label"], s=120, facecolors="none", edgecolors="#333333", label="label")
        ax2.scatter(idx[ok], data["pred"][ok], marker="x", s=50, color="#2ca02c", label="prediction (right)")
        ax2.scatter(
            idx[~ok], data["pred"][~ok], marker="x", s=50, color="#d62728", label="prediction (wrong)"
        )
        for i, p in zip(idx, data["p_true"]):
            ax2.annotate(
                f"{p:.2f}",
                (i, data["label"][i]),
                textcoords="offset points",
                xytext=(0, 9),
                ha="center",
                fontsize=6,
            )
        ax2.set_xlabel(
            "example at its 1st labelled position (number: P(label))"
            if data.get("per_position")
            else "example (number: predicted probability of its label)",
            fontsize=8,
        )
        ax2.set_ylabel("class", fontsize=8)
        ax2.set_title(f"label vs prediction: accuracy {data['accuracy']:.0%}", fontsize=8)
        ax2.set_xticks(idx)
        lo, hi = min(data["label"].min(), data["pred"].min()), max(data["label"].max(), data["pred"].max())
        ax2.set_ylim(lo - 0.8, hi + 0.8)
        ax2.legend(fontsize=7, frameon=False, loc="best")
    elif mode == "scatter":
        lab, pred = data["label"], data["pred"]
        lo, hi = float(min(lab.min(), pred.min())), float(max(lab.max(), pred.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax2.plot(
            [lo - pad, hi + pad],
            [lo - pad, hi + pad],
            color="#999999",
            lw=1,
            ls="--",
            label="prediction = label",
        )
        ax2.scatter(lab, pred, s=25, color="#1f77b4", label="example")
        ax2.set_xlabel("label", fontsize=8)
        ax2.set_ylabel(data.get("ylabel", "prediction"), fontsize=8)
        ax2.set_title("label vs prediction at the end", fontsize=8)
        ax2.legend(fontsize=7, frameon=False)
    else:
        ax2.text(
            0.5,
            0.5,
            "predictions not available\n(pass `forward=` / `input_key=`)",
            ha="center",
            va="center",
            fontsize=8,
        )
        ax2.set_axis_off()
    ax2.tick_params(labelsize=7)
    title = _wrap(verdict, 140)
    fig.suptitle(title, fontsize=8, x=0.01, ha="left")
    fig.tight_layout()
    return fig
