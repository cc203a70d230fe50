"""Split a batch into the model's inputs and its targets.

Lightning hands a callback the batch exactly as the dataloader produced it: a tensor, a tuple or
list ``(x, y, ...)``, or a dict. :func:`split_batch` finds the inputs and the targets in it; every
inference can be overridden with a key, a position, or a callable.

Example:
    >>> import torch
    >>> parts = split_batch({"image": torch.zeros(4, 3), "label": torch.tensor([0, 1, 1, 0])})
    >>> parts.inputs.shape, parts.targets.tolist(), parts.input_key, parts.target_key
    (torch.Size([4, 3]), [0, 1, 1, 0], 'image', 'label')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lightning_recipe.core.errors import ArgumentError

__all__ = [
    "INPUT_KEYS",
    "TARGET_KEYS",
    "BatchParts",
    "KeySpec",
    "batch_size_of",
    "first_tensor",
    "map_tensors",
    "split_batch",
    "validate_key_spec",
]

#: Dict keys recognised as the model's inputs, in order of preference.
INPUT_KEYS = ("x", "input", "inputs", "image", "images", "img", "features", "input_ids", "data")
#: Dict keys recognised as the targets, in order of preference.
TARGET_KEYS = (
    "y",
    "target",
    "targets",
    "label",
    "labels",
    "lbl",
    "class",
    "classes",
    "mask",
    "masks",
    "segmentation",
)

#: How a user points at the inputs or targets: a dict key, a position in a tuple/list, or a
#: callable taking the batch and returning the part.
KeySpec = str | int | Callable[[Any], Any] | None


@dataclass
class BatchParts:
    """The two halves of a batch.

    Attributes:
        inputs: what goes into the model (a tensor, or a structure of tensors).
        targets: the targets, or ``None`` when the batch has none.
        input_key: where the inputs were found (key, position or ``"callable"``).
        target_key: where the targets were found, or ``None``.
    """

    inputs: Any
    targets: torch.Tensor | None
    input_key: str | int | None = None
    target_key: str | int | None = None


def validate_key_spec(value: Any, owner: str, argument: str) -> None:
    """Raise a ``TypeError`` naming ``owner(argument=...)`` unless ``value`` is a valid key spec."""
    if value is None or isinstance(value, (str, int)) or callable(value):
        if isinstance(value, bool):
            raise TypeError(
                f"{owner}({argument}={value!r}): expected a dict key (str), a position (int) or a "
                "callable taking the batch; got a bool."
            )
        return
    raise TypeError(
        f"{owner}({argument}={value!r}): expected a dict key (str), a position (int) or a callable "
        f"taking the batch; got {type(value).__name__}."
    )


def _pick(batch: Any, spec: str | int | Callable[[Any], Any], argument: str) -> tuple[Any, str | int]:
    if callable(spec) and not isinstance(spec, (str, int)):
        return spec(batch), "callable"
    if isinstance(spec, str):
        if not isinstance(batch, Mapping):
            raise ArgumentError(
                f"{argument}={spec!r} names a dict key, but the batch is a {type(batch).__name__}; "
                f"pass {argument}= as a position (int) or a callable."
            )
        if spec not in batch:
            raise ArgumentError(
                f"{argument}={spec!r}: no such key in the batch; its keys are {sorted(map(str, batch))}."
            )
        return batch[spec], spec
    if isinstance(batch, Mapping) or not isinstance(batch, Sequence) or isinstance(batch, (str, bytes)):
        raise ArgumentError(
            f"{argument}={spec!r} is a position, but the batch is a {type(batch).__name__}; "
            f"pass {argument}= as a dict key (str) or a callable."
        )
    if not -len(batch) <= spec < len(batch):
        raise ArgumentError(f"{argument}={spec!r}: the batch has only {len(batch)} elements.")
    return batch[spec], spec


def split_batch(
    batch: Any,
    input_key: KeySpec = None,
    target_key: KeySpec = None,
    require_targets: bool = False,
) -> BatchParts:
    """Split ``batch`` into inputs and targets.

    Inference, when no key is given:

    * a tensor: all of it is the input, there are no targets;
    * a tuple or list: element 0 is the input, element 1 (if any) the targets;
    * a dict: the first of :data:`INPUT_KEYS` / :data:`TARGET_KEYS` present (case-insensitive).

    Args:
        batch: the batch as the dataloader produced it.
        input_key: where the inputs are: a dict key, a position, or ``callable(batch)``.
        target_key: where the targets are: a dict key, a position, or ``callable(batch)``.
        require_targets: raise when no targets are found, instead of returning ``None``.

    Raises:
        ValueError: when the inputs (or required targets) cannot be found; the message names the
            ``input_key=`` / ``target_key=`` argument that resolves it.

    Example:
        >>> import torch
        >>> split_batch((torch.ones(2, 3), torch.tensor([1, 0]))).targets
        tensor([1, 0])
        >>> split_batch(torch.ones(2, 3)).targets is None
        True
    """
    targets: Any = None
    t_key: str | int | None = None
    if input_key is not None:
        inputs, i_key = _pick(batch, input_key, "input_key")
    elif isinstance(batch, Mapping):
        found = _find_key(batch, INPUT_KEYS)
        if found is None:
            tensor_keys = [
                k
                for k, v in batch.items()
                if isinstance(v, torch.Tensor) and k != _find_key(batch, TARGET_KEYS)
            ]
            if len(tensor_keys) == 1:
                found = tensor_keys[0]
            else:
                raise ValueError(
                    f"found no inputs in a dict batch with keys {sorted(map(str, batch))}; pass `input_key=`."
                )
        inputs, i_key = batch[found], found
    elif isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        if len(batch) == 0:
            raise ValueError("the batch is an empty sequence; pass `input_key=` as a callable.")
        inputs, i_key = batch[0], 0
    elif isinstance(batch, torch.Tensor):
        inputs, i_key = batch, None
    else:
        raise ValueError(
            f"cannot find the inputs in a batch of type {type(batch).__name__}; pass `input_key=` "
            "(a callable taking the batch and returning the inputs)."
        )

    if target_key is not None:
        targets, t_key = _pick(batch, target_key, "target_key")
    elif isinstance(batch, Mapping):
        found = _find_key(batch, TARGET_KEYS)
        if found is not None:
            targets, t_key = batch[found], found
    elif (
        isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)) and len(batch) >= 2 and i_key == 0
    ):
        targets, t_key = batch[1], 1

    if targets is not None and not isinstance(targets, torch.Tensor):
        if isinstance(targets, (int, float)) or (
            isinstance(targets, Sequence) and targets and isinstance(targets[0], (int, float))
        ):
            targets = torch.as_tensor(targets)
        else:
            raise ValueError(
                f"the targets found at {t_key!r} are a {type(targets).__name__}, not a tensor; pass "
                "`target_key=` (a callable taking the batch and returning the target tensor)."
            )
    if targets is None and require_targets:
        layout = (
            f"a dict batch with keys {sorted(map(str, batch))}"
            if isinstance(batch, Mapping)
            else f"a batch of type {type(batch).__name__}"
            + (f" with {len(batch)} element(s)" if isinstance(batch, Sequence) else "")
        )
        raise ValueError(f"found no targets in {layout}; pass `target_key=`.")
    return BatchParts(inputs=inputs, targets=targets, input_key=i_key, target_key=t_key)


def _find_key(batch: Mapping, candidates: Sequence[str]) -> Any:
    lowered = {str(k).lower(): k for k in batch}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    return None


def first_tensor(obj: Any) -> torch.Tensor | None:
    """Return the first tensor found in a (nested) tensor / sequence / mapping, or ``None``."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        for item in obj:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def batch_size_of(obj: Any) -> int | None:
    """Size of the leading dimension of the first tensor in ``obj`` (``None`` if it has none)."""
    tensor = first_tensor(obj)
    if tensor is None or tensor.dim() == 0:
        return None
    return int(tensor.shape[0])


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Apply ``fn`` to every tensor of a nested structure, keeping the structure (tuples, lists, dicts)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        mapped = {k: map_tensors(v, fn) for k, v in obj.items()}
        try:
            return type(obj)(mapped)
        except TypeError:
            return mapped
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(map_tensors(v, fn) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj
