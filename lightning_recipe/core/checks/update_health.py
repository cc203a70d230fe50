"""UpdateHealth's checks: what one scheduled check measures, the evidence kept across checks, and the verdicts.

No Lightning here. The callback hands over the optimizers, the model and the in-flight
measurements; a reduction over ranks is a ``reduce_sum(tensor) -> tensor`` callable, so every
rank decides from the same numbers. A verdict is a ``(status, message, numbers)`` tuple the
callback records; ``numbers["problem"]`` names the kind.

Example:
    >>> state = HealthState()
    >>> state.evidence = {"extra.weight": [3, 0, 0, 0, 0], "net.0.weight": [3, 1, 1, 3, 1]}
    >>> [(status, numbers["problem"], numbers["parameters"]) for status, _, numbers in parameter_verdicts(state, 3)]
    [('warn', 'no_gradient', ['extra.weight'])]
    >>> parameter_verdicts(state, 3)                    # each problem is reported once
    []
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lightning_recipe.core.budget import Cadence
from lightning_recipe.core.health import (
    ActivationProbe,
    EvalModeProblem,
    evenly_spaced,
    group_sums,
    layer_of_parameters,
    log10_or_nan,
    module_kind,
    modules_left_in_eval,
    tensor_norms,
    update_norms,
)
from lightning_recipe.findings import Status

__all__ = [
    "EVERY",
    "HIGH_LOG10_RATIO",
    "HISTORY",
    "RULE_OF_THUMB",
    "SPIKE_LOG10_RATIO",
    "Armed",
    "CheckSummary",
    "Decide",
    "HealthState",
    "LocalNumbers",
    "OptimizerMeasure",
    "PendingCheck",
    "Verdict",
    "activation_classes",
    "check_arguments",
    "check_verdicts",
    "close_check",
    "closing_verdicts",
    "dead_verdict",
    "eval_verdict",
    "figure_data",
    "final_verdict",
    "find_orphans",
    "gather_local",
    "gradients_reset_verdicts",
    "gradients_stale",
    "last_figure_due",
    "log_grad",
    "log_ratio",
    "measure_optimizer",
    "new_cadence",
    "note_backward",
    "optimizer_step",
    "orphan_verdicts",
    "parameter_verdicts",
    "record_check",
    "reduce_numbers",
    "refresh_owner",
    "release",
    "remember",
    "restated_verdicts",
    "scalars",
    "start_check",
    "stuck_orphans",
    "summarize",
    "trainable_ids",
    "unsupported_strategy",
    "update_ratio_verdict",
]

Verdict = tuple[Status, str, dict[str, Any]]
ReduceSum = Callable[[torch.Tensor], torch.Tensor]
#: ``decide(flag) -> bool``: the same answer on every rank ("does any rank say so").
Decide = Callable[[bool], bool]

#: Karpathy's rule of thumb for log10(update / weight).
RULE_OF_THUMB = -3.0
#: The median layer's log10(update / weight) at or above this (on ``patience`` checks) is a finding.
HIGH_LOG10_RATIO = 0.0
#: ... or at or above this on a single check (the update is ten times the weights).
SPIKE_LOG10_RATIO = 1.0
#: Earlier checks kept per layer for the grey dots of the figure.
HISTORY = 8
#: The shortest interval between two checks of the default (budgeted) cadence.
EVERY = 50
#: Evidence per parameter: checks with gradient info, got a gradient, got a non-zero one,
#: checks where a change was expected, changed.
_N_FLAGS = 5
_FAILS = ("gradients_not_reset", "dead_layer")


def _shown(names: Sequence[str], fmt: Callable[[str], str] = str) -> str:
    """The first four names, and how many more."""
    return ", ".join(fmt(n) for n in names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


# ---------------------------------------------------------------------- numbers
def activation_classes(value: Any, owner: str = "UpdateHealth") -> tuple[type[nn.Module], ...]:
    """``activation_types`` as a tuple of module classes (one class is accepted too).

    >>> activation_classes(nn.ReLU), activation_classes([nn.ReLU, nn.ReLU6])
    ((<class 'torch.nn.modules.activation.ReLU'>,), (<class 'torch.nn.modules.activation.ReLU'>, <class 'torch.nn.modules.activation.ReLU6'>))
    """
    types = (value,) if isinstance(value, type) else value
    try:
        types = tuple(types)
    except TypeError:
        types = (value,)
    if not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise TypeError(
            f"{owner}(activation_types={value!r}): pass a tuple of torch.nn.Module classes, e.g. (nn.ReLU, nn.ReLU6)."
        )
    return types


def log_ratio(diff_sq: float, weight_sq: float) -> float:
    """log10 ‖Δw‖/‖w‖; NaN for no change, +inf for a change from all-zero weights.

    >>> log_ratio(1e-6, 1.0), log_ratio(0.0, 1.0), log_ratio(1.0, 0.0)
    (-3.0, nan, inf)
    """
    if not diff_sq > 0:
        return math.nan
    if weight_sq <= 0:
        return math.inf
    return log10_or_nan(math.sqrt(diff_sq) / math.sqrt(weight_sq))


def log_grad(norm: float) -> float:
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


# ---------------------------------------------------------------------- in-flight measurements
@dataclass
class OptimizerMeasure:
    """What one optimizer's scheduled step looked like just before it stepped."""

    params: list[nn.Parameter]
    before: list[torch.Tensor]
    grad_sq: torch.Tensor  # per parameter, float64 CPU
    grad_present: list[bool]
    grad_nonzero: list[bool]
    lr_zero: list[bool]


