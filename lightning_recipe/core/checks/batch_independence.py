"""BatchIndependenceCheck's verdicts ("use backprop to chart dependencies"), without Lightning.

:func:`measure` charts the dependencies of a module on a batch with
:func:`~lightning_recipe.core.dependency.chart_call`, calling the module through
:class:`~lightning_recipe.core.model_call.ModelCall` (so ``forward(x)``, ``forward(**batch)`` and
``forward(input_ids, attention_mask)`` modules are called as their own step calls them), and turns
the chart into one ``(status, message, numbers)`` verdict per check: the batch dimension and, with
``causal_dim``, the causal order (``causal_dim="auto"``: checked when the batch's targets make a
next-token objective, see :func:`resolve_causal_dim`). :func:`distinct` drops the repeat when one
reason skipped both.
:func:`figure_data` gives the numpy categories the dependency figure draws.

Example:
    >>> import torch
    >>> from torch import nn
    >>> config = IndependenceConfig(causal_dim=1)
    >>> chart, verdicts = measure(config, nn.Linear(3, 2), torch.randn(8, 3))
    >>> [status for status, _, _ in distinct(verdicts)]
    ['skipped']
    >>> chart, verdicts = measure(IndependenceConfig(), nn.Linear(3, 2), torch.randn(8, 3))
    >>> [status for status, _, _ in verdicts], chart.batch_size
    (['pass'], 8)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from torch import nn

from lightning_recipe.core.batches import KeySpec, split_batch
from lightning_recipe.core.checks.prediction_dynamics import describe_call
from lightning_recipe.core.dependency import (
    DependencyChart,
    DependencyError,
    causal_verdict,
    chart_call,
    independence_verdict,
    per_sample_eval,
    zero_weight_layers,
)
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.plain import LEAK, OWN, OWN_ZERO, ZERO
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tasks import infer_sequence_objective, is_token_targets

__all__ = [
    "LEAK",
    "OWN",
    "OWN_ZERO",
    "SEVERITY",
    "ZERO",
    "IndependenceConfig",
    "Verdict",
    "distinct",
    "figure_data",
    "measure",
    "resolve_causal_dim",
]

Verdict = tuple[str, str, dict[str, Any]]
#: Order of the statuses when ranks disagree: the worst one wins.
SEVERITY: dict[str, int] = {"pass": 0, "skipped": 1, "warn": 2, "fail": 3}
# the cell categories of the dependency figure (ZERO, OWN, OWN_ZERO, LEAK) live in core.plain


@dataclass(frozen=True)
class IndependenceConfig:
    """What to chart (the arguments of ``BatchIndependenceCheck`` of the same names)."""

    input_key: KeySpec = None
    forward: Callable[[nn.Module, Any], Any] | None = None
    output_key: str | int | Callable[[Any], Any] | None = None
    batch_dim: int = 0
    causal_dim: int | Literal["auto"] | None = None
    strict: bool = False
    num_samples: int = 4
    tolerance: float = 0.0


def measure(
    config: IndependenceConfig,
    module: nn.Module,
    batch: Any,
    context: contextlib.AbstractContextManager[Any] | None = None,
) -> tuple[DependencyChart | None, list[Verdict]]:
    """Chart ``module`` on ``batch`` and judge it: ``(chart or None, one verdict per check)``.

    The module's modes, buffers, gradients and random state are restored afterwards; BatchNorm- and
    Dropout-like layers run in eval mode while charting. ``context`` is the trainer's precision
    context (for the forward pass). A reason that stops the chart is repeated for each check, so
    every rank of a distributed run holds as many verdicts (see :func:`distinct`).
    """
    call = ModelCall(forward=config.forward, input_key=config.input_key)
    causal_dim, why = resolve_causal_dim(config, module, batch, call, context)
    config = dataclasses.replace(config, causal_dim=causal_dim)
    checks = 2 if config.causal_dim is not None else 1
    if config.forward is not None or config.input_key is not None or not isinstance(batch, Mapping):
        try:  # a dict batch without these may still be called as module(**batch)
            split_batch(batch, input_key=config.input_key)
        except ValueError as err:
            return None, [("skipped", f"cannot find the inputs: {err}", {})] * checks
    try:
        with preserved_state(module, grads=True):
            eval_layers = per_sample_eval(module)
            chart = chart_call(
                lambda prepare: (
                    call(
                        module, batch, grad=True, train=None, guard=False, context=context, transform=prepare
                    ).raw
                ),
                modules=module,
                num_samples=config.num_samples,
                batch_dim=config.batch_dim,
                causal_dim=config.causal_dim,
                strict=config.strict,
                output_key=config.output_key,
            )
            zeros = zero_weight_layers(module)
    except DependencyError as err:
        msg = f"cannot chart dependencies: {err}"
        if config.forward is None and "forward pass failed" in str(err) and "pass `forward=`" not in str(err):
            msg += f" (pass `forward=` if the module is not called as {describe_call(call, module, batch)})"
        return None, [("skipped", msg, {})] * checks
    out = verdicts(config, chart, eval_layers, zeros)
    if why and len(out) == 2:  # say why causality was checked without being asked
        status, message, numbers = out[1]
        out[1] = (status, f"{message} (next-token objective: {why})", {**numbers, "causal_from": why})
    return chart, out


def resolve_causal_dim(
    config: IndependenceConfig,
    module: nn.Module,
    batch: Any,
    call: ModelCall,
    context: contextlib.AbstractContextManager[Any] | None = None,
) -> tuple[int | None, str]:
    """``(causal_dim, why)``: ``config.causal_dim`` as given (``why`` empty), or for ``"auto"`` the
    sequence dimension 1 when the batch's ``(N, T)`` token targets make a next-token objective
    (:func:`~lightning_recipe.core.tasks.infer_sequence_objective`, from one forward pass without
    grad; only token batches pay for it) or, without targets, when token ids go into a causal
    model (its config or class), else ``None``.

    Example:
        >>> import torch
        >>> resolve_causal_dim(IndependenceConfig(causal_dim="auto"), nn.Linear(3, 2), torch.randn(4, 3), ModelCall())
        (None, '')
    """
    if config.causal_dim != "auto":
        return config.causal_dim, ""  # type: ignore[return-value]
    if config.batch_dim != 0:
        return None, ""
    try:
        parts = split_batch(batch, input_key=config.input_key)
    except ValueError:
        return None, ""
    targets = parts.targets
    if targets is None and is_token_targets(parts.inputs):  # token ids without labels: the model's class says
        found = infer_sequence_objective(parts.inputs, module=module)
        return (1, found.reason) if found is not None and found.causal else (None, "")
    if not is_token_targets(targets):
        return None, ""
    try:
        out = call(module, batch, context=context)
    except Exception:  # the charting call reports a model that cannot be called
        return None, ""
    objective = infer_sequence_objective(
        targets, out.logits, batch=batch, module=module, loss=out.loss, computes_loss=out.loss is not None
    )
    if objective is None or not objective.causal:
        return None, ""
    return 1, objective.reason


def verdicts(
    config: IndependenceConfig, chart: DependencyChart, eval_layers: list[str], zero_layers: list[str]
) -> list[Verdict]:
    """The batch verdict (and, with ``causal_dim``, the causal one) of a chart."""
    out: list[Verdict] = []
    if chart.batch_size < 2:
        out.append(
            (
                "skipped",
                "batch size 1: with one sample there is no other sample to mix with; call "
                "check(pl_module, batch) with a batch of at least 2 samples",
                {"batch_size": chart.batch_size},
            )
        )
    else:
        status, message, numbers = independence_verdict(
            chart, tolerance=config.tolerance, zero_layers=zero_layers
        )
        numbers["eval_mode_layers"] = eval_layers
        out.append((status, message, numbers))
    if config.causal_dim is not None:
        out.append(causal_verdict(chart, strict=config.strict, tolerance=config.tolerance))
    return out


def distinct(verdicts: list[Verdict]) -> list[Verdict]:
    """One verdict per reason: a ``skipped`` verdict repeated for the causal check is dropped.

    >>> distinct([("skipped", "no inputs", {}), ("skipped", "no inputs", {})])
    [('skipped', 'no inputs', {})]
    """
    out: list[Verdict] = []
    for verdict in verdicts:
        if not (verdict[0] == "skipped" and any(v[:2] == verdict[:2] for v in out)):
            out.append(verdict)
    return out


def figure_data(chart: DependencyChart, strict: bool) -> dict[str, Any]:
    """Numpy copies of what the dependency figure shows (the figure is built on another thread).

    ``cats`` holds, per checked sample (rows) and batch sample (columns), :data:`OWN` /
    :data:`OWN_ZERO` on the sample's own input, :data:`LEAK` / :data:`ZERO` elsewhere; ``causal``
    the same along the sequence for one sample (allowed positions count as its own).
    """
    m = chart.matrix().numpy()
    cats = np.where(m > 0, LEAK, ZERO)
    for r, i in enumerate(chart.samples):
        cats[r, i] = OWN if m[r, i] > 0 else OWN_ZERO
    data: dict[str, Any] = {
        "cats": cats,
        "samples": list(chart.samples),
        "n": chart.batch_size,
        "causal": None,
    }
    if chart.causal:
        prof = None
        for p in chart.causal.values():
            p0 = p[0].numpy()
            prof = p0 if prof is None else np.maximum(prof, p0)
        assert prof is not None
        length = prof.shape[-1]
        ccat = np.zeros_like(prof, dtype=np.int64)
        for c, t in enumerate(chart.causal_positions):
            allowed = np.arange(length) < (t if strict else t + 1)
            ccat[c] = np.where(
                allowed, np.where(prof[c] > 0, OWN, OWN_ZERO), np.where(prof[c] > 0, LEAK, ZERO)
            )
        data["causal"] = {
            "cats": ccat,
            "positions": list(chart.causal_positions),
            "sample": chart.causal_samples[0],
            "dim": chart.causal_dim,
        }
    return data
