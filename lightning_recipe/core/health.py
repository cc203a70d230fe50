"""Per-layer health of a training run: update/weight ratios, gradient norms, dead units, eval modes.

Pure torch; nothing here knows about Lightning.

* :func:`layer_of_parameters` groups parameters by the module that owns them (a "layer"); a tied
  parameter belongs to its first owner only.
* :func:`tensor_norms` gives many norms with one device-to-host copy; :func:`update_norms`
  compares a snapshot of the weights with the weights after an optimizer step.
* :class:`ActivationProbe` hooks ReLU-like modules (and notes the parametric module that ran
  before each), for one forward pass, and keeps per-unit "ever non-zero" masks: a unit whose
  output is zero for the whole batch is *dead*. Functional calls (``F.relu``) cannot be hooked.
* :func:`modules_left_in_eval` finds submodules in eval mode whose behaviour depends on the mode
  (dropout, batch-norm statistics) inside a part of the model that is being trained.
* the per-layer figure is :func:`lightning_recipe.plots.update_health.health_figure` (still
  importable from here).

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> with torch.no_grad():
    ...     _ = net[0].bias.fill_(-100.0)              # every unit of the ReLU is dead
    >>> probe = ActivationProbe(net)
    >>> probe.attach()
    >>> _ = net(torch.randn(16, 4))
    >>> probe.detach()
    >>> {name: dead_fraction(alive) for name, alive in probe.alive.items()}
    {'1': 1.0}
    >>> probe.layer_order
    ['0', '2']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lightning_recipe.core.plain import evenly_spaced as evenly_spaced  # moved there; importable from here

__all__ = [
    "DEFAULT_ACTIVATIONS",
    "ActivationProbe",
    "EvalModeProblem",
    "dead_fraction",
    "evenly_spaced",
    "group_sums",
    "health_figure",  # noqa: F822  (moved to plots.update_health; see __getattr__)
    "layer_of_parameters",
    "log10_or_nan",
    "mode_dependent",
    "module_kind",
    "modules_left_in_eval",
    "tensor_norms",
    "train_mode_modules",
    "unit_dim",
    "update_norms",
]

#: Activation modules whose output is exactly zero for a "dead" unit.
DEFAULT_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)

_CHANNEL_FIRST = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
)
_FEATURE_LAST = (nn.Linear, nn.Bilinear, nn.LayerNorm, nn.Embedding, nn.MultiheadAttention, nn.RMSNorm)


# ---------------------------------------------------------------------- layers and norms
def layer_of_parameters(model: nn.Module) -> dict[int, tuple[str, str]]:
    """Map ``id(parameter)`` to ``(layer name, parameter name)``; the layer is the owning module.

    A parameter shared by several modules (tied weights) belongs to the first one in
    ``named_modules()`` order. The root module's own parameters belong to the layer ``""``.
    """
    owner: dict[int, tuple[str, str]] = {}
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) not in owner:
                owner[id(p)] = (mname, f"{mname}.{pname}" if mname else pname)
    return owner


def module_kind(model: nn.Module, name: str) -> str | None:
    """The class name of the module behind a layer or activation-site name (``"relu:2"`` is ``relu``'s).

    >>> module_kind(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), "1:2"), module_kind(nn.Linear(2, 2), "x")
    ('ReLU', None)
    """
    try:
        return type(model.get_submodule(name.split(":")[0])).__name__
    except AttributeError:
        return None


def tensor_norms(tensors: Sequence[torch.Tensor], ord: float = 2.0) -> torch.Tensor:
    """The ``ord``-norm of each tensor, computed in float32, as one float64 CPU tensor (one sync).

    Sparse tensors use their stored values. An empty list gives an empty tensor.
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.float64)
    dense = [(t.coalesce().values() if t.is_sparse else t).detach() for t in tensors]

    def upcast(dtype: torch.dtype) -> torch.dtype | None:  # half precision is summed in float32
        return torch.float32 if dtype in (torch.float16, torch.bfloat16) else None

    dtypes = {t.dtype for t in dense}
    devices = {t.device for t in dense}
    norms: list[torch.Tensor] | None = None
    if len(dtypes) == 1 and len(devices) == 1:
        try:
            norms = list(torch._foreach_norm(dense, ord, dtype=upcast(dense[0].dtype)))
        except (RuntimeError, TypeError):  # a layout or dtype the fused kernel rejects
            norms = None
    if norms is None:
        norms = [torch.linalg.vector_norm(t, ord, dtype=upcast(t.dtype)) for t in dense]
    device = norms[0].device
    return torch.stack([n.to(device) for n in norms]).to("cpu", torch.float64)