@dataclass
class PendingCheck:
    """One scheduled check in progress (from the batch start to the end of its optimizer step)."""

    step: int
    probe: ActivationProbe | None = None
    alive: dict[str, torch.Tensor] = field(default_factory=dict)
    eval_problems: list[EvalModeProblem] = field(default_factory=list)
    layer_order: list[str] = field(default_factory=list)
    optimizers: dict[int, OptimizerMeasure] = field(default_factory=dict)

    def stop_probe(self) -> None:
        """Remove the activation hooks and keep what they saw (the forward pass is over)."""
        if self.probe is None:
            return
        self.probe.detach()
        self.alive = self.probe.alive
        self.layer_order = self.probe.layer_order
        self.probe = None


def release(check: PendingCheck | None) -> None:
    """Remove the activation hooks of a check that will not close (what they saw is dropped)."""
    if check is not None and check.probe is not None:
        check.probe.detach()


@dataclass
class Armed:
    """After a scheduled step of an optimizer: watch whether its gradients are reset before the next."""

    params: list[nn.Parameter]
    step: int
    backwards: int = 0
    reset: bool = False


def unsupported_strategy(strategy_name: str) -> str | None:
    """Why the check cannot run under a strategy (sharded parameters), or ``None``."""
    if "FSDP" in strategy_name or "DeepSpeed" in strategy_name:
        return (
            f"the {strategy_name} strategy shards parameters and gradients, so per-layer norms seen by one rank "
            "are partial; UpdateHealth does not run under it"
        )
    return None


def start_check(
    step: int, model: nn.Module, activation_types: tuple[type[nn.Module], ...], trainable: set[int] | None
) -> PendingCheck:
    """Begin a scheduled check: hook the activations (if any types) and look for modules left in eval
    mode (when ``trainable``, the ids of the trained parameters, is given)."""
    check = PendingCheck(step=step)
    if activation_types:
        check.probe = ActivationProbe(model, activation_types)
        check.probe.attach()
    if trainable is not None:
        check.eval_problems = modules_left_in_eval(model, trainable)
    return check


def measure_optimizer(optimizer: Any) -> OptimizerMeasure:
    """Snapshot the trainable parameters of ``optimizer`` and their gradient norms, before it steps."""
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
    return OptimizerMeasure(params, before, grad_sq, present, nonzero, lr_zero)


def trainable_ids(optimizers: Iterable[Any]) -> set[int]:
    """Ids of the parameters that require grad and are in one of the optimizers' param groups."""
    return {
        id(p) for opt in optimizers for group in opt.param_groups for p in group["params"] if p.requires_grad
    }


def note_backward(armed: Iterable[Armed]) -> None:
    """A backward is about to run: an armed optimizer whose gradients are all zero or ``None`` was reset."""
    for a in armed:
        if a.reset:
            continue
        a.backwards += 1
        a.reset = not _any_nonzero(a.params)


