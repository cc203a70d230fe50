"""Chart what depends on what with backprop: per-sample and causal gradient dependencies.

The recipe, "use backprop to chart dependencies": set the loss to something trivial like the sum
of all outputs of example ``i``, run the backward pass all the way to the input, and ensure that
you get a non-zero gradient only on the ``i``-th input. :func:`chart_dependencies` does exactly
that for a few samples ``i`` and every floating-point input tensor of a batch (a tensor, or
tuples, lists and dicts of them, nested), differentiating with respect to *copies* of the inputs
(the caller's batch is never modified).

* Outputs are combined with fixed random weights rather than summed: the plain sum of a softmax
  row or of a LayerNorm output is a constant, whose gradient is zero by construction.
* Integer inputs (token ids) have no gradient; for them the gradient is taken at the output of
  every ``nn.Embedding`` / ``nn.EmbeddingBag`` that looks them up (forward hooks).
* With ``causal_dim=``, the gradient of the output at position ``t`` is also charted along that
  dimension of each input, to check that it does not depend on later positions.

:func:`independence_verdict` and :func:`causal_verdict` turn a :class:`DependencyChart` into a
status, a one-line message and the numbers behind it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    >>> chart = chart_dependencies(lambda x: net(x), torch.randn(6, 3), modules=net)
    >>> independence_verdict(chart)[0]
    'pass'
    >>> mixing = chart_dependencies(lambda x: net(x - x.mean(0)), torch.randn(6, 3))
    >>> independence_verdict(mixing)[0]
    'fail'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lightning_recipe.core.format import sig as _fmt

__all__ = [
    "BATCH_COUPLING_NAMES",
    "DependencyChart",
    "DependencyError",
    "Source",
    "causal_verdict",
    "chart_call",
    "chart_dependencies",
    "choose_positions",
    "choose_samples",
    "independence_verdict",
    "per_sample_eval",
    "zero_weight_layers",
]

#: Lowercased class-name fragments of layers that couple samples (or are random) in training
#: mode and are legitimate there; they run in eval mode while dependencies are charted.
BATCH_COUPLING_NAMES = ("batchnorm", "dropout", "droppath", "drop_path", "stochasticdepth")


class DependencyError(RuntimeError):
    """The dependencies cannot be charted (the message says why; a ``skipped`` verdict)."""


@dataclass
class Source:
    """A tensor the gradient is taken with respect to.

    Attributes:
        name: where it is in the batch (``"inputs[0]"``, ``"inputs['x']"``) or which embedding
            produced it (``"embedding 'tok'"``).
        kind: ``"input"`` or ``"embedding"``.
        shape: its shape.
    """

    name: str
    kind: str
    shape: tuple[int, ...]


@dataclass
class DependencyChart:
    """Per-sample (and causal) gradient magnitudes.

    Attributes:
        batch_size: N.
        samples: the samples ``i`` whose outputs were backpropagated.
        sources: what the gradient was taken with respect to.
        outputs: names of the output tensors used.
        grads: per source name, a ``(len(samples), N)`` float64 tensor: the largest absolute
            gradient of sample ``i``'s (weighted) outputs on any element of sample ``j``'s input.
        connected: some output is connected to some source in the autograd graph.
        finite: every gradient was finite.
        causal_dim: the sequence dimension charted, or ``None``.
        causal_positions: the output positions ``t`` charted.
        causal_samples: the samples whose positions were charted.
        causal: per source name, a ``(len(causal_samples), len(causal_positions), T)`` float64
            tensor: largest absolute gradient of the output at position ``t`` of sample ``i`` on
            input position ``t'`` of the same sample.
        notes: remarks gathered while charting (ignored sources and why).
    """

    batch_size: int
    samples: list[int]
    sources: list[Source]
    outputs: list[str]
    grads: dict[str, torch.Tensor]
    connected: bool
    finite: bool = True
    causal_dim: int | None = None
    causal_positions: list[int] = field(default_factory=list)
    causal_samples: list[int] = field(default_factory=list)
    causal: dict[str, torch.Tensor] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def own(self) -> torch.Tensor:
        """``(len(samples),)``: the largest gradient of each sample on its own input (any source)."""
        own = torch.zeros(len(self.samples), dtype=torch.float64)
        for g in self.grads.values():
            own = torch.maximum(own, g[torch.arange(len(self.samples)), torch.tensor(self.samples)])
        return own

    def cross(self) -> torch.Tensor:
        """``(len(samples), N)``: the largest gradient on *other* samples' inputs (own entry 0)."""
        cross = torch.zeros(len(self.samples), self.batch_size, dtype=torch.float64)
        for g in self.grads.values():
            cross = torch.maximum(cross, g)
        cross[torch.arange(len(self.samples)), torch.tensor(self.samples)] = 0.0
        return cross

    def matrix(self) -> torch.Tensor:
        """``(len(samples), N)``: the largest gradient over all sources (for plots)."""
        out = torch.zeros(len(self.samples), self.batch_size, dtype=torch.float64)
        for g in self.grads.values():
            out = torch.maximum(out, g)
        return out


