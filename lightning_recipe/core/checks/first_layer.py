"""FirstLayerFilters' checks: find the first layer by running the model, keep its filters at init, judge them.

No Lightning here. :func:`trace_first_layer` runs the model through
:class:`~lightning_recipe.core.model_call.ModelCall` (so a ``forward(x)``, ``forward(**batch)`` or
``forward(batch)`` module is called the way its own step calls it) and returns the first module
with parameters to execute. :class:`FilterState` is what a run keeps (and checkpoints);
:func:`noise_verdict` and :func:`identical_verdict` return ``(status, message, numbers)`` tuples.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from lightning_recipe.core.model_call import ModelCall
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    >>> trace_first_layer(net, (torch.rand(8, 1, 8, 8), torch.zeros(8)), ModelCall()).name
    '0'
    >>> state = FilterState()
    >>> state.observe(filter_tiles(net[0].weight), step=0)[1]   # no change from the init at step 0
    0.0
    >>> identical_verdict(state, torch.ones(4, 1, 3, 3), "0")[1][:35]
    "4 of 4 filters of '0' are identical"
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_recipe.core.batches import first_tensor, map_tensors
from lightning_recipe.core.filters import (
    filter_tiles,
    grey_mode,
    identical_filters,
    image_shape_for,
    relative_change,
    smoothness,
)
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.tracing import LayerRecord, trace_layers
from lightning_recipe.findings import Skip, Status

__all__ = [
    "BARELY_MOVED",
    "MIN_STRUCTURE_SIZE",
    "NOISE_GAIN",
    "NOISE_SMOOTHNESS",
    "FilterState",
    "Verdict",
    "check_arguments",
    "dense_image_shape",
    "identical_verdict",
    "model_input_shape",
    "no_targets",
    "no_weight_message",
    "noise_verdict",
    "not_filters_message",
    "tiles_of",
    "trace_first_layer",
    "traced_layer",
    "untraceable_message",
    "weight_of",
]

Verdict = tuple[Status, str, dict[str, Any]]

#: Filters whose smoothness gained less than this over their init, and stay below
#: :data:`NOISE_SMOOTHNESS`, "still look like noise" (calibrated on digits: healthy 3x3 CNN
#: filters gain 0.2 to 0.35 within the first epochs; scrambled inputs and shuffled labels gain < 0).
NOISE_GAIN = 0.05
NOISE_SMOOTHNESS = 0.15
#: ...provided they barely moved (relative change below this) or what training added has no
#: spatial structure either (smoothness of the change below :data:`NOISE_GAIN`).
BARELY_MOVED = 0.05
#: Spatial structure is judged only on filters at least this wide and high: 3x3 kernels (and any
#: kernel followed by normalisation) train into healthy filters that need not look smooth.
MIN_STRUCTURE_SIZE = 5


# ---------------------------------------------------------------------- the layer and its filters
def _head(inputs: Any) -> Any:
    """The first two rows of every batched tensor (enough to see which layer runs first)."""
    return map_tensors(inputs, lambda t: t[:2] if t.dim() else t)


def trace_first_layer(
    model: nn.Module,
    batch: Any,
    call: ModelCall,
    context: contextlib.AbstractContextManager[Any] | None = None,
) -> LayerRecord:
    """The first module with parameters to execute when ``model`` runs on (two rows of) ``batch``.

    Runs in eval mode, without gradients, in ``context`` (the trainer's precision), inside the state
    guard. Raises what the call raises, and :class:`~lightning_recipe.findings.Skip` when no module
    with parameters ran.
    """

    def run(m: nn.Module) -> Any:
        return call(m, batch, context=context, transform=_head)

    first_try = call.candidates(model, batch)[0]
    trace = trace_layers(model, run)
    if call.convention != first_try:  # the conventions that failed first may have run some layers
        trace = trace_layers(model, run)
    if trace.first is None:
        raise Skip("the model ran no module with parameters; pass `layer=`.")
    return trace.first


def model_input_shape(model: nn.Module, batch: Any, call: ModelCall, inputs: Any) -> tuple[int, ...] | None:
    """The shape of the model's input (``inputs`` when the batch split found them, else what the call passes)."""
    if inputs is None:
        try:
            inputs = call.inputs(model, batch)
        except (TypeError, ValueError, KeyError):
            return None
    x = first_tensor(inputs)
    return None if x is None else tuple(x.shape)


def weight_of(module: nn.Module) -> torch.Tensor | None:
    """The layer's ``weight``, else its first parameter with a dimension, else ``None``."""
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight
    return next((p for p in module.parameters(recurse=False) if p.dim() >= 1), None)


def dense_image_shape(
    module: nn.Module, weight: torch.Tensor, input_shape: Sequence[int] | None
) -> tuple[int, int, int] | None:
    """For a dense layer reading a flattened image, that image's ``(C, H, W)``; else ``None``."""
    if isinstance(module, nn.Linear) or (weight.dim() == 2 and not isinstance(module, nn.Embedding)):
        return image_shape_for(int(weight.shape[1]), input_shape)
    return None


def tiles_of(
    weight: torch.Tensor, image_shape: tuple[int, int, int] | None, max_filters: int
) -> np.ndarray | None:
    """The filters as tiles: a 4-D (conv) weight, or a 2-D one over a flattened image; else ``None``."""
    if weight.dim() == 4:
        return filter_tiles(weight, max_filters=max_filters)
    if weight.dim() == 2 and image_shape is not None:
        return filter_tiles(weight, image_shape, max_filters=max_filters)
    return None


def untraceable_message(err: Exception, no_inputs: Exception | None) -> str:
    """Why the first layer could not be traced: the batch split found no inputs (``no_inputs``) and no
    call convention worked, or calling the model raised ``err``."""
    if no_inputs is not None:
        reason = str(no_inputs).strip().rstrip(".")
        hint = "" if "`input_key=`" in reason else "; pass `input_key=`"
        return f"skipped, because {reason}{hint} (or `layer=`, the first layer's module name)."
    return (
        f"could not trace the model on a training batch to find its first layer "
        f"({type(err).__name__}: {err}); pass `layer=` (a module name)."
    )


def no_weight_message(name: str, module: nn.Module) -> str:
    """Why a layer without a weight is not shown."""
    return f"layer {name!r} ({type(module).__name__}) has no weight; pass `layer=`."


def not_filters_message(name: str, module: nn.Module, weight: torch.Tensor, input_shape: Any) -> str:
    """Why a first layer is shown as a histogram only."""
    return (
        f"first layer {name!r} is a {type(module).__name__} with weight {tuple(weight.shape)}, not image "
        f"filters (input {input_shape}); logging its weight histogram only."
    )


# ---------------------------------------------------------------------- what a run keeps
@dataclass
class FilterState:
    """The filters at init, the verdicts so far and what was logged (kept in the checkpoint).

    Attributes:
        layer_name: the layer shown.
        init_tiles: its tiles at init (step 0), or ``None`` before.
        init_smoothness: their smoothness.
        noise_verdict: ``"pass"`` or ``"warn"`` once judged.
        identical_warned: the identical-filters warning was given.
        history: ``(global_step, smoothness, change_from_init)`` per logged point.
        last_logged_step: the step of the latest log (``-1``: none yet).
    """

    layer_name: str | None = None
    init_tiles: np.ndarray | None = None
    init_smoothness: float = math.nan
    noise_verdict: str | None = None
    identical_warned: bool = False
    history: list[tuple[int, float, float]] = field(default_factory=list)
    last_logged_step: int = -1

    def state_dict(self) -> dict[str, Any]:
        tiles = self.init_tiles
        return {
            "layer_name": self.layer_name,
            "init_tiles": None if tiles is None else torch.from_numpy(tiles.copy()),
            "init_smoothness": self.init_smoothness,
            "noise_verdict": self.noise_verdict,
            "identical_warned": self.identical_warned,
            "history": [list(h) for h in self.history],
            "last_logged_step": self.last_logged_step,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FilterState:
        """Read :meth:`state_dict` (missing keys, from older checkpoints, load as "nothing yet")."""
        tiles = state.get("init_tiles")
        if isinstance(tiles, torch.Tensor):
            tiles = tiles.numpy()
        return cls(
            layer_name=state.get("layer_name"),
            init_tiles=None if tiles is None else np.asarray(tiles, dtype=np.float64),
            init_smoothness=float(state.get("init_smoothness", math.nan)),
            noise_verdict=state.get("noise_verdict"),
            identical_warned=bool(state.get("identical_warned", False)),
            history=[tuple(h) for h in state.get("history", [])],  # type: ignore[misc]
            last_logged_step=int(state.get("last_logged_step", -1)),
        )

    def observe(self, tiles: np.ndarray, step: int) -> tuple[float, float]:
        """Add one logged point: ``(smoothness, change_from_init)``; step 0 (or the first) is the init."""
        if self.init_tiles is None or step == 0:
            self.init_tiles = tiles.copy()
            self.init_smoothness = smoothness(tiles)
        smooth = smoothness(tiles)
        same = self.init_tiles.shape == tiles.shape
        change = relative_change(tiles, self.init_tiles) if same else math.nan
        self.history.append((step, smooth, change))
        return smooth, change

    def scalars(self, prefix: str, smooth: float, change: float) -> dict[str, float]:
        """The logged point's scalars under ``prefix``."""
        values = {prefix + "change_from_init": change}
        if math.isfinite(smooth):
            values[prefix + "smoothness"] = smooth
            values[prefix + "smoothness_gain"] = smooth - self.init_smoothness
        return values


# ---------------------------------------------------------------------- verdicts
def identical_verdict(state: FilterState, weight: torch.Tensor, layer: str | None) -> Verdict | None:
    """``warn`` (once) when filters are copies of each other: symmetry never broken."""
    if state.identical_warned or weight.dim() < 2 or weight.shape[0] < 2:
        return None
    mask = identical_filters(weight)
    copies = int(mask.sum())
    if not copies:
        return None
    state.identical_warned = True
    return (
        "warn",
        f"{copies} of {mask.size} filters of {layer!r} are identical copies of another filter: "
        "symmetry was never broken (a constant or zero init?); initialise the weights randomly.",
        {"identical": copies, "filters": int(mask.size), "layer": layer},
    )


def noise_verdict(
    state: FilterState,
    weight: torch.Tensor,
    tiles: np.ndarray,
    smooth: float,
    change: float,
    epochs_done: int,
    after: int | None,
) -> Verdict | None:
    """Once, from epoch ``after`` on: ``warn`` when the filters still look like their init, else ``pass``.

    Not judged for a frozen layer or without a finite smoothness (at init and now).
    """
    if after is None or epochs_done < after or state.noise_verdict is not None or state.init_tiles is None:
        return None
    init = state.init_smoothness
    if not weight.requires_grad or not math.isfinite(smooth) or not math.isfinite(init):
        return None
    gain = smooth - init
    same = state.init_tiles.shape == tiles.shape
    delta = smoothness(tiles - state.init_tiles) if same else math.nan
    layer = state.layer_name
    numbers = {
        "smoothness": smooth,
        "smoothness_at_init": init,
        "smoothness_gain": gain,
        "smoothness_of_change": delta,
        "change_from_init": change,
        "epochs": epochs_done,
        "layer": layer,
        "mode": grey_mode(int(weight.shape[1])) if weight.dim() == 4 else "linear",
    }
    still_noise = gain < NOISE_GAIN and smooth < NOISE_SMOOTHNESS
    unstructured = min(tiles.shape[-2:]) >= MIN_STRUCTURE_SIZE and (
        not math.isfinite(delta) or delta < NOISE_GAIN
    )
    status: Status = "warn" if still_noise and (change < BARELY_MOVED or unstructured) else "pass"
    state.noise_verdict = status
    if status == "pass":
        message = (
            f"first-layer filters of {layer!r} after {epochs_done} epochs: smoothness {smooth:.2f} "
            f"({gain:+.2f} over init), {change:.0%} change from init"
        )
    elif change < BARELY_MOVED:
        message = (
            f"first-layer filters of {layer!r} still look like their random init after {epochs_done} "
            f"epochs: they barely moved ({change:.1%} change, smoothness {smooth:.2f} vs {init:.2f} "
            "at init); raise the learning rate, or check that the layer is not frozen or its gradient cut."
        )
    else:
        message = (
            f"first-layer filters of {layer!r} still look like noise after {epochs_done} epochs: "
            f"smoothness {smooth:.2f} vs {init:.2f} at init, and what training added has no "
            f"spatial structure ({delta:.2f}); check the inputs are not scrambled (a wrong reshape/permute), "
            "that labels match inputs, and the learning rate."
        )
    return status, message, numbers


def no_targets(batch: Any) -> None:
    """The ``target_key`` of the split: the filters need only the inputs, whatever the targets are."""
    return None


def check_arguments(owner: str, every_n_epochs: Any, max_filters: Any, check_after: Any, layer: Any) -> None:
    """Validate FirstLayerFilters' ``every_n_epochs``, ``max_filters``, ``check_noise_after_epochs``, ``layer``."""
    from lightning_recipe.core.arguments import check_positive_int

    check_positive_int(owner, "every_n_epochs", every_n_epochs, allow_none=True)
    check_positive_int(owner, "max_filters", max_filters)
    check_positive_int(owner, "check_noise_after_epochs", check_after, allow_none=True)
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"{owner}(layer={layer!r}): pass the qualified module name as a string, or None.")


def traced_layer(
    module: nn.Module, batch: Any, call: Any, context: Any, no_inputs: Exception | None
) -> tuple[str, nn.Module]:
    """``(name, module)`` of the first layer to execute on ``batch``.

    Raises:
        Skip: when it cannot be traced; ``skip.model_failed`` when the model failed to run.
    """
    try:
        first = trace_first_layer(module, batch, call, context)
    except Skip:
        raise
    except Exception as err:
        skip = Skip(untraceable_message(err, no_inputs))
        skip.model_failed = True  # type: ignore[attr-defined]
        raise skip from err
    return first.name, first.module
