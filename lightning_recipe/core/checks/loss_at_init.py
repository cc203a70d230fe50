"""The "verify loss @ init" step without Lightning: watch the final layer during the user's step,
undo what was done to the loss before backward, gather the evidence and word the finding.

The numbers and the verdict come from :mod:`lightning_recipe.core.init_values`
(:func:`~lightning_recipe.core.init_values.loss_evidence`,
:func:`~lightning_recipe.core.init_values.diagnose`); this module connects them to what the
callback sees. :class:`~lightning_recipe.callbacks.loss_at_init.LossAtInitCheck` is the adapter.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> _ = nn.init.zeros_(net[2].bias)
    >>> watch = FinalOutputWatch()
    >>> watch.arm(net)
    >>> _ = net(torch.randn(5, 4))
    >>> watch.disarm()
    >>> watch.last[0], tuple(watch.last[2].shape)
    ('2', (5, 3))
    >>> ev = step_evidence(measured_loss(torch.tensor(1.1)), torch.tensor([0, 1, 2, 0, 1]), watch.last)
    >>> status, message, numbers = loss_finding(ev, rtol=0.3)
    >>> numbers["task"], numbers["loss"], numbers["expected_is"]
    ('multiclass', 'cross_entropy', 'ln 3')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lightning_recipe.core.batches import first_tensor
from lightning_recipe.core.format import fmt as _fmt
from lightning_recipe.core.init_values import EVIDENCE_KEYS, diagnose, loss_evidence, resolve_loss
from lightning_recipe.core.stats import TargetStats, targets_from_dataset
from lightning_recipe.core.tasks import (
    SequenceObjective,
    ShiftArg,
    infer_sequence_objective,
    infer_task,
    upsample_to_targets,
)
from lightning_recipe.core.tracing import find_layer

__all__ = [
    "MANUAL_OPTIMIZATION",
    "FinalOutputWatch",
    "broadcast_loss",
    "check_rtol",
    "class_weights",
    "dataset_stats",
    "loss_finding",
    "loss_scale",
    "mean_evidence",
    "measured_loss",
    "output_gradient",
    "step_evidence",
]

#: why it does not run under manual optimization unless told what to expect
MANUAL_OPTIMIZATION = (
    "skipped, because the module uses manual optimization: the loss passed to backward need not be "
    "the task loss (a GAN's, say); pass `task=` (and `loss=`) to check it"
)

#: ``(layer name, module, its last output)`` of the final layer that ran in the step
LastLayer = tuple[str, nn.Module, "torch.Tensor | None"]


def check_rtol(owner: str, rtol: Any) -> float:
    """``rtol`` as a float; ``ValueError`` naming ``owner`` unless it is a positive finite number."""
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not math.isfinite(rtol) or rtol <= 0:
        raise ValueError(f"{owner}(rtol={rtol!r}): pass a positive number, e.g. 0.3 for 30 %.")
    return float(rtol)


class FinalOutputWatch:
    """Read-only forward hooks on every module with parameters (or on one named layer): after the
    user's step, :attr:`last` is the last of them to run, with its output (detached), and
    :attr:`model_loss` is ``True`` when some module returned an output that carries its own loss
    (``output.loss``, ``{"loss": ...}``: a Hugging Face model computing the loss itself)."""

    def __init__(self) -> None:
        self.last: LastLayer | None = None
        self.model_loss = False
        #: the last module's output with its graph (this step only): the loss's gradient w.r.t. it
        #: tells a class-weighted loss (:func:`class_weights`)
        self.raw: torch.Tensor | None = None
        self._handles: list[Any] = []

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def arm(self, model: nn.Module, layer: str | None = None, owner: str = "LossAtInitCheck") -> None:
        names = {id(m): n for n, m in model.named_modules()}
        if layer is not None:
            modules = [find_layer(model, layer, f"{owner}(layer=...)")]
        else:
            modules = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = first_tensor(output)
            self.last = (names.get(id(module), ""), module, None if out is None else out.detach())
            self.raw = out

        def loss_hook(module: nn.Module, args: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor) and _carries_loss(output):
                self.model_loss = True

        self.last = None
        self.raw = None
        self.model_loss = False
        self._handles = [m.register_forward_hook(hook) for m in modules]
        self._handles += [m.register_forward_hook(loss_hook) for m in model.modules()]

    def disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _carries_loss(output: Any) -> bool:
    loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
    if loss is None and hasattr(output, "get") and hasattr(output, "keys"):  # Hugging Face ModelOutput
        loss = output.get("loss")
    return isinstance(loss, torch.Tensor) and loss.numel() == 1


def loss_scale(scaler: Any) -> float:
    """The factor a ``GradScaler`` multiplied the loss by before ``on_before_backward`` (1 if none).

    Under ``precision="16-mixed"`` Lightning's ``MixedPrecision.pre_backward`` scales the loss with
    its ``GradScaler`` and then calls the hook with the scaled tensor.
    """
    if scaler is None or not callable(getattr(scaler, "is_enabled", None)) or not scaler.is_enabled():
        return 1.0
    try:
        scale = float(scaler.get_scale())
    except (RuntimeError, TypeError, ValueError):
        return 1.0
    return scale if math.isfinite(scale) and scale > 0 else 1.0


def measured_loss(loss: Any, accumulate: int = 1, scale: float = 1.0) -> float:
    """The loss value of the step: Lightning's division by ``accumulate`` and the precision
    plugin's ``scale`` undone; ``ValueError`` unless ``loss`` is a scalar tensor."""
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(
            "the loss passed to backward is not a scalar tensor; the check needs one loss value per step"
        )
    return float(loss.detach().float()) * accumulate / scale