# ---------------------------------------------------------------------- choosing what to chart
def choose_samples(n: int, k: int = 4) -> list[int]:
    """Up to ``k`` distinct samples spread over a batch of ``n``: first, last, middle, second.

    >>> choose_samples(32), choose_samples(2), choose_samples(1)
    ([0, 1, 16, 31], [0, 1], [0])
    """
    picks = [0, n - 1, n // 2, 1, n // 4, (3 * n) // 4]
    out: list[int] = []
    for p in picks:
        if 0 <= p < n and p not in out:
            out.append(p)
        if len(out) == k:
            break
    return sorted(out)


def choose_positions(length: int, strict: bool = False) -> list[int]:
    """Output positions to chart along a sequence of ``length``: first, second, middle, last.

    Without ``strict`` the last position cannot leak (nothing comes after it) and is left out.

    >>> choose_positions(16), choose_positions(16, strict=True), choose_positions(1)
    ([0, 1, 8, 14], [0, 1, 8, 14, 15], [])
    """
    last = length - 1 if strict else length - 2
    return sorted({p for p in (0, 1, length // 2, length - 2, length - 1) if 0 <= p <= last})


# ---------------------------------------------------------------------- module modes
def _is_batch_coupling(module: nn.Module) -> bool:
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)):
        return True
    name = type(module).__name__.lower()
    return any(fragment in name for fragment in BATCH_COUPLING_NAMES)


def per_sample_eval(module: nn.Module) -> list[str]:
    """Put BatchNorm-like and Dropout-like layers in eval mode; return their names.

    The caller restores the modes (run it inside :func:`~lightning_recipe.core.state.preserved_state`).
    """
    names = []
    for name, m in module.named_modules():
        if m.training and _is_batch_coupling(m):
            m.eval()
            names.append(name)
    return names


def zero_weight_layers(module: nn.Module) -> list[str]:
    """Names of weight matrices (2+ dims) that are exactly zero, e.g. a zero-initialised head."""
    out = []
    for name, p in module.named_parameters():
        if p.dim() >= 2 and p.numel() > 1 and not bool(p.detach().any()):
            out.append(name)
    return out


# ---------------------------------------------------------------------- structure walking
def _path(prefix: str, key: Any) -> str:
    return f"{prefix}[{key!r}]"


def _walk(obj: Any, prefix: str, fn: Callable[[torch.Tensor, str], Any]) -> Any:
    """Rebuild ``obj`` with ``fn(tensor, path)`` applied to every tensor."""
    if isinstance(obj, torch.Tensor):
        return fn(obj, prefix)
    if isinstance(obj, Mapping):
        mapped = {k: _walk(v, _path(prefix, k), fn) for k, v in obj.items()}
        try:
            return type(obj)(mapped)
        except TypeError:
            return mapped
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_walk(v, _path(prefix, i), fn) for i, v in enumerate(obj)))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_walk(v, _path(prefix, i), fn) for i, v in enumerate(obj))
    return obj


