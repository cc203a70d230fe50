"""Input-independent baseline, without Lightning: two copies, real and zeroed inputs, compared round by round.

:class:`CopyPair` trains two copies (:class:`~lightning_recipe.core.shadow.ShadowSteps`) on the same
batches with the same random numbers, one on the real inputs and one on inputs set to ``fill``
(:func:`zero_inputs`), and returns this rank's sums after each round. :class:`BaselineRounds` is the
mergeable state: the sums of all ranks (all-reduced by the caller) become validation losses, training
losses and gradient drifts per round. :func:`verdict` judges them after each round.

Example:
    >>> rounds = BaselineRounds()
    >>> #          real val   n  zeroed val  n  real tr  zeroed tr  1  |Σg| r  |Σg| z  Σ|g| r  Σ|g| z
    >>> rounds.add([2.3 * 64, 64, 2.3 * 64, 64, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], steps_done=0)
    >>> rounds.add([0.2 * 64, 64, 2.3 * 64, 64, 0.25, 2.3, 1.0, 0.1, 0.1, 1.0, 1.0], steps_done=100)
    >>> verdict(BaselineConfig(), rounds, last=False)[0], round(rounds.gap, 2)
    ('pass', 0.91)
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from lightning_recipe.core.arguments import check_positive_int
from lightning_recipe.core.batches import KeySpec, batch_size_of, map_tensors, split_batch
from lightning_recipe.core.budget import OneTimeBudget, steps_within
from lightning_recipe.core.checks.constant_floor import (
    FloorKind,
    floor_kind,
    floor_of,
    floor_stats,
    input_signature,
    loss_matches,
    our_loss,
    same_signature,
)
from lightning_recipe.core.errors import ArgumentError
from lightning_recipe.core.model_call import ModelCall
from lightning_recipe.core.shadow import ShadowSteps
from lightning_recipe.core.state import RNGState
from lightning_recipe.findings import Skip, Status

__all__ = [
    "CONTENT_KEYS",
    "DEFAULT_INTEGER_FILL",
    "DRIFT",
    "IDENTICAL",
    "LOOKAHEAD",
    "NO_VALIDATION_DATA",
    "BaselineConfig",
    "BaselineRounds",
    "CopyPair",
    "RoundPlan",
    "cannot_replay_message",
    "clear_pass",
    "drop",
    "floor_holds",
    "floor_pass",
    "infer_integer_fill",
    "is_structure_key",
    "resumed_message",
    "run_rounds",
    "settle_floor",
    "validate_arguments",
    "verdict",
    "zero_inputs",
]

#: Two losses closer than this (relative) are "the same": the input made no difference at all.
IDENTICAL = 1e-6
#: A copy whose gradients over a round add up to less than this fraction of their summed norms is
#: no longer learning: its gradients are noise around a minimum (~1/sqrt(steps)), not a consistent
#: direction (~1).
DRIFT = 0.3
#: The real copy passes only when the zeroed copy, improving at its last round's pace, could not
#: close the gap within this many rounds (a slow zeroed copy still learning the target scale).
LOOKAHEAD = 3.0

#: The most bytes of batches the real copy keeps for the zeroed one while it trains alone (lazily).
PENDING_BYTES = 256 * 2**20

#: The ``skipped`` message without validation data.
NO_VALIDATION_DATA = (
    "no validation data: the copies must be compared on held-out data (a network memorises "
    "even shuffled labels of its training batches); pass `val_dataloaders=` to `Trainer.fit` "
    "or a datamodule with `val_dataloader()`"
)


def cannot_replay_message(problem: str) -> str:
    """The ``skipped`` message for training data the copies cannot read again (see ``replay_problem``)."""
    return (
        f"cannot replay the training data for the copies: {problem}; give the dataset an `__iter__` "
        "that starts a new pass on each call (a generator), or use a map-style Dataset"
    )


def resumed_message(global_step: int) -> str:
    """The ``skipped`` message for a run resumed mid-training from a checkpoint without this check's state."""
    return (
        f"resumed at step {global_step} without this check's state; it runs once, before "
        "the first training step"
    )


@dataclass(frozen=True)
class BaselineConfig:
    """The arguments of ``InputIndependentBaseline`` (see there)."""

    steps: int = 100
    max_steps: int = 500
    val_batches: int = 8
    margin: float = 0.05
    input_key: KeySpec = None
    target_key: KeySpec = None
    fill: float = 0.0
    integer_fill: int | None = None


def validate_arguments(
    owner: str, steps: Any, max_steps: Any, val_batches: Any, margin: Any, fill: Any, integer_fill: Any
) -> int:
    """Raise ``ValueError``/``TypeError`` naming ``owner`` and the argument for a value the check cannot use;
    returns ``max_steps`` (``None``: the default, 500)."""
    max_steps = BaselineConfig.max_steps if max_steps is None else max_steps
    check_positive_int(owner, "steps", steps)
    check_positive_int(owner, "max_steps", max_steps)
    if max_steps < steps:
        raise ValueError(
            f"{owner}(max_steps={max_steps!r}): must be at least steps={steps!r} (one round of training)."
        )
    check_positive_int(owner, "val_batches", val_batches)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 < margin < 1.0:
        raise ValueError(f"{owner}(margin={margin!r}): pass a relative margin between 0 and 1, e.g. 0.05.")
    if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not math.isfinite(fill):
        raise ValueError(f"{owner}(fill={fill!r}): pass a finite number (the value inputs are set to).")
    if integer_fill is not None and (isinstance(integer_fill, bool) or not isinstance(integer_fill, int)):
        raise TypeError(
            f"{owner}(integer_fill={integer_fill!r}): pass an integer id (e.g. the padding id) or None."
        )
    return max_steps


