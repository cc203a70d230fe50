"""FirstLayerFilters: the recipe's "visualize the first-layer weights"."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.batches import KeySpec, first_tensor, map_tensors
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.filters import (
    filter_tiles,
    grey_mode,
    identical_filters,
    image_shape_for,
    relative_change,
    smoothness,
)
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.tracing import find_layer, trace_layers
from lightning_recipe.plots.style import to_display_images

__all__ = ["FirstLayerFilters", "filter_grid"]

_PREFIX = "recipe/first_layer/"
#: Filters whose smoothness gained less than this over their init, and stay below
#: :data:`_NOISE_SMOOTHNESS`, "still look like noise" (calibrated on digits: healthy 3x3 CNN
#: filters gain 0.2 to 0.35 within the first epochs; scrambled inputs and shuffled labels gain < 0).
_NOISE_GAIN = 0.05
_NOISE_SMOOTHNESS = 0.15
#: ...provided they barely moved (relative change below this) or what training added has no
#: spatial structure either (smoothness of the change below :data:`_NOISE_GAIN`).
_BARELY_MOVED = 0.05
#: Spatial structure is judged only on filters at least this wide and high: 3x3 kernels (and any
#: kernel followed by normalisation) train into healthy filters that need not look smooth.
_MIN_STRUCTURE_SIZE = 5


def filter_grid(tiles: np.ndarray, ncols: int | None = None) -> np.ndarray:
    """The tiles as one ``(H, W, 3)`` uint8 grid: each scaled to its own range, about 48 px a tile, blue-grey gaps.

    Example:
        >>> filter_grid(np.random.default_rng(0).normal(size=(5, 1, 3, 3))).shape   # 3 x 2 tiles of 48 px, 5 px gaps
        (111, 164, 3)
    """
    n, _, h, w = tiles.shape
    scale = max(1, min(16, round(48 / max(h, w))))
    pad = max(1, scale // 3)
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    x = to_display_images(tiles, per_image=True).repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = h * scale, w * scale
    grid = np.empty((nrows * th + (nrows + 1) * pad, ncols * tw + (ncols + 1) * pad, 3), np.float32)
    grid[...] = np.array([70, 90, 120], np.float32) / 255
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = pad + r * (th + pad), pad + c * (tw + pad)
        grid[top : top + th, left : left + tw] = x[i]
    return (grid * 255).round().astype(np.uint8)


def _weight_of(module: nn.Module) -> torch.Tensor | None:
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight
    return next((p for p in module.parameters(recurse=False) if p.dim() >= 1), None)


def _no_targets(batch: Any) -> None:
    """The ``target_key`` of the split: the filters need only the inputs, whatever the targets are."""
    return None


class FirstLayerFilters(RecipeCallback):
    """Show the first layer's filters at init and every N epochs, and say when they still look like noise.

    Recipe, "visualize the first-layer weights" (tips for the overfitting stage): learned first-layer
    filters on natural data are smooth; filters that still look like their random init after
    training, or that are all copies of each other, point at a problem.

    The first layer is the first module with parameters **to execute** (traced on the first
    training batch, not the first declared); override with ``layer=``. It is shown:

    * ``Conv2d``: one tile per filter (the first ``max_filters``), each scaled to its own range;
      RGB when the layer has 3 input channels (4: the first three), grey for 1, the mean over input
      channels otherwise;
    * ``Linear`` reading a flattened image (its ``in_features`` equal to C*H*W of the model's input
      batch): each row reshaped to that image;
    * anything else (embeddings, 1-D convolutions, tabular inputs): weight histogram only, and a
      ``skipped`` finding for the image.

    TensorBoard, at step 0 (the init) and at the end of every ``every_n_epochs`` epochs, under
    ``recipe/first_layer/``: ``filters`` (Images: the grid), ``weights`` (Histograms), and the
    scalars ``smoothness`` (mean correlation of neighbouring weights within a filter: about 0 for
    noise, towards 1 for smooth blobs and edges), ``smoothness_gain`` (smoothness now minus at
    init) and ``change_from_init`` (``||W - W0|| / ||W0||``).

    Findings: ``warn`` when, after ``check_noise_after_epochs`` epochs, the filters are still as
    noise-like as at init (smoothness gained less than 0.05 and stays below 0.15) and either
    barely moved (< 5 % change) or moved without spatial structure (the change itself is noise);
    ``pass`` otherwise. ``warn`` for identical filters (symmetry never broken, e.g. a constant init).
    Layers without trainable parameters (frozen, pretrained) are not judged for noise. Small
    kernels (3x3) give noisier numbers than 5x5 or 7x7; the verdict compares with the layer's own
    init, never with a fixed bar alone.

    Args:
        every_n_epochs: log at the end of every this many epochs (and at step 0).
        layer: qualified module name of the layer to show (``"backbone.conv1"``); traced by default.
        max_filters: show at most this many filters.
        check_noise_after_epochs: judge "still noise" from this epoch on (``None``: never judge).
        input_key: where the inputs are in the batch (for tracing and the image shape); inferred by default.
        on_fail: ``"warn"`` or ``"raise"``.

    Attributes:
        findings: the findings of the current run.
        layer_name: the name of the layer shown (after the first training batch).
        history: ``(global_step, smoothness, change_from_init)`` per logged point.

    Example:
        >>> import torch, warnings
        >>> from lightning.pytorch import LightningModule, Trainer
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> class Net(LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.head = torch.nn.Linear(4 * 6 * 6, 2)
        ...         self.conv = torch.nn.Conv2d(1, 4, 3)           # declared second, runs first
        ...     def forward(self, x):
        ...         return self.head(self.conv(x).flatten(1))
        ...     def training_step(self, batch, batch_idx):
        ...         return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> data = TensorDataset(torch.rand(16, 1, 8, 8), torch.randint(0, 2, (16,)))
        >>> filters = FirstLayerFilters()
        >>> trainer = Trainer(max_epochs=1, logger=False, callbacks=[filters], enable_progress_bar=False,
        ...                   enable_model_summary=False, enable_checkpointing=False,
        ...                   default_root_dir=getfixture("tmp_path"))
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(Net(), DataLoader(data, batch_size=8))
        >>> filters.layer_name, [step for step, _, _ in filters.history]
        ('conv', [0, 2])
    """


    def __init__(
        self,
        every_n_epochs: int = 1,
        layer: str | None = None,
        max_filters: int = 64,
        check_noise_after_epochs: int | None = 5,
        input_key: KeySpec = None,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail=on_fail)
        owner = type(self).__name__
        check_positive_int(owner, "every_n_epochs", every_n_epochs)
        check_positive_int(owner, "max_filters", max_filters)
        check_positive_int(owner, "check_noise_after_epochs", check_noise_after_epochs, allow_none=True)
        if layer is not None and not isinstance(layer, str):
            raise TypeError(f"{owner}(layer={layer!r}): pass the qualified module name as a string, or None.")
        self.validate_keys(owner, input_key, None)
        self.every_n_epochs = every_n_epochs
        self.layer = layer
        self.max_filters = max_filters
        self.check_noise_after_epochs = check_noise_after_epochs
        self.input_key = input_key
        self.layer_name: str | None = None
        self.history: list[tuple[int, float, float]] = []
        self._module: nn.Module | None = None
        self._image_shape: tuple[int, int, int] | None = None
        self._init_tiles: np.ndarray | None = None
        self._init_smoothness = math.nan
        self._resolved = False
        self._last_logged_step = -1
        self._noise_verdict: str | None = None
        self._identical_warned = False
        self._restored: dict[str, Any] | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layer=self.layer)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self.layer_name = None
            self.history = []
            self._module = None
            self._image_shape = None
            self._init_tiles = None
            self._init_smoothness = math.nan
            self._resolved = False
            self._last_logged_step = -1
            self._noise_verdict = None
            self._identical_warned = False
            if self.layer is not None:
                find_layer(pl_module, self.layer, owner=f"{self.name}: layer")  # fail before step 0

    # ------------------------------------------------------------------ hooks
    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._resolved or self.should_skip(trainer):
            return
        self._resolved = True
        self._resolve(trainer, pl_module, batch)
        if self._module is not None and trainer.global_step == 0 and self._last_logged_step != 0:
            self._log(trainer, step=0, epochs_done=0)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epochs_done = trainer.current_epoch + 1
        if epochs_done % self.every_n_epochs or self._module is None or self.should_skip(trainer):
            return
        if trainer.global_step == self._last_logged_step:
            return
        self._log(trainer, step=int(trainer.global_step), epochs_done=epochs_done)

    # ------------------------------------------------------------------ resolution
    def _resolve(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> None:
        module: nn.Module | None = None
        name = self.layer
        if name is None and self._restored is not None:
            name = self._restored.get("layer_name")
        try:
            inputs = self.split(batch, self.input_key, _no_targets).inputs
        except ArgumentError:
            raise
        except ValueError as err:
            if name is None:  # the inputs are needed to find the first layer
                reason = str(err).strip().rstrip(".")
                hint = "" if "`input_key=`" in reason else "; pass `input_key=`"
                message = f"skipped, because {reason}{hint} (or `layer=`, the first layer's module name)."
                self.warn(f"{self.name}: {message}")
                self.record(trainer, "skipped", message)
                return
            inputs = None  # the layer is known: only the image shape of a dense layer needs them
        x = first_tensor(inputs)
        input_shape = None if x is None else tuple(x.shape)
        if name is not None:
            module = find_layer(pl_module, name, owner=f"{self.name}: layer")
        else:
            head = map_tensors(inputs, lambda t: t[:2])
            try:
                context = trainer.precision_plugin.forward_context()
            except Exception:  # pragma: no cover - every precision plugin has one
                context = nullcontext()
            try:
                with preserved_state(pl_module), torch.no_grad(), context:
                    pl_module.eval()
                    trace = trace_layers(pl_module, lambda m: m(head))
            except Exception as err:
                self.record(
                    trainer,
                    "skipped",
                    f"could not trace the model on a training batch to find its first layer "
                    f"({type(err).__name__}: {err}); pass `layer=` (a module name).",
                )
                return
            if trace.first is None:
                self.record(trainer, "skipped", "the model ran no module with parameters; pass `layer=`.")
                return
            module, name = trace.first.module, trace.first.name
        assert module is not None and name is not None
        self._module = module
        self.layer_name = name
        weight = _weight_of(module)
        if weight is None:
            self._module = None
            self.record(
                trainer, "skipped", f"layer {name!r} ({type(module).__name__}) has no weight; pass `layer=`."
            )
            return
        if isinstance(module, nn.Linear) or (weight.dim() == 2 and not isinstance(module, nn.Embedding)):
            self._image_shape = image_shape_for(int(weight.shape[1]), input_shape)
        if self._restored is not None and self._restored.get("layer_name") not in (None, name):
            self._restored = None  # resumed with another layer: start its comparison afresh
        if self._restored is not None:
            tiles = self._restored.get("init_tiles")
            self._init_tiles = None if tiles is None else np.asarray(tiles, dtype=np.float64)
            self._init_smoothness = float(self._restored.get("init_smoothness", math.nan))
            self._noise_verdict = self._restored.get("noise_verdict")
            self._identical_warned = bool(self._restored.get("identical_warned", False))
            self.history = [tuple(h) for h in self._restored.get("history", [])]  # type: ignore[misc]
            self._last_logged_step = int(self._restored.get("last_logged_step", -1))
            self._restored = None
        if self._tiles(weight) is None:
            self.record(
                trainer,
                "skipped",
                f"first layer {name!r} is a {type(module).__name__} with weight {tuple(weight.shape)}, not image "
                f"filters (input {input_shape}); logging its weight histogram only.",
                {"layer": name, "type": type(module).__name__},
            )

    def _tiles(self, weight: torch.Tensor) -> np.ndarray | None:
        if weight.dim() == 4:
            return filter_tiles(weight, max_filters=self.max_filters)
        if weight.dim() == 2 and self._image_shape is not None:
            return filter_tiles(weight, self._image_shape, max_filters=self.max_filters)
        return None

    # ------------------------------------------------------------------ logging and verdicts
    def _log(self, trainer: Trainer, step: int, epochs_done: int) -> None:
        assert self._module is not None
        weight = _weight_of(self._module)
        if weight is None:
            return
        self._last_logged_step = step
        tiles = self._tiles(weight)
        if trainer.is_global_zero:
            recipe_logging.log_histogram(trainer, _PREFIX + "weights", weight.detach().float().cpu(), step)
        self._check_identical(trainer, weight)
        if tiles is None:
            return
        if self._init_tiles is None or step == 0:
            self._init_tiles = tiles.copy()
            self._init_smoothness = smoothness(tiles)
        smooth = smoothness(tiles)
        change = (
            relative_change(tiles, self._init_tiles) if self._init_tiles.shape == tiles.shape else math.nan
        )
        self.history.append((step, smooth, change))
        if trainer.is_global_zero:
            _h, _w = tiles.shape[2], tiles.shape[3]
            grid = filter_grid(tiles)
            recipe_logging.log_image(trainer, _PREFIX + "filters", grid, step)
            values = {_PREFIX + "change_from_init": change}
            if math.isfinite(smooth):
                values[_PREFIX + "smoothness"] = smooth
                values[_PREFIX + "smoothness_gain"] = smooth - self._init_smoothness
            recipe_logging.log_scalars(trainer, values, step)
        self._check_noise(trainer, weight, tiles, smooth, change, epochs_done)

    def _check_identical(self, trainer: Trainer, weight: torch.Tensor) -> None:
        if self._identical_warned or weight.dim() < 2 or weight.shape[0] < 2:
            return
        mask = identical_filters(weight)
        copies = int(mask.sum())
        if copies:
            self._identical_warned = True
            self.record(
                trainer,
                "warn",
                f"{copies} of {mask.size} filters of {self.layer_name!r} are identical copies of another filter: "
                "symmetry was never broken (a constant or zero init?); initialise the weights randomly.",
                {"identical": copies, "filters": int(mask.size), "layer": self.layer_name},
                check=None,
            )

    def _check_noise(
        self,
        trainer: Trainer,
        weight: torch.Tensor,
        tiles: np.ndarray,
        smooth: float,
        change: float,
        epochs_done: int,
    ) -> None:
        after = self.check_noise_after_epochs
        if (
            after is None
            or epochs_done < after
            or self._noise_verdict is not None
            or self._init_tiles is None
        ):
            return
        if not weight.requires_grad or not math.isfinite(smooth) or not math.isfinite(self._init_smoothness):
            return
        gain = smooth - self._init_smoothness
        delta = smoothness(tiles - self._init_tiles) if self._init_tiles.shape == tiles.shape else math.nan
        numbers = {
            "smoothness": smooth,
            "smoothness_at_init": self._init_smoothness,
            "smoothness_gain": gain,
            "smoothness_of_change": delta,
            "change_from_init": change,
            "epochs": epochs_done,
            "layer": self.layer_name,
            "mode": grey_mode(int(weight.shape[1])) if weight.dim() == 4 else "linear",
        }
        still_noise = gain < _NOISE_GAIN and smooth < _NOISE_SMOOTHNESS
        if still_noise and change < _BARELY_MOVED:
            self._noise_verdict = "warn"
            self.record(
                trainer,
                "warn",
                f"first-layer filters of {self.layer_name!r} still look like their random init after {epochs_done} "
                f"epochs: they barely moved ({change:.1%} change, smoothness {smooth:.2f} vs {self._init_smoothness:.2f} "
                "at init); raise the learning rate, or check that the layer is not frozen or its gradient cut.",
                numbers,
            )
        elif (
            still_noise
            and min(tiles.shape[-2:]) >= _MIN_STRUCTURE_SIZE
            and (not math.isfinite(delta) or delta < _NOISE_GAIN)
        ):
            self._noise_verdict = "warn"
            self.record(
                trainer,
                "warn",
                f"first-layer filters of {self.layer_name!r} still look like noise after {epochs_done} epochs: "
                f"smoothness {smooth:.2f} vs {self._init_smoothness:.2f} at init, and what training added has no "
                f"spatial structure ({delta:.2f}); check the inputs are not scrambled (a wrong reshape/permute), "
                "that labels match inputs, and the learning rate.",
                numbers,
            )
        else:
            self._noise_verdict = "pass"
            self.record(
                trainer,
                "pass",
                f"first-layer filters of {self.layer_name!r} after {epochs_done} epochs: smoothness {smooth:.2f} "
                f"({gain:+.2f} over init), {change:.0%} change from init",
                numbers,
            )

    # ------------------------------------------------------------------ checkpoint state
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "layer_name": self.layer_name,
            "init_tiles": None if self._init_tiles is None else torch.from_numpy(self._init_tiles.copy()),
            "init_smoothness": self._init_smoothness,
            "noise_verdict": self._noise_verdict,
            "identical_warned": self._identical_warned,
            "history": [list(h) for h in self.history],
            "last_logged_step": self._last_logged_step,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restored = dict(state_dict)
        tiles = restored.get("init_tiles")
        if isinstance(tiles, torch.Tensor):
            restored["init_tiles"] = tiles.numpy()
        self._restored = restored
        self.layer_name = restored.get("layer_name")
        self.history = [tuple(h) for h in restored.get("history", [])]  # type: ignore[misc]
        self._last_logged_step = int(restored.get("last_logged_step", -1))
