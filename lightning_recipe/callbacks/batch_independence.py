"""BatchIndependenceCheck: the recipe's "use backprop to chart dependencies"."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal

from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from lightning_recipe import writer
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.batches import KeySpec
from lightning_recipe.core.checks.batch_independence import (
    SEVERITY,
    IndependenceConfig,
    Verdict,
    distinct,
    figure_data,
    measure,
)
from lightning_recipe.core.dependency import DependencyChart
from lightning_recipe.findings import Finding
from lightning_recipe.plots.batch_independence import dependency_figure

__all__ = ["BatchIndependenceCheck", "agree"]


class BatchIndependenceCheck(RecipeCallback):
    """Check with backprop that no sample's output depends on another sample's input.

    Recipe, "use backprop to chart dependencies": *"set the loss to be something trivial like the
    sum of all outputs of example i, run the backward pass all the way to the input, and ensure
    that you get a non-zero gradient only on the i-th input."* Once, on the first training batch
    (before the first optimizer step), and on demand with :meth:`check`, it backpropagates the
    (randomly weighted) outputs of a few samples to copies of the inputs the model is called with
    (``core.model_call``: ``forward(x)``, ``forward(**batch)``, ...) and requires an exactly zero
    gradient on every other sample; with ``causal_dim=``, also no dependency on later positions
    (by default when the objective is next-token prediction: token targets that a causal LM predicts,
    ``core.tasks.infer_sequence_objective``).
    BatchNorm- and Dropout-like layers run in eval mode meanwhile; training is left unchanged.
    TensorBoard: ``recipe/batch_independence/dependency`` (figure), ``.../mixing_ratio`` and, with
    ``causal_dim``, ``.../causal_leaks``. See the README section "BatchIndependenceCheck".

    Args:
        input_key: where the model's inputs are in the batch (dict key, position or callable).
        forward: ``callable(pl_module, inputs) -> outputs`` when the module is not called the way
            the batch and ``forward``'s signature suggest (e.g. ``lambda m, x: m(**x)``).
        output_key: picks the per-sample outputs (dict key, position or callable); default: every
            floating-point output tensor with the batch dimension.
        batch_dim: the batch dimension of inputs and outputs (1 for sequence-first models).
        causal_dim: the sequence dimension to check causally (e.g. 1 for ``(N, T, ...)``), ``None``
            (not checked), or ``"auto"`` (default: 1 when the training objective is next-token
            prediction, labels the inputs shifted by one; else not checked).
        strict: with ``causal_dim``, the output at ``t`` may depend on positions before ``t`` only
            (default: up to and including ``t``, inputs already shifted by one).
        num_samples: how many samples are backpropagated (first, last, middle, ...).
        tolerance: a gradient on another sample counts when above this fraction of the sample's
            own; 0 (default): any non-zero value.
        log_figure: log the dependency figure.
        on_fail: ``"warn"`` (default) or ``"raise"`` a ``RecipeCheckError`` on a ``fail``.

    Attributes:
        findings: one finding per verdict: the batch dimension and, with ``causal_dim``, causality
            (one ``skipped`` finding when a single reason stops both).
        chart: the last :class:`~lightning_recipe.core.dependency.DependencyChart` (``None`` before).

    Raises:
        ValueError: for a bad ``on_fail``, ``num_samples``, ``tolerance`` or dimension.
        RecipeCheckError: when the check fails under ``on_fail="raise"``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> check = BatchIndependenceCheck()
        >>> net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
        >>> check.check(net, (torch.randn(16, 3), torch.zeros(16))).status
        'pass'
        >>> class Centred(nn.Module):
        ...     def forward(self, x):
        ...         return net(x - x.mean(0))          # a reduction over the batch dimension
        >>> finding = check.check(Centred(), torch.randn(16, 3))
        >>> finding.status, finding.message[:45]
        ('fail', 'the model mixes samples across the batch: the')
    """

    def __init__(
        self,
        input_key: KeySpec = None,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        output_key: str | int | Callable[[Any], Any] | None = None,
        batch_dim: int = 0,
        causal_dim: int | Literal["auto"] | None = "auto",
        strict: bool = False,
        num_samples: int = 4,
        tolerance: float = 0.0,
        log_figure: bool = True,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail)
        owner = self.name
        self.validate_keys(owner, input_key, None)
        if forward is not None and not callable(forward):
            raise TypeError(f"{owner}(forward={forward!r}): pass a callable (pl_module, inputs) -> outputs.")
        if output_key is not None and not isinstance(output_key, (str, int)) and not callable(output_key):
            raise TypeError(f"{owner}(output_key={output_key!r}): pass a dict key, a position or a callable.")
        check_positive_int(owner, "batch_dim", batch_dim, minimum=0)
        if causal_dim != "auto":
            check_positive_int(owner, "causal_dim", causal_dim, allow_none=True, minimum=0)
        if causal_dim is not None and causal_dim == batch_dim:
            raise ValueError(
                f"{owner}(causal_dim={causal_dim!r}): that is the batch dimension (batch_dim={batch_dim}); "
                "pass the sequence dimension, e.g. causal_dim=1 for (N, T, ...) inputs."
            )
        check_positive_int(owner, "num_samples", num_samples, minimum=1)
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
            raise ValueError(
                f"{owner}(tolerance={tolerance!r}): pass a number in [0, 1); 0 means exactly zero."
            )
        self.input_key = input_key
        self.forward = forward
        self.output_key = output_key
        self.batch_dim = batch_dim
        self.causal_dim = causal_dim
        self.strict = bool(strict)
        self.num_samples = num_samples
        self.tolerance = float(tolerance)
        self.log_figure = bool(log_figure)
        self.chart: DependencyChart | None = None
        self._done = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            batch_dim=self.batch_dim, causal_dim=self.causal_dim, strict=self.strict
        )

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._done = False

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._done or self.should_skip(trainer):
            return
        self._done = True
        self._run(trainer, pl_module, batch)

    # ------------------------------------------------------------------ public
    def check(self, pl_module: nn.Module, batch: Any, trainer: Trainer | None = None) -> Finding:
        """Chart the dependencies of ``pl_module`` on ``batch`` now; return the batch finding.

        Args:
            pl_module: the model (a ``LightningModule`` or any ``nn.Module``); left unchanged.
            batch: a batch as the dataloader yields it, on the model's device.
            trainer: the trainer, for logging and DDP agreement (optional).

        With ``causal_dim`` the causal finding is appended to :attr:`findings` too.
        """
        return self._run(trainer, pl_module, batch)[0]

    # ------------------------------------------------------------------ checkpoint
    @override
    def state_dict(self) -> dict[str, Any]:
        return self.one_time_state(self._done)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = self.load_one_time_state(state_dict)

    # ------------------------------------------------------------------ work
    def _run(self, trainer: Trainer | None, pl_module: nn.Module, batch: Any) -> list[Finding]:
        config = IndependenceConfig(
            self.input_key, self.forward, self.output_key, self.batch_dim, self.causal_dim,
            self.strict, self.num_samples, self.tolerance,
        )  # fmt: skip
        context = trainer.precision_plugin.forward_context() if trainer is not None else None
        chart, verdicts = measure(config, pl_module, batch, context)
        if chart is not None:
            self.chart = chart
        # every rank agrees on every verdict (the same count on each), then a shared skip is recorded once
        verdicts = distinct([agree(self, trainer, *verdict) for verdict in verdicts])
        self._log(trainer, verdicts)
        return [self.record(trainer, status, message, numbers) for status, message, numbers in verdicts]  # type: ignore[arg-type]

    def _log(self, trainer: Trainer | None, verdicts: list[Verdict]) -> None:
        if trainer is None or not trainer.is_global_zero:
            return
        step = trainer.global_step
        scalars = {}
        ratio = verdicts[0][2].get("mixing_ratio")
        if ratio is not None:
            scalars["recipe/batch_independence/mixing_ratio"] = min(float(ratio), 1e12)
        if len(verdicts) > 1 and "leaking_positions" in verdicts[-1][2]:
            scalars["recipe/batch_independence/causal_leaks"] = float(verdicts[-1][2]["leaking_positions"])
        writer.log_scalars(trainer, scalars, step)
        if self.log_figure and self.chart is not None and self.chart.batch_size >= 1:
            data = figure_data(self.chart, self.strict)
            titles = [f"{s}: {m}" for s, m, _ in verdicts]
            writer.log_figure(
                trainer,
                "recipe/batch_independence/dependency",
                partial(dependency_figure, data, titles),
                step,
            )


def agree(
    callback: RecipeCallback, trainer: Trainer | None, status: str, message: str, numbers: dict[str, Any]
) -> Verdict:
    """Under DDP, every rank takes the worst verdict of all ranks, with that rank's message and numbers.

    Call on every rank. Severity: ``pass`` < ``skipped`` < ``warn`` < ``fail``; ties go to the lowest rank.
    """
    if trainer is None or trainer.world_size <= 1:
        return status, message, numbers
    world, rank = trainer.world_size, trainer.global_rank
    code = int(callback.all_reduce_max(trainer, SEVERITY[status] * world + (world - 1 - rank)))
    winner = world - 1 - code % world
    status, message, numbers = trainer.strategy.broadcast((status, message, numbers), src=winner)
    return status, message, dict(numbers, rank=winner)
