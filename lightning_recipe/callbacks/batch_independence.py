"""BatchIndependenceCheck: the recipe's "use backprop to chart dependencies"."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.batches import KeySpec, split_batch
from lightning_recipe.core.dependency import (
    DependencyChart,
    DependencyError,
    causal_verdict,
    chart_dependencies,
    independence_verdict,
    per_sample_eval,
    zero_weight_layers,
)
from lightning_recipe.core.state import preserved_state
from lightning_recipe.findings import Finding

__all__ = ["BatchIndependenceCheck", "agree"]

_SEVERITY: dict[str, int] = {"pass": 0, "skipped": 1, "warn": 2, "fail": 3}


class BatchIndependenceCheck(RecipeCallback):
    """Check with backprop that no sample's output depends on another sample's input.

    Recipe, "use backprop to chart dependencies": *"set the loss to be something trivial like the
    sum of all outputs of example i, run the backward pass all the way to the input, and ensure
    that you get a non-zero gradient only on the i-th input."* Once, on the first training batch
    (before the first optimizer step), and on demand with :meth:`check`, this backpropagates the
    (randomly weighted) outputs of a few samples ``i`` to copies of every floating-point input
    tensor of the batch and requires a non-zero gradient on sample ``i`` and an exactly zero one on
    every other sample. It catches ``view``/``reshape`` where ``permute``/``transpose`` was meant,
    reductions (mean, sum, softmax, norm) over the batch dimension, and attention across the batch.

    While charting, BatchNorm-like layers (legitimately batch-coupled in training) and Dropout-like
    layers (random) run in eval mode; everything else runs as in training. Modes, buffers,
    gradients and random state are restored afterwards: training is unchanged. Integer inputs
    (token ids) are charted at the output of the ``nn.Embedding`` that looks them up. With
    ``causal_dim=``, the output at position ``t`` must also not depend on input positions after
    ``t`` (with ``strict=True``: at or after ``t``), which catches the autoregressive off-by-one.

    TensorBoard: ``recipe/batch_independence/dependency`` (a figure: which sample's input each
    checked sample's output depends on, and the causal chart), the scalars
    ``recipe/batch_independence/mixing_ratio`` (largest gradient on another sample relative to the
    sample's own; 0 when clean) and, with ``causal_dim``, ``recipe/batch_independence/causal_leaks``
    (number of forbidden input positions with a gradient).

    Args:
        input_key: where the model's inputs are in the batch (dict key, position, or
            ``callable(batch)``); inferred by default (see ``split_batch``).
        forward: ``callable(pl_module, inputs) -> outputs`` when the module is not called as
            ``pl_module(inputs)`` (e.g. ``lambda m, x: m(**x)``).
        output_key: picks the per-sample outputs (dict key, position, or ``callable(outputs)``);
            by default every floating-point output tensor with the batch dimension is used.
        batch_dim: the batch dimension of inputs and outputs (1 for sequence-first models).
        causal_dim: the sequence dimension (of inputs and outputs, e.g. 1 for ``(N, T, ...)``) to
            check causally; ``None`` skips the causal check.
        strict: with ``causal_dim``, the output at ``t`` may only depend on positions before
            ``t`` (inputs aligned with the targets); default: positions up to and including ``t``
            (inputs already shifted by one, as in the usual language-model pipeline).
        num_samples: how many samples ``i`` are backpropagated (first, last, middle, ...).
        tolerance: a gradient on another sample counts as mixing when it exceeds this fraction of
            the sample's own gradient; 0 (default) means any non-zero value.
        log_figure: log the dependency figure.
        on_fail: ``"warn"`` (default) or ``"raise"`` a ``RecipeCheckError`` on a ``fail``.

    Attributes:
        findings: one finding for the batch dimension and, with ``causal_dim``, one for causality.
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
        causal_dim: int | None = None,
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
        self._restored: list[dict[str, Any]] = []

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
            self._restored = []

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
        self._restored = [f.to_dict() for f in self.findings]

    # ------------------------------------------------------------------ work
    def _run(self, trainer: Trainer | None, pl_module: nn.Module, batch: Any) -> list[Finding]:
        results = self._measure(trainer, pl_module, batch)
        findings = []
        for status, message, numbers in results:
            status, message, numbers = agree(self, trainer, status, message, numbers)
            findings.append((status, message, numbers))
        self._log(trainer, findings)
        out = []
        for status, message, numbers in findings:
            out.append(self.record(trainer, status, message, numbers))  # type: ignore[arg-type]
        return out

    def _measure(
        self, trainer: Trainer | None, pl_module: nn.Module, batch: Any
    ) -> list[tuple[str, str, dict]]:
        causal = self.causal_dim is not None
        try:
            inputs = split_batch(batch, input_key=self.input_key).inputs
        except ValueError as err:
            msg = f"cannot find the inputs: {err}"
            return [("skipped", msg, {})] + ([("skipped", msg, {})] if causal else [])

        def fn(x: Any) -> Any:
            return self.forward(pl_module, x) if self.forward is not None else pl_module(x)

        context = trainer.precision_plugin.forward_context() if trainer is not None else nullcontext()
        try:
            with preserved_state(pl_module, grads=True):
                eval_layers = per_sample_eval(pl_module)
                with context:
                    chart = chart_dependencies(
                        fn,
                        inputs,
                        modules=pl_module,
                        num_samples=self.num_samples,
                        batch_dim=self.batch_dim,
                        causal_dim=self.causal_dim,
                        strict=self.strict,
                        output_key=self.output_key,
                    )
                zeros = zero_weight_layers(pl_module)
        except DependencyError as err:
            how = (
                ""
                if self.forward is not None
                else " (pass `forward=` if the module is not called as pl_module(inputs))"
            )
            msg = f"cannot chart dependencies: {err}" + (how if "forward pass failed" in str(err) else "")
            return [("skipped", msg, {})] + ([("skipped", msg, {})] if causal else [])
        self.chart = chart
        results: list[tuple[str, str, dict]] = []
        if chart.batch_size < 2:
            results.append(
                (
                    "skipped",
                    "batch size 1: with one sample there is no other sample to mix with; call "
                    "check(pl_module, batch) with a batch of at least 2 samples",
                    {"batch_size": chart.batch_size},
                )
            )
        else:
            status, message, numbers = independence_verdict(
                chart, tolerance=self.tolerance, zero_layers=zeros
            )
            numbers["eval_mode_layers"] = eval_layers
            results.append((status, message, numbers))
        if causal:
            results.append(causal_verdict(chart, strict=self.strict, tolerance=self.tolerance))
        return results

    def _log(self, trainer: Trainer | None, findings: list[tuple[str, str, dict]]) -> None:
        if trainer is None or not trainer.is_global_zero:
            return
        step = trainer.global_step
        scalars = {}
        ratio = findings[0][2].get("mixing_ratio")
        if ratio is not None:
            scalars["recipe/batch_independence/mixing_ratio"] = min(float(ratio), 1e12)
        if self.causal_dim is not None and "leaking_positions" in findings[-1][2]:
            scalars["recipe/batch_independence/causal_leaks"] = float(findings[-1][2]["leaking_positions"])
        recipe_logging.log_scalars(trainer, scalars, step)
        if self.log_figure and self.chart is not None and self.chart.batch_size >= 1:
            data = _figure_data(self.chart, self.strict)
            verdicts = [f"{s}: {m}" for s, m, _ in findings]
            recipe_logging.log_figure(
                trainer,
                "recipe/batch_independence/dependency",
                lambda: _dependency_figure(data, verdicts),
                step,
            )


def agree(
    callback: RecipeCallback, trainer: Trainer | None, status: str, message: str, numbers: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """Under DDP, every rank takes the worst verdict of all ranks, with that rank's message and numbers.

    Call on every rank. Severity: ``pass`` < ``skipped`` < ``warn`` < ``fail``; ties go to the lowest rank.
    """
    if trainer is None or trainer.world_size <= 1:
        return status, message, numbers
    world, rank = trainer.world_size, trainer.global_rank
    code = int(callback.all_reduce_max(trainer, _SEVERITY[status] * world + (world - 1 - rank)))
    winner = world - 1 - code % world
    status, message, numbers = trainer.strategy.broadcast((status, message, numbers), src=winner)
    return status, message, dict(numbers, rank=winner)


# ---------------------------------------------------------------------- figure
_ZERO, _OWN, _OWN_ZERO, _LEAK = 0, 1, 2, 3
_COLORS = ["#f4f4f4", "#2ca02c", "#bdbdbd", "#d62728"]


def _figure_data(chart: DependencyChart, strict: bool) -> dict[str, Any]:
    """Numpy copies of what the figure shows (the builder runs on another thread)."""
    m = chart.matrix().numpy()
    cats = np.where(m > 0, _LEAK, _ZERO)
    for r, i in enumerate(chart.samples):
        cats[r, i] = _OWN if m[r, i] > 0 else _OWN_ZERO
    data: dict[str, Any] = {
        "cats": cats,
        "samples": list(chart.samples),
        "n": chart.batch_size,
        "causal": None,
    }
    if chart.causal:
        prof = None
        for p in chart.causal.values():
            p0 = p[0].numpy()
            prof = p0 if prof is None else np.maximum(prof, p0)
        assert prof is not None
        length = prof.shape[-1]
        ccat = np.zeros_like(prof, dtype=np.int64)
        for c, t in enumerate(chart.causal_positions):
            allowed = np.arange(length) < (t if strict else t + 1)
            ccat[c] = np.where(
                allowed, np.where(prof[c] > 0, _OWN, _OWN_ZERO), np.where(prof[c] > 0, _LEAK, _ZERO)
            )
        data["causal"] = {
            "cats": ccat,
            "positions": list(chart.causal_positions),
            "sample": chart.causal_samples[0],
            "dim": chart.causal_dim,
        }
    return data


def _dependency_figure(data: dict[str, Any], verdicts: list[str]) -> Any:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from lightning_recipe.plots.style import new_figure

    cmap = ListedColormap(_COLORS)
    causal = data["causal"]
    panels = 2 if causal is not None else 1
    fig = new_figure(8.0, 1.9 + 1.9 * panels, dpi=90)
    ax = fig.add_subplot(panels, 1, 1)
    n = data["n"]
    ax.imshow(data["cats"], cmap=cmap, vmin=0, vmax=3, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(data["samples"])), [str(s) for s in data["samples"]], fontsize=8)
    ax.set_ylabel("output of sample i", fontsize=8)
    ax.set_xlabel(f"input of sample j (batch of {n})", fontsize=8)
    ticks = sorted(set(data["samples"]) | {0, n - 1})
    ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
    ax.set_title(_wrap(verdicts[0]), fontsize=8, loc="left")
    legend = [
        Patch(color=_COLORS[_OWN], label="own input: gradient > 0"),
        Patch(color=_COLORS[_OWN_ZERO], label="own input: no gradient"),
        Patch(color=_COLORS[_LEAK], label="other sample: gradient > 0 (mixing)"),
        Patch(facecolor=_COLORS[_ZERO], edgecolor="#999999", label="exactly 0"),
    ]
    if causal is not None:
        ax2 = fig.add_subplot(panels, 1, 2)
        ax2.imshow(causal["cats"], cmap=cmap, vmin=0, vmax=3, aspect="auto", interpolation="nearest")
        ax2.set_yticks(range(len(causal["positions"])), [str(p) for p in causal["positions"]], fontsize=8)
        ax2.set_ylabel("output position t", fontsize=8)
        ax2.set_xlabel(f"input position t' (dim {causal['dim']}, sample {causal['sample']})", fontsize=8)
        ax2.set_title(_wrap(verdicts[-1]), fontsize=8, loc="left")
        legend[0] = Patch(color=_COLORS[_OWN], label="own sample / allowed position: gradient > 0")
        legend[1] = Patch(color=_COLORS[_OWN_ZERO], label="own / allowed: no gradient")
        legend[2] = Patch(color=_COLORS[_LEAK], label="other sample / future position: gradient > 0")
    fig.legend(
        handles=legend, loc="lower center", ncol=2 if causal is not None else 4, fontsize=7, frameon=False
    )
    fig.tight_layout(rect=(0, 0.1 if causal is not None else 0.07, 1, 1))
    return fig


def _wrap(text: str, width: int = 120) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    return "\n".join(lines[:3]) + (" …" if len(lines) > 3 else "")