def update_norms(
    before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(‖after - before‖₂, max |after - before|, ‖before‖₂)`` per tensor, as float64 CPU tensors.

    The max-abs difference decides "changed at all" exactly (a squared tiny difference may
    underflow to zero in the 2-norm).
    """
    if not before:
        empty = torch.zeros(0, dtype=torch.float64)
        return empty, empty, empty
    with torch.no_grad():
        diffs = [a.detach().float() - b.float() for a, b in zip(after, before)]
        both = tensor_norms(diffs, 2.0), tensor_norms(diffs, math.inf)
    return both[0], both[1], tensor_norms(before, 2.0)


def group_sums(values: torch.Tensor, groups: Sequence[int], n_groups: int) -> torch.Tensor:
    """Sum ``values[i]`` into ``out[groups[i]]`` (float64, length ``n_groups``)."""
    out = torch.zeros(n_groups, dtype=torch.float64)
    if len(groups):
        out.index_add_(0, torch.as_tensor(list(groups), dtype=torch.long), values.to(torch.float64))
    return out


def log10_or_nan(x: float) -> float:
    """``log10(x)`` for a positive finite ``x``, else NaN."""
    return math.log10(x) if x > 0 and math.isfinite(x) else math.nan


# ---------------------------------------------------------------------- dead units
def unit_dim(ndim: int, producer: type[nn.Module] | None) -> int:
    """Which dimension of an activation holds its units (channels or features).

    The module that ran just before the activation decides: convolutions and batch/group/instance
    norms put channels at dimension 1; linear layers, layer norms and embeddings put features
    last (also for channels-last blocks). Without a known producer: dimension 1 for 2-D and
    4-D/5-D tensors, the last dimension for 3-D tensors (``(batch, tokens, features)``).

    >>> unit_dim(4, nn.Conv2d), unit_dim(4, nn.Linear), unit_dim(3, None), unit_dim(3, nn.Conv1d)
    (1, 3, 2, 1)
    """
    if ndim <= 2:
        return ndim - 1
    if producer is not None:
        if issubclass(producer, _CHANNEL_FIRST):
            return 1
        if issubclass(producer, _FEATURE_LAST):
            return ndim - 1
    return ndim - 1 if ndim == 3 else 1


def dead_fraction(alive: torch.Tensor) -> float:
    """Fraction of units that were never non-zero (``alive`` is a per-unit bool or count tensor)."""
    n = alive.numel()
    return float((alive == 0).sum()) / n if n else 0.0


def _has_own_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


class ActivationProbe:
    """Watch one forward pass: which units of each ReLU-like module are ever non-zero.

    Hooks are registered by :meth:`attach` and removed by :meth:`detach`; a hook only reads the
    output (``ne(0)`` and ``any``) and returns ``None``, so the forward pass is unchanged. A module
    called several times in one pass (a shared ``self.relu``, a loop over time steps) gives one
    *site* per distinct width: ``"layer1.0.relu"``, ``"layer1.0.relu:2"``, ...; calls at the same
    width are merged (a unit is alive if it is non-zero in any of them), so sites stay bounded.

    Args:
        model: the model to watch.
        activation_types: the module classes treated as ReLU-like (output exactly 0 when dead).

    Attributes:
        alive: site name -> per-unit bool tensor (True: non-zero for at least one sample/position).
        rows: site name -> number of batch rows seen.
        layer_order: names of the modules with parameters, in the order they first ran.
    """

    def __init__(
        self, model: nn.Module, activation_types: Iterable[type[nn.Module]] = DEFAULT_ACTIVATIONS
    ) -> None:
        self.model = model
        self.activation_types = tuple(activation_types)
        self.alive: dict[str, torch.Tensor] = {}
        self.rows: dict[str, int] = {}
        self.layer_order: list[str] = []
        self._handles: list[Any] = []
        self._widths: dict[int, list[int]] = {}
        self._producer: type[nn.Module] | None = None
        self._seen_layers: set[int] = set()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        """Register the hooks (idempotent)."""
        if self._handles:
            return
        for name, module in self.model.named_modules():
            if self.activation_types and isinstance(module, self.activation_types):
                self._handles.append(module.register_forward_hook(self._activation_hook(name)))
            elif _has_own_parameters(module):
                self._handles.append(module.register_forward_hook(self._layer_hook(name)))

    def detach(self) -> None:
        """Remove every hook this probe registered."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _layer_hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._producer = type(module)
            if id(module) not in self._seen_layers:
                self._seen_layers.add(id(module))
                self.layer_order.append(name)

        return hook

    def _activation_hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor) or output.ndim < 2 or output.numel() == 0:
                return
            dim = unit_dim(output.ndim, self._producer)
            with torch.no_grad():
                nonzero = output.detach().ne(0)
                other = tuple(d for d in range(output.ndim) if d != dim)
                alive = nonzero.any(dim=other) if other else nonzero
            widths = self._widths.setdefault(id(module), [])
            if alive.numel() not in widths:
                widths.append(alive.numel())
            k = widths.index(alive.numel())
            site = name if k == 0 else f"{name}:{k + 1}"
            if site in self.alive:  # the same module again at the same width: alive in any call
                self.alive[site] = self.alive[site] | alive.reshape(self.alive[site].shape)
                self.rows[site] += int(output.shape[0])
            else:
                self.alive[site] = alive
                self.rows[site] = int(output.shape[0])

        return hook


