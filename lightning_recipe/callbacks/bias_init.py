"""FinalBiasInit: the recipe's "init well"."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import IterableDataset
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import RecipeCallback, check_positive_int
from lightning_recipe.core.batches import KeySpec, first_tensor
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.init_values import data_losses, default_loss, init_bias, uninformative_label
from lightning_recipe.core.state import preserved_state
from lightning_recipe.core.stats import UNSIZED_MAX_BATCHES, TargetStats, collect_target_stats, is_one_shot
from lightning_recipe.core.tasks import check_task_argument, infer_task
from lightning_recipe.core.tracing import find_layer, trace_layers

__all__ = ["FinalBiasInit", "applied_bias_init"]

TaskArg = Literal["auto", "multiclass", "binary", "multilabel", "regression"]


class _Skip(Exception):
    """The bias cannot be set; the message says why and which argument to pass."""


class FinalBiasInit(RecipeCallback):
    """Set the final layer's bias from the training targets before the first optimizer step.

    Recipe, "init well": *"if you are regressing some values that have a mean of 50 then
    initialize the final bias to 50. If you have an imbalanced dataset of a ratio 1:10 of
    positives:negatives, set the bias on your logits such that your network predicts probability
    of 0.1 at initialization."* With the final weights drawn with mean zero, the prediction at init
    is the constant the bias implies, so the bias is set to the constant that fits the data best:

    * multiclass (softmax + cross-entropy, a 2-logit binary head included): ``log(prior)``, so
      ``softmax(bias)`` equals the class frequencies; a class absent from the data gets the finite
      ``log(0.5 / N)`` (never ``-inf``) and a warning;
    * binary / multilabel (sigmoid + BCE with logits, one logit per label): ``log(p / (1 - p))``;
    * regression: the per-output mean of the targets.

    The final layer is the last module with parameters to run in one traced forward pass on the
    first training batch (``layer=`` overrides). Target statistics come straight from the dataset
    when it exposes its targets (``TensorDataset``, ``targets``/``labels`` attributes), otherwise
    from one pass over the training dataloader (its random state and its own ``generator=`` restored
    afterwards, so training draws the same batches); under DDP they are summed over ranks, so every
    rank sets the identical bias. A dataloader without ``len()`` (an iterable, possibly endless, data
    set) is read for ``max_batches``, else an integer ``limit_train_batches``, else 100 batches, and
    the finding says the priors are estimated from them; a one-shot iterator (one that a second
    pass would not restart) is not read at all: pass ``layer=`` and ``priors=`` / ``target_mean=``.
    Under manual optimization (a GAN, say) the last layer need not be a task head: it runs only
    when given ``task=``, ``layer=``, ``priors=`` or ``target_mean=``. Only ``bias`` changes; every other parameter is left bitwise equal.
    It runs once: its checkpoint state records it, so a resumed run never re-initialises a trained
    bias. When it cannot apply (no bias, no targets, an output width that does not fit the
    targets) it records a ``skipped`` finding naming the argument to pass, and training goes on.

    TensorBoard: ``recipe/bias_init/expected_loss`` (the loss the new bias implies: ``H(prior)``,
    the mean binary entropy, or ``Var[y]``), ``recipe/bias_init/uninformative_loss`` (the same for a
    zero bias: ``ln C``, ``ln 2``, ``E[y^2]``) and the figure ``recipe/bias_init/priors`` (data
    priors or target means against what the bias predicts).

    Args:
        task: ``"auto"`` (inferred from the targets and the model's output) or one of
            ``"multiclass"``, ``"binary"``, ``"multilabel"``, ``"regression"``.
        layer: qualified name of the final layer (``"head.fc"``); default: found by tracing.
        priors: class or label frequencies to use instead of scanning the data (multiclass: one
            per class, summing to 1; binary/multilabel: the frequency of 1 per label).
        target_mean: regression: the mean (a number, or one per output) instead of scanning.
        max_batches: estimate the statistics from at most this many batches (huge data sets; a
            loader without ``len()`` is read for at most ``limit_train_batches`` or 100 batches).
        input_key: where the inputs are in a batch (dict key, position, or callable).
        target_key: where the targets are in a batch (dict key, position, or callable).
        ignore_index: multiclass: a label to leave out of the counts (PyTorch's ``-100``).
        log_figure: log the priors-vs-bias figure.

    Attributes:
        findings: one finding: ``pass`` (the bias it set), ``warn`` (set, but a class is absent)
            or ``skipped`` (with the reason).
        applied: whether it set the bias in this run (or in the run it was resumed from).
        layer_name: the name of the layer whose bias it set.
        bias: the bias it set (float64, CPU), or ``None``.
        stats: the :class:`~lightning_recipe.core.stats.TargetStats` it used (all ranks together).
        resolved_task: the task it used.

    Raises:
        ValueError: for an unknown ``task``, a ``layer`` that is not in the model, invalid
            ``priors`` / ``target_mean``, or ``priors`` that do not fit the final layer's width.

    Example:
        >>> import torch
        >>> from torch.nn import functional as F
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from lightning.pytorch import LightningModule, Trainer
        >>> class Model(LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.head = torch.nn.Linear(4, 3)
        ...     def forward(self, x):
        ...         return self.head(x)
        ...     def training_step(self, batch, batch_idx):
        ...         return F.cross_entropy(self(batch[0]), batch[1])
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.0)
        >>> y = torch.tensor([0] * 6 + [1] * 3 + [2])          # priors 0.6, 0.3, 0.1
        >>> data = DataLoader(TensorDataset(torch.randn(10, 4), y), batch_size=5)
        >>> init = FinalBiasInit()
        >>> trainer = Trainer(max_steps=1, callbacks=[init], logger=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, enable_checkpointing=False,
        ...                   default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(Model(), data)
        >>> init.layer_name, [round(p, 2) for p in torch.softmax(init.bias, 0).tolist()]
        ('head', [0.6, 0.3, 0.1])
    """


    def __init__(
        self,
        task: TaskArg = "auto",
        layer: str | None = None,
        priors: Sequence[float] | torch.Tensor | None = None,
        target_mean: float | Sequence[float] | torch.Tensor | None = None,
        max_batches: int | None = None,
        input_key: KeySpec = None,
        target_key: KeySpec = None,
        ignore_index: int | None = -100,
        log_figure: bool = True,
    ) -> None:
        super().__init__()
        owner = "FinalBiasInit"
        check_task_argument(task, owner)
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise TypeError(f"{owner}(layer={layer!r}): pass the qualified name of a module, e.g. 'head.fc'.")
        check_positive_int(owner, "max_batches", max_batches, allow_none=True)
        self.validate_keys(owner, input_key, target_key)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise TypeError(f"{owner}(ignore_index={ignore_index!r}): pass an integer label or None.")
        if priors is not None and target_mean is not None:
            raise ValueError(
                f"{owner}: pass either priors= (classification) or target_mean= (regression), not both."
            )
        self.task = task
        self.layer = layer
        self.priors = None if priors is None else _checked_priors(priors)
        self.target_mean = None if target_mean is None else _checked_mean(target_mean)
        if self.priors is not None and task == "regression":
            raise ValueError(
                f"{owner}(task='regression', priors=...): regression takes target_mean=, not priors=."
            )
        if self.target_mean is not None and task not in ("auto", "regression"):
            raise ValueError(
                f"{owner}(task={task!r}, target_mean=...): target_mean= is for task='regression'."
            )
        self.max_batches = max_batches
        self.input_key = input_key
        self.target_key = target_key
        self.ignore_index = ignore_index
        self.log_figure = bool(log_figure)
        self.applied = False
        self.layer_name: str | None = None
        self.bias: torch.Tensor | None = None
        self.stats: TargetStats | None = None
        self.resolved_task: str | None = None
        self._done = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layer=self.layer)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        self._done = False
        self.applied = False
        self.bias = None
        self.stats = None
        if self.layer is not None:
            find_layer(pl_module, self.layer, "FinalBiasInit(layer=...)")

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.should_skip(trainer):
            return
        if self._done:
            where = f" of {self.layer_name!r}" if self.layer_name else ""
            self.record(
                trainer,
                "skipped",
                f"resumed from a checkpoint: the final bias{where} was set when that run started and is not "
                "re-initialised",
                {"applied": self.applied, "layer": self.layer_name},
            )
            return
        self._done = True
        if trainer.global_step > 0:
            self.record(
                trainer,
                "skipped",
                f"training is already at step {trainer.global_step} (resumed without this callback's state); "
                "the bias is not re-initialised mid-training",
                {"global_step": int(trainer.global_step)},
            )
            return
        self._initialise(trainer, pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "done": self._done,
            "applied": self.applied,
            "layer_name": self.layer_name,
            "bias": None if self.bias is None else self.bias.detach().cpu().tolist(),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = bool(state_dict.get("done", False))
        self.applied = bool(state_dict.get("applied", False))
        self.layer_name = state_dict.get("layer_name")
        bias = state_dict.get("bias")
        self.bias = None if bias is None else torch.tensor(bias, dtype=torch.float64)

    # ------------------------------------------------------------------ the work
    def _initialise(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Phase 1, local (no collective): the layer, the task and this rank's statistics.
        local: dict[str, Any] | None = None
        reason = ""
        try:
            local = self._local(trainer, pl_module)
        except _Skip as err:
            reason = str(err)
        # Phase 2: every rank takes the same decision before any other collective.
        if not self.decide(trainer, local is not None, all_=True):
            self.record(
                trainer,
                "skipped",
                reason or "another process could not compute the target statistics; see its warning",
                {"layer": self.layer_name},
            )
            return
        assert local is not None
        try:
            self._apply(trainer, local)
        except _Skip as err:
            self.record(trainer, "skipped", str(err), {"layer": self.layer_name, "task": self.resolved_task})

    def _local(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        given = self.priors is not None or self.target_mean is not None
        if not pl_module.automatic_optimization and self.task == "auto" and self.layer is None and not given:
            raise _Skip(
                "skipped, because the module uses manual optimization: its last layer and the loss passed to "
                "backward need not be the task's (a GAN's discriminator, say); pass `task=` or `layer=` to set it"
            )
        loader = self.first_dataloader(self.train_dataloader(trainer))
        if loader is not None and is_one_shot(loader):
            if self.layer is None or not given:
                raise _Skip(
                    "skipped, because the training data is a one-shot iterator: reading targets from it would "
                    "take them from training; pass `layer=` and `priors=` / `target_mean=`"
                )
            loader = None
        batch = None
        if loader is not None:
            # the loader's own generator (DataLoader(generator=...)) is restored too: training must draw
            # the same order as without this callback
            with preserved_state(pl_module, loaders=[loader]):
                try:
                    batch = trainer.strategy.batch_to_device(_first_batch(loader))
                except Exception as err:
                    if self.layer is None:
                        raise _Skip(
                            f"could not read a first training batch ({type(err).__name__}: {err}); pass `layer=`"
                        ) from err
        elif self.layer is None:
            raise _Skip("found no training dataloader to trace the model with; pass `layer=`")

        parts = None
        if batch is not None:
            try:
                parts = self.split(batch, self.input_key, self.target_key)
            except ValueError as err:
                raise _Skip(str(err)) from err

        # the final layer: traced, or named
        outputs = None
        trace = None
        if parts is not None:
            inputs = parts.inputs
            try:
                with preserved_state(pl_module), torch.no_grad(), trainer.precision_plugin.forward_context():
                    pl_module.eval()
                    trace = trace_layers(pl_module, lambda m: m(inputs))
                outputs = first_tensor(trace.output)
            except Exception as err:
                if self.layer is None:
                    raise _Skip(
                        f"could not run the model's forward on the first batch ({type(err).__name__}: {err}); "
                        "pass `layer=` (and `input_key=`)"
                    ) from err
        if self.layer is not None:
            module = find_layer(pl_module, self.layer, "FinalBiasInit(layer=...)")
            name = self.layer
        else:
            assert trace is not None
            if trace.final is None:
                raise _Skip("the traced forward ran no module with parameters; pass `layer=`")
            module, name = trace.final.module, trace.final.name
        self.layer_name = name
        bias = getattr(module, "bias", None)
        if not isinstance(bias, torch.Tensor):
            raise _Skip(
                f"the final layer {name!r} ({type(module).__name__}) has no bias; build it with bias=True "
                "or pass `layer=`"
            )
        width = int(bias.numel())

        targets = parts.targets if parts is not None else None
        if targets is None and not given:
            raise _Skip(
                "found no targets in the training batch; pass `target_key=`, or `priors=` / `target_mean=`"
            )
        task = self._task(targets, outputs, width)
        self.resolved_task = task
        out: dict[str, Any] = {"bias": bias, "width": width, "task": task, "module": module}
        if given:
            return out
        dataset = getattr(loader, "dataset", None)
        try:
            with preserved_state(pl_module, loaders=[loader]):
                stats = collect_target_stats(
                    task,  # type: ignore[arg-type]
                    dataset=dataset,
                    dataloader=loader,
                    target_key=self.target_key if self.target_key is not None else parts.target_key,  # type: ignore[union-attr]
                    max_batches=self.max_batches,
                    unsized_max_batches=_unsized_batches(trainer),
                    ignore_index=self.ignore_index if task == "multiclass" else None,
                    progress=trainer.is_global_zero and trainer.progress_bar_callback is not None,
                )
        except ValueError as err:
            raise _Skip(f"could not compute the target statistics: {err}") from err
        out["stats"] = stats
        return out

    def _task(self, targets: torch.Tensor | None, outputs: torch.Tensor | None, width: int) -> str:
        if self.task != "auto":
            return self.task
        if self.target_mean is not None:
            return "regression"
        if targets is not None:
            try:
                return infer_task(targets, outputs if outputs is not None else None)
            except ValueError as err:
                if self.priors is None:
                    raise _Skip(str(err)) from err
        if self.priors is not None:
            if width == 1:
                return "binary"
            return "multiclass" if abs(float(self.priors.sum()) - 1.0) < 1e-3 else "multilabel"
        raise _Skip("cannot infer the task without targets; pass `task=` and `target_key=`")

    def _apply(self, trainer: Trainer, local: dict[str, Any]) -> None:
        task, width, bias_param = local["task"], local["width"], local["bias"]
        name = self.layer_name
        module_type = type(local["module"]).__name__
        if self.priors is not None or self.target_mean is not None:
            stats, init, source = self._given(task, width)
        else:
            stats = self._reduce(trainer, local["stats"], task, width)
            source = f"{stats.count} training targets"
            if stats.estimated:
                source += f" (estimated from {stats.batches} batches)"
            if task == "multiclass":
                classes = int(stats.class_counts.numel()) if stats.class_counts is not None else 0  # type: ignore[union-attr]
                seen = _last_class(stats) + 1
                if seen > width:
                    raise _Skip(
                        f"the final layer {name!r} has {width} outputs but the targets have {seen} classes "
                        f"(labels up to {seen - 1}); pass `layer=` for the classifier or `task=`"
                    )
                if classes < width:
                    stats.class_counts = torch.cat(  # type: ignore[assignment]
                        [stats.class_counts, torch.zeros(width - classes, dtype=torch.float64)]  # type: ignore[list-item]
                    )
                elif classes > width:
                    stats.class_counts = stats.class_counts[:width]  # type: ignore[index]
            elif stats.num_outputs != width:
                what = "labels" if task != "regression" else "target values"
                raise _Skip(
                    f"the final layer {name!r} has {width} outputs but each sample has {stats.num_outputs} "
                    f"{what} (task {task!r}); pass `layer=` or `task=`"
                )
            init = init_bias(stats)
        self.stats = stats
        new = init.bias
        with torch.no_grad():
            bias_param.copy_(
                new.reshape(bias_param.shape).to(dtype=bias_param.dtype, device=bias_param.device)
            )
        self.bias = new.detach().clone()
        self.applied = True

        kind = default_loss(task)
        data = (
            data_losses(kind, stats, new)
            if stats is not None
            else {"bias": float("nan"), "zero": float("nan")}
        )
        numbers: dict[str, Any] = {
            "layer": name,
            "task": task,
            "outputs": width,
            "bias": [round(float(v), 6) for v in new[:64]],
            "expected_loss": data["bias"],
            "uninformative_loss": data["zero"],
        }
        what = {
            "multiclass": "log(prior)",
            "binary": "log-odds of the label prior",
            "multilabel": "log-odds of the label priors",
            "regression": "the target mean",
        }[task]
        message = f"set the final bias of {name!r} ({module_type}, {width} outputs) to {what} of {source}"
        if math.isfinite(data["bias"]):
            message += (
                f"; loss at init should be {data['bias']:.4g} instead of "
                f"{uninformative_label(kind, width)}={data['zero']:.4g}"
            )
        status = "pass"
        if init.floored:
            status = "warn"
            shown = init.floored[:10]
            more = f" (+{len(init.floored) - 10} more)" if len(init.floored) > 10 else ""
            noun = "class(es)" if task == "multiclass" else "label(s) always 0 or always 1:"
            message += (
                f"; {noun} {shown}{more} never occur" if task == "multiclass" else f"; {noun} {shown}{more}"
            ) + (
                f" in the training data: their bias is log({init.floor:.3g}) = {math.log(init.floor):.2f} "
                "(finite, not -inf); check the labels or pass `priors=`"
            )
            numbers["floored"] = init.floored
        self.record(trainer, status, message, numbers)
        self._log(trainer, task, stats, new, data)

    def _given(self, task: str, width: int) -> tuple[TargetStats | None, Any, str]:
        from lightning_recipe.core.init_values import InitBias

        if self.target_mean is not None:
            mean = self.target_mean.to(torch.float64)
            if mean.numel() == 1:
                mean = mean.expand(width).clone()
            if mean.numel() != width:
                raise ValueError(
                    f"FinalBiasInit(target_mean=...): got {mean.numel()} values but the final layer "
                    f"{self.layer_name!r} has {width} outputs."
                )
            return None, InitBias(mean, [], 0.0, "regression"), "the given target_mean"
        assert self.priors is not None
        p = self.priors.to(torch.float64)
        if p.numel() != width:
            raise ArgumentError(
                f"FinalBiasInit(priors=...): got {p.numel()} priors but the final layer {self.layer_name!r} "
                f"has {width} outputs."
            )
        if task == "multiclass":
            stats = TargetStats("multiclass", count=10**6, class_counts=p / p.sum() * 10**6)
        else:
            stats = TargetStats(
                task,  # type: ignore[arg-type]
                count=10**6,
                sum=p * 10**6,
                sum_sq=p * 10**6,
                num_values=torch.full_like(p, 10**6),
            )
        init = init_bias(stats, floor=1e-6)
        return stats, init, "the given priors"

    def _reduce(self, trainer: Trainer, stats: TargetStats, task: str, width: int) -> TargetStats:
        """Sum the statistics over ranks (identical shards, e.g. a dataset read whole, count once)."""
        if trainer.world_size <= 1:
            return stats
        if task == "multiclass":
            size = int(max(self.all_reduce_max(trainer, float(stats.num_outputs)), width))
            flat = stats.to_tensor(size)
        else:
            d = stats.num_outputs
            if self.all_reduce_max(trainer, float(d)) != -self.all_reduce_max(trainer, float(-d)):
                raise _Skip("the processes see targets of different widths; pass `target_key=`")
            flat = stats.to_tensor()
        both = self.all_reduce_sum(trainer, torch.cat([flat, flat * flat]))
        total, total_sq = both[: flat.numel()], both[flat.numel() :]
        world = float(trainer.world_size)
        identical = bool(torch.allclose(total_sq * world, total * total, rtol=1e-9, atol=1e-9))
        if identical:  # every rank read the same (whole) data: do not count it world_size times
            total = total / world
        merged = TargetStats.from_tensor(task, total)  # type: ignore[arg-type]
        merged.source = stats.source
        merged.estimated = self.decide(trainer, stats.estimated, all_=False)
        merged.batches = int(self.all_reduce_sum(trainer, torch.tensor([float(stats.batches)]))[0])
        return merged

    def _log(
        self,
        trainer: Trainer,
        task: str,
        stats: TargetStats | None,
        bias: torch.Tensor,
        data: dict[str, float],
    ) -> None:
        step = int(trainer.global_step)
        scalars = {
            f"recipe/bias_init/{k}_loss": v
            for k, v in (("expected", data["bias"]), ("uninformative", data["zero"]))
        }
        recipe_logging.log_scalars(trainer, {k: v for k, v in scalars.items() if math.isfinite(v)}, step)
        if not self.log_figure or not trainer.is_global_zero:
            return
        b = bias.detach().cpu().numpy().astype(np.float64)
        if task == "regression":
            mean = b.copy() if stats is None else stats.mean().numpy()
            std = None if stats is None else np.sqrt(stats.var().numpy())
            builder = _regression_figure(mean, std, b)
        else:
            prior = None
            if stats is not None:
                prior = stats.priors().numpy().astype(np.float64)
            predicted = _softmax(b) if task == "multiclass" else 1.0 / (1.0 + np.exp(-b))
            builder = _prior_figure(prior, predicted, task, self.layer_name or "")
        # rendered here, once, rather than on the background thread: the renderer's queue does not
        # survive a fork (ddp_fork children of a parent that rendered before would wait forever)
        recipe_logging.log_figure(trainer, "recipe/bias_init/priors", builder(), step)


# ---------------------------------------------------------------------- helpers
def applied_bias_init(trainer: Trainer) -> FinalBiasInit | None:
    """The ``FinalBiasInit`` of this trainer that set a bias (in this run or the resumed one)."""
    for cb in getattr(trainer, "callbacks", []):
        if isinstance(cb, FinalBiasInit) and cb.applied:
            return cb
    return None


def _checked_priors(priors: Any) -> torch.Tensor:
    try:
        p = torch.as_tensor(priors, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"FinalBiasInit(priors={priors!r}): pass a sequence of class frequencies.") from err
    if p.numel() == 0 or not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or bool((p > 1).any()):
        raise ValueError(
            f"FinalBiasInit(priors={priors!r}): pass frequencies between 0 and 1 (one per class, summing to 1, "
            "or one per label)."
        )
    return p


def _checked_mean(mean: Any) -> torch.Tensor:
    try:
        m = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"FinalBiasInit(target_mean={mean!r}): pass a number or one number per output."
        ) from err
    if m.numel() == 0 or not bool(torch.isfinite(m).all()):
        raise ValueError(f"FinalBiasInit(target_mean={mean!r}): pass finite numbers.")
    return m


def _last_class(stats: TargetStats) -> int:
    counts = stats.class_counts
    if counts is None or not bool((counts > 0).any()):
        return -1
    return int(torch.nonzero(counts > 0).flatten().max())


def _unsized_batches(trainer: Trainer) -> int:
    """How many batches to read from a training loader without ``len()``: ``limit_train_batches`` if
    it is a count, else :data:`~lightning_recipe.core.stats.UNSIZED_MAX_BATCHES`."""
    limit = getattr(trainer, "limit_train_batches", None)
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        return limit
    return UNSIZED_MAX_BATCHES


def _first_batch(loader: Any) -> Any:
    """A first batch: the dataset's first items collated (no sampler, no workers), else ``next(iter(loader))``."""
    dataset = getattr(loader, "dataset", None)
    batch_size = getattr(loader, "batch_size", None)
    collate = getattr(loader, "collate_fn", None)
    if (
        dataset is not None
        and batch_size
        and collate is not None
        and not isinstance(dataset, IterableDataset)
    ):
        try:
            n = min(int(batch_size), len(dataset))
            if n > 0:
                return collate([dataset[i] for i in range(n)])
        except Exception:
            pass
    return next(iter(loader))


def _softmax(b: np.ndarray) -> np.ndarray:
    e = np.exp(b - b.max())
    return e / e.sum()


def _prior_figure(prior: np.ndarray | None, predicted: np.ndarray, task: str, layer: str):
    def build():
        from lightning_recipe.plots.style import new_figure

        n = predicted.size
        fig = new_figure(max(4.0, min(9.0, 1.2 + 0.35 * n)), 3.0, dpi=100)
        ax = fig.add_subplot()
        xs = np.arange(n)
        pred_label = "softmax(bias)" if task == "multiclass" else "sigmoid(bias)"
        if n <= 60:
            w = 0.38
            if prior is not None:
                ax.bar(xs - w / 2, prior, w, label="data prior", color="#4C72B0")
            ax.bar(xs + w / 2, predicted, w, label=pred_label, color="#DD8452")
            if n <= 6:
                for i in range(n):
                    top = predicted[i] if prior is None else max(prior[i], predicted[i])
                    ax.annotate(f"{predicted[i]:.3f}", (xs[i], top), ha="center", va="bottom", fontsize=8)
            ax.set_xlim(-0.8 if n > 2 else -1.5, n - 0.2 if n > 2 else n + 0.5)
            ax.set_xticks(xs if n <= 30 else xs[:: max(1, n // 15)])
            ax.set_xlabel("class" if task == "multiclass" else "label")
            peak = float(max(predicted.max(), prior.max() if prior is not None else 0.0))
            ax.set_ylim(0, peak * 1.3 if peak > 0 else 1.0)
        else:
            order = np.argsort(-(prior if prior is not None else predicted))
            if prior is not None:
                ax.plot(prior[order], label="data prior", color="#4C72B0")
            ax.plot(predicted[order], "--", label=pred_label, color="#DD8452")
            ax.set_xlabel("classes, most frequent first")
        ax.set_ylabel("probability at init")
        ax.set_title(f"final bias of {layer!r}: prediction at init vs data", fontsize=9)
        ax.legend(fontsize=8, frameon=False, ncol=2, loc="upper center")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        return fig

    return build


def _regression_figure(mean: np.ndarray, std: np.ndarray | None, bias: np.ndarray):
    def build():
        from lightning_recipe.plots.style import new_figure

        n = bias.size
        fig = new_figure(max(4.0, min(9.0, 1.5 + 0.4 * n)), 3.0, dpi=100)
        ax = fig.add_subplot()
        xs = np.arange(n)
        ax.errorbar(
            xs,
            mean,
            yerr=std,
            fmt="o",
            color="#4C72B0",
            capsize=4,
            label="target mean ± std" if std is not None else "target mean",
        )
        ax.plot(xs, bias, "x", color="#DD8452", markersize=10, mew=2, label="bias")
        ax.set_xticks(xs if n <= 30 else xs[:: max(1, n // 15)])
        ax.set_xlabel("output")
        ax.set_ylabel("value")
        ax.set_title("final bias vs target mean", fontsize=9)
        ax.legend(fontsize=8, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        return fig

    return build
