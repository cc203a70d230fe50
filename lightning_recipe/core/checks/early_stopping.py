"""EarlyStopping's bookkeeping without Lightning: the best weights kept on the CPU and the closing finding.

Example:
    >>> from torch import nn
    >>> net = nn.Linear(2, 1)
    >>> best = keep_state(None, net.state_dict())       # one CPU copy of the best weights
    >>> _ = nn.init.zeros_(net.weight)
    >>> load_state(net, best)
    >>> bool(net.weight.abs().sum() > 0)
    True
    >>> ending("patience exhausted", 3, 0.2, 1, "val_loss", restored=True, interrupted=False, last_epoch=5)[1]
    'stopped at epoch 3 (patience exhausted); best val_loss=0.2 at epoch 1; weights restored to it'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["WARN_REASONS", "ending", "keep_state", "load_state", "never_logged", "no_best_weights"]

#: Stopping reasons that are a warning, not a normal end: the run broke, it did not converge.
WARN_REASONS = ("non-finite monitored metric", "divergence threshold reached")


def keep_state(
    cache: dict[str, torch.Tensor] | None, state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Copy ``state`` into the CPU ``cache`` (reusing its tensors where shapes and dtypes match); returns it."""
    if cache is None or cache.keys() != state.keys():
        return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
    for k, v in state.items():
        target = cache[k]
        if target.shape == v.shape and target.dtype == v.dtype:
            target.copy_(v.detach())
        else:
            cache[k] = v.detach().to("cpu", copy=True)
    return cache


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``module``'s tensors in place (their device and dtype kept; unknown keys ignored)."""
    current = module.state_dict()
    with torch.no_grad():
        for k, v in state.items():
            if k in current:
                current[k].copy_(v.to(current[k].device, current[k].dtype))


def ending(
    reason: str | None,
    stopped_epoch: int,
    best: float,
    best_epoch: int,
    monitor: str,
    restored: bool,
    interrupted: bool,
    last_epoch: int,
) -> tuple[Literal["pass", "warn"], str, dict[str, Any]]:
    """The closing finding: ``(status, message, numbers)``. ``reason``: why it stopped (``None``: it did not)."""
    numbers: dict[str, Any] = {"best_score": best, "best_epoch": best_epoch, "stopped_epoch": stopped_epoch}
    best_text = f"best {monitor}={best:.4g} at epoch {best_epoch}" + (
        "; weights restored to it" if restored else ""
    )
    if reason is not None:
        numbers["reason"] = reason
        status: Literal["pass", "warn"] = "warn" if reason in WARN_REASONS else "pass"
        return status, f"stopped at epoch {stopped_epoch} ({reason}); {best_text}", numbers
    if interrupted:
        numbers["reason"] = "interrupted"
        return "pass", f"training interrupted; {best_text}", numbers
    numbers["reason"] = "ran to the end"
    message = f"did not stop; {best_text}"
    if best_epoch >= last_epoch:
        message += "; still improving at the end: leave it training longer"
    return "pass", message, numbers


def never_logged(monitor: str, logged: Iterable[str]) -> str:
    """The ``skipped`` message when ``monitor`` was never logged (``logged``: the metric names that were)."""
    return (
        f"skipped, because `{monitor}` was never logged; log it in validation_step or pass "
        f"`monitor=` one of {sorted(logged)}"
    )


def no_best_weights(best_epoch: int) -> str:
    """The warning when the best weights cannot be restored: the run resumed from a checkpoint without them."""
    return (
        f"EarlyStopping: cannot restore the weights of epoch {best_epoch}: the checkpoint this "
        "run resumed from holds no best weights."
    )