def gradients_stale(armed: Armed) -> bool:
    """The optimizer steps again and no backward since its last step ran on reset gradients."""
    return armed.backwards > 0 and not armed.reset and _any_nonzero(armed.params)


def find_orphans(model: nn.Module, optimizers: Iterable[Any]) -> list[tuple[str, nn.Parameter, torch.Tensor]]:
    """Trainable parameters that no optimizer holds, with a fingerprint of their values.

    Decided from the model and the optimizers alone, the same on every rank. The fingerprint
    (sum and sum of squares) tells at the first check whether something else updates them.
    """
    held = {id(p) for opt in optimizers for group in opt.param_groups for p in group["params"]}
    orphans = []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in held and id(p) not in seen:
            seen.add(id(p))
            orphans.append((name, p, _fingerprint(p)))
    return orphans


def stuck_orphans(
    orphans: Sequence[tuple[str, nn.Parameter, torch.Tensor]],
    owner: dict[int, tuple[str, str]],
    model: nn.Module,
) -> list[str]:
    """The orphans that get gradients, yet nothing changed since the start (a one-time read each).

    One whose layer is in eval mode is skipped: left out of the optimizer *and* put in eval mode,
    it is a deliberately frozen part (a frozen backbone), not a forgotten one.
    """

    def training(p: nn.Parameter) -> bool:
        try:
            return bool(model.get_submodule(owner.get(id(p), ("", ""))[0]).training)
        except AttributeError:
            return True

    return [
        name
        for name, p, before in orphans
        if p.grad is not None and training(p) and bool((_fingerprint(p) == before.to(p.device)).all())
    ]


# ---------------------------------------------------------------------- one check's numbers
@dataclass
class LocalNumbers:
    """One check's measurements on this rank, per parameter and per activation site."""

    names: list[str]
    layers: list[str]
    grad_sq: torch.Tensor
    diff_sq: torch.Tensor
    w_sq: torch.Tensor
    flags: torch.Tensor  # (parameters, 5): present, nonzero, changed, optimizer changed, lr zero
    sites: list[str]
    sizes: list[int]
    alive: torch.Tensor


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def gather_local(check: PendingCheck, owner: dict[int, tuple[str, str]]) -> LocalNumbers:
    """Compare the weights after the step with the snapshot; per parameter flags and norms (local)."""
    names: list[str] = []
    layers: list[str] = []
    flags: list[list[float]] = []
    grad_sq, diff_sq, w_sq = [], [], []
    for measure in check.optimizers.values():
        d2, dmax, w2 = update_norms(measure.before, [p.detach() for p in measure.params])
        measure.before = []
        opt_changed = bool((dmax > 0).any()) if len(dmax) else False
        for i, p in enumerate(measure.params):
            layer, pname = owner.get(id(p), ("?", f"?{id(p)}"))
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
    alive = _cat([check.alive[s].reshape(-1).to("cpu", torch.float64) for s in sites])
    return LocalNumbers(
        names,
        layers,
        _cat(grad_sq),
        _cat(diff_sq),
        _cat(w_sq),
        torch.as_tensor(flags, dtype=torch.float64).reshape(-1, _N_FLAGS),
        sites,
        [check.alive[s].numel() for s in sites],
        alive,
    )


def reduce_numbers(
    local: LocalNumbers, eval_flag: float, reduce_sum: ReduceSum, world_size: int
) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    """Sum the activity, the parameter flags and the eval-mode flag over ranks (two reductions).

    Returns ``(alive, flags, eval_any, sites_ok)``. Sizes can only differ between ranks for a model
    whose graph differs per rank; then the mismatching part is left out on every rank (the first
    reduction tells every rank the same thing).
    """
    alive, flags = local.alive, local.flags
    if world_size <= 1:
        return alive, flags, bool(eval_flag), True
    header = torch.tensor([float(alive.numel()), float(flags.numel()), 1.0], dtype=torch.float64)
    total = reduce_sum(header)
    world = float(total[2])
    sites_ok = float(total[0]) == world * alive.numel()
    params_ok = float(total[1]) == world * flags.numel()
    parts = [torch.tensor([eval_flag], dtype=torch.float64)]
    parts.append(flags.reshape(-1) if params_ok else torch.zeros(0, dtype=torch.float64))
    parts.append(alive if sites_ok else torch.zeros(0, dtype=torch.float64))
    summed = reduce_sum(torch.cat(parts))
    n_flags = flags.numel() if params_ok else 0
    flags_out = summed[1 : 1 + n_flags].reshape(-1, _N_FLAGS) if params_ok else flags
    alive_out = summed[1 + n_flags :] if sites_ok else alive
    return alive_out, flags_out, bool(summed[0] > 0), sites_ok


