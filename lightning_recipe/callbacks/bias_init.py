"""FinalBiasInit: the recipe's "init well"."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import RecipeCallback
from lightning_recipe.core.batches import KeySpec
from lightning_recipe.core.budget import check_one_time, shared_budget
from lightning_recipe.core.checks import bias_init as checks
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.stats import TargetStats
from lightning_recipe.core.tasks import TaskArg
from lightning_recipe.core.tracing import find_layer
from lightning_recipe.findings import Skip
from lightning_recipe.plots.bias_init import bias_figure

__all__ = ["FinalBiasInit", "applied_bias_init"]


class FinalBiasInit(RecipeCallback):
    """Set the final layer's bias from the training targets before the first optimizer step.

    Recipe, "init well": *"if you are regressing some values that have a mean of 50 then
    initialize the final bias to 50. If you have an imbalanced dataset of a ratio 1:10 of
    positives:negatives, set the bias on your logits such that your network predicts probability
    of 0.1 at initialization."* Multiclass: ``log(prior)``; binary/multilabel: ``log(p / (1 - p))``;
    regression: the target mean. The final layer is the last module with parameters to run in one
    traced forward on the first training batch. Only ``bias`` changes; it runs once (resumes keep
    the trained bias); when it cannot apply it records ``skipped`` with the argument to pass.

    TensorBoard: ``recipe/bias_init/expected_loss``, ``recipe/bias_init/uninformative_loss`` and the
    figure ``recipe/bias_init/priors``. See the README section "Init well and verify the loss at init".

    Args:
        task: ``"auto"`` or one of ``"multiclass"``, ``"binary"``, ``"multilabel"``, ``"regression"``.
        layer: qualified name of the final layer (``"head.fc"``); default: found by tracing.
        priors: class or label frequencies to use instead of scanning the data.
        target_mean: regression: the mean (a number, or one per output) instead of scanning.
        max_batches: estimate the statistics from at most this many batches.
        input_key: where the inputs are in a batch (dict key, position, or callable).
        target_key: where the targets are in a batch (dict key, position, or callable).
        ignore_index: multiclass: a label to leave out of the counts (PyTorch's ``-100``).
        log_figure: log the priors-vs-bias figure.
        one_time: a one-time budget (README "Cost"; ``None``, the default: none): without ``max_batches``,
            a training loader that must be iterated to read its targets (dict samples, no ``targets``) is
            read from a fixed random subset of what that share of the planned run trains on (>= 4096).

    Attributes:
        findings: one finding: ``pass``, ``warn`` (a class is absent) or ``skipped`` (with the reason).
        applied: whether it set the bias in this run (or in the run it was resumed from).
        layer_name: the name of the layer whose bias it set.
        bias: the bias it set (float64, CPU), or ``None``.
        stats: the :class:`~lightning_recipe.core.stats.TargetStats` it used (all ranks together).
        resolved_task: the task it used.

    Raises:
        ValueError: an unknown ``task``, a ``layer`` not in the model, bad ``priors`` / ``target_mean``.

    Example:
        >>> from lightning_recipe.demos import TinyRegressor, regression_data, tiny_trainer
        >>> init = FinalBiasInit()
        >>> tiny_trainer(max_steps=1, callbacks=[init], default_root_dir=getfixture("tmp_path")).fit(
        ...     TinyRegressor(), regression_data(mean=50.0))
        >>> init.layer_name, init.resolved_task, 45 < float(init.bias[0]) < 55
        ('head', 'regression', True)
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
        one_time: float | None = None,
    ) -> None:
        super().__init__()
        self.one_time_share = check_one_time(self.name, one_time)
        self.priors, self.target_mean = checks.check_arguments(
            task, layer, ignore_index, max_batches, input_key, target_key, priors, target_mean
        )
        self.task = task
        self.layer = layer
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
        resumed = checks.resume_finding(self._done, self.applied, self.layer_name, int(trainer.global_step))
        self._done = True
        if resumed is not None:
            self.record(trainer, "skipped", *resumed)
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
        # local work first (no collective), then every rank takes the same branch
        local, reason = self.agreed(
            trainer, lambda: self._local(trainer, pl_module), "compute the target statistics"
        )
        if local is None:
            self.record(trainer, "skipped", reason, {"layer": self.layer_name})
            return
        try:
            self._apply(trainer, local)
        except Skip as err:
            self.record(trainer, "skipped", str(err), {"layer": self.layer_name, "task": self.resolved_task})

    def _local(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        given = self.priors is not None or self.target_mean is not None
        checks.check_manual_optimization(pl_module.automatic_optimization, self.task, self.layer, given)
        loader = self.first_dataloader(self.train_dataloader(trainer))
        loader, batch = checks.read_first_batch(
            pl_module, loader, self.layer, given, lambda batch: self.loop_batch(trainer, batch)
        )
        parts = checks.split_first_batch(batch, self.input_key, self.target_key)
        call = ModelCall(input_key=self.input_key, target_key=self.target_key)
        context = trainer.precision_plugin.forward_context()
        final = checks.final_layer(pl_module, batch if parts is not None else None, self.layer, call, context)
        self.layer_name = final.name
        targets = parts.targets if parts is not None else None
        task = checks.resolve_task(
            self.task, targets, final.outputs, final.width, self.priors, self.target_mean
        )
        self.resolved_task = task
        out: dict[str, Any] = {"final": final, "task": task}
        if given:
            return out
        budgeted = self.one_time_share is not None and self.max_batches is None
        out["stats"], out["note"] = checks.budgeted_target_stats(
            pl_module,
            loader,
            task,
            shared_budget(trainer, self.one_time_share) if budgeted else None,  # type: ignore[arg-type]
            self.name,
            rank=int(trainer.global_rank),
            world_size=int(trainer.world_size),
            target_key=self.target_key if self.target_key is not None else parts.target_key,  # type: ignore[union-attr]
            max_batches=self.max_batches,
            unsized_max_batches=checks.unsized_batches(getattr(trainer, "limit_train_batches", None)),
            ignore_index=self.ignore_index if task == "multiclass" else None,
            progress=trainer.is_global_zero and trainer.progress_bar_callback is not None,
        )
        return out

    def _apply(self, trainer: Trainer, local: dict[str, Any]) -> None:
        task, final = local["task"], local["final"]
        name, width = final.name, final.width
        if "stats" not in local:
            stats, init, source = checks.given_bias(task, width, name, self.priors, self.target_mean)
        else:
            stats = local["stats"]
            if trainer.world_size > 1:
                stats = checks.merge_stats(
                    stats,
                    task,
                    width,
                    trainer.world_size,
                    lambda t: self.all_reduce_sum(trainer, t),
                    lambda v: self.all_reduce_max(trainer, v),
                    self.any_rank(trainer),
                )
            stats, init, source = checks.bias_from_stats(stats, task, width, name, final.values_per_sample)
        self.stats = stats
        new = init.bias
        final.set_bias(new)
        self.bias = new.detach().clone()
        self.applied = True
        status, message, numbers = checks.bias_finding(
            task, name, type(final.module).__name__, width, source, stats, init
        )
        message += f"; {local['note']}" if local.get("note") else ""
        self.record(trainer, status, message, numbers)  # type: ignore[arg-type]
        self._log(trainer, task, stats, new)

    def _log(self, trainer: Trainer, task: str, stats: TargetStats | None, bias: torch.Tensor) -> None:
        step = int(trainer.global_step)
        recipe_logging.log_scalars(trainer, checks.loss_scalars(task, stats, bias), step)
        if not self.log_figure or not trainer.is_global_zero:
            return
        inputs = checks.figure_inputs(task, stats, bias)  # numpy: the rendering process draws it
        build = functools.partial(bias_figure, task, layer=self.layer_name or "", **inputs)
        recipe_logging.log_figure(trainer, "recipe/bias_init/priors", build, step)


def applied_bias_init(trainer: Trainer) -> FinalBiasInit | None:
    """The ``FinalBiasInit`` of this trainer that set a bias (in this run or the resumed one)."""
    for cb in getattr(trainer, "callbacks", []):
        if isinstance(cb, FinalBiasInit) and cb.applied:
            return cb
    return None