# ---------------------------------------------------------------------- zeroing the inputs
#: Dict keys that carry the content a model reads, besides the inputs ``split_batch`` finds: all of
#: them are replaced (a multimodal batch holds ``input_ids`` and ``pixel_values``).
CONTENT_KEYS = (
    "input_ids",
    "inputs_embeds",
    "pixel_values",
    "pixel_values_videos",
    "input_values",
    "input_features",
)
#: Dict keys that carry the batch's structure, not its content: never replaced (an attention mask
#: of zeros would mask every position; positions and segments say where, not what).
STRUCTURE_KEYS = ("position_ids", "token_type_ids", "segment_ids", "cache_position")
#: The masks whose zeros mark padding, in order of preference.
MASK_KEYS = ("attention_mask", "padding_mask", "input_mask")
#: The id integer inputs are set to when nothing points at a padding id.
DEFAULT_INTEGER_FILL = 0


def is_structure_key(key: Any) -> bool:
    """Whether a dict key names structure (a mask, positions, segments) rather than content.

    Example:
        >>> [is_structure_key(k) for k in ("attention_mask", "token_type_ids", "input_ids")]
        [True, True, False]
    """
    name = str(key).lower()
    return "mask" in name or name in STRUCTURE_KEYS


def _padding_mask(batch: Any, inputs: Any, shape: tuple[int, ...]) -> tuple[str, torch.Tensor] | None:
    for holder in (batch, inputs):
        if not isinstance(holder, Mapping):
            continue
        lowered = {str(k).lower(): k for k in holder}
        for name in MASK_KEYS:
            mask = holder.get(lowered[name]) if name in lowered else None
            if isinstance(mask, torch.Tensor) and tuple(mask.shape) == shape:
                return str(lowered[name]), mask
    return None


def _config_pad_id(module: nn.Module | None) -> tuple[int, str] | None:
    if module is None:
        return None
    for name, sub in module.named_modules():
        config = getattr(sub, "config", None)
        pad = getattr(config, "pad_token_id", None)
        vocab = getattr(config, "vocab_size", None)
        if isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0:
            if isinstance(vocab, int) and pad >= vocab:
                continue  # a pad id outside the vocabulary cannot be embedded
            where = f"'{name}.config'" if name else "the module's config"
            return pad, f"pad_token_id of {where}"
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Embedding) and sub.padding_idx is not None:
            return int(sub.padding_idx), f"padding_idx of the embedding '{name}'"
    return None


def infer_integer_fill(
    batch: Any,
    module: nn.Module | None = None,
    input_key: KeySpec = None,
    target_key: KeySpec = None,
) -> tuple[int, str]:
    """The id integer inputs (token ids) are set to, and where it comes from.

    In order: the most frequent input id where the batch's ``attention_mask`` (or ``padding_mask``,
    ``input_mask``) is 0, that is the padding id the data shows; else the ``pad_token_id`` of a
    model config (a Hugging Face model's ``.config``), or the ``padding_idx`` of an ``nn.Embedding``;
    else :data:`DEFAULT_INTEGER_FILL`. Padding is "no content", the natural input-free token.

    Example:
        >>> ids = torch.tensor([[5, 7, 9, 3, 3], [4, 2, 3, 3, 3]])
        >>> mask = (torch.arange(5) < torch.tensor([[3], [2]])).long()
        >>> infer_integer_fill({"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1])})
        (3, 'the padding id: input_ids where attention_mask == 0')
        >>> infer_integer_fill((ids, torch.tensor([0, 1])), nn.Embedding(10, 4, padding_idx=1))
        (1, "padding_idx of the embedding ''")
    """
    try:
        parts = split_batch(batch, input_key=input_key, target_key=target_key)
    except ValueError:
        parts = None
    if parts is not None:
        tensors: list[torch.Tensor] = []
        map_tensors(parts.inputs, tensors.append)
        integer = [
            t for t in tensors if not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
        ]
        if integer:
            x = integer[0]
            found = _padding_mask(batch, parts.inputs, tuple(x.shape))
            if found is not None:
                key, mask = found
                pads = x[mask.to(x.device) == 0]
                if pads.numel():
                    values, counts = pads.unique(return_counts=True)
                    name = parts.input_key if isinstance(parts.input_key, str) else "the inputs"
                    return int(values[counts.argmax()]), f"the padding id: {name} where {key} == 0"
    pad = _config_pad_id(module)
    if pad is not None:
        return pad
    return DEFAULT_INTEGER_FILL, (
        "a fixed id: no attention_mask == 0 in the batch, no pad_token_id in the model; pass "
        "`integer_fill=` to choose another"
    )