@dataclass
class CheckSummary:
    """One check per layer (in the order the layers ran) and per activation site."""

    step: int
    layers: list[str]
    log_ratio: list[float]
    grad_norm: list[float]
    grad_sq_total: float
    dead: dict[str, float]
    median: float

    def numbers(self) -> dict[str, Any]:
        """The public ``last_check`` dictionary."""
        return {
            "step": self.step,
            "layers": {
                n: {"log10_update_ratio": r, "grad_norm": g}
                for n, r, g in zip(self.layers, self.log_ratio, self.grad_norm)
            },
            "dead_fraction": dict(self.dead),
        }


def summarize(
    check: PendingCheck, local: LocalNumbers, alive: torch.Tensor, flags: torch.Tensor, sites_ok: bool
) -> CheckSummary:
    """Group the parameters' numbers by layer and the activity by site (from the reduced numbers)."""
    order = [n for n in dict.fromkeys([*check.layer_order, *local.layers]) if n in set(local.layers)]
    index = {name: i for i, name in enumerate(order)}
    groups = [index[name] for name in local.layers]
    g2 = group_sums(local.grad_sq, groups, len(order))
    d2 = group_sums(local.diff_sq, groups, len(order))
    w2 = group_sums(local.w_sq, groups, len(order))
    present = [False] * len(order)
    for g, ok in zip(groups, (flags[:, 0] > 0).tolist()):
        present[g] = present[g] or ok
    ratios = [log_ratio(d, w) for d, w in zip(d2.tolist(), w2.tolist())]
    dead: dict[str, float] = {}
    if sites_ok:
        offset = 0
        for site, size in zip(local.sites, local.sizes):
            chunk = alive[offset : offset + size]
            offset += size
            dead[site] = float((chunk == 0).sum()) / size if size else 0.0
    finite = [r for r in ratios if math.isfinite(r)]
    return CheckSummary(
        step=check.step,
        layers=order,
        log_ratio=ratios,
        grad_norm=[math.sqrt(g) if ok else math.nan for g, ok in zip(g2.tolist(), present)],
        grad_sq_total=float(g2.sum()),
        dead=dead,
        median=statistics.median(finite) if finite else math.nan,
    )


def scalars(summary: CheckSummary, max_layers: int, tag: str) -> dict[str, float]:
    """The check's scalars under ``tag``: per layer and site (at most ``max_layers``) and aggregates."""
    out: dict[str, float] = {}
    layers = summary.layers
    for i in evenly_spaced(len(layers), max_layers):
        name = layers[i] or "root"
        if math.isfinite(summary.log_ratio[i]):
            out[f"{tag}/log10_update_ratio/{name}"] = summary.log_ratio[i]
        if math.isfinite(summary.grad_norm[i]):
            out[f"{tag}/grad_norm/{name}"] = summary.grad_norm[i]
    finite = [r for r in summary.log_ratio if math.isfinite(r)]
    if finite:
        out[f"{tag}/log10_update_ratio_median"] = summary.median
        out[f"{tag}/log10_update_ratio_min"] = min(finite)
        out[f"{tag}/log10_update_ratio_max"] = max(finite)
    if math.isfinite(summary.grad_sq_total):
        out[f"{tag}/grad_norm"] = math.sqrt(summary.grad_sq_total)
    sites = list(summary.dead)
    for i in evenly_spaced(len(sites), max_layers):
        out[f"{tag}/dead_fraction/{sites[i]}"] = summary.dead[sites[i]]
    if summary.dead:
        out[f"{tag}/dead_fraction_max"] = max(summary.dead.values())
    return out