# ---------------------------------------------------------------------- eval mode
def mode_dependent(module: nn.Module) -> bool:
    """True if ``module`` computes something different in train and eval mode.

    Dropout with ``p > 0``; batch/instance norm that tracks running statistics; multi-layer RNNs
    and multi-head attention with dropout. Other modules (linear, conv, ReLU, LayerNorm, ...)
    behave the same in both modes. Custom modules that read ``self.training`` cannot be seen.
    """
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return float(module.p) > 0
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
        return bool(module.track_running_stats)
    if isinstance(module, nn.RNNBase):
        return float(module.dropout) > 0 and module.num_layers > 1
    if isinstance(module, nn.MultiheadAttention):
        return float(module.dropout) > 0
    return False


def train_mode_modules(module: nn.Module) -> list[str]:
    """The names of ``module``'s mode-dependent submodules (:func:`mode_dependent`) in training mode:
    during validation, where Lightning has put the model in eval mode, a sign that ``validation_step``
    (or a hook) called ``train()`` and the validation loss is measured with dropout active and
    BatchNorm updating its running statistics.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).eval()
        >>> train_mode_modules(net), train_mode_modules(net.train())
        ([], ['1'])
    """
    return [
        name or type(m).__name__ for name, m in module.named_modules() if m.training and mode_dependent(m)
    ]


@dataclass
class EvalModeProblem:
    """A submodule in eval mode, inside a model in train mode, with trainable parameters.

    Attributes:
        name: the qualified name of the highest submodule in eval mode.
        affected: the mode-dependent modules inside it (dropout, batch norm, ...), by name.
        trainable: how many of its parameter tensors are being trained.
    """

    name: str
    affected: list[str] = field(default_factory=list)
    trainable: int = 0


def modules_left_in_eval(model: nn.Module, trainable: set[int]) -> list[EvalModeProblem]:
    """Submodules left in eval mode while ``model`` trains, where it changes what is trained.

    An *eval root* is a submodule in eval mode whose parent is in train mode. It is reported when
    it contains a mode-dependent module (:func:`mode_dependent`) **and** parameters in
    ``trainable`` (ids of parameters that require grad and are in an optimizer). A deliberately
    frozen part (eval mode, nothing in it trained) and an eval-mode part without dropout or
    batch norm are not reported.

    When ``model`` itself is in eval mode (a ``self.eval()`` in ``on_train_start`` or
    ``training_step``), the whole model is the eval root, reported with the name ``""``; its
    ``affected`` modules leave out those inside a frozen part (the nearest enclosing module that
    holds parameters holds no trained one: a frozen backbone's batch norm).
    """
    if not model.training:
        return _whole_model_in_eval(model, trainable)
    problems: list[EvalModeProblem] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            if child.training:
                visit(name, child)
                continue
            affected = [
                f"{name}.{sub}" if sub else name for sub, m in child.named_modules() if mode_dependent(m)
            ]
            n_trainable = sum(1 for p in child.parameters() if id(p) in trainable)
            if affected and n_trainable:
                problems.append(EvalModeProblem(name, affected, n_trainable))

    visit("", model)
    return problems


def _whole_model_in_eval(model: nn.Module, trainable: set[int]) -> list[EvalModeProblem]:
    n_trainable = sum(1 for p in model.parameters() if id(p) in trainable)
    if not n_trainable:
        return []
    modules = dict(model.named_modules())
    holds: dict[str, bool | None] = {}  # module name -> holds a trained parameter (None: no parameter)

    def trained_nearby(name: str) -> bool:
        path = name
        while True:
            if path not in holds:
                params = list(modules[path].parameters())
                holds[path] = any(id(p) in trainable for p in params) if params else None
            if holds[path] is not None:
                return bool(holds[path])
            if not path:
                return False
            path = path.rsplit(".", 1)[0] if "." in path else ""

    affected = [name or "(root)" for name, m in modules.items() if mode_dependent(m) and trained_nearby(name)]
    return [EvalModeProblem("", affected, n_trainable)] if affected else []


# ---------------------------------------------------------------------- figure (moved)
def __getattr__(name: str) -> Any:
    # the figure lives in lightning_recipe.plots.update_health; the old import path keeps working
    # without core importing matplotlib
    if name == "health_figure":
        from lightning_recipe.plots.update_health import health_figure

        return health_figure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
