"""FirstLayerFilters: the recipe's "visualize the first-layer weights"."""

from __future__ import annotations

from typing import Any

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from lightning_recipe import writer
from lightning_recipe.callbacks.base import OnFail, RecipeCallback
from lightning_recipe.core.batches import KeySpec
from lightning_recipe.core.budget import Cadence, check_overhead
from lightning_recipe.core.checks import first_layer as filter_checks
from lightning_recipe.core.checks.first_layer import FilterState, Verdict
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.tracing import find_layer
from lightning_recipe.findings import Skip
from lightning_recipe.plots.first_layer import filter_grid

__all__ = ["FirstLayerFilters", "filter_grid"]

_PREFIX = "recipe/first_layer/"


class FirstLayerFilters(RecipeCallback):
    """Show the first layer's filters at init and every N epochs, and say when they still look like noise.

    Recipe, "visualize the first-layer weights": learned first-layer filters on natural data are
    smooth; filters that still look like their random init after training, or that are all copies of
    each other, point at a problem. The first layer is the first module with parameters **to execute**
    (traced on the first training batch, called the way the model's own step calls it: ``forward(x)``,
    ``forward(**batch)``, ...); ``layer=`` overrides. ``Conv2d``: one tile per filter; a ``Linear`` over
    a flattened image: each row as that image; anything else: the weight histogram only (``skipped``).

    TensorBoard, at step 0, at the end of fit and every epoch in between as ``overhead`` allows (or
    every ``every_n_epochs`` epochs), under ``recipe/first_layer/``:
    ``filters`` (image grid), ``weights`` (histogram), ``smoothness``, ``smoothness_gain`` and
    ``change_from_init``. Findings: ``warn`` when, after ``check_noise_after_epochs`` epochs, the
    filters are as noise-like as at init, else ``pass``; ``warn`` for identical filters.

    Args:
        every_n_epochs: log at the end of every this many epochs (and at step 0). ``None`` (default):
            at step 0, at the end of fit, and at the end of epochs in between within ``overhead``.
        layer: qualified module name of the layer to show (``"backbone.conv1"``); traced by default.
        max_filters: show at most this many filters.
        check_noise_after_epochs: judge "still noise" from this epoch on (``None``: never judge).
        input_key: where the inputs are in the batch (for tracing and the image shape); inferred by default.
        overhead: the fraction of training time this callback may spend (with the default cadence).
        on_fail: ``"warn"`` or ``"raise"``.

    Attributes:
        findings: the findings of the current run.
        layer_name: the name of the layer shown (after the first training batch).
        history: ``(global_step, smoothness, change_from_init)`` per logged point.

    Raises:
        ValueError, TypeError: for invalid arguments (an unknown ``layer`` in ``setup``).

    Example:
        >>> import torch
        >>> from lightning_recipe.demos import TinyClassifier, tiny_trainer
        >>> class Net(TinyClassifier):
        ...     def __init__(self):
        ...         super().__init__(in_features=4 * 6 * 6, num_classes=2)
        ...         self.conv = torch.nn.Conv2d(1, 4, 3)           # declared last, runs first
        ...     def forward(self, x):
        ...         return self.net(self.conv(x).flatten(1))
        >>> data = torch.utils.data.TensorDataset(torch.rand(16, 1, 8, 8), torch.randint(0, 2, (16,)))
        >>> filters = FirstLayerFilters()
        >>> trainer = tiny_trainer(max_epochs=1, callbacks=[filters], default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(Net(), torch.utils.data.DataLoader(data, batch_size=8))
        >>> filters.layer_name, [step for step, _, _ in filters.history]
        ('conv', [0, 2])

    See the README section "FirstLayerFilters: the first layer's weights, at init and every N epochs".
    """

    def __init__(
        self,
        every_n_epochs: int | None = None,
        layer: str | None = None,
        max_filters: int = 64,
        check_noise_after_epochs: int | None = 5,
        input_key: KeySpec = None,
        overhead: float = 0.01,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail=on_fail)
        owner = type(self).__name__
        self.overhead = check_overhead(owner, overhead)
        filter_checks.check_arguments(owner, every_n_epochs, max_filters, check_noise_after_epochs, layer)
        self.validate_keys(owner, input_key, None)
        self.every_n_epochs, self.layer, self.max_filters = every_n_epochs, layer, max_filters
        self.check_noise_after_epochs, self.input_key = check_noise_after_epochs, input_key
        self._state = FilterState()
        self._module: nn.Module | None = None
        self._image_shape: tuple[int, int, int] | None = None
        self._resolved = False
        self._restored: FilterState | None = None
        self._cadence = Cadence(every_n_epochs, base=1, share=self.overhead)

    @property
    def layer_name(self) -> str | None:
        return self._state.layer_name

    @property
    def history(self) -> list[tuple[int, float, float]]:
        return self._state.history

    @property
    def _init_tiles(self) -> np.ndarray | None:
        return self._state.init_tiles

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layer=self.layer)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._state, self._module, self._image_shape, self._resolved = FilterState(), None, None, False
            self._cadence = Cadence(self.every_n_epochs, base=1, share=self.overhead)
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
        self.retire_hook("on_train_batch_start")  # resolved once: Lightning stops calling it
        self._cadence.start(trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None, 0)
        self._cadence.next_due = int(trainer.current_epoch) + (self.every_n_epochs or 1)
        self._resolve(trainer, pl_module, batch)
        if self._module is not None and trainer.global_step == 0 and self._state.last_logged_step != 0:
            self._log(trainer, step=0, epochs_done=0)
            self.cadence_taken(trainer, self._cadence, 0, collective=True)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epochs_done = trainer.current_epoch + 1
        if not self._cadence.due(epochs_done) or self._module is None or self.should_skip(trainer):
            return
        if self._cadence.fixed and epochs_done % self._cadence.every:  # type: ignore[operator]
            return
        if trainer.global_step != self._state.last_logged_step:
            self._log(trainer, step=int(trainer.global_step), epochs_done=epochs_done)
            self.cadence_taken(trainer, self._cadence, epochs_done, collective=True)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # the budgeted cadence always shows the end of fit (a fixed one logs what it was asked to)
        if self._cadence.fixed or self._module is None or not self.is_fitting(trainer):
            return
        if trainer.global_step != self._state.last_logged_step:
            # ``current_epoch`` counts the completed epochs by now
            self._log(trainer, step=int(trainer.global_step), epochs_done=int(trainer.current_epoch))

    # ------------------------------------------------------------------ checkpoint state
    @override
    def state_dict(self) -> dict[str, Any]:
        return self._state.state_dict()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # the init and the verdicts apply once the first batch shows the same layer is traced again
        restored = self._restored = FilterState.from_state_dict(state_dict)
        self._state = FilterState(restored.layer_name, history=list(restored.history))
        self._state.last_logged_step = restored.last_logged_step

    # ------------------------------------------------------------------ helpers
    def _record(self, trainer: Trainer, verdict: Verdict | None) -> None:
        if verdict is not None:
            self.record(trainer, *verdict)

    def _resolve(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> None:
        name = self.layer or (self._restored.layer_name if self._restored is not None else None)
        call = ModelCall(input_key=self.input_key, target_key=filter_checks.no_targets, hint="")
        try:
            inputs, no_inputs = self.split(batch, self.input_key, filter_checks.no_targets).inputs, None
        except ArgumentError:
            raise
        except ValueError as err:  # only the image shape of a dense layer needs them when `layer=` is known
            inputs, no_inputs = None, err
        if name is not None:
            module = find_layer(pl_module, name, owner=f"{self.name}: layer")
        else:
            try:
                context = trainer.precision_plugin.forward_context()
                name, module = filter_checks.traced_layer(pl_module, batch, call, context, no_inputs)
            except Skip as skip:
                if no_inputs is not None and getattr(skip, "model_failed", False):
                    self.warn(f"{self.name}: {skip}")
                self.record(trainer, "skipped", str(skip))
                return
        weight = filter_checks.weight_of(module)
        if weight is None:
            self._state.layer_name = name
            self.record(trainer, "skipped", filter_checks.no_weight_message(name, module))
            return
        restored, self._restored = self._restored, None
        if restored is not None and restored.layer_name == name:
            self._state = restored  # resumed on the same layer: keep its init and verdicts
        self._module, self._state.layer_name = module, name
        input_shape = filter_checks.model_input_shape(pl_module, batch, call, inputs)
        self._image_shape = filter_checks.dense_image_shape(module, weight, input_shape)
        if filter_checks.tiles_of(weight, self._image_shape, self.max_filters) is None:
            message = filter_checks.not_filters_message(name, module, weight, input_shape)
            self.record(trainer, "skipped", message, {"layer": name, "type": type(module).__name__})

    def _log(self, trainer: Trainer, step: int, epochs_done: int) -> None:
        assert self._module is not None
        state, weight = self._state, filter_checks.weight_of(self._module)
        if weight is None:
            return
        state.last_logged_step = step
        if trainer.is_global_zero:
            writer.log_histogram(trainer, _PREFIX + "weights", weight.detach().float().cpu(), step)
        self._record(trainer, filter_checks.identical_verdict(state, weight, state.layer_name))
        tiles = filter_checks.tiles_of(weight, self._image_shape, self.max_filters)
        if tiles is None:
            return
        smooth, change = state.observe(tiles, step)
        if trainer.is_global_zero:
            writer.log_image(trainer, _PREFIX + "filters", filter_grid(tiles), step)
            writer.log_scalars(trainer, state.scalars(_PREFIX, smooth, change), step)
        after = self.check_noise_after_epochs
        self._record(
            trainer, filter_checks.noise_verdict(state, weight, tiles, smooth, change, epochs_done, after)
        )