def remember(history: dict[str, deque[float]], summary: CheckSummary) -> None:
    """Keep the last :data:`HISTORY` ratios per layer (the grey dots of the next figures)."""
    for name, ratio in zip(summary.layers, summary.log_ratio):
        history.setdefault(name, deque(maxlen=HISTORY)).append(ratio)


def figure_data(summary: CheckSummary, history: dict[str, deque[float]], model: nn.Module) -> dict[str, Any]:
    """The arguments of :func:`lightning_recipe.plots.update_health.health_figure` for one check."""
    sites = list(summary.dead)
    return {
        "step": summary.step,
        "layers": summary.layers,
        "log_ratio": summary.log_ratio,
        "log_grad": [log_grad(g) for g in summary.grad_norm],
        "sites": sites,
        "dead": [summary.dead[s] for s in sites],
        "history": [list(history.get(n, ())) for n in summary.layers],
        "rule_of_thumb": RULE_OF_THUMB,
        "kinds": [module_kind(model, n) for n in summary.layers],
        "site_kinds": [module_kind(model, s) for s in sites],
    }


# ---------------------------------------------------------------------- evidence across checks
@dataclass
class HealthState:
    """What the checks found so far (kept in the checkpoint).

    Attributes:
        checks: number of checks completed.
        evidence: parameter name -> [grad checks, got grad, got non-zero grad, change checks, changed].
        reported: problem kind -> the names already reported.
        dead_streak: site -> consecutive checks with every unit dead.
        high_streak: consecutive checks with the median ratio at or above :data:`HIGH_LOG10_RATIO`.
        last_check_step: the step of the latest check.
        last_figure_step: the step of the latest figure.
    """

    checks: int = 0
    evidence: dict[str, list[int]] = field(default_factory=dict)
    reported: dict[str, list[str]] = field(default_factory=dict)
    dead_streak: dict[str, int] = field(default_factory=dict)
    high_streak: int = 0
    last_check_step: int | None = None
    last_figure_step: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "checks": self.checks,
            "evidence": {k: list(v) for k, v in self.evidence.items()},
            "reported": {k: list(v) for k, v in self.reported.items()},
            "dead_streak": dict(self.dead_streak),
            "high_streak": self.high_streak,
            "last_check_step": self.last_check_step,
            "last_figure_step": self.last_figure_step,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> HealthState:
        """Read :meth:`state_dict` (missing keys, from older checkpoints, load as "nothing yet")."""
        return cls(
            checks=int(state.get("checks", 0)),
            evidence={str(k): [int(x) for x in v] for k, v in state.get("evidence", {}).items()},
            reported={str(k): list(v) for k, v in state.get("reported", {}).items()},
            dead_streak={str(k): int(v) for k, v in state.get("dead_streak", {}).items()},
            high_streak=int(state.get("high_streak", 0)),
            last_check_step=state.get("last_check_step"),
            last_figure_step=state.get("last_figure_step"),
        )

    def next_due(self, every: int) -> int:
        """The first step of the next check, on the ``every``-step grid."""
        return 0 if self.last_check_step is None else (int(self.last_check_step) // every + 1) * every

    def figure_due(self, every: int | None, step: int) -> bool:
        """Draw at the first check and at the first check after each multiple of ``every``."""
        last = self.last_figure_step
        due = every is not None and (last is None or step // every > last // every)
        if due:
            self.last_figure_step = step
        return due


def new_cadence(every: int | None, overhead: float, patience: int) -> Cadence:
    """The cadence of the checks: every ``every`` steps, or budgeted (every :data:`EVERY` steps at most,
    within ``overhead``)."""
    # a budgeted cadence still fits enough checks in the planned run for a verdict
    return Cadence(every, base=EVERY, share=overhead, min_points=patience + 2)


def last_figure_due(state: HealthState, summary: CheckSummary | None, every: int | None) -> bool:
    """At the end of fit: whether the figure of the last check (``summary``) is still to draw (it is
    not when it was drawn at that check already, or there is no figure); marks it drawn."""
    if summary is None or every is None:
        return False
    if state.last_figure_step == summary.step:  # drawn at that check already
        return False
    state.last_figure_step = summary.step
    return True


def refresh_owner(
    owner: dict[int, tuple[str, str]], check: PendingCheck, model: nn.Module
) -> dict[int, tuple[str, str]]:
    """``owner`` (``id(parameter)`` -> (layer, parameter name)), looked up again in ``model`` when an
    optimizer of ``check`` holds a parameter it does not know (added since the start of training)."""
    if any(id(p) not in owner for m in check.optimizers.values() for p in m.params):
        return layer_of_parameters(model)
    return owner


def close_check(
    state: HealthState,
    check: PendingCheck,
    owner: dict[int, tuple[str, str]],
    reduce_sum: ReduceSum,
    world_size: int,
) -> tuple[CheckSummary, bool]:
    """After the optimizer step: measure, reduce over ranks, summarize and add to the evidence.

    Returns the summary and whether any rank saw a module left in eval mode.
    """
    local = gather_local(check, owner)
    eval_flag = float(bool(check.eval_problems))
    alive, flags, eval_any, sites_ok = reduce_numbers(local, eval_flag, reduce_sum, world_size)
    summary = summarize(check, local, alive, flags, sites_ok)
    record_check(state, local.names, flags, summary)
    return summary, eval_any


def record_check(
    state: HealthState, names: Sequence[str], flags: torch.Tensor, summary: CheckSummary
) -> None:
    """Add one check's (reduced) flags and numbers to the evidence and the streaks."""
    present, nonzero, changed, opt_changed, lr_zero = ((flags[:, k] > 0).tolist() for k in range(_N_FLAGS))
    for i, name in enumerate(names):
        ev = state.evidence.setdefault(name, [0] * _N_FLAGS)
        ev[0] += 1
        ev[1] |= int(present[i])
        ev[2] |= int(nonzero[i])
        if opt_changed[i] and not lr_zero[i] and nonzero[i]:
            ev[3] += 1
            ev[4] |= int(changed[i])
    state.checks += 1
    state.last_check_step = summary.step
    state.high_streak = state.high_streak + 1 if summary.median >= HIGH_LOG10_RATIO else 0
    for site, frac in summary.dead.items():
        state.dead_streak[site] = state.dead_streak.get(site, 0) + 1 if frac >= 1.0 else 0


# ---------------------------------------------------------------------- verdicts
_PARAMETER_PROBLEMS = {
    "no_gradient": ("never received a gradient", "the layer is not used in the loss (or never called)"),
    "zero_gradient": (
        "always got an exactly zero gradient",
        "nothing downstream passes gradient to it (dead units? multiplied by 0?)",
    ),
    "unchanged": (
        "got gradients but never changed",
        "the optimizer does not update it (updates below float precision? weights restored each step?)",
    ),
}


def parameter_verdicts(state: HealthState, patience: int) -> list[Verdict]:
    """``no_gradient`` / ``zero_gradient`` / ``unchanged`` for parameters not reported yet."""
    new: dict[str, list[str]] = {k: [] for k in _PARAMETER_PROBLEMS}
    for name, (n_grad, got, nonzero, n_change, changed) in state.evidence.items():
        if n_grad >= patience and not got:
            kind = "no_gradient"
        elif n_grad >= patience and not nonzero:
            kind = "zero_gradient"
        elif n_change >= patience and not changed:
            kind = "unchanged"
        else:
            continue
        if name not in state.reported.get(kind, []):
            new[kind].append(name)
    verdicts: list[Verdict] = []
    for kind, params in new.items():
        if not params:
            continue
        state.reported.setdefault(kind, []).extend(params)
        layers = list(dict.fromkeys(n.rsplit(".", 1)[0] if "." in n else "(root)" for n in params))
        what, why = _PARAMETER_PROBLEMS[kind]
        verdicts.append(
            (
                "warn",
                f"{len(params)} trainable parameter(s) in {len(layers)} layer(s) {what} over {patience} checks "
                f"({_shown(params)}): {why}; fix it, or set requires_grad=False / leave it out of the optimizer "
                "if on purpose",
                {"problem": kind, "parameters": params[:16], "layers": layers[:16], "checks": patience},
            )
        )
    return verdicts


def orphan_verdicts(
    state: HealthState,
    orphans: Sequence[tuple[str, nn.Parameter, torch.Tensor]],
    owner: dict[int, tuple[str, str]],
    model: nn.Module,
    any_rank: Decide,
) -> list[Verdict]:
    """``no_optimizer`` (at the first check): parameters that require grad and get gradients but are
    in no optimizer, and that nothing else changed (``any_rank`` is called on every rank)."""
    if not orphans or "no_optimizer" in state.reported:
        return []
    stuck = stuck_orphans(orphans, owner, model)
    if not any_rank(bool(stuck)) or not stuck:
        return []
    state.reported["no_optimizer"] = stuck
    return [
        (
            "warn",
            f"{_shown(stuck, lambda n: f'`{n}`')} require grad and get gradients but are in no optimizer: they "
            "never train; pass them to the optimizer in configure_optimizers (e.g. self.parameters()), or set "
            "requires_grad=False if frozen on purpose",
            {"problem": "no_optimizer", "parameters": stuck[:16], "count": len(stuck)},
        )
    ]


def eval_verdict(state: HealthState, problems: list[EvalModeProblem], step: int) -> Verdict | None:
    """``eval_mode``: submodules (or the whole model) in eval mode that change what is trained."""
    reported = state.reported.setdefault("eval_mode", [])
    new = [p for p in problems if p.name not in reported]
    if not new:
        return None
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
    numbers = {
        "problem": "eval_mode",
        "modules": [p.name for p in new],
        "affected": first.affected[:8],
        "step": step,
    }
    return "warn", message, numbers


def dead_verdict(state: HealthState, dead: dict[str, float], patience: int) -> Verdict | None:
    """``dead_layer``: every unit of a site zero on the whole batch on ``patience`` checks."""
    reported = state.reported.setdefault("dead_layer", [])
    sites = [
        s for s, streak in state.dead_streak.items() if streak >= patience and s not in reported and s in dead
    ]
    if not sites:
        return None
    reported.extend(sites)
    return (
        "fail",
        f"every unit of {', '.join(repr(x) for x in sites[:4])} is zero on the whole batch on {patience} checks: "
        "no gradient flows through it; check the init and bias of the layer before it (large negative bias?) "
        "and the learning rate, or use a leaky activation",
        {"problem": "dead_layer", "sites": sites[:16], "checks": patience},
    )


def update_ratio_verdict(state: HealthState, summary: CheckSummary, patience: int) -> Verdict | None:
    """``update_ratio``: the median layer's update as large as its weights (the learning rate is far too high)."""
    spike = summary.median >= SPIKE_LOG10_RATIO
    if not (state.high_streak >= patience or spike) or "update_ratio" in state.reported:
        return None
    state.reported["update_ratio"] = ["median"]
    return (
        "warn",
        f"the median layer's update/weight ratio is 10^{summary.median:.1f} at step {summary.step}, far above the "
        f"rule of thumb 10^{RULE_OF_THUMB:.0f}: the learning rate is far too high; lower it (or clip gradients)",
        {"problem": "update_ratio", "log10_update_ratio_median": summary.median, "step": summary.step},
    )


def gradients_reset_verdicts(
    state: HealthState, armed: Armed, owner: dict[int, tuple[str, str]], step: int, any_rank: Decide
) -> list[Verdict]:
    """``gradients_not_reset``: the optimizer steps again, and no backward since its last step ran on
    reset gradients (``any_rank`` is the collective "does any rank say so"; called on every rank)."""
    if "gradients_not_reset" in state.reported or not any_rank(gradients_stale(armed)):
        return []
    layers = list(dict.fromkeys(owner.get(id(p), ("?", "?"))[0] or "(root)" for p in armed.params))
    state.reported["gradients_not_reset"] = layers
    return [
        (
            "fail",
            f"gradients are not reset between optimizer steps (step {armed.step} -> {step}): each step adds all "
            "past gradients; call optimizer.zero_grad() before backward (or do not override optimizer_zero_grad)",
            {
                "problem": "gradients_not_reset",
                "step": armed.step,
                "backwards": armed.backwards,
                "layers": layers[:8],
            },
        )
    ]


def check_verdicts(
    state: HealthState, check: PendingCheck, summary: CheckSummary, eval_any: bool, patience: int
) -> list[Verdict]:
    """The eval-mode, dead-layer and update-ratio verdicts of one check (each problem once)."""
    verdicts = [eval_verdict(state, check.eval_problems, check.step)] if eval_any else []
    verdicts += [dead_verdict(state, summary.dead, patience), update_ratio_verdict(state, summary, patience)]
    return [v for v in verdicts if v is not None]


def restated_verdicts(state: HealthState) -> list[Verdict]:
    """After a resume: what the checkpointed run found (it is not found again)."""
    return [
        (
            "fail" if kind in _FAILS else "warn",
            f"found before the run was resumed: {kind.replace('_', ' ')} ({_shown(names)}); see the earlier run's report",
            {"problem": kind, "names": names[:16], "carried_over": True},
        )
        for kind, names in state.reported.items()
        if names
    ]


def final_verdict(checks: int, patience: int, last_check: dict[str, Any]) -> Verdict:
    """At the end of a run without problems: ``pass``, or ``skipped`` when too few checks ran."""
    numbers: dict[str, Any] = {"problem": "none", "checks": checks, "patience": patience}
    layers = last_check.get("layers", {})
    ratios = [v["log10_update_ratio"] for v in layers.values() if math.isfinite(v["log10_update_ratio"])]
    if ratios:
        numbers["log10_update_ratio_median"] = statistics.median(ratios)
    numbers["layers"] = len(layers)
    if checks == 0:
        return "skipped", "no optimizer step was checked; nothing to judge", numbers
    if checks < patience:
        return (
            "skipped",
            f"only {checks} check(s) ran, fewer than patience={patience}; lower every_n_train_steps or train "
            "longer to judge unused parameters and dead layers",
            numbers,
        )
    median = numbers.get("log10_update_ratio_median")
    ratio = f"median update/weight 1e{median:.1f}, " if median is not None else ""
    return (
        "pass",
        f"{len(layers)} layers over {checks} checks: {ratio}every trainable parameter got gradients and changed, "
        "gradients reset, no dead layer",
        numbers,
    )


def check_arguments(
    every: Any, patience: Any, max_layers: Any, figure_every: Any, activation_types: Any, check_eval_mode: Any
) -> tuple[type[nn.Module], ...]:
    """Validate UpdateHealth's arguments; returns the activation classes."""
    from lightning_recipe.core.arguments import check_positive_int

    check_positive_int("UpdateHealth", "every_n_train_steps", every, allow_none=True)
    check_positive_int("UpdateHealth", "patience", patience)
    check_positive_int("UpdateHealth", "max_layers", max_layers)
    check_positive_int("UpdateHealth", "figure_every_n_train_steps", figure_every, allow_none=True)
    types = activation_classes(activation_types, "UpdateHealth")
    if not isinstance(check_eval_mode, bool):
        raise TypeError(f"UpdateHealth(check_eval_mode={check_eval_mode!r}): pass True or False.")
    return types


def closing_verdicts(
    state: HealthState,
    check: PendingCheck,
    summary: CheckSummary,
    eval_any: Any,
    patience: int,
    orphans: list[Any],
    owner: dict[int, tuple[str, str]],
    model: nn.Module,
    any_rank: Callable[[bool], bool],
) -> list[Verdict]:
    """The verdicts after a check closed: parameters, parameters no optimizer holds, then the check's own."""
    return [
        *parameter_verdicts(state, patience),
        *orphan_verdicts(state, orphans, owner, model, any_rank),
        *check_verdicts(state, check, summary, eval_any, patience),
    ]


def optimizer_step(
    state: HealthState,
    check: PendingCheck | None,
    armed: dict[int, Armed],
    owner: dict[int, tuple[str, str]],
    optimizer: Any,
    step: int,
    any_rank: Callable[[bool], bool],
) -> list[Verdict]:
    """Before ``optimizer`` steps: the ``gradients_not_reset`` verdicts of a check armed on it, and the
    measurement of a pending check (which arms the next step's look at the gradients)."""
    key = id(optimizer)
    verdicts: list[Verdict] = []
    was_armed = armed.pop(key, None)
    if was_armed is not None:
        verdicts = list(gradients_reset_verdicts(state, was_armed, owner, step, any_rank))
    if check is not None and key not in check.optimizers:
        check.optimizers[key] = measure = measure_optimizer(optimizer)
        if "gradients_not_reset" not in state.reported:
            # armed from the schedule alone, so every rank makes the same collective call later
            armed[key] = Armed(measure.params, step)
    return verdicts
