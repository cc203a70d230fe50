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
    batch_findings,
    denormalized,
    grid_title,
    label_text,
    naming,
    padding_in_loss,
    rows_table,
    sample_labels,
    stats_table,
    tokens_text,
)
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.inputs import (
    CONSTANT_STD,
    NORMALISED_SCALE,
    InputStats,
    detect_layout,
    input_stats,
)
from lightning_recipe.plots.batch_inspector import batch_grid_figure

__all__ = ["BatchInspector", "label_text"]

#: The shortest interval between two inspections of the default (budgeted) cadence.
_EVERY = 1000

_PREFIX = "recipe/batch_inspector/"
#: Input values in the ``inputs`` histogram at most (evenly spaced through the batch).
_HISTOGRAM_VALUES = 100_000


def _no_targets(batch: Any) -> None:
    """A ``target_key`` that finds no targets: the inputs alone are still worth showing."""
    return None


def loss_ignore_index(module: torch.nn.Module) -> int:
    """The ``ignore_index`` of the first loss module of ``module`` that sets one other than -100, else -100."""
    for sub in module.modules():
        value = getattr(sub, "ignore_index", None)
        if isinstance(sub, torch.nn.modules.loss._Loss) and isinstance(value, int) and value != IGNORE_INDEX:
            return value
    return IGNORE_INDEX