def _tensors(obj: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    found: list[tuple[str, torch.Tensor]] = []

    def keep(t: torch.Tensor, path: str) -> torch.Tensor:
        found.append((path, t))
        return t

    _walk(obj, prefix, keep)
    return found


def _has_batch(t: torch.Tensor, n: int, batch_dim: int) -> bool:
    return t.dim() > batch_dim and t.shape[batch_dim] == n


def _batch_size(inputs: Any, batch_dim: int) -> int:
    for _, t in _tensors(inputs, "inputs"):
        if t.dim() > batch_dim:
            return int(t.shape[batch_dim])
    raise DependencyError(
        f"the inputs hold no tensor with a batch dimension {batch_dim}; pass `input_key=` to point at them"
    )


class _Leaves:
    """Copies of the inputs that require grad, made afresh each time the model is called on them.

    Calling it on the inputs (``ModelCall``'s ``transform=``) records, for that call, the batch
    size, the leaves, their sources, the integer tensors (token ids) and the embedding outputs.
    """

    def __init__(self, batch_dim: int) -> None:
        self.batch_dim = batch_dim
        self.n: int | None = None
        self.error: DependencyError | None = None
        self._reset()

    def _reset(self) -> None:
        self.sources: list[Source] = []
        self.leaves: list[tuple[str, torch.Tensor]] = []
        self.notes: list[str] = []
        self.id_tensors: list[torch.Tensor] = []
        self.embedded: list[tuple[str, torch.Tensor, bool]] = []

    def __call__(self, inputs: Any) -> Any:
        self._reset()
        self.n = None
        try:
            n = self.n = _batch_size(inputs, self.batch_dim)
        except DependencyError as err:
            self.error = err  # the call may fail and another convention be tried
            return inputs

        def copy_leaf(t: torch.Tensor, path: str) -> torch.Tensor:
            if not _has_batch(t, n, self.batch_dim):
                if t.is_floating_point():
                    self.notes.append(f"{path} has no batch dimension of {n}; not charted")
                return t
            if not t.is_floating_point():
                if not t.is_complex():
                    self.id_tensors.append(t)
                return t
            leaf = t.detach().clone().requires_grad_(True)
            self.leaves.append((path, leaf))
            self.sources.append(Source(path, "input", tuple(t.shape)))
            return leaf.clone()  # a non-leaf copy: in-place ops inside the model stay legal

        return _walk(inputs, "inputs", copy_leaf)


@contextmanager
def _embedding_leaves(module: nn.Module | None, state: _Leaves) -> Iterator[None]:
    """Replace each embedding output with a leaf that requires grad (recorded in ``state.embedded``)."""
    handles = []
    batch_dim = state.batch_dim
    if module is not None:
        for name, m in module.named_modules():
            if not isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
                continue

            def hook(mod: nn.Module, args: tuple[Any, ...], output: Any, _name: str = name) -> Any:
                n = state.n
                if n is None or not isinstance(output, torch.Tensor) or not output.is_floating_point():
                    return None
                if not _has_batch(output, n, batch_dim):
                    return None
                ids = args[0] if args and isinstance(args[0], torch.Tensor) else None
                matched = ids is not None and any(
                    t.shape == ids.shape and t.device == ids.device and torch.equal(t, ids)
                    for t in state.id_tensors
                )
                if not matched and not _per_sample_ids(ids, n, batch_dim):
                    return None  # positions (arange) or indices shared by every sample: not the batch's data
                leaf = output.detach().requires_grad_(True)
                leaves = state.embedded
                count = sum(1 for recorded, _, _ in leaves if recorded.startswith(f"embedding {_name!r}"))
                label = f"embedding {_name!r}" + (f" (call {count + 1})" if count else "")
                leaves.append((label, leaf, matched))
                return leaf.clone()

            handles.append(m.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _per_sample_ids(ids: torch.Tensor | None, n: int, batch_dim: int) -> bool:
    """Whether an embedding's index tensor (that is not one of the inputs) holds per-sample data.

    It must have the batch dimension and differ from sample to sample. Position indices do not:
    ``arange(T)`` (which looks like a batch when ``T == n``), or positions expanded over the
    batch (every sample's row the same).
    """
    if ids is None or ids.dim() <= batch_dim or ids.shape[batch_dim] != n or n < 2:
        return False
    rows = ids.detach().movedim(batch_dim, 0)
    if bool((rows == rows[:1]).all()):
        return False  # the same indices for every sample
    if rows.dim() == 1 and not rows.is_floating_point():
        steps = rows[1:] - rows[:-1]
        if bool((steps == 1).all()):
            return False  # consecutive positions (arange(T), offset or not), not samples
    return True


def _select_outputs(outputs: Any, n: int, batch_dim: int) -> list[tuple[str, torch.Tensor]]:
    chosen = [
        (path, t)
        for path, t in _tensors(outputs, "outputs")
        if t.is_floating_point() and _has_batch(t, n, batch_dim)
    ]
    if not chosen:
        shapes = [tuple(t.shape) for _, t in _tensors(outputs, "outputs")]
        raise DependencyError(
            f"the model's outputs hold no floating-point tensor with {n} samples along dim {batch_dim} "
            f"(output shapes {shapes}); pass `output_key=` to pick the per-sample outputs"
        )
    return chosen


def _weights(outputs: list[tuple[str, torch.Tensor]], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t.device) for _, t in outputs]


# ---------------------------------------------------------------------- the chart
def chart_dependencies(
    fn: Callable[[Any], Any],
    inputs: Any,
    modules: nn.Module | None = None,
    samples: Sequence[int] | None = None,
    num_samples: int = 4,
    batch_dim: int = 0,
    causal_dim: int | None = None,
    strict: bool = False,
    causal_samples: int = 2,
    output_key: Any = None,
    seed: int = 0,
) -> DependencyChart:
    """Backpropagate each chosen sample's outputs to (copies of) the inputs and chart the gradients.

    Args:
        fn: ``inputs -> outputs`` (the model's forward).
        inputs: a tensor or a nested tuple/list/dict of tensors; never modified.
        modules: the model, to find ``nn.Embedding`` layers for integer inputs (optional).
        samples: the samples ``i`` to backpropagate (default: :func:`choose_samples`).
        num_samples: how many samples when ``samples`` is not given.
        batch_dim: the batch dimension of the inputs and outputs.
        causal_dim: also chart dependencies along this (sequence) dimension.
        strict: with ``causal_dim``, chart the last position too (it may not see itself).
        causal_samples: how many samples to chart causally.
        output_key: picks the per-sample outputs: a dict key, a position, or ``callable(outputs)``.
        seed: seed of the (local) generator of the output weights.

    Raises:
        DependencyError: no batch dimension, no per-sample outputs, nothing to differentiate, or
            the forward pass failed.
    """
    _batch_size(inputs, batch_dim)  # before the forward pass: inputs without a batch dimension
    return chart_call(
        lambda prepare: fn(prepare(inputs)),
        modules=modules,
        samples=samples,
        num_samples=num_samples,
        batch_dim=batch_dim,
        causal_dim=causal_dim,
        strict=strict,
        causal_samples=causal_samples,
        output_key=output_key,
        seed=seed,
    )


def chart_call(
    run: Callable[[Callable[[Any], Any]], Any],
    modules: nn.Module | None = None,
    samples: Sequence[int] | None = None,
    num_samples: int = 4,
    batch_dim: int = 0,
    causal_dim: int | None = None,
    strict: bool = False,
    causal_samples: int = 2,
    output_key: Any = None,
    seed: int = 0,
) -> DependencyChart:
    """:func:`chart_dependencies` for a caller that prepares the inputs itself.

    ``run(prepare)`` calls the model on ``prepare(inputs)`` and returns its outputs, e.g.
    ``lambda prepare: ModelCall()(module, batch, grad=True, transform=prepare).raw``, so that the
    gradients are taken w.r.t. exactly what the call convention passes (the other arguments are
    those of :func:`chart_dependencies`). ``prepare`` may be called more than once (a call
    convention tried and given up); the last call counts. Inputs without a batch dimension are
    passed on unchanged (that call may fail and the next convention be tried); if the call that
    succeeds had such inputs, the chart fails as :func:`chart_dependencies` would.

    Example:
        >>> net = nn.Linear(3, 2)
        >>> chart = chart_call(lambda prepare: net(prepare(torch.randn(5, 3))))
        >>> chart.batch_size, [s.name for s in chart.sources]
        (5, ['inputs'])
    """
    state = _Leaves(batch_dim)
    retried: str | None = None
    with torch.enable_grad(), _embedding_leaves(modules, state):
        try:
            outputs = run(state)
        except DependencyError:
            raise
        except Exception as err:
            fails_on_grad = isinstance(err, RuntimeError) and "requires_grad" in str(err)
            if modules is None or not fails_on_grad or not any(m.training for m in modules.modules()):
                raise DependencyError(f"the forward pass failed ({type(err).__name__}: {err})") from err
            # a model that does not take inputs requiring grad in training mode (wav2vec 2.0 sets
            # requires_grad on its input's view): charted in eval mode, as inference runs it; any
            # other failure is the model's own
            modes = [(m, m.training) for m in modules.modules()]
            modules.eval()
            try:
                outputs = run(state)
            except DependencyError:
                raise
            except Exception:
                raise DependencyError(f"the forward pass failed ({type(err).__name__}: {err})") from err
            finally:
                for m, mode in modes:
                    m.training = mode
            retried = (
                f"charted in eval mode: in training mode the forward failed ({type(err).__name__}: {err})"
            )
    if state.n is None:
        raise state.error or DependencyError(
            "the model was called without the inputs to chart (`prepare` unused)"
        )
    n, sources, leaves, notes = state.n, state.sources, state.leaves, state.notes
    if retried is not None:
        notes.append(retried)
    if state.embedded:
        matched = [e for e in state.embedded if e[2]] or state.embedded
        for label, leaf, _ in matched:
            leaves.append((label, leaf))
            sources.append(Source(label, "embedding", tuple(leaf.shape)))
    if not leaves:
        if state.id_tensors:
            raise DependencyError(
                "the inputs are integer tensors and no nn.Embedding looks them up, so there is nothing to "
                "differentiate; pass `input_key=` / `forward=` so that floating-point inputs reach the model"
            )
        raise DependencyError(
            f"the inputs hold no floating-point tensor with {n} samples along dim {batch_dim}; pass `input_key=`"
        )
    if output_key is not None:
        outputs = _pick_output(outputs, output_key)
    outs = _select_outputs(outputs, n, batch_dim)
    weights = _weights(outs, seed)
    sample_list = list(samples) if samples is not None else choose_samples(n, num_samples)
    bad = [s for s in sample_list if not 0 <= s < n]
    if bad:
        raise DependencyError(f"samples {bad} are outside the batch of {n}")

    tensors = [leaf for _, leaf in leaves]
    grads = {name: torch.zeros(len(sample_list), n, dtype=torch.float64) for name, _ in leaves}
    connected = False
    finite = True
    reduce_dims = {name: [d for d in range(leaf.dim()) if d != batch_dim] for name, leaf in leaves}

    def backprop(objective: torch.Tensor) -> list[torch.Tensor | None]:
        nonlocal connected, finite
        if not objective.requires_grad:
            return [None] * len(tensors)
        got = torch.autograd.grad(objective, tensors, retain_graph=True, allow_unused=True)
        for g in got:
            if g is not None:
                connected = True
                if not bool(torch.isfinite(g).all()):
                    finite = False
        return list(got)

    with torch.enable_grad():
        for row, i in enumerate(sample_list):
            objective = sum(
                (o.select(batch_dim, i).float() * w.select(batch_dim, i)).sum()
                for (_, o), w in zip(outs, weights)
            )
            for (name, _), g in zip(leaves, backprop(objective)):  # type: ignore[arg-type]
                if g is None:
                    continue
                mag = g.detach().abs().double()
                mag = mag.amax(dim=reduce_dims[name]) if reduce_dims[name] else mag
                grads[name][row] = torch.nan_to_num(mag, nan=math.inf).cpu()

        chart = DependencyChart(
            batch_size=n,
            samples=sample_list,
            sources=sources,
            outputs=[path for path, _ in outs],
            grads=grads,
            connected=connected,
            finite=finite,
            notes=notes,
        )
        if causal_dim is not None:
            _chart_causal(
                chart, outs, weights, leaves, backprop, batch_dim, causal_dim, strict, causal_samples
            )
    return chart


def _pick_output(outputs: Any, key: Any) -> Any:
    if callable(key) and not isinstance(key, (str, int)):
        return key(outputs)
    try:
        return outputs[key]
    except (KeyError, IndexError, TypeError) as err:
        raise DependencyError(
            f"output_key={key!r} does not select anything in the model's outputs ({err})"
        ) from err


def _chart_causal(
    chart: DependencyChart,
    outs: list[tuple[str, torch.Tensor]],
    weights: list[torch.Tensor],
    leaves: list[tuple[str, torch.Tensor]],
    backprop: Callable[[torch.Tensor], list[torch.Tensor | None]],
    batch_dim: int,
    causal_dim: int,
    strict: bool,
    num_samples: int,
) -> None:
    if causal_dim == batch_dim:
        raise DependencyError(f"causal_dim={causal_dim} is the batch dimension")
    seq_outs = [(i, o) for i, (_, o) in enumerate(outs) if o.dim() > causal_dim]
    if not seq_outs:
        raise DependencyError(f"no output has a dimension {causal_dim} (causal_dim) to chart")
    length = int(seq_outs[0][1].shape[causal_dim])
    seq_outs = [(i, o) for i, o in seq_outs if o.shape[causal_dim] == length]
    seq_leaves = [
        (k, name)
        for k, (name, leaf) in enumerate(leaves)
        if leaf.dim() > causal_dim and leaf.shape[causal_dim] == length
    ]
    if not seq_leaves:
        shapes = {name: tuple(leaf.shape) for name, leaf in leaves}
        raise DependencyError(
            f"no input has {length} positions along dim {causal_dim} like the outputs (input shapes {shapes}); "
            "check `causal_dim=`"
        )
    positions = choose_positions(length, strict=strict)
    samples = chart.samples[:num_samples]
    result = {
        name: torch.zeros(len(samples), len(positions), length, dtype=torch.float64) for _, name in seq_leaves
    }
    # dims of the per-sample slice (batch dim removed) that are neither the sequence dim
    for r, i in enumerate(samples):
        for c, t in enumerate(positions):
            objective = sum(
                (
                    o.select(batch_dim, i).select(causal_dim - (causal_dim > batch_dim), t).float()
                    * weights[k].select(batch_dim, i).select(causal_dim - (causal_dim > batch_dim), t)
                ).sum()
                for k, o in seq_outs
            )
            got = backprop(objective)  # type: ignore[arg-type]
            for k, name in seq_leaves:
                g = got[k]
                if g is None:
                    continue
                g = g.detach().select(batch_dim, i).abs().double()
                seq = causal_dim - (causal_dim > batch_dim)
                other = [d for d in range(g.dim()) if d != seq]
                prof = g.amax(dim=other) if other else g
                result[name][r, c] = torch.nan_to_num(prof, nan=math.inf).cpu()
    chart.causal_dim = causal_dim
    chart.causal_positions = positions
    chart.causal_samples = samples
    chart.causal = result


# ---------------------------------------------------------------------- verdicts


def independence_verdict(
    chart: DependencyChart, tolerance: float = 0.0, zero_layers: Sequence[str] = ()
) -> tuple[str, str, dict[str, Any]]:
    """Status, one-line message and numbers for the batch-dimension check.

    A cross-sample gradient counts as mixing when it exceeds ``tolerance`` times the sample's own
    gradient (``tolerance=0``: any non-zero value). ``zero_layers`` (from
    :func:`zero_weight_layers`) explains an all-zero gradient as a zero-initialised layer.
    """
    own = chart.own()
    cross = chart.cross()
    n, k = chart.batch_size, len(chart.samples)
    numbers: dict[str, Any] = {
        "batch_size": n,
        "samples": list(chart.samples),
        "sources": [s.name for s in chart.sources],
    }
    if not chart.finite:
        return (
            "skipped",
            "the gradients are not finite (NaN or inf in the forward pass); fix that first",
            numbers,
        )
    if not chart.connected:
        return (
            "warn",
            "the outputs are not connected to the inputs in the autograd graph (the forward detaches them, "
            "runs under torch.no_grad, or goes through argmax/rounding/numpy), so no dependency can be "
            "charted; if that is not deliberate (a frozen feature extractor), look for .detach(), .item() "
            "or numpy round trips in forward",
            numbers,
        )
    scale = torch.where(own > 0, own, torch.ones_like(own))
    ratio = cross / scale[:, None]
    leak = (cross > tolerance * own[:, None]) & (cross > 0)
    max_ratio = float(ratio.max()) if ratio.numel() else 0.0
    if bool((own == 0).any() & leak.any()):
        max_ratio = math.inf if bool(((own == 0)[:, None] & leak).any()) else max_ratio
    numbers["mixing_ratio"] = max_ratio
    numbers["own_gradient"] = [float(v) for v in own]
    if bool(leak.any()):
        row = int(leak.sum(dim=1).argmax())
        i = chart.samples[row]
        others = [j for j in range(n) if bool(leak[row, j])]
        worst_source = max(
            chart.grads, key=lambda name: float((chart.grads[name][row] * leak[row].double()).max())
        )
        numbers["leaking_pairs"] = int(leak.sum())
        numbers["mixed_samples"] = others[:16]
        shown = ", ".join(map(str, others[:5])) + (", …" if len(others) > 5 else "")
        rel = "its own is 0" if float(own[row]) == 0 else f"up to {_fmt(float(ratio[row].max()))}x its own"
        return (
            "fail",
            f"the model mixes samples across the batch: the output of sample {i} has a non-zero gradient "
            f"w.r.t. {worst_source} of {len(others)} other sample(s) ({shown}; {rel}); look for "
            "`view`/`reshape` where `permute`/`transpose` was meant, or a mean/sum/softmax/norm over dim 0",
            numbers,
        )
    if bool((own == 0).all()):
        if zero_layers:
            return (
                "skipped",
                f"no gradient reaches the inputs because {zero_layers[0]!r} is all zeros (a zero-initialised "
                "layer?); run the check after some training steps",
                numbers,
            )
        return (
            "fail",
            f"no dependency on its own input: the output of each of the {k} checked samples has an exactly "
            "zero gradient w.r.t. its input (dead ReLUs, saturated activations, or an output that ignores "
            "the input)",
            numbers,
        )
    dead = [chart.samples[r] for r in range(k) if float(own[r]) == 0]
    numbers["samples_without_own_gradient"] = dead
    extra = f"; samples {dead} show no gradient at all (dead units for them)" if dead else ""
    return (
        "pass",
        f"each of the {k} checked samples' outputs depends only on its own input (gradient exactly 0 on "
        f"the other {n - 1} samples){extra}",
        numbers,
    )


def causal_verdict(
    chart: DependencyChart, strict: bool = False, tolerance: float = 0.0
) -> tuple[str, str, dict[str, Any]]:
    """Status, message and numbers for the causal check along ``chart.causal_dim``.

    The output at position ``t`` may depend on input positions ``<= t`` (``< t`` with ``strict``).
    """
    dim = chart.causal_dim
    numbers: dict[str, Any] = {
        "causal_dim": dim,
        "positions": list(chart.causal_positions),
        "strict": strict,
        "sources": list(chart.causal),
    }
    if not chart.causal:
        return "skipped", "nothing was charted along the sequence dimension", numbers
    if not chart.finite:
        return (
            "skipped",
            "the gradients are not finite (NaN or inf in the forward pass); fix that first",
            numbers,
        )
    worst: tuple[int, int, str, int] | None = None  # (t, t', source, count) of the earliest leak
    total = 0
    for name, prof in chart.causal.items():
        for r in range(prof.shape[0]):
            for c, t in enumerate(chart.causal_positions):
                row = prof[r, c]
                first_forbidden = t if strict else t + 1
                allowed, forbidden = row[:first_forbidden], row[first_forbidden:]
                if forbidden.numel() == 0:
                    continue
                own = float(allowed.max()) if allowed.numel() else 0.0
                bad = (forbidden > tolerance * own) & (forbidden > 0)
                if bool(bad.any()):
                    count = int(bad.sum())
                    total += count
                    tprime = first_forbidden + int(torch.nonzero(bad)[0])
                    if worst is None or t < worst[0]:
                        worst = (t, tprime, name, count)
    numbers["leaking_positions"] = total
    rule = "before it" if strict else "at or before it"
    if worst is not None:
        t, tprime, name, count = worst
        numbers["first_leak"] = [t, tprime]
        more = f" (and {count - 1} more position(s))" if count > 1 else ""
        hint = (
            "the model sees the token it must predict: shift inputs and targets by one, or mask the diagonal"
            if strict and tprime == t
            else "check the causal mask (torch.triu(..., diagonal=1) masks the future) and any shift by one"
        )
        return (
            "fail",
            f"causal leak along dim {dim}: the output at position {t} depends on {name} at position {tprime}"
            f"{more}, but may only depend on positions {rule}; {hint}",
            numbers,
        )
    return (
        "pass",
        f"causal along dim {dim}: outputs at positions {list(chart.causal_positions)} depend only on input "
        f"positions {rule}",
        numbers,
    )
