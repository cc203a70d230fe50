"""The one way to call a module outside the user's own step, and to read what it returns.

Every check that runs the model (a fixed batch for prediction dynamics, the trace that finds the
first and final layers, the gradient of one sample's output, a dumb baseline's predictions, a
shadow copy's predictions) goes through :class:`ModelCall`, so that a module written as
``forward(x)``, ``forward(**batch)``, ``forward(input_ids, attention_mask, labels=None)`` or
``forward(batch)`` is called the way the user's own ``training_step`` calls it, and a Hugging Face
``ModelOutput``, a dict, a tuple or a plain tensor is read the same way everywhere.

The call convention is inferred from the batch and the signature of ``module.forward``:

* ``forward=`` given by the user: ``forward(module, inputs)`` with the inputs of
  :func:`~lightning_recipe.core.batches.split_batch` (the override, always first);
* a dict batch and a ``forward(**kwargs)`` signature: ``module(**batch)``, the whole dict (the
  Hugging Face style: ``labels`` go in and the model computes its own loss);
* a dict batch and named parameters that match its keys: ``module(**{those keys})`` (target keys
  are held back unless ``forward`` names them);
* a single-argument ``forward(batch)`` (a parameter named ``batch``) and a dict or sequence batch:
  ``module(batch)``;
* otherwise ``module(inputs)``.

When the inferred call raises ``TypeError`` (a signature that does not say how it is called), the
other conventions are tried once, in order, and the first that works is kept.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class HFStyle(nn.Module):                      # forward(**batch), loss inside the model
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = nn.Linear(4, 3)
    ...     def forward(self, **batch):
    ...         logits = self.net(batch["x"])
    ...         return {"loss": nn.functional.cross_entropy(logits, batch["labels"]), "logits": logits}
    >>> batch = {"x": torch.randn(5, 4), "labels": torch.tensor([0, 1, 2, 0, 1])}
    >>> call = ModelCall()
    >>> out = call(HFStyle(), batch)
    >>> call.convention, tuple(out.logits.shape), out.loss is not None
    ('kwargs', (5, 3), True)
    >>> ModelCall()(nn.Linear(4, 3), (torch.randn(2, 4), torch.tensor([0, 1]))).logits.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from lightning_recipe.core.batches import KeySpec, first_tensor, split_batch
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tasks import upsample_to_targets

__all__ = ["Convention", "ModelCall", "ModelOutput", "unpack_output"]

Convention = Literal["custom", "kwargs", "kwargs_inputs", "batch", "positional"]


@dataclass
class ModelOutput:
    """What a model returned, read once.

    Attributes:
        raw: the object the module returned.
        logits: the predictions (``.logits``, ``["logits"]``, a tensor, the first tensor of a tuple
            that does not start with a scalar loss), or ``None``; from :class:`ModelCall`, dense
            logits coarser than the batch's per-pixel targets are upsampled to them, as the loss does.
        loss: a loss the model computed itself (``.loss``, ``["loss"]``, the scalar first element of
            a Hugging Face tuple output), or ``None``.
    """

    raw: Any
    logits: torch.Tensor | None
    loss: torch.Tensor | None


def unpack_output(output: Any) -> ModelOutput:
    """Read ``logits`` and ``loss`` from a model output (tensor, dict, ``ModelOutput``, object, tuple).

    Example:
        >>> import torch
        >>> unpack_output((torch.tensor(0.7), torch.zeros(2, 3))).logits.shape    # (loss, logits)
        torch.Size([2, 3])
        >>> unpack_output({"logits": torch.ones(2)}).loss is None
        True
    """
    if isinstance(output, torch.Tensor):
        return ModelOutput(output, output, None)
    if isinstance(output, Mapping):  # dicts and Hugging Face ModelOutput (an OrderedDict)
        loss = output.get("loss")
        logits = output.get("logits")
        if not isinstance(logits, torch.Tensor):
            logits = next(
                (v for k, v in output.items() if k != "loss" and isinstance(v, torch.Tensor) and v.dim() > 0),
                None,
            )
        return ModelOutput(output, logits, loss if isinstance(loss, torch.Tensor) else None)
    logits = getattr(output, "logits", None)
    loss = getattr(output, "loss", None)
    if isinstance(logits, torch.Tensor) or isinstance(loss, torch.Tensor):
        return ModelOutput(
            output,
            logits if isinstance(logits, torch.Tensor) else None,
            loss if isinstance(loss, torch.Tensor) else None,
        )
    if isinstance(output, Sequence) and not isinstance(output, (str, bytes)):
        items = list(output)
        if (
            len(items) >= 2
            and isinstance(items[0], torch.Tensor)
            and items[0].dim() == 0
            and first_tensor(items[1:]) is not None
        ):
            return ModelOutput(output, first_tensor(items[1:]), items[0])
        return ModelOutput(output, first_tensor(items), None)
    return ModelOutput(output, None, None)


def _signature(module: nn.Module) -> inspect.Signature | None:
    try:
        return inspect.signature(module.forward)
    except (TypeError, ValueError):
        return None


class ModelCall:
    """Call a module on a batch the way the user's step does (see the module docstring).

    Args:
        forward: ``callable(module, inputs) -> output``, the user's override of the convention.
        input_key: where the inputs are in the batch (as in ``split_batch``).
        target_key: where the targets are (held back from a keyword call unless ``forward`` names them).
        hint: what the error says to do when no convention can call the module (a callback without
            a ``forward=`` argument names its own way out; ``""`` for none).

    Attributes:
        convention: the convention in use once a call succeeded (``None`` before).
    """

    def __init__(
        self,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        hint: str = "pass `forward=` (a callable(module, inputs) returning the output)",
    ) -> None:
        if forward is not None and not callable(forward):
            raise TypeError(f"ModelCall(forward={forward!r}): pass a callable(module, inputs) or None.")
        self.forward = forward
        self.input_key = input_key
        self.target_key = target_key
        self.hint = hint
        self.convention: Convention | None = None

    # ------------------------------------------------------------------ conventions
    def candidates(self, module: nn.Module, batch: Any) -> list[Convention]:
        """The conventions to try for ``module`` on ``batch``, most likely first."""
        if self.forward is not None:
            return ["custom"]
        if self.convention is not None:
            return [self.convention]
        sig = _signature(module)
        params = [] if sig is None else [p for p in sig.parameters.values() if p.name != "self"]
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
        named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        order: list[Convention] = []
        if isinstance(batch, Mapping):
            keys = {str(k) for k in batch}
            if var_kw and not positional:
                order.append("kwargs")
            elif named & keys and all(
                p.name in keys
                for p in params
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ):
                order.append("kwargs_inputs")
        if len(positional) == 1 and positional[0].name == "batch" and not isinstance(batch, torch.Tensor):
            order.append("batch")
        order.append("positional")
        if isinstance(batch, Mapping):
            order += ["kwargs_inputs", "kwargs", "batch"]
        elif not isinstance(batch, torch.Tensor):
            order.append("batch")
        seen: list[Convention] = []
        for c in order:
            if c not in seen:
                seen.append(c)
        return seen

    def inputs(self, module: nn.Module, batch: Any, convention: Convention | None = None) -> Any:
        """What the convention passes to the module: a tensor, a dict of keyword arguments, or the batch."""
        convention = convention or self.convention or self.candidates(module, batch)[0]
        if convention == "kwargs":
            return dict(batch)
        if convention == "kwargs_inputs":
            sig = _signature(module)
            names = set() if sig is None else set(sig.parameters)
            return {k: v for k, v in batch.items() if k in names}
        if convention == "batch":
            return batch
        return split_batch(batch, input_key=self.input_key, target_key=self.target_key).inputs

    def invoke(self, module: nn.Module, inputs: Any, convention: Convention) -> Any:
        """Call ``module`` with ``inputs`` prepared for ``convention`` (see :meth:`inputs`)."""
        if convention == "custom":
            assert self.forward is not None
            return self.forward(module, inputs)
        if convention in ("kwargs", "kwargs_inputs"):
            return module(**inputs)
        return module(inputs)

    # ------------------------------------------------------------------ the call
    def __call__(
        self,
        module: nn.Module,
        batch: Any,
        *,
        grad: bool = False,
        train: bool | None = False,
        context: contextlib.AbstractContextManager[Any] | None = None,
        guard: bool = True,
        transform: Callable[[Any], Any] | None = None,
    ) -> ModelOutput:
        """Run ``module`` on ``batch`` and unpack its output.

        Args:
            module: the model.
            batch: a batch as the dataloader yields it.
            grad: run with autograd on (``torch.no_grad()`` otherwise).
            train: put the module in train (``True``) or eval (``False``) mode for the call;
                ``None`` leaves the modes as they are.
            context: the trainer's precision context (``trainer.precision_plugin.forward_context()``).
            guard: run inside :func:`~lightning_recipe.core.state.preserved_state` (modes, buffers,
                grad mode and RNG states restored afterwards).
            transform: applied to the prepared inputs before the call (e.g. to make them require grad).

        Raises:
            TypeError: no convention could call the module; the message says how it was tried
                and names ``forward=``.
        """
        with self._guarded(module, guard):
            if train is not None:
                module.train(train)
            with torch.set_grad_enabled(grad), context or contextlib.nullcontext():
                out = unpack_output(self._call(module, batch, transform))
                return self._at_target_size(out, batch)

    def _at_target_size(self, out: ModelOutput, batch: Any) -> ModelOutput:
        """``out`` with dense logits coarser than the batch's per-pixel targets upsampled to them, as
        the model's own loss does (:func:`~lightning_recipe.core.tasks.upsample_to_targets`)."""
        if not isinstance(out.logits, torch.Tensor) or out.logits.dim() != 4:
            return out
        try:
            targets = split_batch(batch, input_key=self.input_key, target_key=self.target_key).targets
        except ValueError:
            return out
        logits = upsample_to_targets(out.logits, targets)
        return out if logits is out.logits else ModelOutput(out.raw, logits, out.loss)

    def _call(self, module: nn.Module, batch: Any, transform: Callable[[Any], Any] | None) -> Any:
        tried: list[str] = []
        first_error: TypeError | None = None
        for convention in self.candidates(module, batch):
            try:
                inputs = self.inputs(module, batch, convention)
            except (TypeError, ValueError, KeyError):
                continue
            if transform is not None:
                inputs = transform(inputs)
            try:
                out = self.invoke(module, inputs, convention)
            except TypeError as err:
                if convention == "custom":
                    raise
                tried.append(_describe(convention))
                first_error = first_error or err
                continue
            self.convention = convention
            return out
        raise TypeError(
            f"could not call the module on the batch (tried {', '.join(tried) or 'nothing'}: "
            f"{first_error})" + (f"; {self.hint}" if self.hint else "")
        )

    @staticmethod
    @contextlib.contextmanager
    def _guarded(module: nn.Module, guard: bool) -> Iterator[None]:
        if not guard:
            yield
            return
        with preserved_state(module):
            yield

    def describe(self) -> str:
        """How the module is called, in words (for messages)."""
        return _describe(self.convention or "positional")


def _describe(convention: Convention) -> str:
    return {
        "custom": "forward=(module, inputs)",
        "kwargs": "module(**batch)",
        "kwargs_inputs": "module(**inputs)",
        "batch": "module(batch)",
        "positional": "module(inputs)",
    }[convention]
