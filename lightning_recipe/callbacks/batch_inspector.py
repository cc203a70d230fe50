"""BatchInspector: the recipe's "visualize just before the net"."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.batches import BatchParts, KeySpec, first_tensor
from lightning_recipe.core.budget import Cadence, check_overhead
from lightning_recipe.core.checks.batch_inspector import (
    IGNORE_INDEX,
    MaskAlignment,
    batch_findings,
    check_arguments,
    denormalized,
    grid_title,
    histogram_values,
    label_text,
    labels_shifted_twice,
    loss_ignore_index,
    mask_of,
    padding_in_loss,
    rows_table,
    sample_labels,
    split_inspected,
    stats_table,
    tokens_text,
    with_once,
)
from lightning_recipe.core.inputs import (
    CONSTANT_STD,
    NORMALISED_SCALE,
    InputStats,
    detect_layout,
    input_stats,
)
from lightning_recipe.core.tasks import LabelConvention, label_convention
from lightning_recipe.plots.batch_inspector import batch_grid_figure

__all__ = ["BatchInspector", "label_text", "loss_ignore_index"]

_EVERY = 1000  # the shortest interval between two inspections of the default (budgeted) cadence
_PREFIX = "recipe/batch_inspector/"
_HISTOGRAM_VALUES = 100_000  # input values in the ``inputs`` histogram at most (evenly spaced)
_NO_TENSOR = "found no input tensor in the batch; pass `input_key=`."


class BatchInspector(RecipeCallback):
    """Show exactly what goes into ``training_step``, after the batch is on the device.

    Recipe, "visualize just before the net": *"The unambiguously correct place to visualize your
    data is immediately before your y_hat = model(x) [...] This is the only source of truth."* At
    step 0 and every ``every_n_train_steps`` steps, ``on_train_batch_start`` logs under
    ``recipe/batch_inspector/``: ``images`` (image inputs, the label above each tile), ``rows``
    (tabular inputs), ``decoded`` (token ids), ``channel_stats`` (Text), ``inputs`` and ``labels``
    (Histograms), ``input_mean`` and ``input_std`` (Scalars). Findings, from the first batch and
    whenever a later one shows something new: ``fail`` for NaN/Inf; ``warn`` for inputs that are
    not normalised (a channel's ``|mean|`` or std above ``normalised_scale``), nearly constant (std
    below ``constant_std``), padding in the loss (labels where ``attention_mask == 0``), or per-pixel
    targets that fit their images better mirrored (a flip applied to the image alone); else ``pass``.
    See the README section "``BatchInspector``: exactly what goes into ``training_step``".

    Args:
        every_n_train_steps: inspect at step 0 and then every this many optimizer steps. ``None``
            (default): every 1000 steps at most, stretched to stay within ``overhead``.
        overhead: the fraction of training time this callback may spend (with the default cadence).
        num_samples: at most this many samples in the image grid, table or decoded text.
        denormalize: ``callable(x) -> x`` for a CPU copy of the images drawn (statistics: the raw batch).
        decode: ``callable(ids) -> str``: one sample's token ids (a 1-D CPU tensor) as text.
        class_names: names for integer labels, shown on the tiles instead of the numbers.
        input_key, target_key: where the inputs and labels are in the batch; inferred by default.
        normalised_scale: the ``|mean|``/std above which a channel is "not normalised".
        constant_std: the overall std below which the inputs are "nearly constant".
        ignore_index: the label the loss ignores; ``None``: a loss module's ``ignore_index``, else -100.
        check_padding: look for padding positions in the loss (off when the loss masks padding itself).
        on_fail: ``"warn"`` or ``"raise"`` (raise :class:`~lightning_recipe.RecipeCheckError` on NaN/Inf).

    Attributes:
        findings: the findings of the current run.
        last_stats: the :class:`~lightning_recipe.core.inputs.InputStats` of the last inspected batch.

    Raises:
        ValueError, TypeError: for a non-positive count or threshold, a callable or key of the wrong type.

    Example:
        >>> import warnings
        >>> from lightning_recipe.demos import TinyClassifier, classification_data, tiny_trainer
        >>> data = classification_data()
        >>> _ = data.dataset.tensors[0].mul_(255)           # raw, unscaled inputs
        >>> inspector = BatchInspector()
        >>> trainer = tiny_trainer(max_steps=1, callbacks=[inspector], default_root_dir=getfixture("tmp_path"))
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(TinyClassifier(), data)
        >>> [(f.status, f.message.split(" (")[0]) for f in inspector.findings]
        [('warn', 'inputs are not normalised')]
    """

    def __init__(
        self,
        every_n_train_steps: int | None = None,
        num_samples: int = 32,
        denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
        decode: Callable[[torch.Tensor], str] | None = None,
        class_names: Sequence[str] | None = None,
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        normalised_scale: float = NORMALISED_SCALE,
        constant_std: float = CONSTANT_STD,
        ignore_index: int | None = None,
        check_padding: bool = True,
        overhead: float = 0.01,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail=on_fail)
        owner = type(self).__name__
        check_positive_int(owner, "every_n_train_steps", every_n_train_steps, allow_none=True)
        self.overhead = check_overhead(owner, overhead)
        self._cadence = Cadence(every_n_train_steps, base=_EVERY, share=self.overhead)
        check_arguments(
            owner, num_samples, denormalize, decode, class_names, normalised_scale, constant_std, ignore_index
        )
        self.validate_keys(owner, input_key, target_key)
        self.ignore_index, self.check_padding = ignore_index, bool(check_padding)
        self._ignore_index = IGNORE_INDEX if ignore_index is None else ignore_index
        self._convention = LabelConvention()  # how the model reads its labels (set at fit)
        self.every_n_train_steps, self.num_samples = every_n_train_steps, num_samples
        self.denormalize, self.decode = denormalize, decode
        self.input_key, self.target_key = input_key, target_key
        self.class_names = list(class_names) if class_names is not None else None
        self.normalised_scale, self.constant_std = float(normalised_scale), float(constant_std)
        self.last_stats: InputStats | None = None
        self._last_step = -1
        self._seen_codes: set[str] = set()
        self._inspected, self._masks = 0, MaskAlignment()

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(input_key=repr(self.input_key), target_key=repr(self.target_key))

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._ignore_index = (
                self.ignore_index if self.ignore_index is not None else loss_ignore_index(pl_module)
            )
            self._convention = label_convention(pl_module)
            self._last_step = -1
            self._cadence = Cadence(self.every_n_train_steps, base=_EVERY, share=self.overhead)
            self._seen_codes, self._inspected, self._masks = set(), 0, MaskAlignment()

    def _is_due(self, step: int) -> bool:
        if self.every_n_train_steps is not None:
            return step != self._last_step and step % self.every_n_train_steps == 0
        return step != self._last_step and self._cadence.due(step)

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._is_due(trainer.global_step) or self.should_skip(trainer):
            return
        self._last_step = trainer.global_step
        self.inspect(trainer, batch)
        # every rank inspects the same steps (a fail may raise on all of them together)
        self.cadence_taken(trainer, self._cadence, int(trainer.global_step), collective=True)

    # ------------------------------------------------------------------ the work
    def inspect(self, trainer: Trainer, batch: Any) -> InputStats | None:
        """Inspect one batch now: log its pictures and statistics, record findings."""
        parts = self._split(trainer, batch)
        if parts is None:
            return None
        x = parts.inputs if isinstance(parts.inputs, torch.Tensor) else first_tensor(parts.inputs)
        if x is None:
            self._note_once(trainer, "skipped", "no_tensor", _NO_TENSOR)
            return None
        self.last_stats = stats = input_stats(x, detect_layout(x))
        self._inspected += 1
        verdicts = batch_findings(
            stats, self._seen_codes, self._inspected == 1, self.normalised_scale, self.constant_std
        )
        labels, convention = parts.targets, self._convention
        padding = (
            padding_in_loss(batch, labels, self._ignore_index, convention) if self.check_padding else None
        )
        masks = self._masks.add(x, labels, trainer.global_step) if stats.layout == "image" else None
        shifted = labels_shifted_twice(batch, labels, self._ignore_index, convention)
        once = {"padding_in_loss": padding, "labels_shifted_twice": shifted, "masks_misaligned": masks}
        verdicts = with_once(verdicts, once, self._seen_codes)
        for status, message, numbers in verdicts:
            self.record(trainer, status, message, numbers, raise_on_fail=True)  # type: ignore[arg-type]
        if trainer.is_global_zero:
            self._log(trainer, x, parts.targets, stats, int(trainer.global_step))
        return stats

    def _split(self, trainer: Trainer, batch: Any) -> BatchParts | None:
        """Split the batch; when the layout cannot be inferred, say which argument resolves it."""
        parts, code, message = split_inspected(batch, self.input_key, self.target_key)
        if code == "split" and code not in self._seen_codes:
            self.warn(f"{self.name}: {message}")
        if code is not None:
            self._note_once(trainer, "skipped", code, str(message))
        return parts

    def _note_once(self, trainer: Trainer, status: Any, code: str, message: str) -> None:
        if code in self._seen_codes:
            return
        self._seen_codes.add(code)
        self.record(trainer, status, message)

    def _log(self, trainer: Trainer, x: torch.Tensor, targets: Any, stats: InputStats, step: int) -> None:
        n = min(self.num_samples, int(x.shape[0]) if x.dim() else 1)
        sample = x[:n].detach().cpu().clone() if x.dim() else x.detach().cpu().reshape(1)
        masks = mask_of(sample, targets) if stats.layout == "image" else None
        labels = sample_labels(targets, n, self.class_names, masks)
        scalars = {_PREFIX + "input_mean": stats.overall_mean, _PREFIX + "input_std": stats.overall_std}
        recipe_logging.log_scalars(trainer, scalars, step)
        recipe_logging.log_text(trainer, _PREFIX + "channel_stats", stats_table(stats), step)
        recipe_logging.log_histogram(
            trainer, _PREFIX + "inputs", histogram_values(x, _HISTOGRAM_VALUES), step
        )
        if isinstance(targets, torch.Tensor) and targets.numel():
            recipe_logging.log_histogram(trainer, _PREFIX + "labels", targets.detach().float().cpu(), step)
        if stats.layout == "image":
            images = denormalized(sample, self.denormalize).numpy().copy()
            title = grid_title(stats, step, self.denormalize is not None)
            build = functools.partial(batch_grid_figure, images, labels and list(labels), title, masks=masks)
            recipe_logging.log_figure(trainer, _PREFIX + "images", build, step)
        elif stats.layout == "tabular":
            recipe_logging.log_text(trainer, _PREFIX + "rows", rows_table(sample, labels), step)
        elif stats.layout == "tokens":
            recipe_logging.log_text(
                trainer, _PREFIX + "decoded", tokens_text(sample, labels, self.decode), step
            )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "last_step": self._last_step,
            "seen_codes": sorted(self._seen_codes),
            "inspected": self._inspected,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = int(state_dict.get("last_step", -1))
        self._seen_codes = set(state_dict.get("seen_codes", []))
        self._inspected = int(state_dict.get("inspected", 0))