def output_gradient(loss: torch.Tensor, output: torch.Tensor | None) -> torch.Tensor | None:
    """``d loss / d output`` without touching any parameter's ``.grad`` (the graph is kept for the
    user's backward); ``None`` when ``output`` is not on the loss's graph."""
    if output is None or not output.requires_grad or not loss.requires_grad:
        return None
    try:
        (grad,) = torch.autograd.grad(loss, output, retain_graph=True, allow_unused=True)
    except RuntimeError:
        return None
    return None if grad is None else grad.detach()


def class_weights(
    kind: str, outputs: torch.Tensor | None, grad: torch.Tensor | None, targets: torch.Tensor, measured: float
) -> dict[str, Any] | None:
    """The class weights of a class-weighted loss (``CrossEntropyLoss(weight=)``, BCE's ``pos_weight``),
    read from the loss's gradient w.r.t. the outputs; ``None`` when the loss is not one.

    A loss ``sum_e w_e l_e / D`` of per-element losses ``l_e`` has the gradient ``w_e l'_e / D``: the
    ratio to the unweighted mean's gradient ``l'_e / M`` gives ``r_e = w_e M / D``, and
    ``sum_e r_e l_e / M`` must give the measured loss back. It is a class weighting when ``r`` is
    the same for every element of a class (per label and value for BCE) and differs between
    classes. Returns ``{"weights": {class: weight relative to the smallest}, "unweighted": loss}``.

    Example:
        >>> z = torch.zeros(6, 1, requires_grad=True)
        >>> y = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
        >>> loss = F.binary_cross_entropy_with_logits(z.squeeze(1), y, pos_weight=torch.tensor(3.0))
        >>> (g,) = torch.autograd.grad(loss, z)
        >>> found = class_weights("bce", z.detach(), g, y, float(loss))
        >>> found["weights"], round(found["unweighted"], 4)
        ({'0': 1.0, '1': 3.0}, 0.6931)
    """
    if grad is None or outputs is None or grad.shape != outputs.shape or kind not in ("cross_entropy", "bce"):
        return None
    z = outputs.detach().double().clone().requires_grad_(True)
    g = grad.double()
    if kind == "cross_entropy":
        if z.dim() != 2 or targets.dim() != 1 or targets.is_floating_point() or len(targets) != len(z):
            return None
        t = targets.long()
        if bool((t < 0).any()) or bool((t >= z.shape[1]).any()):
            return None  # ignore_index positions: not this simple form
        per = F.cross_entropy(z, t, reduction="none")
        groups = [str(c) for c in t.tolist()]
    else:
        if z.numel() != targets.numel():
            return None
        t = targets.reshape(z.shape).double()
        if not bool(((t == 0) | (t == 1)).all()):
            return None
        per = F.binary_cross_entropy_with_logits(z, t, reduction="none").reshape(len(z), -1)
        cols = per.shape[1]
        labels = t.reshape(len(z), -1)
        groups = [
            (f"{int(labels[i, j])}" if cols == 1 else f"label {j}={int(labels[i, j])}")
            for i in range(len(z))
            for j in range(cols)
        ]
    (d,) = torch.autograd.grad(per.mean(), z)
    if kind == "cross_entropy":  # one ratio per row: g_i must be parallel to d_i
        dd = (d * d).sum(1)
        r = (g * d).sum(1) / dd.clamp_min(1e-300)
        if bool((dd <= 1e-24).any()) or float((g - r[:, None] * d).norm()) > 1e-3 * float(g.norm()):
            return None
        elements = per.detach()
    else:
        dflat, gflat = d.reshape(-1), g.reshape(-1)
        if bool((dflat.abs() <= 1e-12).any()):
            return None
        r = gflat / dflat
        elements = per.detach().reshape(-1)
    if not bool((r > 0).all()) or not math.isfinite(measured):
        return None
    if abs(float((r * elements).mean()) - measured) > 0.01 * abs(measured) + 1e-6:
        return None
    by_class: dict[str, list[float]] = {}
    for key, value in zip(groups, r.tolist()):
        by_class.setdefault(key, []).append(value)
    means = {k: sum(v) / len(v) for k, v in by_class.items()}
    if any(max(v) - min(v) > 0.01 * means[k] for k, v in by_class.items()):
        return None  # per-sample factors (a focal loss, sample weights): not a class weighting
    low = min(means.values())
    if max(means.values()) <= 1.01 * low:
        return None  # unweighted
    weights = {k: round(v / low, 3) for k, v in sorted(means.items())}
    return {"weights": weights, "unweighted": float(elements.mean())}


