"""BatchInspector: the recipe's "visualize just before the net"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.batches import BatchParts, KeySpec, first_tensor
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.inputs import (
    CONSTANT_STD,
    NORMALISED_SCALE,
    InputStats,
    detect_layout,
    diagnose_inputs,
    input_stats,
    markdown_table,
)
from lightning_recipe.plots.style import labelled_image_grid_figure

__all__ = ["BatchInspector", "label_text"]

_PREFIX = "recipe/batch_inspector/"


def label_text(target: Any, class_names: Sequence[str] | None = None) -> str:
    """A short label for one sample's target: a class name, a number, or the active labels of a multi-hot row.

    Example:
        >>> label_text(torch.tensor(3)), label_text(torch.tensor(2.5)), label_text(torch.tensor([0.0, 1, 1]))
        ('3', '2.5', '1,2')
        >>> label_text(torch.tensor(1), ["cat", "dog"])
        'dog'
    """
    t = torch.as_tensor(target).detach().cpu()
    if t.numel() == 1:
        v = t.reshape(()).item()
        if not t.is_floating_point() or (float(v).is_integer() and class_names is not None):
            i = int(v)
            if class_names is not None and 0 <= i < len(class_names):
                return str(class_names[i])
            return str(i)
        return f"{float(v):.3g}"
    flat = t.reshape(-1)
    if bool(((flat == 0) | (flat == 1)).all()):
        active = torch.nonzero(flat).reshape(-1).tolist()
        names = [
            str(class_names[i]) if class_names is not None and i < len(class_names) else str(i)
            for i in active
        ]
        text = ",".join(names[:4]) + ("…" if len(names) > 4 else "")
        return text or "none"
    return ",".join(f"{float(v):.2g}" for v in flat[:3]) + ("…" if flat.numel() > 3 else "")


def _no_targets(batch: Any) -> None:
    """A ``target_key`` that finds no targets: the inputs alone are still worth showing."""
    return None


def _naming(err: Exception, argument: str) -> str:
    """The reason in ``err`` as one line that ends by naming the argument resolving it."""
    text = str(err).strip().rstrip(".")
    return text + ("." if f"`{argument}=`" in text else f"; pass `{argument}=`.")


class BatchInspector(RecipeCallback):
    """Show exactly what goes into ``training_step``, after the batch is on the device.

    Recipe, "visualize just before the net": *"The unambiguously correct place to visualize your
    data is immediately before your y_hat = model(x) [...] decoding that raw tensor of data and
    labels into visualizations. This is the only source of truth."* ``on_train_batch_start``
    receives the batch Lightning is about to hand to ``training_step`` (already on the device);
    every ``every_n_train_steps`` optimizer steps (and at step 0) it logs, under
    ``recipe/batch_inspector/``:

    * ``images``: image inputs as a grid with the label written above each tile (at most
      ``num_samples``), after ``denormalize`` when given;
    * ``rows`` (Text): tabular inputs as a Markdown table of the first rows and features;
    * ``decoded`` (Text): token ids through ``decode`` (the ids themselves without it);
    * ``channel_stats`` (Text): per-channel (image) or per-feature (tabular) mean, std, min, max;
    * ``inputs`` and ``labels`` (Histograms): the input values and the batch's labels;
    * ``input_mean`` and ``input_std`` (Scalars): over the whole batch.

    Findings (from the first inspected batch, and whenever a later one shows something new):
    ``fail`` for NaN/Inf in the batch; ``warn`` for inputs that are not normalised (a channel's
    ``|mean|`` or std above ``normalised_scale``: raw 0-255 pixels), and for nearly constant
    inputs (overall std below ``constant_std``: normalised twice). Judged on mean and std, not on
    a ``[-1, 1]`` range: z-scored inputs reaching +-3 are healthy. Token ids are not judged for scale.

    Args:
        every_n_train_steps: inspect at step 0 and then every this many optimizer steps.
        num_samples: at most this many samples in the image grid, table or decoded text.
        denormalize: ``callable(x) -> x`` applied to a CPU copy of the image samples before they are
            drawn (e.g. undo a mean/std normalisation); statistics always use the raw batch.
        decode: ``callable(ids) -> str`` turning one sample's token ids (a 1-D CPU tensor) into text.
        class_names: names for integer labels, shown on the tiles instead of the numbers.
        input_key: where the inputs are in the batch (dict key, position or callable); inferred by default.
        target_key: where the labels are; inferred by default (a batch without labels is fine).
        normalised_scale: the ``|mean|``/std above which a channel is "not normalised".
        constant_std: the overall std below which the inputs are "nearly constant".
        on_fail: ``"warn"`` or ``"raise"`` (raise :class:`~lightning_recipe.RecipeCheckError` on NaN/Inf).

    Attributes:
        findings: the findings of the current run.
        last_stats: the :class:`~lightning_recipe.core.inputs.InputStats` of the last inspected batch.

    Example:
        >>> import torch
        >>> from lightning.pytorch import LightningModule, Trainer
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> class Net(LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.layer = torch.nn.Linear(4, 2)
        ...     def training_step(self, batch, batch_idx):
        ...         return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> raw = TensorDataset(torch.rand(16, 4) * 255, torch.randint(0, 2, (16,)))
        >>> inspector = BatchInspector()
        >>> trainer = Trainer(max_steps=1, logger=False, callbacks=[inspector], enable_progress_bar=False,
        ...                   enable_model_summary=False, enable_checkpointing=False,
        ...                   default_root_dir=getfixture("tmp_path"))
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(Net(), DataLoader(raw, batch_size=8))
        >>> [(f.status, f.message.split(" (")[0]) for f in inspector.findings]
        [('warn', 'inputs are not normalised')]
    """


    def __init__(
        self,
        every_n_train_steps: int = 1000,
        num_samples: int = 32,
        denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
        decode: Callable[[torch.Tensor], str] | None = None,
        class_names: Sequence[str] | None = None,
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        normalised_scale: float = NORMALISED_SCALE,
        constant_std: float = CONSTANT_STD,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail=on_fail)
        owner = type(self).__name__
        check_positive_int(owner, "every_n_train_steps", every_n_train_steps)
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
        self.validate_keys(owner, input_key, target_key)
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
            self._last_step = -1
            self._seen_codes = set()
            self._inspected = 0

    def _is_due(self, step: int) -> bool:
        return step != self._last_step and step % self.every_n_train_steps == 0

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._is_due(trainer.global_step) or self.should_skip(trainer):
            return
        self._last_step = trainer.global_step
        self.inspect(trainer, batch)

    # ------------------------------------------------------------------ the work
    def inspect(self, trainer: Trainer, batch: Any) -> InputStats | None:
        """Inspect one batch now: log its pictures and statistics, record findings."""
        step = int(trainer.global_step)
        parts = self._split(trainer, batch)
        if parts is None:
            return None
        x = parts.inputs if isinstance(parts.inputs, torch.Tensor) else first_tensor(parts.inputs)
        if x is None:
            self._note_once(
                trainer, "skipped", "no_tensor", "found no input tensor in the batch; pass `input_key=`."
            )
            return None
        targets = parts.targets
        layout = detect_layout(x)
        stats = input_stats(x, layout)
        self.last_stats = stats
        self._inspected += 1
        diagnoses = diagnose_inputs(stats, scale=self.normalised_scale, constant_std=self.constant_std)
        numbers = {
            "layout": layout,
            "shape": list(stats.shape),
            "mean": stats.overall_mean,
            "std": stats.overall_std,
            "min": stats.overall_min,
            "max": stats.overall_max,
        }
        for d in diagnoses:
            if d.code not in self._seen_codes:
                self._seen_codes.add(d.code)
                self.record(trainer, d.status, d.message, {**numbers, **d.numbers}, raise_on_fail=True)
        if self._inspected == 1 and not diagnoses:
            self.record(
                trainer,
                "pass",
                f"{layout} inputs {tuple(stats.shape)} ({stats.dtype}): mean {stats.overall_mean:.3g}, "
                f"std {stats.overall_std:.3g}, range {stats.overall_min:.3g} to {stats.overall_max:.3g}; no NaN/Inf",
                numbers,
            )
        if trainer.is_global_zero:
            self._log(trainer, x, targets, stats, step)
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
            message = f"skipped, because {_naming(err, 'input_key')}"
            if "split" not in self._seen_codes:
                self.warn(f"{self.name}: {message}")
            self._note_once(trainer, "skipped", "split", message)
            return None
        self._note_once(
            trainer,
            "skipped",
            "no_targets",
            f"labels skipped (the inputs are shown), because {_naming(target_err, 'target_key')}",
        )
        return parts

    def _note_once(self, trainer: Trainer, status: Any, code: str, message: str) -> None:
        if code in self._seen_codes:
            return
        self._seen_codes.add(code)
        self.record(trainer, status, message)

    def _log(self, trainer: Trainer, x: torch.Tensor, targets: Any, stats: InputStats, step: int) -> None:
        n = min(self.num_samples, int(x.shape[0]) if x.dim() else 1)
        sample = x[:n].detach().cpu().clone() if x.dim() else x.detach().cpu().reshape(1)
        labels: list[str] | None = None
        if isinstance(targets, torch.Tensor) and targets.dim() and targets.shape[0] >= n:
            labels = [label_text(t, self.class_names) for t in targets[:n].detach().cpu()]
        recipe_logging.log_scalars(
            trainer,
            {_PREFIX + "input_mean": stats.overall_mean, _PREFIX + "input_std": stats.overall_std},
            step,
        )
        recipe_logging.log_text(trainer, _PREFIX + "channel_stats", self._stats_table(stats), step)
        flat = x.detach().reshape(-1)
        if flat.numel() > 100_000:
            idx = torch.linspace(0, flat.numel() - 1, 100_000, device=flat.device).long()
            flat = flat[idx]
        recipe_logging.log_histogram(trainer, _PREFIX + "inputs", flat.float().cpu(), step)
        if isinstance(targets, torch.Tensor) and targets.numel():
            recipe_logging.log_histogram(trainer, _PREFIX + "labels", targets.detach().float().cpu(), step)
        if stats.layout == "image":
            self._log_images(trainer, sample, labels, stats, step)
        elif stats.layout == "tabular":
            header = ["#", *(["label"] if labels else []), *[f"x{j}" for j in range(sample.shape[1])]]
            rows = [
                [i, *([labels[i]] if labels else []), *sample[i].double().tolist()]
                for i in range(sample.shape[0])
            ]
            table = markdown_table(header, rows, max_rows=min(n, 16), max_cols=14)
            recipe_logging.log_text(trainer, _PREFIX + "rows", table, step)
        elif stats.layout == "tokens":
            recipe_logging.log_text(trainer, _PREFIX + "decoded", self._tokens_text(sample, labels), step)

    def _log_images(
        self, trainer: Trainer, sample: torch.Tensor, labels: list[str] | None, stats: InputStats, step: int
    ) -> None:
        shown = sample.float()
        if self.denormalize is not None:
            try:
                shown = torch.as_tensor(self.denormalize(shown.clone())).float()
            except Exception as err:
                raise RuntimeError(
                    f"BatchInspector(denormalize=...): the callable failed on a CPU tensor of shape "
                    f"{tuple(shown.shape)}: {type(err).__name__}: {err}"
                ) from err
        images = shown.numpy().copy()
        titles = list(labels) if labels is not None else None
        suptitle = (
            f"step {step}: {tuple(stats.shape)} {stats.dtype}, mean {stats.overall_mean:.3g}, "
            f"std {stats.overall_std:.3g}" + (" (denormalized)" if self.denormalize is not None else "")
        )

        def build() -> Any:
            return labelled_image_grid_figure(images, titles, ncols=8, suptitle=suptitle)

        recipe_logging.log_figure(trainer, _PREFIX + "images", build, step)

    def _stats_table(self, stats: InputStats) -> str:
        name = stats.channel_name
        rows = [
            [i, float(stats.mean[i]), float(stats.std[i]), float(stats.min[i]), float(stats.max[i])]
            for i in range(min(len(stats.mean), 32))
        ]
        head = (
            f"**{stats.layout}** batch {tuple(stats.shape)} `{stats.dtype}`: mean {stats.overall_mean:.4g}, "
            f"std {stats.overall_std:.4g}, min {stats.overall_min:.4g}, max {stats.overall_max:.4g}, "
            f"NaN {stats.nan}, Inf {stats.inf}\n\n"
        )
        return head + markdown_table([name, "mean", "std", "min", "max"], rows, max_rows=32)

    def _tokens_text(self, sample: torch.Tensor, labels: list[str] | None) -> str:
        lines = []
        for i in range(sample.shape[0]):
            ids = sample[i].reshape(-1)
            if self.decode is not None:
                try:
                    text = str(self.decode(ids))
                except Exception as err:
                    raise RuntimeError(
                        f"BatchInspector(decode=...): the callable failed on token ids of shape "
                        f"{tuple(ids.shape)}: {type(err).__name__}: {err}"
                    ) from err
            else:
                shown = ids[:64].tolist()
                text = " ".join(str(t) for t in shown) + (" …" if ids.numel() > 64 else "")
            label = f" **[{labels[i]}]**" if labels else ""
            text = text.replace("\n", " ")
            lines.append(f"{i}.{label} `{text}`" if self.decode is None else f"{i}.{label} {text}")
        return "\n\n".join(lines)

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
