"""The state guard: run anything outside the user's own step without changing the training run.

:func:`preserved_state` snapshots, and restores in ``finally``:

* every submodule's ``training`` flag;
* grad mode (``torch.is_grad_enabled()``);
* the Python, NumPy, torch CPU and (if initialised) every CUDA device's RNG state;
* by default, every buffer of the module (BatchNorm running statistics, counters), so a forward
  in train mode leaves no trace;
* optionally (``grads=True``) every parameter's ``.grad``, for checks that call ``backward``;
* the states of the private generators of the given dataloaders (``loaders=``): a
  ``DataLoader(generator=...)`` shuffles with its own generator, which the global RNG state does
  not cover, so a check that iterates the user's loader must restore it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)).train()
    >>> rng = torch.get_rng_state()
    >>> with preserved_state(net):
    ...     _ = net.eval()
    ...     _ = torch.randn(10)                      # consumes random numbers
    >>> net.training, torch.equal(rng, torch.get_rng_state())
    (True, True)
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["RNGState", "loader_generators", "preserved_state"]


class RNGState:
    """A snapshot of the Python, NumPy, torch and CUDA random number generators."""

    def __init__(self) -> None:
        self.python = random.getstate()
        self.numpy = np.random.get_state()
        self.torch = torch.get_rng_state()
        self.cuda: list[torch.Tensor] | None = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.cuda = torch.cuda.get_rng_state_all()

    def restore(self) -> None:
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The private ``torch.Generator`` objects a dataloader (and its samplers) draws from."""
    found: list[torch.Generator] = []
    seen: set[int] = set()
    candidates = [loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)]
    candidates.append(getattr(candidates[-1], "sampler", None))
    for obj in candidates:
        gen = getattr(obj, "generator", None)
        if isinstance(gen, torch.Generator) and id(gen) not in seen:
            seen.add(id(gen))
            found.append(gen)
    return found


@contextmanager
def preserved_state(
    module: nn.Module | None = None,
    buffers: bool = True,
    grads: bool = False,
    loaders: Iterable[Any] = (),
) -> Iterator[None]:
    """Restore the module's modes, buffers (and grads), grad mode and all RNG states on exit.

    Args:
        module: the model (a ``LightningModule`` is an ``nn.Module``); ``None`` guards RNG and
            grad mode only.
        buffers: snapshot and restore every buffer (BatchNorm statistics and the like).
        grads: snapshot and restore every parameter's ``.grad`` (set for checks that backprop).
        loaders: dataloaders whose private generators (``generator=``, the sampler's) to restore.
    """
    rng = RNGState()
    generators = [g for loader in loaders if loader is not None for g in loader_generators(loader)]
    generator_states = [g.get_state() for g in generators]
    grad_enabled = torch.is_grad_enabled()
    modes: list[tuple[nn.Module, bool]] = []
    saved_buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
    saved_grads: list[tuple[nn.Parameter, Any]] = []
    if module is not None:
        modes = [(m, m.training) for m in module.modules()]
        if buffers:
            with torch.no_grad():
                saved_buffers = [(b, b.detach().clone()) for b in module.buffers() if b is not None]
        if grads:
            saved_grads = [
                (p, None if p.grad is None else p.grad.detach().clone()) for p in module.parameters()
            ]
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        if saved_buffers:
            with torch.no_grad():
                for b, copy in saved_buffers:
                    if b.shape == copy.shape:
                        b.copy_(copy)
        for p, g in saved_grads:
            p.grad = g
        torch.set_grad_enabled(grad_enabled)
        rng.restore()
        for g, state in zip(generators, generator_states):
            g.set_state(state)