def dataset_stats(dataset: Any, task: str, width: int, ignore_index: int | None) -> TargetStats | None:
    """The training targets' statistics from the dataset itself (no iteration), if it exposes them."""
    try:
        targets = targets_from_dataset(dataset)
        if targets is None:
            return None
        return TargetStats.from_targets(
            torch.as_tensor(targets),
            task,  # type: ignore[arg-type]
            num_classes=width if task == "multiclass" else None,
            ignore_index=ignore_index if task == "multiclass" else None,
        )
    except (ValueError, TypeError, RuntimeError):
        return None


def broadcast_loss(outputs: Any, targets: Any, measured: float) -> tuple[str, tuple[int, ...]] | None:
    """``(loss, broadcast shape)`` when ``measured`` is the MSE or L1 of ``outputs`` against ``targets``
    broadcast to a matrix (``(N, 1)`` against ``(N,)``: every prediction compared with every target,
    so the model can only learn their mean), and not the loss of the pairs; else ``None``.

    Example:
        >>> out, y = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.0, 2.0, 3.0])
        >>> broadcast_loss(out, y, float(((out - y) ** 2).mean()))   # what F.mse_loss(out, y) returns
        ('mse', (3, 3))
        >>> broadcast_loss(out, y, float(((out.squeeze(-1) - y) ** 2).mean())) is None   # the fix
        True
    """
    if not (isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor)):
        return None
    if (
        not targets.is_floating_point()
        or outputs.shape == targets.shape
        or outputs.numel() != targets.numel()
    ):
        return None
    if outputs.dim() > 2 or targets.dim() > 2 or outputs.numel() < 2 or not math.isfinite(measured):
        return None
    o, y = outputs.detach().double().cpu(), targets.detach().double().cpu()
    try:
        diff = o - y
    except RuntimeError:
        return None
    if diff.numel() == o.numel():
        return None  # no matrix: the shapes line up after all
    paired = o.reshape(-1) - y.reshape(-1)
    for name, fn in (("mse", lambda d: (d * d).mean()), ("l1", lambda d: d.abs().mean())):
        wide, right = float(fn(diff)), float(fn(paired))
        tol = 1e-4 * max(abs(wide), 1e-8)
        if abs(measured - wide) <= tol and abs(measured - right) > tol:
            return name, tuple(diff.shape)
    return None