def zero_inputs(
    batch: Any, config: BaselineConfig, owner: str, check: bool = False, counts: dict[str, int] | None = None
) -> Any:
    """``batch`` with every input tensor set to ``fill`` (integers to ``integer_fill``); targets untouched.

    In a dict batch the content is replaced and the structure kept: the inputs ``split_batch``
    finds and every other :data:`CONTENT_KEYS` entry are filled, masks, positions and segments
    (:func:`is_structure_key`) and the targets are passed on as they are, so the model still runs
    as it does on real data, on inputs that carry nothing.

    With ``check``, raise :class:`~lightning_recipe.findings.Skip` when nothing was zeroed or the
    targets changed too. A key the user passed that does not fit raises ``ArgumentError`` naming ``owner``.
    ``counts``, when given, is set to how many ``"float"`` and ``"int"`` tensors were filled.
    """
    try:
        parts = split_batch(batch, input_key=config.input_key, target_key=config.target_key)
    except ArgumentError as err:  # a key the user passed: theirs to fix
        raise ArgumentError(f"{owner}: {err}") from err
    except ValueError as err:  # a layout it cannot infer: the check cannot apply
        raise Skip(f"cannot split the batch ({err})") from err
    if parts.targets is None:
        raise Skip(
            "found no targets in the batch (zeroing the inputs of an input-reconstruction task would "
            "also zero what it predicts); pass `target_key=` if the batch has targets"
        )
    counts = {"float": 0, "int": 0} if counts is None else counts
    counts.update(float=0, int=0)

    def fill(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point() or t.is_complex():
            counts["float"] += 1
            return torch.full_like(t, config.fill)
        if config.integer_fill is not None and t.dtype != torch.bool:
            counts["int"] += 1
            return torch.full_like(t, config.integer_fill)
        return t

    by_key = config.input_key is None or isinstance(config.input_key, str)
    if isinstance(batch, Mapping) and by_key and parts.input_key in batch:
        # key by key: a target that is the very tensor of an input (labels = input_ids) stays
        fill_keys = {parts.input_key}
        if config.input_key is None:
            fill_keys |= {k for k in batch if str(k).lower() in CONTENT_KEYS}
        fill_keys.discard(parts.target_key)
        mapped = {k: map_tensors(v, fill) if k in fill_keys else v for k, v in batch.items()}
        out = _rebuild(batch, mapped)
    else:
        keep: set[int] = set()
        for holder in (batch, parts.inputs):
            if isinstance(holder, Mapping):
                map_tensors([v for k, v in holder.items() if is_structure_key(k)], lambda t: keep.add(id(t)))
        input_ids: set[int] = set()
        map_tensors(parts.inputs, lambda t: input_ids.add(id(t)))
        input_ids -= keep
        input_ids.discard(id(parts.targets))
        out = map_tensors(batch, lambda t: fill(t) if id(t) in input_ids else t)
    if check:
        _check_zeroed(out, parts, counts["float"] + counts["int"], config)
    return out


def _rebuild(batch: Mapping, mapped: dict[Any, Any]) -> Any:
    """``mapped`` in the type of ``batch`` where that type can be built from a dict (``BatchEncoding`` can)."""
    try:
        return type(batch)(mapped)
    except TypeError:
        return mapped


def _check_zeroed(out: Any, parts: Any, zeroed: int, config: BaselineConfig) -> None:
    if zeroed == 0:
        integer: list[bool] = []
        map_tensors(parts.inputs, lambda t: integer.append(not t.is_floating_point()))
        if any(integer) and config.integer_fill is None:
            raise Skip(
                "the inputs are integer tensors (token ids?) and integer_fill=None; pass "
                "`integer_fill=` (e.g. the padding id) to replace every id with it"
            )
        raise Skip(
            "found no input tensor to zero in the batch (the inputs `input_key=` returns are not "
            "tensors of the batch itself); pass `input_key=` as a dict key or a position"
        )
    after = split_batch(out, input_key=config.input_key, target_key=config.target_key).targets
    if after is None or after.shape != parts.targets.shape or not torch.equal(after, parts.targets):
        raise Skip(
            "zeroing the inputs also changed the targets (they share a tensor); pass `input_key=` "
            "and `target_key=` as dict keys or positions"
        )


# ---------------------------------------------------------------------- the two copies (local work)
class CopyPair:
    """The two copies and this rank's measurements, advanced round by round (every rank in lock-step).

    Round 0 builds the copies (``make_copy()`` twice) and scores them at initialisation; round
    ``k >= 1`` trains both for ``config.steps`` more steps on the same batches (same order, same
    random numbers) and scores them. :meth:`advance` reports a reason to skip instead of raising,
    so that the caller can agree with the other ranks before it all-reduces :attr:`local`.

    Args:
        config: the check's configuration.
        make_copy: builds a fresh copy of the real module.
        train_loader: the real training dataloader (read from its start, again and again).
        val_loader: the validation dataloader (its first ``config.val_batches`` batches).
        to_device: moves a batch to the device the copies are on.
        zeroed: ``zeroed(batch, check)``, the batch with its inputs set to the fill value.
    """

    def __init__(
        self,
        config: BaselineConfig,
        make_copy: Callable[[], ShadowSteps],
        train_loader: Any,
        val_loader: Any,
        to_device: Callable[[Any], Any],
        zeroed: Callable[[Any, bool], Any],
    ) -> None:
        self.config = config
        self.make_copy = make_copy
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.to_device = to_device
        self.zeroed = zeroed
        self.real: ShadowSteps | None = None
        self.zero: ShadowSteps | None = None
        self.val: list[Any] = []
        self.batches: Iterator[Any] | None = None
        self.steps_done = 0
        self.train_s = 0.0  # seconds spent training the two copies
        self.local: list[float] = []
        self.real_losses: list[float] = []
        self.zero_losses: list[float] = []
        self._real_drift: dict[str, Any] = {}
        self._zero_drift: dict[str, Any] = {}
        self.call = ModelCall(input_key=config.input_key, target_key=config.target_key, hint="")
        self.floor_kind: FloorKind | None = None  # set at initialisation where the floor is known
        self.floor_local: list[float] = []  # this rank's sums for constant_floor.floor_of
        self._val_targets: list[torch.Tensor] = []
        self._real_batch_losses: list[float] = []  # the real copy's loss per validation batch, last score
        self._real_sums: list[float] = [0.0, 0.0]
        self._pending: list[tuple[Any, RNGState, int, bool]] = []  # lazy steps the zeroed copy has not taken
        self._pending_bytes = 0

    def advance(
        self, k: int, steps: int | None = None, new_round: bool = True, lazy: bool = False
    ) -> str | None:
        """Round ``k`` (``steps`` of it: ``config.steps`` by default; ``new_round=False`` continues the
        round's gradient sums); returns ``None`` when done (sums in :attr:`local`), else the reason the
        check cannot run here. ``lazy``: train and score the real copy only, keeping the batches for
        the zeroed one (:meth:`catch_up`); its sums in :attr:`local` are zeros until then."""
        try:
            if k == 0:
                self._setup()
            else:
                self._train(self.config.steps if steps is None else steps, new_round, lazy)
            if lazy:
                self.local = self._evaluate(zeroed=False) + self._train_means() + self._drifts()
            else:
                self.local = self._evaluate() + self._train_means() + self._drifts()
            if k == 0:
                self._find_floor()
        except ArgumentError:
            raise
        except Skip as err:  # ShadowUnsupported included
            return str(err)
        except Exception as err:  # the user's step failed on a copy: the real run will show it
            return f"a copy of the module failed ({type(err).__name__}: {err})"
        return None

    def catch_up(self) -> str | None:
        """Train the zeroed copy on the batches the real one trained on lazily, score it, and fill in
        :attr:`local` (the real copy's sums are those of its last score); ``None`` or why it failed."""
        try:
            self._train_zero()
            zero = self._evaluate(real=False)
            self.local = self._real_sums[:2] + zero[2:] + self._train_means() + self._drifts()
        except ArgumentError:
            raise
        except Skip as err:
            return str(err)
        except Exception as err:
            return f"a copy of the module failed ({type(err).__name__}: {err})"
        return None

    def floor_confirmed(self) -> list[float]:
        """``[batches whose loss is not ours, batches]`` for the real copy now: the floor counts only
        where the user's loss is the one :mod:`constant_floor` computes, at every point it is used."""
        assert self.real is not None and self.floor_kind is not None
        bad = 0.0
        for i, raw in enumerate(self.val):
            batch = self.to_device(raw)
            logits = self.real.forward(batch, self.call).logits
            ours = our_loss(self.floor_kind, logits, self._val_targets[i]) if logits is not None else math.nan
            bad += 0.0 if loss_matches(self._real_batch_losses[i], ours) else 1.0
        return [bad, float(len(self.val))]

    def _find_floor(self) -> None:
        """At initialisation: whether the zeroed copy can only predict one constant, under a loss whose
        floor is known; :attr:`floor_local` is then ``[floor * samples, samples]`` on this rank.

        One constant: every zeroed validation batch shows the model the same thing for each sample
        and the same as the other batches (no mask, side input or string tells them apart), and the
        zeroed copy's outputs at initialisation say so too (a model that reads its labels, say, does
        not give one output). Each rank's zeroed copy learns its own constant on its shard: the floor
        is the mean of the ranks' floors, each on its own validation targets."""
        self.floor_kind, self.floor_local = None, []
        kinds: set[Any] = set()
        stats: list[float] | None = None
        signature: list[Any] | None = None
        first: torch.Tensor | None = None
        self._val_targets = []
        try:
            for i, raw in enumerate(self.val):
                batch = self.to_device(raw)
                targets = split_batch(batch, self.config.input_key, self.config.target_key).targets
                assert self.real is not None and self.zero is not None
                zeroed = self.zeroed(batch, False)
                seen = input_signature(zeroed, targets) if targets is not None else None
                if (
                    targets is None
                    or seen is None
                    or not (signature is None or same_signature(signature, seen))
                ):
                    return
                signature = seen
                out = self.zero.forward(zeroed, self.call).logits
                if out is None or out.dim() == 0 or out.shape[0] != targets.shape[0]:
                    return
                out = out.detach().double().cpu()
                first = out[:1] if first is None else first
                if first.shape[1:] != out.shape[1:] or not torch.allclose(
                    out, first.expand_as(out), 1e-4, 1e-6
                ):
                    return
                logits = self.real.forward(batch, self.call).logits
                kind = floor_kind(logits, targets)
                if kind is None or not loss_matches(
                    self._real_batch_losses[i], our_loss(kind, logits, targets)
                ):
                    return
                kinds.add(kind)
                self._val_targets.append(targets)
                add = floor_stats(kind, targets)
                stats = add if stats is None else [a + b for a, b in zip(stats, add)]
        except Exception:  # a layout the floor does not know: the zeroed copy trains, as always
            return
        if len(kinds) == 1 and stats is not None:
            self.floor_kind = kinds.pop()
            n = sum(stats) if self.floor_kind[0] == "multiclass" else stats[-1]
            self.floor_local = [floor_of(self.floor_kind, stats) * n, float(n)]

    def close(self) -> None:
        """Keep the loss curves, free the copies."""
        if self.real is not None:
            self.real_losses = list(self.real.losses)
        if self.zero is not None:
            self.zero_losses = list(self.zero.losses)
        self.real = self.zero = None
        self.val = []
        self.batches = None
        self._pending, self._val_targets = [], []

    def _setup(self) -> None:
        for batch in self.val_loader:
            self.val.append(batch)
            if len(self.val) >= self.config.val_batches:
                break
        if not self.val:
            raise Skip("the validation dataloader yielded no batch; pass validation data to `Trainer.fit`")
        self.real = self.make_copy()
        self.zero = self.make_copy()
        self.batches = self._train_batches()

    def _train_batches(self) -> Iterator[Any]:
        while True:
            produced = False
            for batch in self.train_loader:
                produced = True
                yield self.to_device(batch)
            if not produced:
                raise Skip("the training dataloader yielded no batch")

    @staticmethod
    def _accumulate(shadow: ShadowSteps, drift: dict[str, Any]) -> None:
        """Add this step's gradient to the round's sum and its norm to the sum of norms. A trainable
        parameter without a gradient this step (a layer LayerDrop skipped) adds zeros: the sum keeps
        one layout whichever layers ran."""
        params = [p for p in shadow.module.parameters() if p.requires_grad]
        if not any(p.grad is not None for p in params):
            return
        flat = torch.cat(
            [
                (p.grad.detach() if p.grad is not None else torch.zeros_like(p)).reshape(-1).double()
                for p in params
            ]
        )
        if drift.get("sum") is not None and drift["sum"].shape != flat.shape:
            return  # parameters frozen or unfrozen within the round: the sum keeps its first layout
        drift["sum"] = flat if drift.get("sum") is None else drift["sum"] + flat
        drift["norms"] = drift.get("norms", 0.0) + float(flat.norm())

    def _train(self, steps: int, new_round: bool = True, lazy: bool = False) -> None:
        assert self.real is not None and self.zero is not None and self.batches is not None
        if new_round:
            self._real_drift = {}
            if not lazy:
                self._zero_drift = {}
        start = time.perf_counter()
        for i in range(steps):
            batch = next(self.batches)
            if self.steps_done == 0:
                self.zeroed(batch, True)  # the check that the inputs can be zeroed, before any step
            rng = RNGState()
            self.real.step(batch, self.steps_done)
            if lazy:
                self._pending.append((batch, rng, self.steps_done, new_round and i == 0))
                self._pending_bytes += _nbytes(batch)
            else:
                rng.restore()  # the same dropout masks for both copies
                self.zero.step(self.zeroed(batch, False), self.steps_done)
                self._accumulate(self.zero, self._zero_drift)
            self._accumulate(self.real, self._real_drift)
            self.steps_done += 1
            if self._pending_bytes > PENDING_BYTES:  # memory, not time: the zeroed copy steps now
                self.train_s += time.perf_counter() - start
                self._train_zero()
                start = time.perf_counter()
        self.train_s += time.perf_counter() - start

    def _train_zero(self) -> None:
        """The zeroed copy's steps on the batches the real copy trained on lazily, with its random numbers."""
        assert self.zero is not None
        if not self._pending:
            return
        start = time.perf_counter()
        after = RNGState()
        for batch, rng, step, new_round in self._pending:
            if new_round:
                self._zero_drift = {}
            rng.restore()
            self.zero.step(self.zeroed(batch, False), step)
            self._accumulate(self.zero, self._zero_drift)
        after.restore()  # where the real copy's steps left the generators
        self._pending, self._pending_bytes = [], 0
        self.train_s += time.perf_counter() - start

    def _evaluate(self, real: bool = True, zeroed: bool = True) -> list[float]:
        """``[real loss sum, samples, zeroed loss sum, samples]`` over the validation batches (zeros for
        a copy left out)."""
        assert self.real is not None and self.zero is not None
        sums = [0.0, 0.0, 0.0, 0.0]
        if real:
            self._real_batch_losses = []
        for i, raw in enumerate(self.val):
            batch = self.to_device(raw)
            n = float(batch_size_of(batch) or 1)
            if real:
                loss = self.real.loss(batch, i)
                self._real_batch_losses.append(loss)
                sums[0] += loss * n
                sums[1] += n
            if zeroed:
                sums[2] += self.zero.loss(self.zeroed(batch, i == 0), i) * n
                sums[3] += n
        if real:
            self._real_sums = sums[:2]
        return sums

    def _train_means(self) -> list[float]:
        """``[real, zeroed, 1]``: mean training loss over the last quarter of the round (both copies saw the same batches)."""
        if self.real is None or self.zero is None or not self.real.losses:
            return [0.0, 0.0, 0.0]
        window = max(1, self.config.steps // 4)
        real = self.real.losses[-window:]
        zero = self.zero.losses[-window:]  # behind the real copy's while it trains lazily
        return [sum(real) / len(real), sum(zero) / len(zero) if zero else math.nan, 1.0]

    def _drifts(self) -> list[float]:
        """``[|sum g| real, |sum g| zeroed, sum |g| real, sum |g| zeroed]`` over the round's steps."""
        out = []
        for drift in (self._real_drift, self._zero_drift):
            out.append(float(drift["sum"].norm()) if drift.get("sum") is not None else 0.0)
        out += [self._real_drift.get("norms", 0.0), self._zero_drift.get("norms", 0.0)]
        return out


def _nbytes(batch: Any) -> int:
    sizes: list[int] = []
    map_tensors(batch, lambda t: sizes.append(t.numel() * t.element_size()))
    return sum(sizes)


# ---------------------------------------------------------------------- the reduced measurements
def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def _relative_gap(real: list[float], zero: list[float]) -> float:
    if not real:
        return float("nan")
    r, z = real[-1], zero[-1]
    if not (math.isfinite(r) and math.isfinite(z)) or z == 0:
        return float("nan")
    return (z - r) / abs(z)


@dataclass
class BaselineRounds:
    """Every rank's sums, reduced, per round: the measurements the verdict reads."""

    eval_steps: list[int] = field(default_factory=list)
    real_val: list[float] = field(default_factory=list)
    zero_val: list[float] = field(default_factory=list)
    real_train: list[float] = field(default_factory=list)
    zero_train: list[float] = field(default_factory=list)
    real_drift: list[float] = field(default_factory=list)
    zero_drift: list[float] = field(default_factory=list)
    #: the lowest validation loss the zeroed copy can reach (``constant_floor``), where it is known
    floor: float | None = None

    def add(self, total: list[float], steps_done: int) -> None:
        """Append a round from the all-reduced sums of :attr:`CopyPair.local`."""
        self.real_val.append(_ratio(total[0], total[1]))
        self.zero_val.append(_ratio(total[2], total[3]))
        self.real_train.append(_ratio(total[4], total[6]))
        self.zero_train.append(_ratio(total[5], total[6]))
        self.real_drift.append(_ratio(total[7], total[9]))
        self.zero_drift.append(_ratio(total[8], total[10]))
        self.eval_steps.append(steps_done)

    def replace_last(self, total: list[float], steps_done: int) -> None:
        """The latest round again, from complete sums (the zeroed copy caught up)."""
        for values in (self.eval_steps, self.real_val, self.zero_val, self.real_train, self.zero_train,
                       self.real_drift, self.zero_drift):  # fmt: skip
            values.pop()
        self.add(total, steps_done)

    @property
    def steps_done(self) -> int:
        """Training steps of each copy when the latest round was scored."""
        return self.eval_steps[-1] if self.eval_steps else 0

    @property
    def zeroed_trained(self) -> bool:
        """Whether the latest round scored the zeroed copy (not so after a pass on the floor)."""
        return not self.zero_val or not math.isnan(self.zero_val[-1])

    @property
    def gap(self) -> float:
        """``(zeroed - real) / zeroed`` of the latest validation losses (the floor's, where the zeroed
        copy was not scored)."""
        if not self.zeroed_trained and self.floor is not None:
            return _relative_gap(self.real_val, [self.floor])
        return _relative_gap(self.real_val, self.zero_val)

    @property
    def fit_gap(self) -> float:
        """``(zeroed - real) / zeroed`` of the latest training losses: how much better real inputs fit."""
        return _relative_gap(self.real_train, self.zero_train)

    def validation_curves(self) -> tuple[list[int], list[float], list[float]]:
        """``(steps, real, zeroed)``: the validation losses of both copies after each round."""
        return self.eval_steps, self.real_val, self.zero_val

    def numbers(self, steps_done: int) -> dict[str, Any]:
        """The numbers of the finding after ``steps_done`` training steps (empty before the first round)."""
        if not self.real_val:
            return {}
        zeroed = self.zero_val[-1] if self.zeroed_trained or self.floor is None else self.floor
        floor = (
            {} if self.floor is None else {"zeroed_floor": self.floor, "zeroed_trained": self.zeroed_trained}
        )
        return {
            **floor,
            "real_val_loss": self.real_val[-1],
            "zeroed_val_loss": zeroed,
            "relative_gap": self.gap,
            "fit_gap": self.fit_gap,
            "real_drift": self.real_drift,
            "zeroed_drift": self.zero_drift,
            "steps": steps_done,
            "real_val_loss_at": dict(zip(self.eval_steps, self.real_val)),
            "zeroed_val_loss_at": dict(zip(self.eval_steps, self.zero_val)),
        }


# ---------------------------------------------------------------------- the verdict
def drop(values: list[float]) -> float:
    """Relative fall of the last value against the one before (positive: still improving)."""
    if len(values) < 2 or not math.isfinite(values[-1]) or values[-1] == 0 or not math.isfinite(values[-2]):
        return 0.0
    return (values[-2] - values[-1]) / abs(values[-1])


def _cannot_compare(config: BaselineConfig, rounds: BaselineRounds) -> tuple[Status, str] | None:
    """``skipped`` when the last losses cannot be compared (not finite, or a zeroed copy at zero loss)."""
    r_end, z_end, steps = rounds.real_val[-1], rounds.zero_val[-1], rounds.steps_done
    if not math.isfinite(z_end):
        return "skipped", (
            f"the copy trained on zeroed inputs has a non-finite validation loss ({z_end}); the model "
            f"cannot take constant inputs: pass another `fill=` (now {config.fill})"
        )
    if not math.isfinite(r_end):
        return "skipped", (
            f"the copy trained on real inputs diverged (validation loss {r_end}) within {steps} steps; "
            "check the learning rate"
        )
    if z_end <= 1e-12:
        return "skipped", (
            f"the copy trained on zeroed inputs reached a validation loss of {z_end:.3g}: the targets are "
            "predictable without the input, so there is nothing to compare"
        )
    return None


def verdict(
    config: BaselineConfig, rounds: BaselineRounds, last: bool, since: tuple[int, float] | None = None
) -> tuple[Status, str] | None:
    """The verdict after a round, or ``None`` to train another round (``last``: no more rounds).

    ``since``: ``(step, zeroed validation loss)`` of a score within the round, from which the zeroed
    copy's pace for a ``pass`` is read (scaled to a round) instead of from the round's start.
    """
    early = _cannot_compare(config, rounds)
    if early is not None:
        return early
    real, zero = rounds.real_val, rounds.zero_val
    r_end, z_end = real[-1], zero[-1]
    summary = (
        f"validation loss {r_end:.4g} with real inputs vs {z_end:.4g} with zeroed inputs after "
        f"{rounds.steps_done} steps"
    )
    if all(abs(a - b) <= IDENTICAL * max(1.0, abs(b)) for a, b in zip(real, zero)):
        return "fail", (
            f"the model's output does not depend on its input: {summary}, identical at every point; "
            "check that the inputs reach the net (forward ignores its argument, inputs multiplied by 0, "
            "a learned constant)"
        )
    gap = rounds.gap
    zero_fall = max(0.0, zero[-2] - z_end)  # how much the zeroed copy improved in the last round
    real_drop = drop(real)
    if since is not None and math.isfinite(since[1]) and rounds.steps_done > since[0]:
        zero_fall = max(0.0, since[1] - z_end) * config.steps / (rounds.steps_done - since[0])
    if gap >= config.margin and LOOKAHEAD * zero_fall <= z_end - r_end:
        return "pass", f"the model uses its input: {summary} ({gap:.0%} lower)"
    real_drift = rounds.real_drift[-1]
    if (
        gap < config.margin
        and real_drift <= DRIFT
        and real_drop <= config.margin / 2
        and not _gap_on_course(config, rounds)
    ):
        return "fail", (
            f"the model extracts no information from its input: {summary} (gap {gap:.1%} < margin "
            f"{config.margin:.0%}) and the real copy has stopped improving; check that labels are aligned with "
            "inputs (shuffled or misindexed labels) and that the inputs reach the net"
        )
    if not last:
        return None
    return "skipped", _inconclusive(config, summary, gap, zero_fall, real_drift, real_drop)


def _gap_on_course(config: BaselineConfig, rounds: BaselineRounds) -> bool:
    """True when the gap grew in the last round fast enough to reach ``margin`` by ``max_steps``.

    A model that starts slowly (a 1-D convolution on raw sequences, say) sits near the prior's loss
    for a while: its validation loss falls by little per round, yet further below the zeroed copy's
    each time. That is learning from the input, not a plateau: train more rounds before a verdict.
    """
    if len(rounds.real_val) < 2:
        return False
    before = _relative_gap(rounds.real_val[:-1], rounds.zero_val[:-1])
    growth = rounds.gap - before
    if not (math.isfinite(growth) and growth > 0):
        return False
    left = max(0, config.max_steps - rounds.steps_done) // max(1, config.steps)
    return rounds.gap + left * growth >= config.margin


def _inconclusive(
    config: BaselineConfig, summary: str, gap: float, zero_fall: float, real_drift: float, real_drop: float
) -> str:
    if gap >= config.margin:
        return (
            f"inconclusive: {summary}, but the zeroed copy is still improving ({zero_fall:.4g} in the last "
            f"{config.steps} steps), so it is no baseline yet; pass a larger `max_steps=` (now {config.max_steps}) "
            "or check the target scale (unnormalised regression targets take long to reach)"
        )
    how = (
        f"its gradients still point one way (drift {real_drift:.2f})"
        if real_drift > DRIFT
        else f"its validation loss still fell {real_drop:.0%} in the last {config.steps} steps"
    )
    return (
        f"inconclusive: {summary}, but the real copy is still learning ({how}); check the learning rate "
        f"or pass a larger `max_steps=` (now {config.max_steps})"
    )


# ---------------------------------------------------------------------- the rounds, within a budget
def clear_pass(config: BaselineConfig, fine: BaselineRounds, chunk: int) -> tuple[Status, str] | None:
    """An early ``pass`` between two rounds: the real copy is already ``margin`` lower, and the zeroed
    copy, improving at its pace over the last ``chunk`` steps or more (back to the latest score at
    least that far back, else the first) scaled to a round, could not close the gap within
    :data:`LOOKAHEAD` rounds (the round's own test, on a finer grid); else ``None`` (train on). A
    peek a few steps after a score is judged on the zeroed copy's pace since the score before it, so
    that a few noisy steps cannot pass for a zeroed copy that stopped learning."""
    if len(fine.real_val) < 2 or _cannot_compare(config, fine) is not None:
        return None
    real, zero, at = fine.real_val, fine.zero_val, fine.eval_steps
    r_end, z_end, gap = real[-1], zero[-1], fine.gap
    back = next((j for j in range(len(at) - 2, -1, -1) if at[-1] - at[j] >= chunk), 0)
    pace = max(0.0, zero[back] - z_end) * config.steps / max(1, at[-1] - at[back])
    if not (gap >= config.margin and LOOKAHEAD * pace <= z_end - r_end):
        return None
    return "pass", (
        f"the model uses its input: validation loss {r_end:.4g} with real inputs vs {z_end:.4g} with "
        f"zeroed inputs after {fine.steps_done} steps ({gap:.0%} lower)"
    )


_FLOOR_IS = {
    "multiclass": "the validation labels' entropy",
    "binary": "the validation labels' mean binary entropy",
    "regression": "the validation targets' variance",
}


def floor_pass(config: BaselineConfig, fine: BaselineRounds, task: str) -> tuple[Status, str] | None:
    """A ``pass`` without the zeroed copy: the real copy ``margin`` below :attr:`BaselineRounds.floor`,
    which the zeroed copy cannot go below at any step; else ``None``."""
    floor, r_end = fine.floor, fine.real_val[-1] if fine.real_val else math.nan
    if floor is None or not (floor > 1e-12 and math.isfinite(r_end)):
        return None
    gap = (floor - r_end) / floor
    if gap < config.margin:
        return None
    return "pass", (
        f"the model uses its input: validation loss {r_end:.4g} with real inputs after {fine.steps_done} "
        f"steps, {gap:.0%} below {floor:.4g}, the lowest a copy trained on zeroed inputs can reach "
        f"({_FLOOR_IS.get(task, 'the best constant prediction')}: the zeroed inputs are the same for every "
        "sample, so it can only predict one constant); the zeroed copy was not trained"
    )


def settle_floor(
    pair: CopyPair, reduce: Callable[[list[float]], list[float]], agree: Callable[[bool], bool]
) -> float | None:
    """After round 0: the floor over every rank's validation targets, or ``None`` (then the zeroed copy
    trains along, as without it) unless every rank found one of the same kind."""
    kind = pair.floor_kind
    if not agree(kind is not None):
        pair.floor_kind = None
        return None
    assert kind is not None
    mine = [1.0, float(list(_FLOOR_IS).index(kind[0])), float(kind[1]), float(len(pair.floor_local))]
    seen = reduce(mine)
    if not agree(all(seen[i] == seen[0] * mine[i] for i in range(1, 4))):
        pair.floor_kind = None
        return None
    total = reduce(pair.floor_local)
    floor = total[0] / total[1] if total[1] > 0 else math.nan
    return floor if math.isfinite(floor) else None


def floor_holds(
    pair: CopyPair, reduce: Callable[[list[float]], list[float]], agree: Callable[[bool], bool]
) -> bool:
    """Whether, on every rank, the user's loss is still the floor's loss on the real copy as it is now."""
    try:
        mine = pair.floor_confirmed()
    except Exception:
        mine = [1.0, 0.0]
    return agree(mine[0] == 0) and reduce(mine)[0] == 0


@dataclass
class RoundPlan:
    """How many rounds may run: ``rounds`` (``max_steps // steps``), or fewer within a one-time budget.

    With a ``budget``, each round is scored ``chunks`` times (an early pass between them, see
    :func:`clear_pass`), once more where the gap is about to reach the margin (:meth:`next_chunk`), and after the first chunk the measured seconds per step set the most rounds
    the check's share allows, never fewer than one round (the least a ``fail`` needs);
    ``fixed_rounds``: an explicit ``max_steps=``, kept. ``steps``/``short`` say what was allowed.
    """

    rounds: int
    budget: OneTimeBudget | None = None
    name: str = "InputIndependentBaseline"
    fixed_rounds: bool = False
    announce: Callable[[str], None] | None = None
    chunks: int = 4
    steps: int | None = None
    short: bool = False

    def sizes(self, steps: int) -> list[int]:
        """The chunks of a round of ``steps`` steps."""
        n = self.chunks if self.budget is not None else 1
        chunk = max(1, steps // n)
        return [chunk] * (n - 1) + [steps - chunk * (n - 1)] if steps >= n else [steps]

    def next_chunk(
        self,
        config: BaselineConfig,
        fine: BaselineRounds,
        done: int,
        peeked: bool,
        floor: float | None = None,
    ) -> tuple[int, bool]:
        """The next chunk of a round after ``done`` of its ``config.steps`` steps, and whether it is a peek.

        Without a budget: the rest of the round. With one: up to the next point of the :meth:`sizes`
        grid, or a shorter peek when the validation gap, growing at its pace between the last two
        scores, would reach ``margin`` before that point (a CNN at 4.8% after 25 steps and 8.8% after
        30 would otherwise train to 50). A peek is at least a fifth of a chunk, and never follows a peek.
        Every rank reads the same reduced ``fine`` rounds, so every rank takes the same chunk. With a
        ``floor`` (the zeroed copy trains lazily), the gap is the real copy's below the floor.
        """
        steps = config.steps
        if self.budget is None:
            return steps - done, False
        grid = list(itertools.accumulate(self.sizes(steps)))
        upto = next(point for point in grid if point > done)
        if peeked or len(fine.real_val) < 2:
            return upto - done, False
        chunk = grid[0]
        least = max(1, chunk // 5)
        n = len(fine.real_val)
        zero = fine.zero_val if floor is None else [floor] * n
        gaps = [_relative_gap(fine.real_val[:i], zero[:i]) for i in (n - 1, n)]
        rise, span = gaps[1] - gaps[0], fine.eval_steps[-1] - fine.eval_steps[-2]
        if not (all(map(math.isfinite, gaps)) and rise > 0 and span > 0 and gaps[1] < config.margin):
            return upto - done, False
        reach = math.ceil((config.margin - gaps[1]) / rise * span)
        size = max(least, reach)
        if done + size > upto - least:  # not worth a score of its own: the grid point is as near
            return upto - done, False
        return size, True

    def measured(self, config: BaselineConfig, pair_step_s: float, train_step_s: float) -> None:
        """After the first chunk: the copies' seconds per step (both, scoring included) and the training
        step alone (one copy: the planned run's step)."""
        if self.budget is None:
            return
        self.budget.observe(train_step_s)
        if self.fixed_rounds:
            self.steps = self.rounds * config.steps
            return
        allowed = self.budget.allowance_s(self.name)
        self.steps, self.short = steps_within(allowed, pair_step_s, config.steps, config.max_steps)
        self.rounds = max(1, self.steps // config.steps)
        self.steps = self.rounds * config.steps
        if self.announce is not None:
            why = "the minimum for a verdict, over" if self.short else "within"
            self.announce(
                f"up to {self.steps} steps per copy ({why} its {allowed:.2g} s of the one-time budget)"
            )

    def numbers(self) -> dict[str, Any]:
        """The budget numbers of the finding (empty without a budget)."""
        if self.budget is None:
            return {}
        allowed = self.budget.allowance_s(self.name)
        return {"budget_s": allowed, "budget_steps": self.steps, "budget_short": self.short}

    def note(self, steps_done: int, what: str = "steps per copy") -> str:
        """The budget sentence of the finding (empty without a budget)."""
        if self.budget is None:
            return ""
        return "; " + self.budget.note(self.name, steps_done, self.short, what)


def run_rounds(
    pair: CopyPair,
    config: BaselineConfig,
    plan: RoundPlan,
    reduce: Callable[[list[float]], list[float]],
    agree: Callable[[bool], bool],
) -> tuple[BaselineRounds, tuple[Status, str]]:
    """Advance both copies round by round (every rank in lock-step) until a verdict.

    ``reduce``: all-reduces :attr:`CopyPair.local` over the ranks; ``agree(ok)``: whether every rank
    could run the round. Returns the rounds the verdict read (the finer grid for an early pass).
    """
    measured, fine = BaselineRounds(), BaselineRounds()
    warm: tuple[list[float], int] | None = None  # the scores after round 1's first chunk
    k = 0
    while True:
        done, peeked = 0, False
        lazy = k > 0 and fine.floor is not None  # the zeroed copy trains only where a verdict needs it
        while True:  # the chunks of round k (round 0: the copies at initialisation)
            size = 0
            if k:
                size, peeked = plan.next_chunk(config, fine, done, peeked, fine.floor if lazy else None)
            start = time.perf_counter()
            train0 = pair.train_s
            reason = pair.advance(k, size or None, new_round=done == 0, lazy=lazy)
            if not agree(reason is None):
                return measured, ("skipped", reason or "another process could not run the check")
            total = reduce(pair.local)
            fine.add(total, pair.steps_done)
            if k == 1 and done == 0 and plan.budget is not None:  # the mean over the ranks: one plan on all
                trained = pair.train_s - train0  # lazily: the real copy's, the zeroed copy's to come
                pair_s = time.perf_counter() - start + (trained if lazy else 0.0)
                pair_s, train_s, ranks = reduce([pair_s, trained, 1.0])
                plan.measured(config, pair_s / ranks / size, train_s / ranks / ((1 if lazy else 2) * size))
            if k == 1 and done == 0 and not lazy and size < config.steps:
                warm = (total, pair.steps_done)
            done += size
            if not k:
                fine.floor = measured.floor = settle_floor(pair, reduce, agree)
                break
            if lazy:
                assert pair.floor_kind is not None
                found = floor_pass(config, fine, pair.floor_kind[0])
                if found is not None:
                    if floor_holds(pair, reduce, agree):
                        return fine, found
                    # the loss is no longer the floor's: no floor from here on, both copies train along
                    reason = pair.catch_up()
                    if not agree(reason is None):
                        return measured, ("skipped", reason or "another process could not run the check")
                    total = reduce(pair.local)
                    fine.replace_last(total, pair.steps_done)
                    fine.floor = measured.floor = None
                    lazy = False
            if done >= config.steps:
                break
            found = (
                None if lazy else clear_pass(config, fine, plan.sizes(config.steps)[0])
            )  # a peek: the pace over a chunk
            if found is not None:
                return fine, found
        if lazy:  # the round's verdict compares both copies: the zeroed one takes its steps now
            reason = pair.catch_up()
            if not agree(reason is None):
                return measured, ("skipped", reason or "another process could not run the check")
            total = reduce(pair.local)
            fine.replace_last(total, pair.steps_done)
        measured.add(total, pair.steps_done)
        judged = config if plan.budget is None else replace(config, max_steps=plan.rounds * config.steps)
        # within a budget round 1 is often the only one: against the initial scores the zeroed copy
        # "still improves" by what it learns first (the prior, the target scale), so its pace for a
        # pass is read from round 1's first chunk on (a fail still needs the whole round's evidence)
        since = None
        if k == 1 and warm is not None and fine.floor is None:
            warm_rounds = BaselineRounds()
            warm_rounds.add(*warm)
            since = (warm_rounds.eval_steps[-1], warm_rounds.zero_val[-1])
        found = verdict(judged, measured, last=k == plan.rounds, since=since) if k > 0 else None
        if found is not None:
            return measured, found
        k += 1
