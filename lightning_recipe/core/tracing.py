"""Find the first and the final layer of a model by running it, not by reading its code.

``named_modules()`` lists modules in the order they were *declared*; a model may declare its head
first and its stem last. :func:`trace_layers` runs one forward pass with hooks and lists the
modules that own parameters in the order they *executed*, with their names and output shapes.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.head = nn.Linear(8, 3)      # declared first, runs last
    ...         self.stem = nn.Linear(4, 8)
    ...     def forward(self, x):
    ...         return self.head(torch.relu(self.stem(x)))
    >>> trace = trace_layers(Net(), lambda m: m(torch.randn(2, 4)))
    >>> [(r.name, tuple(r.output_shape)) for r in trace]
    [('stem', (2, 8)), ('head', (2, 3))]
    >>> trace.first.name, trace.final.name
    ('stem', 'head')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_recipe.core.batches import first_tensor
from lightning_recipe.core.errors import ArgumentError

__all__ = ["LayerRecord", "LayerTrace", "find_layer", "trace_layers"]


@dataclass
class LayerRecord:
    """One parametric module as it executed.

    Attributes:
        name: its qualified name in the traced model (``""`` for the root).
        module: the module.
        index: its position in execution order (0 = first).
        input_shape: shape of its first tensor input (``None`` if it had none).
        output_shape: shape of its first tensor output (``None`` if it had none).
        input_dtype: dtype of its first tensor input.
    """

    name: str
    module: nn.Module
    index: int
    input_shape: torch.Size | None
    output_shape: torch.Size | None
    input_dtype: torch.dtype | None = None

    @property
    def type_name(self) -> str:
        return type(self.module).__name__


class LayerTrace(Sequence[LayerRecord]):
    """The parametric modules of a model in execution order (a sequence of :class:`LayerRecord`)."""

    def __init__(self, records: list[LayerRecord], output: Any = None) -> None:
        self._records = records
        self.output = output

    def __getitem__(self, i):  # type: ignore[override]
        return self._records[i]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[LayerRecord]:
        return iter(self._records)

    def __repr__(self) -> str:
        return "LayerTrace(" + ", ".join(f"{r.name}:{r.type_name}" for r in self._records) + ")"

    @property
    def first(self) -> LayerRecord | None:
        """The first parametric module to execute (the layer that sees the input)."""
        return self._records[0] if self._records else None

    @property
    def final(self) -> LayerRecord | None:
        """The last parametric module to execute (usually the head producing the logits)."""
        return self._records[-1] if self._records else None

    def names(self) -> list[str]:
        return [r.name for r in self._records]


def _has_own_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _is_parametric_leaf(module: nn.Module) -> bool:
    """A layer: a module without submodules that owns parameters. A container that also owns a
    parameter (a positional embedding, a ViT ``cls_token``, ``MultiheadAttention``'s in-projection)
    is not a layer: its forward hook fires after its children's, so it would pass for the head."""
    return _has_own_parameters(module) and not any(True for _ in module.children())


def trace_layers(
    model: nn.Module,
    run: Callable[[nn.Module], Any],
    include: Callable[[nn.Module], bool] | None = None,
) -> LayerTrace:
    """Run ``run(model)`` once and record the parametric modules in execution order.

    A module is recorded when it is a parametric leaf (it owns parameters and has no submodules),
    the first time it runs (a module called twice keeps its first position). Containers that also
    own a parameter (a positional embedding, a ViT ``cls_token``) are not layers: their hook would
    fire last, after the real head. Hooks are removed in
    ``finally``. The caller decides grad mode, train/eval mode and state preservation (wrap the
    call in :func:`~lightning_recipe.core.state.preserved_state`).

    Args:
        model: the model whose modules are traced.
        run: called with ``model``; runs the forward pass (e.g. ``lambda m: m(x)``).
        include: optional predicate selecting which modules to record (default: parametric leaves).

    Returns:
        a :class:`LayerTrace`; its ``output`` attribute holds what ``run`` returned.
    """
    select = include or _is_parametric_leaf
    names = {id(m): n for n, m in model.named_modules()}
    records: list[LayerRecord] = []
    seen: set[int] = set()

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        key = id(module)
        if key in seen:
            return
        seen.add(key)
        inp = first_tensor(args)
        out = first_tensor(output)
        records.append(
            LayerRecord(
                name=names.get(key, ""),
                module=module,
                index=len(records),
                input_shape=None if inp is None else inp.shape,
                output_shape=None if out is None else out.shape,
                input_dtype=None if inp is None else inp.dtype,
            )
        )

    handles = [m.register_forward_hook(hook) for m in model.modules() if select(m)]
    try:
        output = run(model)
    finally:
        for h in handles:
            h.remove()
    return LayerTrace(records, output)


def find_layer(model: nn.Module, name: str, owner: str = "layer") -> nn.Module:
    """Return the submodule called ``name`` or raise a ``ValueError`` listing close matches.

    Args:
        model: the model.
        name: a qualified name as in ``named_modules()`` (``"head.fc"``).
        owner: how the caller's argument is spelled in the message (``"FinalBiasInit(layer=...)"``).
    """
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    parametric = [n for n, m in modules.items() if n and _has_own_parameters(m)]
    hint = [n for n in parametric if name.split(".")[-1] in n] or parametric[:10]
    raise ArgumentError(
        f"{owner}={name!r}: no such module in the model; modules with parameters include {hint}."
    )