def step_evidence(
    measured: float,
    targets: torch.Tensor,
    last: LastLayer | None,
    task: str = "auto",
    loss: str = "auto",
    bias_init: tuple[str | None, TargetStats | None] | None = None,
    data_stats: Callable[[str, int], TargetStats | None] | None = None,
    ignore_index: int | None = -100,
    *,
    batch: Any = None,
    model: nn.Module | None = None,
    model_loss: bool = False,
    shift: ShiftArg = "auto",
    loss_grad: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Everything the verdict needs from one step: the evidence of
    :func:`~lightning_recipe.core.init_values.loss_evidence`, the task, the loss and where the bias
    came from. ``bias_init``: the ``(layer name, stats)`` of a ``FinalBiasInit`` that set a bias;
    ``data_stats(task, width)``: the dataset's target statistics otherwise.

    Token targets ``(N, T)`` against ``(N, T, V)`` outputs are lined up first
    (:func:`~lightning_recipe.core.tasks.infer_sequence_objective` from the measured loss, the
    ``batch``, the ``model`` and whether it returned its own loss, ``model_loss``): a causal
    language model's logits at ``t`` are compared with the token at ``t + 1``, as its loss does.

    ``loss_grad``: the loss's gradient w.r.t. the watched output; when it shows a class-weighted
    loss (:func:`class_weights`), the init is judged on the unweighted loss of the same outputs."""
    name, module, out = last if last is not None else ("", None, None)
    if module is None:
        raise ValueError("no layer with parameters ran in the training step; pass `layer=`")
    objective: SequenceObjective | None = None
    if task in ("auto", "multiclass") and loss in ("auto", "cross_entropy"):
        objective = infer_sequence_objective(
            targets, out, batch=batch, module=model, loss=measured, computes_loss=model_loss, shift=shift,
            ignore_index=ignore_index,
        )  # fmt: skip
    if objective is not None and objective.shift and out is not None:
        out, targets = objective.align(out, targets)
    if out is not None and (up := upsample_to_targets(out, targets)) is not out:
        out, loss_grad = up, None  # coarse segmentation logits, as the model's loss upsamples them
    bias = getattr(module, "bias", None)
    bias = bias.detach() if isinstance(bias, torch.Tensor) else None
    if bias is not None:
        width = int(bias.numel())
    elif out is not None and out.dim() >= 2:
        width = int(out.shape[-1])
    else:
        width = 1
    if task == "auto":
        task = "multiclass" if loss == "cross_entropy" else infer_task(targets, out)
    source, stats = "model", None
    if bias_init is not None and bias_init[0] == name:
        source, stats = "FinalBiasInit", bias_init[1]
    if stats is None and data_stats is not None:
        stats = data_stats(task, width)
    kind = resolve_loss(loss, task, measured, targets, bias, out, width)
    weighted = None
    if objective is None and loss_grad is not None:
        weighted = class_weights(kind, out, loss_grad, targets, measured)
    judged = measured if weighted is None else weighted["unweighted"]
    ev = loss_evidence(judged, task, kind, targets, bias, out, stats, width=width, ignore_index=ignore_index)
    return {
        "ev": ev, "task": task, "kind": kind, "layer": name, "source": source, "objective": objective,
        "weighted": weighted, "measured": measured,
        "broadcast": broadcast_loss(out, targets, measured) if objective is None else None,
    }  # fmt: skip


def mean_evidence(
    ev: dict[str, float], reduce_sum: Callable[[torch.Tensor], torch.Tensor], world: int
) -> dict[str, float]:
    """The evidence averaged over ``world`` processes with ``reduce_sum``: the same numbers, hence
    the same verdict, on every rank."""
    vec = torch.tensor([ev[k] for k in EVIDENCE_KEYS], dtype=torch.float64)
    vec = reduce_sum(vec) / world
    return {k: float(v) for k, v in zip(EVIDENCE_KEYS, vec.tolist())}


def loss_finding(
    local: dict[str, Any], rtol: float, ev: dict[str, float] | None = None
) -> tuple[str, str, dict[str, Any]]:
    """``(status, message, numbers)`` of the step: :func:`~lightning_recipe.core.init_values.diagnose`
    of the evidence of :func:`step_evidence` (``local``), or of ``ev`` when given (the evidence
    averaged over processes)."""
    ev = local["ev"] if ev is None else ev
    verdict = diagnose(ev, local["task"], local["kind"], rtol=rtol, bias_source=local["source"])
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
    message = verdict.message
    weighted = local.get("weighted")
    if weighted is not None:
        numbers["class_weights"] = weighted["weights"]
        numbers["weighted_loss"] = local["measured"]
        ratio = " : ".join(f"{w:g}" for w in weighted["weights"].values())
        classes = ", ".join(weighted["weights"])
        message = (
            f"{message} (the loss weights the classes {classes} as {ratio}: the {_fmt(local['measured'])} "
            f"it returned is judged as the unweighted {local['kind']} of the same outputs)"
        )
    objective = local.get("objective")
    if objective is not None:
        numbers["shift"] = objective.shift
        numbers["objective"] = objective.reason
        if objective.shift:
            message = f"{message} ({objective.describe()})"
    broadcast = local.get("broadcast")
    if broadcast is not None:
        kind, shape = broadcast
        numbers["broadcast_shape"] = list(shape)
        return (
            "fail",
            (
                f"the {kind} loss compares every prediction with every target: the outputs and the targets "
                f"({shape[0]} samples) have different shapes and broadcast to {shape} inside the loss (PyTorch "
                "warns 'Using a target size that is different to the input size'), so the model can only learn "
                "the targets' mean; give them one shape (`output.squeeze(-1)`, or `targets.view(-1, 1)`)"
            ),
            numbers,
        )
    return verdict.status, message, numbers
