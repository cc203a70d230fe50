"""UpdateHealth: the recipe's "activations inside the net can display odd artifacts", per layer."""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from lightning_recipe import writer as recipe_logging
from lightning_recipe.callbacks.base import OnFail, RecipeCallback, check_positive_int
from lightning_recipe.core.health import (
    DEFAULT_ACTIVATIONS,
    ActivationProbe,
    evenly_spaced,
    group_sums,
    health_figure,
    layer_of_parameters,
    log10_or_nan,
    modules_left_in_eval,
    tensor_norms,
    update_norms,
)

__all__ = ["UpdateHealth"]

_TAG = "recipe/update_health"
_OWNER = "UpdateHealth"


@dataclass
class _OptimizerMeasure:
    """What one optimizer's scheduled step looked like just before it stepped."""

    params: list[nn.Parameter]
    before: list[torch.Tensor]
    grad_sq: torch.Tensor  # per parameter, float64 CPU
    grad_present: list[bool]
    grad_nonzero: list[bool]
    lr_zero: list[bool]


@dataclass
class _Check:
    """One scheduled check in progress (from the batch start to the end of its optimizer step)."""

    step: int
    probe: ActivationProbe | None = None
    alive: dict[str, torch.Tensor] = field(default_factory=dict)
    eval_problems: list[Any] = field(default_factory=list)
    layer_order: list[str] = field(default_factory=list)
    optimizers: dict[int, _OptimizerMeasure] = field(default_factory=dict)


@dataclass
class _Armed:
    """After a scheduled step of an optimizer: watch whether its gradients are reset before the next."""

    params: list[nn.Parameter]
    step: int
    backwards: int = 0
    reset: bool = False


def _log_ratio(diff_sq: float, weight_sq: float) -> float:
    """log10 ‖Δw‖/‖w‖; NaN for no change, +inf for a change from all-zero weights."""
    if not diff_sq > 0:
        return math.nan
    if weight_sq <= 0:
        return math.inf
    return log10_or_nan(math.sqrt(diff_sq) / math.sqrt(weight_sq))


def _log_grad(norm: float) -> float:
    """log10 of a gradient norm; NaN for no gradient, -inf for an exactly zero one."""
    if norm == 0:
        return -math.inf
    return math.log10(norm) if norm > 0 else math.nan


def _fingerprint(p: torch.Tensor) -> torch.Tensor:
    """Sum and sum of squares of a parameter, in float64 on its device: changes when it is updated."""
    with torch.no_grad():
        t = p.detach()
        if t.is_sparse:
            t = t.coalesce().values()
        t = t.to(torch.float64)
        return torch.stack([t.sum(), t.pow(2).sum()])


def _any_nonzero(params: list[nn.Parameter]) -> bool:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return False
    return bool(tensor_norms(grads, math.inf).max() > 0)