class BatchInspector(RecipeCallback):
    """Show exactly what goes into ``training_step``, after the batch is on the device.

    Recipe, "visualize just before the net": *"The unambiguously correct place to visualize your
    data is immediately before your y_hat = model(x) [...] This is the only source of truth."* At
    step 0 and every ``every_n_train_steps`` steps, ``on_train_batch_start`` logs under
    ``recipe/batch_inspector/``: ``images`` (image inputs, the label above each tile), ``rows``
    (tabular inputs), ``decoded`` (token ids), ``channel_stats`` (Text), ``inputs`` and ``labels``
    (Histograms), ``input_mean`` and ``input_std`` (Scalars). Findings, from the first batch and
    whenever a later one shows something new: ``fail`` for NaN/Inf; ``warn`` for inputs that are
    not normalised (a channel's ``|mean|`` or std above ``normalised_scale``) or nearly constant
    (overall std below ``constant_std``), and for a dict batch whose labels ``(N, T)`` are in the loss
    where ``attention_mask == 0`` (padding in the loss: the fraction of loss positions that are
    padding, and the fix); otherwise one ``pass``.
    See the README section "``BatchInspector``: exactly what goes into ``training_step``".

    Args:
        every_n_train_steps: inspect at step 0 and then every this many optimizer steps. ``None``
            (default): every 1000 steps at most, stretched to stay within ``overhead``.
        overhead: the fraction of training time this callback may spend (with the default cadence).
        num_samples: at most this many samples in the image grid, table or decoded text.
        denormalize: ``callable(x) -> x`` applied to a CPU copy of the image samples before they are
            drawn; statistics always use the raw batch.
        decode: ``callable(ids) -> str`` turning one sample's token ids (a 1-D CPU tensor) into text.
        class_names: names for integer labels, shown on the tiles instead of the numbers.
        input_key, target_key: where the inputs and labels are in the batch; inferred by default.
        normalised_scale: the ``|mean|``/std above which a channel is "not normalised".
        constant_std: the overall std below which the inputs are "nearly constant".
        ignore_index: the label the loss ignores; ``None`` takes the ``ignore_index`` of a loss
            module of the LightningModule (``nn.CrossEntropyLoss(ignore_index=...)``), else -100 (PyTorch's
            default and the Hugging Face convention).
        check_padding: look for padding positions in the loss (turn off when the loss masks
            padding itself, e.g. multiplies by ``attention_mask``).
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
        check_positive_int(owner, "num_samples", num_samples)
        for name, fn in (("denormalize", denormalize), ("decode", decode)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{owner}({name}={fn!r}): pass a callable or None.")
        if class_names is not None and (
            isinstance(class_names, str) or not isinstance(class_names, Sequence)
        ):
            raise TypeError(
                f"{owner}(class_names={class_names!r}): pass a list of names, one per class index."
            )
        for name, value in (("normalised_scale", normalised_scale), ("constant_std", constant_std)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{owner}({name}={value!r}): pass a positive number.")
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise TypeError(
                f"{owner}(ignore_index={ignore_index!r}): pass the integer label your loss ignores "
                "(e.g. -100) or None."
            )
        self.validate_keys(owner, input_key, target_key)
        self.ignore_index = ignore_index
        self.check_padding = bool(check_padding)
        self._ignore_index = IGNORE_INDEX if ignore_index is None else ignore_index
        self.every_n_train_steps = every_n_train_steps
        self.num_samples = num_samples
        self.denormalize = denormalize
        self.decode = decode
        self.class_names = list(class_names) if class_names is not None else None
        self.input_key = input_key
        self.target_key = target_key
        self.normalised_scale = float(normalised_scale)
        self.constant_std = float(constant_std)
        self.last_stats: InputStats | None = None
        self._last_step = -1
        self._seen_codes: set[str] = set()
        self._inspected = 0

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
            self._last_step = -1
            self._cadence = Cadence(self.every_n_train_steps, base=_EVERY, share=self.overhead)
            self._seen_codes = set()
            self._inspected = 0

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
            self._note_once(
                trainer, "skipped", "no_tensor", "found no input tensor in the batch; pass `input_key=`."
            )
            return None
        stats = input_stats(x, detect_layout(x))
        self.last_stats = stats
        self._inspected += 1
        verdicts = batch_findings(
            stats, self._seen_codes, self._inspected == 1, self.normalised_scale, self.constant_std
        )
        padding = padding_in_loss(batch, parts.targets, self._ignore_index) if self.check_padding else None
        if padding is not None and "padding_in_loss" not in self._seen_codes:
            self._seen_codes.add("padding_in_loss")
            verdicts = [padding, *(v for v in verdicts if v[0] != "pass")]
        for status, message, numbers in verdicts:
            self.record(trainer, status, message, numbers, raise_on_fail=True)  # type: ignore[arg-type]
        if trainer.is_global_zero:
            self._log(trainer, x, parts.targets, stats, int(trainer.global_step))
        return stats

    def _split(self, trainer: Trainer, batch: Any) -> BatchParts | None:
        """Split the batch; when the layout cannot be inferred, say which argument resolves it.

        ``ArgumentError`` (an explicit key that does not fit) propagates; a failed inference of the
        targets still shows the inputs, a failed inference of the inputs skips the inspection.
        """
        try:
            return self.split(batch, self.input_key, self.target_key)
        except ArgumentError:
            raise
        except ValueError as err:
            target_err = err
        try:
            parts = self.split(batch, self.input_key, _no_targets)
        except ArgumentError:
            raise
        except ValueError as err:
            message = f"skipped, because {naming(err, 'input_key')}"
            if "split" not in self._seen_codes:
                self.warn(f"{self.name}: {message}")
            self._note_once(trainer, "skipped", "split", message)
            return None
        message = f"labels skipped (the inputs are shown), because {naming(target_err, 'target_key')}"
        self._note_once(trainer, "skipped", "no_targets", message)
        return parts

    def _note_once(self, trainer: Trainer, status: Any, code: str, message: str) -> None:
        if code in self._seen_codes:
            return
        self._seen_codes.add(code)
        self.record(trainer, status, message)

    def _log(self, trainer: Trainer, x: torch.Tensor, targets: Any, stats: InputStats, step: int) -> None:
        n = min(self.num_samples, int(x.shape[0]) if x.dim() else 1)
        sample = x[:n].detach().cpu().clone() if x.dim() else x.detach().cpu().reshape(1)
        labels = sample_labels(targets, n, self.class_names)
        scalars = {_PREFIX + "input_mean": stats.overall_mean, _PREFIX + "input_std": stats.overall_std}
        recipe_logging.log_scalars(trainer, scalars, step)
        recipe_logging.log_text(trainer, _PREFIX + "channel_stats", stats_table(stats), step)
        flat = x.detach().reshape(-1)
        if flat.numel() > _HISTOGRAM_VALUES:
            flat = flat[torch.linspace(0, flat.numel() - 1, _HISTOGRAM_VALUES, device=flat.device).long()]
        recipe_logging.log_histogram(trainer, _PREFIX + "inputs", flat.float().cpu(), step)
        if isinstance(targets, torch.Tensor) and targets.numel():
            recipe_logging.log_histogram(trainer, _PREFIX + "labels", targets.detach().float().cpu(), step)
        if stats.layout == "image":
            images = denormalized(sample, self.denormalize).numpy().copy()
            title = grid_title(stats, step, self.denormalize is not None)
            build = functools.partial(
                batch_grid_figure, images, None if labels is None else list(labels), title
            )
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