class UpdateHealth(RecipeCallback):
    """Watch every layer's updates, gradients and activations, cheaply, every N steps.

    Recipe, "visualize ... activations inside the net can sometimes display odd artifacts and
    hint at problems", and the well-known checks that go with it: the update-to-weight ratio of
    each layer (rule of thumb: around 1e-3), its gradient norm, and the fraction of dead ReLU
    units. Every ``every_n_train_steps`` optimizer steps (a *check*) it measures, per layer (a
    module with its own trainable parameters): ``log10(‖Δw‖/‖w‖)`` of that optimizer step,
    ``‖grad‖`` (after AMP unscaling, before clipping), and per ReLU-like module the fraction of
    units that are zero for the whole batch. Between checks it costs an integer comparison.

    Findings (each once per run; the evidence must hold on ``patience`` checks):

    * ``no_gradient`` (warn): a trainable parameter (``requires_grad`` and in an optimizer) never
      got a gradient: the layer is computed but not used in the loss, or not called at all.
    * ``zero_gradient`` (warn): its gradient is always exactly zero (e.g. everything after it is
      dead, or its output is multiplied by zero).
    * ``unchanged`` (warn): it gets gradients and its param group has ``lr > 0``, yet the
      optimizer never changes it (updates below float precision, weights restored each step).
    * ``gradients_not_reset`` (fail): an optimizer stepped, and before its next step no backward
      ran on reset gradients: ``zero_grad`` is missing, so each step adds up all past gradients.
      Gradient accumulation (``accumulate_grad_batches`` or manual) resets between optimizer steps
      and is not flagged.
    * ``eval_mode`` (warn): a submodule is in eval mode while the model trains and it contains
      dropout or batch-norm statistics *and* trainable parameters. A frozen part (eval mode, no
      trainable parameter) is deliberate and not reported. The whole model in eval mode (a
      ``self.eval()`` in ``on_train_start`` or ``training_step``) is reported the same way.
    * ``dead_layer`` (fail): every unit of a ReLU-like module is zero on the whole batch.
    * ``update_ratio`` (warn): the median layer's update is as large as its weights
      (``log10 ratio >= 0``) on ``patience`` consecutive checks, or ten times larger on one: the
      learning rate is far too high. Ratios of 1e-2 to 1e-1 (Adam on small layers) are only logged.

    The activation hooks exist from the scheduled batch's start to its first backward; nothing is
    registered on the model between checks. Gradients-not-reset is judged from backward passes
    that go through Lightning (``manual_backward`` in manual optimization). After a resume, what
    the checkpointed run found is restated (``numbers["carried_over"]``).

    * ``no_optimizer`` (warn, at the first check): parameters that require grad and get gradients
      but are in no optimizer's param groups (and nothing else changed them): they never train,
      e.g. ``configure_optimizers`` returns ``Adam(self.head.parameters())``. A part left out of
      the optimizer *and* put in eval mode is a deliberately frozen backbone, not reported.

    Parameters that ``requires_grad=False`` are deliberately frozen and never reported, nor are
    parameters outside every optimizer that get no gradient (unused, or frozen by ``no_grad``);
    tied weights count once; buffers are ignored. Dead units are measured on
    ``nn.ReLU``/``nn.ReLU6`` modules (``activation_types``); functional calls (``F.relu``) cannot be
    hooked and are not covered. Leaky ReLU, GELU and SiLU have no exactly-zero dead state.

    TensorBoard, at each check's step: ``recipe/update_health/log10_update_ratio/<layer>``,
    ``recipe/update_health/grad_norm/<layer>``, ``recipe/update_health/dead_fraction/<site>``
    (for at most ``max_layers`` layers and sites, evenly spread, first and last always), the
    aggregates ``log10_update_ratio_median``/``_min``/``_max``, ``grad_norm`` (all trainable
    parameters) and ``dead_fraction_max``, and the figure ``recipe/update_health/layers``.

    Args:
        every_n_train_steps: run a check every this many optimizer steps (step 0 included).
        patience: number of checks the evidence must hold before a finding (no gradient, no
            change, all units dead, ratio too high).
        max_layers: per-layer scalars for at most this many layers (and activation sites).
        figure_every_n_train_steps: draw the per-layer figure at the first check and then at the
            first check after each multiple of this; ``None`` draws none.
        activation_types: module classes whose exactly-zero outputs mark dead units; ``()`` hooks
            nothing (no dead-unit numbers; e.g. under ``torch.compile``).
        check_eval_mode: look for submodules left in eval mode.
        on_fail: ``"warn"`` or ``"raise"`` (``RecipeCheckError`` for the ``fail`` findings).

    Attributes:
        findings: the findings of the run; ``numbers["problem"]`` names the kind.
        last_check: the numbers of the latest check: ``step``, ``layers`` (name -> dict with
            ``log10_update_ratio`` and ``grad_norm``) and ``dead_fraction`` (site -> fraction).
        checks: number of checks completed (kept across a resume).

    Raises:
        ValueError, TypeError: for invalid arguments.

    Example:
        >>> import torch
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> health = UpdateHealth(every_n_train_steps=2, figure_every_n_train_steps=None)
        >>> trainer = Trainer(max_steps=4, logger=False, enable_progress_bar=False,
        ...                   enable_model_summary=False, enable_checkpointing=False,
        ...                   callbacks=[health], default_root_dir=getfixture("tmp_path"))
        >>> trainer.fit(BoringModel())
        >>> health.checks, sorted(health.last_check["layers"])
        (2, ['layer'])
        >>> -6 < health.last_check["layers"]["layer"]["log10_update_ratio"] < 0
        True
    """


    #: Karpathy's rule of thumb for log10(update / weight).
    RULE_OF_THUMB = -3.0
    #: The median layer's log10(update / weight) at or above this (on ``patience`` checks) is a finding.
    HIGH_LOG10_RATIO = 0.0
    #: ... or at or above this on a single check (the update is ten times the weights).
    SPIKE_LOG10_RATIO = 1.0
    #: Earlier checks kept per layer for the grey dots of the figure.
    HISTORY = 8

    def __init__(
        self,
        every_n_train_steps: int = 50,
        patience: int = 3,
        max_layers: int = 16,
        figure_every_n_train_steps: int | None = 500,
        activation_types: Iterable[type[nn.Module]] = DEFAULT_ACTIVATIONS,
        check_eval_mode: bool = True,
        on_fail: OnFail = "warn",
    ) -> None:
        super().__init__(on_fail)
        check_positive_int(_OWNER, "every_n_train_steps", every_n_train_steps)
        check_positive_int(_OWNER, "patience", patience)
        check_positive_int(_OWNER, "max_layers", max_layers)
        check_positive_int(_OWNER, "figure_every_n_train_steps", figure_every_n_train_steps, allow_none=True)
        types = (activation_types,) if isinstance(activation_types, type) else activation_types
        try:
            types = tuple(types)
        except TypeError:
            types = (activation_types,)
        if not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
            raise TypeError(
                f"UpdateHealth(activation_types={activation_types!r}): pass a tuple of torch.nn.Module "
                "classes, e.g. (nn.ReLU, nn.ReLU6)."
            )
        if not isinstance(check_eval_mode, bool):
            raise TypeError(f"UpdateHealth(check_eval_mode={check_eval_mode!r}): pass True or False.")
        self.every_n_train_steps = every_n_train_steps
        self.patience = patience
        self.max_layers = max_layers
        self.figure_every_n_train_steps = figure_every_n_train_steps
        self.activation_types: tuple[type[nn.Module], ...] = types
        self.check_eval_mode = check_eval_mode
        self.last_check: dict[str, Any] = {}
        self.checks = 0
        self._reset_progress()
        self._pending: _Check | None = None
        self._armed: dict[int, _Armed] = {}
        self._owner: dict[int, tuple[str, str]] = {}
        self._disabled: str | None = None
        self._history: dict[str, deque[float]] = {}
        self._orphans: list[tuple[str, nn.Parameter, torch.Tensor]] = []

    def _reset_progress(self) -> None:
        self.checks = 0
        # parameter name -> [grad checks, got grad, got non-zero grad, change checks, changed]
        self._evidence: dict[str, list[int]] = {}
        self._reported: dict[str, list[str]] = {}
        self._dead_streak: dict[str, int] = {}
        self._high_streak = 0
        self._last_check_step: int | None = None
        self._last_figure_step: int | None = None
        self._next_due = 0

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(every_n_train_steps=self.every_n_train_steps)

    # ------------------------------------------------------------------ lifecycle
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        self._reset_progress()
        self.last_check = {}
        self._history = {}
        self._orphans = []
        self._release()
        name = type(trainer.strategy).__name__
        self._disabled = None
        if "FSDP" in name or "DeepSpeed" in name:
            self._disabled = (
                f"the {name} strategy shards parameters and gradients, so per-layer norms seen by one rank "
                "are partial; UpdateHealth does not run under it"
            )

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.is_fitting(trainer):
            return
        if self._disabled:
            self.record(trainer, "skipped", self._disabled, {"problem": "unsupported_strategy"})
            return
        self._owner = layer_of_parameters(pl_module)
        self._restate_reported(trainer)
        self._orphans = self._find_orphans(trainer, pl_module)

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is not None or trainer.global_step < self._next_due:
            return
        if self._disabled or self.should_skip(trainer):
            return
        step = int(trainer.global_step)
        n = self.every_n_train_steps
        self._next_due = (step // n + 1) * n
        check = _Check(step=step)
        if self.activation_types:
            check.probe = ActivationProbe(pl_module, self.activation_types)
            check.probe.attach()
        if self.check_eval_mode:
            check.eval_problems = modules_left_in_eval(pl_module, self._trainable_ids(trainer))
        self._pending = check

    @override
    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if self._pending is not None and self._pending.probe is not None:
            self._stop_probe(self._pending)  # the forward pass is over (and recomputation is not a new one)
        if not self._armed:
            return
        for armed in self._armed.values():
            if armed.reset:
                continue
            armed.backwards += 1
            armed.reset = not _any_nonzero(armed.params)  # reset before this backward: fine

    @override
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if self._pending is None and not self._armed:
            return
        if self._disabled or self.should_skip(trainer):
            return
        key = id(optimizer)
        armed = self._armed.pop(key, None)
        if armed is not None:
            self._decide_gradients_reset(trainer, armed)
        check = self._pending
        if check is not None and key not in check.optimizers:
            measure = self._measure(optimizer)
            check.optimizers[key] = measure
            if "gradients_not_reset" not in self._reported:
                # armed from the schedule alone, so every rank makes the same collective call later
                self._armed[key] = _Armed(measure.params, int(trainer.global_step))

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        check = self._pending
        if check is None:
            return
        if check.probe is not None:
            self._stop_probe(check)
        if not check.optimizers and trainer.global_step <= check.step:
            return  # accumulating gradients: the optimizer steps on a later batch
        self._pending = None
        self._finish(trainer, pl_module, check)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._release()
        if not self.is_fitting(trainer) or self._disabled:
            return
        problems = [f for f in self.findings if f.is_problem]
        if problems:
            return
        numbers: dict[str, Any] = {"problem": "none", "checks": self.checks, "patience": self.patience}
        layers = self.last_check.get("layers", {})
        ratios = [v["log10_update_ratio"] for v in layers.values() if math.isfinite(v["log10_update_ratio"])]
        if ratios:
            numbers["log10_update_ratio_median"] = statistics.median(ratios)
        numbers["layers"] = len(layers)
        if self.checks == 0:
            self.record(trainer, "skipped", "no optimizer step was checked; nothing to judge", numbers)
        elif self.checks < self.patience:
            self.record(
                trainer,
                "skipped",
                f"only {self.checks} check(s) ran, fewer than patience={self.patience}; lower "
                "every_n_train_steps or train longer to judge unused parameters and dead layers",
                numbers,
            )
        else:
            median = numbers.get("log10_update_ratio_median")
            ratio = f"median update/weight 1e{median:.1f}, " if median is not None else ""
            self.record(
                trainer,
                "pass",
                f"{len(layers)} layers over {self.checks} checks: {ratio}every trainable parameter got gradients "
                "and changed, gradients reset, no dead layer",
                numbers,
            )

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._release()

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._release()
        super().teardown(trainer, pl_module, stage)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "checks": self.checks,
            "evidence": {k: list(v) for k, v in self._evidence.items()},
            "reported": {k: list(v) for k, v in self._reported.items()},
            "dead_streak": dict(self._dead_streak),
            "high_streak": self._high_streak,
            "last_check_step": self._last_check_step,
            "last_figure_step": self._last_figure_step,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.checks = int(state_dict.get("checks", 0))
        self._evidence = {str(k): [int(x) for x in v] for k, v in state_dict.get("evidence", {}).items()}
        self._reported = {str(k): list(v) for k, v in state_dict.get("reported", {}).items()}
        self._dead_streak = {str(k): int(v) for k, v in state_dict.get("dead_streak", {}).items()}
        self._high_streak = int(state_dict.get("high_streak", 0))
        self._last_check_step = state_dict.get("last_check_step")
        self._last_figure_step = state_dict.get("last_figure_step")
        n = self.every_n_train_steps
        self._next_due = 0 if self._last_check_step is None else (int(self._last_check_step) // n + 1) * n

    def __getstate__(self) -> dict[str, Any]:
        # Lightning attaches the module's bound ``log``/``log_dict`` to every callback; in-flight
        # measurements hold live tensors. Neither belongs in a pickled callback.
        state = super().__getstate__()
        state.update(_pending=None, _armed={}, _owner={}, _orphans=[])
        return state

    # ------------------------------------------------------------------ measuring
    def _release(self) -> None:
        if self._pending is not None and self._pending.probe is not None:
            self._pending.probe.detach()
        self._pending = None
        self._armed = {}

    @staticmethod
    def _stop_probe(check: _Check) -> None:
        probe = check.probe
        if probe is None:
            return
        probe.detach()
        check.alive = probe.alive
        check.layer_order = probe.layer_order
        check.probe = None

    @staticmethod
    def _trainable_ids(trainer: Trainer) -> set[int]:
        return {
            id(p)
            for opt in trainer.optimizers
            for group in opt.param_groups
            for p in group["params"]
            if p.requires_grad
        }

    def _measure(self, optimizer: Any) -> _OptimizerMeasure:
        params: list[nn.Parameter] = []
        lr_zero: list[bool] = []
        seen: set[int] = set()
        for group in optimizer.param_groups:
            try:
                zero = float(group.get("lr", 1.0)) == 0.0
            except (TypeError, ValueError):
                zero = False
            for p in group["params"]:
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
                    lr_zero.append(zero)
        present = [p.grad is not None for p in params]
        grads = [p.grad for p in params if p.grad is not None]
        with torch.no_grad():
            sq = tensor_norms(grads, 2.0) ** 2
            mx = tensor_norms(grads, math.inf)
            before = [p.detach().clone() for p in params]
        grad_sq = torch.zeros(len(params), dtype=torch.float64)
        grad_max = torch.zeros(len(params), dtype=torch.float64)
        idx = torch.as_tensor([i for i, ok in enumerate(present) if ok], dtype=torch.long)
        if len(idx):
            grad_sq[idx] = sq
            grad_max[idx] = mx
        nonzero = [bool(v > 0) for v in grad_max.tolist()]
        return _OptimizerMeasure(params, before, grad_sq, present, nonzero, lr_zero)

    @staticmethod
    def _find_orphans(
        trainer: Trainer, pl_module: LightningModule
    ) -> list[tuple[str, nn.Parameter, torch.Tensor]]:
        """Trainable parameters that no optimizer holds, with a fingerprint of their values.

        Decided from the model and the optimizers alone, the same on every rank. The fingerprint
        (sum and sum of squares) tells at the first check whether something else updates them.
        """
        held = {id(p) for opt in trainer.optimizers for group in opt.param_groups for p in group["params"]}
        orphans = []
        seen: set[int] = set()
        for name, p in pl_module.named_parameters():
            if p.requires_grad and id(p) not in held and id(p) not in seen:
                seen.add(id(p))
                orphans.append((name, p, _fingerprint(p)))
        return orphans

    def _orphan_finding(self, trainer: Trainer) -> None:
        """At the first check: trainable parameters outside every optimizer that get gradients."""
        orphans, self._orphans = self._orphans, []
        if "no_optimizer" in self._reported:
            return
        # gets gradients, yet nothing changed it since the start (a one-time read per orphan)
        stuck = [
            name
            for name, p, before in orphans
            if p.grad is not None
            and self._owner_training(trainer, p)
            and bool((_fingerprint(p) == before.to(p.device)).all())
        ]
        if not self.decide(trainer, bool(stuck), all_=False) or not stuck:
            return
        self._reported["no_optimizer"] = stuck
        shown = ", ".join(f"`{n}`" for n in stuck[:4]) + (
            f" and {len(stuck) - 4} more" if len(stuck) > 4 else ""
        )
        self.record(
            trainer,
            "warn",
            f"{shown} require grad and get gradients but are in no optimizer: they never train; pass them to the "
            "optimizer in configure_optimizers (e.g. self.parameters()), or set requires_grad=False if frozen on purpose",
            {"problem": "no_optimizer", "parameters": stuck[:16], "count": len(stuck)},
        )

    def _owner_training(self, trainer: Trainer, p: nn.Parameter) -> bool:
        """False when the layer holding ``p`` is in eval mode: left out of the optimizer and put in
        eval mode, it is a deliberately frozen part (a frozen backbone), not a forgotten one."""
        layer = self._owner.get(id(p), ("", ""))[0]
        try:
            return bool(trainer.lightning_module.get_submodule(layer).training)
        except AttributeError:
            return True

    def _decide_gradients_reset(self, trainer: Trainer, armed: _Armed) -> None:
        if "gradients_not_reset" in self._reported:
            return
        stale = armed.backwards > 0 and not armed.reset and _any_nonzero(armed.params)
        if not self.decide(trainer, stale, all_=False):
            return
        names = self._layer_names(armed.params)
        self._reported["gradients_not_reset"] = names
        self.record(
            trainer,
            "fail",
            f"gradients are not reset between optimizer steps (step {armed.step} -> {int(trainer.global_step)}): "
            "each step adds all past gradients; call optimizer.zero_grad() before backward (or do not "
            "override optimizer_zero_grad)",
            {
                "problem": "gradients_not_reset",
                "step": armed.step,
                "backwards": armed.backwards,
                "layers": names[:8],
            },
        )

    def _restate_reported(self, trainer: Trainer) -> None:
        """After a resume: repeat what the checkpointed run found (it is not found again)."""
        fails = ("gradients_not_reset", "dead_layer")
        for kind, names in self._reported.items():
            if not names:
                continue
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            self.record(
                trainer,
                "fail" if kind in fails else "warn",
                f"found before the run was resumed: {kind.replace('_', ' ')} ({shown}); see the earlier run's report",
                {"problem": kind, "names": names[:16], "carried_over": True},
                raise_on_fail=False,
            )

    def _layer_names(self, params: Iterable[nn.Parameter]) -> list[str]:
        names: list[str] = []
        for p in params:
            layer = self._owner.get(id(p), ("?", "?"))[0] or "(root)"
            if layer not in names:
                names.append(layer)
        return names

    def _finish(self, trainer: Trainer, pl_module: LightningModule, check: _Check) -> None:
        # 1. per parameter: gradient and update numbers (local)
        if any(id(p) not in self._owner for m in check.optimizers.values() for p in m.params):
            self._owner = layer_of_parameters(pl_module)
        names: list[str] = []
        layers: list[str] = []
        grad_sq: list[torch.Tensor] = []
        flags: list[list[float]] = []  # per parameter: present, nonzero, changed, optimizer changed, lr zero
        diff_sq: list[torch.Tensor] = []
        w_sq: list[torch.Tensor] = []
        for measure in check.optimizers.values():
            d2, dmax, w2 = update_norms(measure.before, [p.detach() for p in measure.params])
            measure.before = []
            opt_changed = bool((dmax > 0).any()) if len(dmax) else False
            for i, p in enumerate(measure.params):
                layer, pname = self._owner.get(id(p), ("?", f"?{id(p)}"))
                names.append(pname)
                layers.append(layer)
                flags.append(
                    [
                        float(measure.grad_present[i]),
                        float(measure.grad_nonzero[i]),
                        float(dmax[i] > 0),
                        float(opt_changed),
                        float(measure.lr_zero[i]),
                    ]
                )
            grad_sq.append(measure.grad_sq)
            diff_sq.append(d2**2)
            w_sq.append(w2**2)
        sites = list(check.alive)
        alive_local = (
            torch.cat([check.alive[s].reshape(-1).to("cpu", torch.float64) for s in sites])
            if sites
            else torch.zeros(0, dtype=torch.float64)
        )
        sizes = [check.alive[s].numel() for s in sites]
        per_param = torch.as_tensor(flags, dtype=torch.float64).reshape(-1, 5)

        # 2. one reduction: every rank decides from the same numbers
        eval_flag = float(bool(check.eval_problems))
        alive, per_param, eval_any, sites_ok = self._reduce(trainer, alive_local, per_param, eval_flag)
        present = (per_param[:, 0] > 0).tolist()
        nonzero = (per_param[:, 1] > 0).tolist()
        changed = (per_param[:, 2] > 0).tolist()
        opt_changed = (per_param[:, 3] > 0).tolist()
        lr_zero = (per_param[:, 4] > 0).tolist()

        # 3. per layer
        order = list(dict.fromkeys([*check.layer_order, *layers]))
        order = [name for name in order if name in set(layers)]
        index = {name: i for i, name in enumerate(order)}
        groups = [index[name] for name in layers]
        g2 = group_sums(
            torch.cat(grad_sq) if grad_sq else torch.zeros(0, dtype=torch.float64), groups, len(order)
        )
        d2 = group_sums(
            torch.cat(diff_sq) if diff_sq else torch.zeros(0, dtype=torch.float64), groups, len(order)
        )
        w2 = group_sums(torch.cat(w_sq) if w_sq else torch.zeros(0, dtype=torch.float64), groups, len(order))
        layer_present = [False] * len(order)
        for g, ok in zip(groups, present):
            layer_present[g] = layer_present[g] or ok
        log_ratio = [_log_ratio(d, w) for d, w in zip(d2.tolist(), w2.tolist())]
        grad_norm = [math.sqrt(g) if ok else math.nan for g, ok in zip(g2.tolist(), layer_present)]
        dead: dict[str, float] = {}
        if sites_ok:
            offset = 0
            for site, size in zip(sites, sizes):
                chunk = alive[offset : offset + size]
                offset += size
                dead[site] = float((chunk == 0).sum()) / size if size else 0.0

        # 4. evidence across checks and findings
        for i, name in enumerate(names):
            ev = self._evidence.setdefault(name, [0, 0, 0, 0, 0])
            ev[0] += 1
            ev[1] |= int(present[i])
            ev[2] |= int(nonzero[i])
            if opt_changed[i] and not lr_zero[i] and nonzero[i]:
                ev[3] += 1
                ev[4] |= int(changed[i])
        self.checks += 1
        self._last_check_step = check.step
        finite = [r for r in log_ratio if math.isfinite(r)]
        median = statistics.median(finite) if finite else math.nan
        self._high_streak = self._high_streak + 1 if median >= self.HIGH_LOG10_RATIO else 0
        spike = median >= self.SPIKE_LOG10_RATIO
        for site, frac in dead.items():
            self._dead_streak[site] = self._dead_streak.get(site, 0) + 1 if frac >= 1.0 else 0
        self.last_check = {
            "step": check.step,
            "layers": {
                n: {"log10_update_ratio": r, "grad_norm": g} for n, r, g in zip(order, log_ratio, grad_norm)
            },
            "dead_fraction": dict(dead),
        }

        # 5. evidence to TensorBoard (rank zero), then findings (every rank, same decisions)
        every = self.figure_every_n_train_steps
        last = self._last_figure_step
        figure = every is not None and bool(order) and (last is None or check.step // every > last // every)
        if figure:
            self._last_figure_step = check.step
        self._log(trainer, pl_module, check.step, order, log_ratio, grad_norm, dead, g2, median, figure)
        for n, r in zip(order, log_ratio):
            self._history.setdefault(n, deque(maxlen=self.HISTORY)).append(r)
        self._parameter_findings(trainer)
        if self._orphans:
            self._orphan_finding(trainer)
        if eval_any and check.eval_problems:
            self._eval_finding(trainer, check)
        self._dead_findings(trainer, dead)
        if (self._high_streak >= self.patience or spike) and "update_ratio" not in self._reported:
            self._reported["update_ratio"] = ["median"]
            self.record(
                trainer,
                "warn",
                f"the median layer's update/weight ratio is 10^{median:.1f} at step {check.step}, far above the rule "
                f"of thumb 10^{self.RULE_OF_THUMB:.0f}: the learning rate is far too high; lower it (or clip gradients)",
                {"problem": "update_ratio", "log10_update_ratio_median": median, "step": check.step},
            )

    def _reduce(
        self, trainer: Trainer, alive: torch.Tensor, per_param: torch.Tensor, eval_flag: float
    ) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
        if trainer.world_size <= 1:
            return alive, per_param, bool(eval_flag), True
        header = torch.tensor([float(alive.numel()), float(per_param.numel()), 1.0], dtype=torch.float64)
        total = self.all_reduce_sum(trainer, header)
        world = float(total[2])
        sites_ok = float(total[0]) == world * alive.numel()
        params_ok = float(total[1]) == world * per_param.numel()
        parts = [torch.tensor([eval_flag], dtype=torch.float64)]
        parts.append(per_param.reshape(-1) if params_ok else torch.zeros(0, dtype=torch.float64))
        parts.append(alive if sites_ok else torch.zeros(0, dtype=torch.float64))
        # sizes can only differ between ranks for a model whose graph differs per rank; then the
        # mismatching part is left out on every rank (the header told every rank the same thing)
        summed = self.all_reduce_sum(trainer, torch.cat(parts))
        eval_any = bool(summed[0] > 0)
        n_flags = per_param.numel() if params_ok else 0
        flags = summed[1 : 1 + n_flags].reshape(-1, 5) if params_ok else per_param
        alive_out = summed[1 + n_flags :] if sites_ok else alive
        return alive_out, flags, eval_any, sites_ok

    def _parameter_findings(self, trainer: Trainer) -> None:
        kinds = {
            "no_gradient": (
                "never received a gradient",
                "the layer is not used in the loss (or never called)",
            ),
            "zero_gradient": (
                "always got an exactly zero gradient",
                "nothing downstream passes gradient to it (dead units? multiplied by 0?)",
            ),
            "unchanged": (
                "got gradients but never changed",
                "the optimizer does not update it (updates below float precision? weights restored each step?)",
            ),
        }
        new: dict[str, list[str]] = {k: [] for k in kinds}
        p = self.patience
        for name, (n_grad, got, nonzero, n_change, changed) in self._evidence.items():
            if n_grad >= p and not got:
                kind = "no_gradient"
            elif n_grad >= p and not nonzero:
                kind = "zero_gradient"
            elif n_change >= p and not changed:
                kind = "unchanged"
            else:
                continue
            if name not in self._reported.get(kind, []):
                new[kind].append(name)
        for kind, params in new.items():
            if not params:
                continue
            self._reported.setdefault(kind, []).extend(params)
            layers = list(dict.fromkeys(n.rsplit(".", 1)[0] if "." in n else "(root)" for n in params))
            what, why = kinds[kind]
            shown = ", ".join(params[:4]) + (f" and {len(params) - 4} more" if len(params) > 4 else "")
            self.record(
                trainer,
                "warn",
                f"{len(params)} trainable parameter(s) in {len(layers)} layer(s) {what} over {self.patience} checks "
                f"({shown}): {why}; fix it, or set requires_grad=False / leave it out of the optimizer if on purpose",
                {"problem": kind, "parameters": params[:16], "layers": layers[:16], "checks": self.patience},
            )

    def _eval_finding(self, trainer: Trainer, check: _Check) -> None:
        reported = self._reported.setdefault("eval_mode", [])
        new = [p for p in check.eval_problems if p.name not in reported]
        if not new:
            return
        reported.extend(p.name for p in new)
        first = new[0]
        affected = ", ".join(first.affected[:3]) + (" …" if len(first.affected) > 3 else "")
        others = f" (and {len(new) - 1} more: {', '.join(p.name for p in new[1:4])})" if len(new) > 1 else ""
        if first.name == "":
            message = (
                f"the whole model is in eval mode while it trains ({first.trainable} parameter tensors trained): its "
                f"dropout/batch norm ({affected}) behave as at inference; remove the self.eval() call from "
                "on_train_start/training_step (Lightning puts the model in train mode), or call .eval() only on the "
                "frozen part"
            )
        else:
            message = (
                f"'{first.name}' is in eval mode while the model trains, yet {first.trainable} of its parameter "
                f"tensors are trained: its dropout/batch norm ({affected}) behave as at inference{others}; remove "
                "the .eval() call, or freeze it (requires_grad=False) if that is the intent"
            )
        self.record(
            trainer,
            "warn",
            message,
            {
                "problem": "eval_mode",
                "modules": [p.name for p in new],
                "affected": first.affected[:8],
                "step": check.step,
            },
        )

    def _dead_findings(self, trainer: Trainer, dead: dict[str, float]) -> None:
        reported = self._reported.setdefault("dead_layer", [])
        sites = [
            s
            for s, streak in self._dead_streak.items()
            if streak >= self.patience and s not in reported and s in dead
        ]
        if not sites:
            return
        reported.extend(sites)
        self.record(
            trainer,
            "fail",
            f"every unit of {', '.join(repr(x) for x in sites[:4])} is zero on the whole batch on {self.patience} checks: "
            "no gradient flows through it; check the init and bias of the layer before it (large negative bias?) "
            "and the learning rate, or use a leaky activation",
            {"problem": "dead_layer", "sites": sites[:16], "checks": self.patience},
        )

    # ------------------------------------------------------------------ TensorBoard
    @staticmethod
    def _label(pl_module: LightningModule, name: str) -> str:
        try:
            kind = type(pl_module.get_submodule(name.split(":")[0])).__name__
        except AttributeError:
            return name or "(root)"
        return f"{name or '(root)'} · {kind}"

    def _log(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        step: int,
        layers: list[str],
        log_ratio: list[float],
        grad_norm: list[float],
        dead: dict[str, float],
        g2: torch.Tensor,
        median: float,
        figure: bool,
    ) -> None:
        if not trainer.is_global_zero:
            return
        scalars: dict[str, float] = {}
        for i in evenly_spaced(len(layers), self.max_layers):
            name = layers[i] or "root"
            if math.isfinite(log_ratio[i]):
                scalars[f"{_TAG}/log10_update_ratio/{name}"] = log_ratio[i]
            if math.isfinite(grad_norm[i]):
                scalars[f"{_TAG}/grad_norm/{name}"] = grad_norm[i]
        finite = [r for r in log_ratio if math.isfinite(r)]
        if finite:
            scalars[f"{_TAG}/log10_update_ratio_median"] = median
            scalars[f"{_TAG}/log10_update_ratio_min"] = min(finite)
            scalars[f"{_TAG}/log10_update_ratio_max"] = max(finite)
        total = float(g2.sum())
        if math.isfinite(total):
            scalars[f"{_TAG}/grad_norm"] = math.sqrt(total)
        sites = list(dead)
        for i in evenly_spaced(len(sites), self.max_layers):
            scalars[f"{_TAG}/dead_fraction/{sites[i]}"] = dead[sites[i]]
        if dead:
            scalars[f"{_TAG}/dead_fraction_max"] = max(dead.values())
        recipe_logging.log_scalars(trainer, scalars, step)

        if not figure:
            return
        history = [list(self._history.get(n, ())) for n in layers]
        log_grad = [_log_grad(g) for g in grad_norm]
        dead_values = [dead[s] for s in sites]
        layer_labels = [self._label(pl_module, n) for n in layers]
        site_labels = [self._label(pl_module, s) for s in sites]
        rule = self.RULE_OF_THUMB
        recipe_logging.log_figure(
            trainer,
            f"{_TAG}/layers",
            lambda: health_figure(
                step, layer_labels, log_ratio, log_grad, site_labels, dead_values, history, rule
            ),
            step,
        )
