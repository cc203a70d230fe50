"""Infer the learning task from the targets and the model's outputs.

The four tasks and the losses they imply:

* ``"multiclass"``: one integer class index per sample, logits of width C; softmax + cross-entropy.
  A two-logit binary head is multiclass.
* ``"binary"``: one 0/1 label per sample, one logit; sigmoid + BCE with logits.
* ``"multilabel"``: K 0/1 labels per sample, K logits; sigmoid + BCE with logits per label.
* ``"regression"``: real-valued targets; MSE, L1 or Huber.

Example:
    >>> import torch
    >>> infer_task(torch.tensor([0, 2, 1]), torch.zeros(3, 3))
    'multiclass'
    >>> infer_task(torch.tensor([[0.0], [1.0]]), torch.zeros(2, 1))
    'binary'
    >>> infer_task(torch.tensor([151.0, 75.0]), torch.zeros(2, 1))
    'regression'

Sequence outputs (a language model's ``(N, T, V)`` logits against ``(N, T)`` token ids) are
multiclass per position; :func:`infer_sequence_objective` says how logits and targets line up
(:class:`SequenceObjective`: a causal LM's position ``t`` predicts token ``t + 1``):

    >>> ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, -100]])
    >>> objective = infer_sequence_objective(ids, torch.zeros(2, 4, 12), batch={"input_ids": ids.clamp_min(0), "labels": ids},
    ...                                      computes_loss=True)
    >>> objective.shift, objective.vocab, objective.reason
    (1, 12, 'the labels are the input ids and the model computes its own loss')
    >>> [t.shape[1] for t in objective.align(torch.zeros(2, 4, 12), ids)]
    [3, 3]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch.nn import functional as F

__all__ = [
    "CAUSAL_MODEL_SUFFIXES",
    "TASKS",
    "LabelConvention",
    "SequenceObjective",
    "ShiftArg",
    "Task",
    "TaskArg",
    "TaskLiteral",
    "causal_class",
    "check_shift_argument",
    "check_task_argument",
    "class_dim",
    "float_targets_fit",
    "infer_sequence_objective",
    "infer_task",
    "is_binary_valued",
    "is_token_targets",
    "label_convention",
    "model_config",
    "relation_to_inputs",
    "upsample_to_targets",
]

TaskLiteral = Literal["multiclass", "binary", "multilabel", "regression"]
Task = TaskLiteral
#: The type of every ``task=`` argument: ``"auto"`` (inferred from the data and the model) or a task.
TaskArg = Literal["auto", "multiclass", "binary", "multilabel", "regression"]
#: The valid values of every ``task=`` argument (besides ``"auto"``).
TASKS: tuple[str, ...] = get_args(TaskLiteral)


def check_task_argument(task: str, owner: str) -> None:
    """Raise ``ValueError`` naming ``owner(task=...)`` unless ``task`` is ``"auto"`` or one of :data:`TASKS`."""
    if task != "auto" and task not in TASKS:
        raise ValueError(
            f"{owner}(task={task!r}): unknown task; pass one of 'auto', "
            + ", ".join(repr(t) for t in TASKS[:-1])
            + f" or {TASKS[-1]!r}."
        )


def is_binary_valued(t: torch.Tensor) -> bool:
    """True when every element of ``t`` is 0 or 1 (any dtype)."""
    if t.numel() == 0:
        return False
    t = t.detach()
    return bool(((t == 0) | (t == 1)).all())


def class_dim(targets: torch.Tensor, outputs: torch.Tensor) -> int | None:
    """The dimension of multiclass ``outputs`` that holds the classes, for ``targets`` of class indices.

    ``1`` for ``(N, C)`` logits and for dense ``(N, C, ...)`` logits with ``(N, ...)`` targets (the
    layout ``F.cross_entropy`` takes), ``-1`` for ``(N, T, C)`` logits with ``(N, T)`` targets (a
    language model's), ``None`` when the targets fit neither. Both fit (``T == C``): ``1``.

    Example:
        >>> class_dim(torch.zeros(2, 6, dtype=torch.long), torch.zeros(2, 5, 6))
        1
        >>> class_dim(torch.zeros(2, 6, dtype=torch.long), torch.zeros(2, 6, 5))
        -1
    """
    t, o = tuple(targets.shape), tuple(outputs.shape)
    if len(o) == 2:
        return 1
    if len(o) < 2:
        return None
    if t == (o[0], *o[2:]):
        return 1
    if t == o[:-1]:
        return -1
    return None


def upsample_to_targets(outputs: torch.Tensor, targets: Any) -> torch.Tensor:
    """Dense ``outputs`` coarser than per-pixel ``targets``, upsampled to them (else ``outputs`` itself).

    A segmentation model may predict at a fraction of the labels' resolution and upsample inside its
    loss (Hugging Face's SegFormer: ``(N, C, H/4, W/4)`` logits for ``(N, H, W)`` labels, bilinear,
    ``align_corners=False``); the checks compare the outputs the loss sees. Applies to
    ``(N, C, h, w)`` floating-point outputs with integer targets ``(N, H, W)`` or ``(N, 1, H, W)``
    (class indices), 0/1 float masks ``(N, H, W)`` for one logit, or targets ``(N, C, H, W)``
    (masks), where ``(h, w)`` is the labels' size over a whole stride from 2 to 32
    (``h = ceil(H / s)``); a float ``(N, H, W)`` map (regression) or a crop of another size is left
    as it is.

    Example:
        >>> upsample_to_targets(torch.zeros(2, 3, 8, 8), torch.zeros(2, 32, 32, dtype=torch.long)).shape
        torch.Size([2, 3, 32, 32])
        >>> upsample_to_targets(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3)).shape   # not per pixel: as is
        torch.Size([2, 3, 8, 8])
    """
    if outputs.dim() != 4 or not outputs.is_floating_point() or not isinstance(targets, torch.Tensor):
        return outputs
    if targets.dim() not in (3, 4) or len(targets) != len(outputs):
        return outputs
    indices = not (targets.is_floating_point() or targets.is_complex())
    if targets.dim() == 4 and not (
        targets.shape[1] == outputs.shape[1] or (indices and targets.shape[1] == 1)
    ):
        return outputs
    if targets.dim() == 3 and not indices and not (outputs.shape[1] == 1 and is_binary_valued(targets)):
        return outputs  # a float map (N, H, W): a regression target, not class indices or a 0/1 mask
    (h, w), (big_h, big_w) = outputs.shape[-2:], targets.shape[-2:]
    # a whole stride of the labels (SegFormer 4, DeepLab 8, FCN 32); a valid-padding U-Net's crop is not one
    strided = any(-(-big_h // s) == h and -(-big_w // s) == w for s in range(2, 33))
    if not strided:
        return outputs
    return F.interpolate(outputs, size=(big_h, big_w), mode="bilinear", align_corners=False)


def _ambiguous(why: str, choices: tuple[str, ...]) -> ValueError:
    listed = " or ".join(f"task={c!r}" for c in choices)
    return ValueError(f"cannot infer the task: {why}; pass {listed}.")


def infer_task(
    targets: torch.Tensor,
    outputs: torch.Tensor | None = None,
    task: str = "auto",
) -> TaskLiteral:
    """Return the task implied by ``targets`` and the model's ``outputs``.

    Rules (``outputs`` of shape ``(N, W, ...)``, ``targets`` of shape ``(N, ...)``):

    * integer targets with one value per sample and ``W >= 2`` logits: ``"multiclass"``;
    * integer (or bool) targets with one logit (``W == 1`` or outputs of shape ``(N,)``):
      ``"binary"`` when they are 0/1, ``"regression"`` otherwise;
    * float 0/1 targets of the outputs' shape: ``"binary"`` for one logit, ``"multilabel"`` for more,
      except one-hot rows, which are ambiguous (cross-entropy with one-hot targets, or multilabel);
    * other float targets: ``"regression"``, unless they have several values per sample and as
      many as the outputs neither (a second input, as in contrastive pairs): ambiguous.

    Without ``outputs``, integer targets with more than two values are multiclass, float targets
    with values other than 0/1 are regression; anything else is ambiguous.

    Args:
        targets: the targets of a batch.
        outputs: the model's outputs for that batch (logits or predictions).
        task: ``"auto"`` to infer, or a task to validate and return as is.

    Raises:
        ValueError: for an unknown ``task`` or an ambiguous case; the message lists the ``task=``
            values that resolve it.
    """
    check_task_argument(task, "infer_task")
    if task != "auto":
        return task  # type: ignore[return-value]
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"infer_task: targets must be a tensor, got {type(targets).__name__}.")
    t = targets.detach()
    n = t.shape[0] if t.dim() else 1
    integer = not t.is_floating_point() and not t.is_complex()
    binary_valued = is_binary_valued(t)

    if outputs is None:
        if integer and t.dim() <= 1 and not binary_valued:
            return "multiclass"
        if t.is_floating_point() and not binary_valued:
            return "regression"
        if binary_valued:
            raise _ambiguous(
                f"0/1 targets of shape {tuple(t.shape)} and no model output to compare with",
                ("binary", "multiclass", "multilabel"),
            )
        values = f"integer targets {int(t.min())}..{int(t.max())}" if integer else "targets"
        raise _ambiguous(
            f"{values} of shape {tuple(t.shape)} (several per sample) and no model output to compare with",
            ("multiclass", "regression"),
        )

    o = outputs.detach()
    if o.dim() == 0:
        raise _ambiguous("the model returned a scalar, not one output per sample", TASKS)
    if o.shape[0] != n:
        raise _ambiguous(f"the model's output has {o.shape[0]} rows but the targets have {n}", TASKS)
    width = 1 if o.dim() == 1 else int(o[0].numel()) if o.dim() == 2 else int(o.shape[1])
    per_sample_targets = 1 if t.dim() <= 1 else int(t[0].numel())

    if integer:
        if per_sample_targets == 1:
            if width >= 2:
                return "multiclass"
            return "binary" if binary_valued else "regression"
        dense = o.dim() >= 3 and class_dim(t, o) is not None  # per-position classes: (N, C, ...) or (N, T, C)
        if dense:
            return "multiclass"
        if t.numel() == o.numel():
            return "multilabel" if binary_valued else "regression"
        raise _ambiguous(
            f"integer targets of shape {tuple(t.shape)} do not fit outputs of shape {tuple(o.shape)}",
            TASKS,
        )

    # floating-point targets
    if binary_valued:
        if width == 1 and per_sample_targets == 1:
            return "binary"
        if t.numel() == o.numel():
            flat = t.reshape(n, -1)
            if flat.shape[1] > 1 and bool((flat.sum(dim=1) == 1).all()):
                raise _ambiguous(
                    f"one-hot float targets of shape {tuple(t.shape)} fit both cross-entropy and "
                    "per-label BCE",
                    ("multiclass", "multilabel"),
                )
            return "multilabel"
    if not float_targets_fit(t, o):
        raise _ambiguous(
            f"float values of shape {tuple(t.shape)} do not fit outputs of shape {tuple(o.shape)} "
            "(a second input, not targets?)",
            TASKS,
        )
    return "regression"


def float_targets_fit(targets: torch.Tensor, outputs: torch.Tensor) -> bool:
    """False when float ``targets`` cannot be what ``outputs`` predict: several values per sample,
    a different count from the outputs', and outputs wider than one (which would broadcast).

    A batch of pairs ``(view1, view2)`` hands a contrastive model's second view where the targets
    usually are: ``(N, 16)`` embeddings do not fit ``(N, 8, 8)`` images, so they are no targets.

    Example:
        >>> float_targets_fit(torch.zeros(4, 8, 8), torch.zeros(4, 16))
        False
        >>> float_targets_fit(torch.zeros(4, 1), torch.zeros(4))
        True
    """
    t, o = targets, outputs
    if not t.is_floating_point() or o.dim() == 0 or t.dim() == 0 or o.shape[0] != t.shape[0]:
        return True
    per_sample = 1 if t.dim() <= 1 else int(t[0].numel())
    width = 1 if o.dim() == 1 else int(o[0].numel())
    return per_sample == 1 or width == 1 or t.numel() == o.numel()


# ---------------------------------------------------------------------- sequence objectives
#: Class-name endings of models trained on next-token prediction (Hugging Face's naming:
#: ``GPT2LMHeadModel``, ``LlamaForCausalLM``, ``BertLMHeadModel``).
CAUSAL_MODEL_SUFFIXES: tuple[str, ...] = ("ForCausalLM", "LMHeadModel", "CausalLM")
#: Class-name endings of encoder-decoder models: their labels line up with the decoder's logits.
_SEQ2SEQ_SUFFIXES: tuple[str, ...] = ("ForConditionalGeneration", "ForSeq2SeqLM")

ShiftArg = Literal["auto"] | int


def check_shift_argument(shift: Any, owner: str) -> None:
    """Raise ``ValueError`` naming ``owner(shift=...)`` unless ``shift`` is ``"auto"`` or an integer >= 0."""
    if shift == "auto":
        return
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(
            f"{owner}(shift={shift!r}): pass 'auto' (inferred), 0 (logits[:, t] predict labels[:, t]) "
            "or 1 (a causal language model: logits[:, t] predict labels[:, t + 1])."
        )


@dataclass(frozen=True)
class SequenceObjective:
    """A per-token classification objective: ``(N, T, V)`` logits against ``(N, T)`` token targets.

    Attributes:
        shift: how many positions the targets run ahead of the logits: 1 for a causal language
            model (the logits at ``t`` predict token ``t + 1``; Hugging Face models shift ``labels``
            inside their loss), 0 when ``logits[:, t]`` are scored against ``targets[:, t]``.
        ignore_index: the target value left out of the loss (padding; PyTorch's ``-100``), or ``None``.
        vocab: the number of classes (the logits' last dimension, else the model config's ``vocab_size``).
        reason: how ``shift`` was decided, in words (for messages).
    """

    shift: int = 0
    ignore_index: int | None = -100
    vocab: int | None = None
    reason: str = ""

    @property
    def causal(self) -> bool:
        """Next-token prediction: the output at ``t`` must not see the inputs after ``t``."""
        return self.shift > 0

    def targets(self, targets: torch.Tensor) -> torch.Tensor:
        """The targets the logits are scored against: ``targets[:, shift:]``."""
        return targets[:, self.shift :] if self.shift else targets

    def logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits that have a target: ``logits[:, :T - shift]``."""
        return logits[:, : logits.shape[1] - self.shift] if self.shift else logits

    def align(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, targets)`` position by position (the shift applied)."""
        return self.logits(logits), self.targets(targets)

    def describe(self) -> str:
        """``"next-token targets: logits[:, t] vs labels[:, t+1]"`` or ``"per-token targets"``."""
        if self.shift:
            return f"next-token targets: logits[:, t] vs labels[:, t+{self.shift}]"
        return "per-token targets"


def is_token_targets(targets: Any, logits: Any = None) -> bool:
    """Integer ``(N, T)`` targets with ``T > 1`` (and, when given, ``(N, T, V)`` logits): one class per token.

    Example:
        >>> is_token_targets(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, 9))
        True
        >>> is_token_targets(torch.zeros(2, dtype=torch.long))
        False
    """
    if not isinstance(targets, torch.Tensor) or targets.dim() != 2 or targets.shape[1] < 2:
        return False
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        return False
    if logits is None:
        return True
    return (
        isinstance(logits, torch.Tensor)
        and logits.dim() == 3
        and tuple(logits.shape[:2]) == tuple(targets.shape)
        and logits.shape[-1] >= 2
    )


def _integer_tensors(obj: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        if not (obj.is_floating_point() or obj.is_complex() or obj.dtype == torch.bool):
            yield path, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _integer_tensors(v, str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _integer_tensors(v, f"{path}[{i}]")


def relation_to_inputs(targets: torch.Tensor, batch: Any, ignore_index: int | None) -> str | None:
    """``"equal"`` when an integer input of the batch equals the targets (where labelled), ``"shifted"``
    when the targets already are that input one position ahead, else ``None``."""
    t = targets.detach()
    valid = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
    if not bool(valid.any()):
        return None
    found: str | None = None
    for key, x in _integer_tensors(batch):
        low = key.lower()
        if x is targets or x.shape != t.shape or "mask" in low or "label" in low or "target" in low:
            continue
        x = x.detach().to(t.device)
        if bool((x[valid] == t[valid]).all()):
            return "equal"
        v = valid[:, :-1]
        if bool(v.any()) and bool((x[:, 1:][v] == t[:, :-1][v]).all()):
            found = "shifted"
    return found


def model_config(module: Any) -> Any:
    """The config of the first (outermost) submodule that has one (a Hugging Face model's)."""
    modules = module.modules() if hasattr(module, "modules") else []
    for m in modules:
        config = getattr(m, "config", None)
        if config is not None and hasattr(config, "vocab_size"):
            return config
    return None


def causal_class(module: Any) -> str | None:
    """The class name of the first submodule named as a causal LM (``...ForCausalLM``, ``...LMHeadModel``)."""
    modules = module.modules() if hasattr(module, "modules") else []
    for m in modules:
        name = type(m).__name__
        if name.endswith(_SEQ2SEQ_SUFFIXES):
            return None
        if name.endswith(CAUSAL_MODEL_SUFFIXES):
            return name
    return None


def _token_ce(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None) -> float:
    z = logits.detach().reshape(-1, logits.shape[-1]).float()
    y = targets.detach().reshape(-1).long().to(z.device)
    keep = (y >= 0) & (y < z.shape[1])
    if ignore_index is not None:
        keep &= y != ignore_index
    if not bool(keep.any()):
        return math.nan
    return float(F.cross_entropy(z[keep], y[keep]))


def _shift_from_loss(
    loss: float, logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None, rtol: float = 2e-3
) -> int | None:
    """0 or 1 when the loss equals the cross-entropy of exactly one alignment of logits and targets."""
    if not math.isfinite(loss):
        return None
    ce0 = _token_ce(logits, targets, ignore_index)
    ce1 = _token_ce(logits[:, :-1], targets[:, 1:], ignore_index)

    def close(a: float, b: float) -> bool:
        return math.isfinite(b) and abs(a - b) <= rtol * max(abs(a), abs(b)) + 1e-6

    if close(loss, ce1) and not close(loss, ce0):
        return 1
    if close(loss, ce0) and not close(loss, ce1):
        return 0
    return None


@dataclass(frozen=True)
class LabelConvention:
    """How a model reads the ``labels`` of a token batch (see :func:`label_convention`).

    Attributes:
        encoder_decoder: the labels are the decoder's sequence, not aligned with ``input_ids`` or
            the encoder's ``attention_mask``.
        pad_id: the model config's ``pad_token_id`` (``None`` when it is also the EOS id).
        shifts_inside: the class of a Hugging Face causal language model: its loss shifts the labels
            by one itself, so they must be the input ids, not the ids one ahead.
    """

    encoder_decoder: bool = False
    pad_id: int | None = None
    shifts_inside: str | None = None


def label_convention(module: Any) -> LabelConvention:
    """The :class:`LabelConvention` of ``module`` (a model or a LightningModule holding one).

    Example:
        >>> from torch import nn
        >>> label_convention(nn.Linear(2, 2))
        LabelConvention(encoder_decoder=False, pad_id=None, shifts_inside=None)
    """
    config = model_config(module)
    modules = list(module.modules()) if hasattr(module, "modules") else []
    if isinstance(getattr(config, "is_encoder_decoder", None), bool):
        seq2seq = config.is_encoder_decoder  # LLaVA is a ...ForConditionalGeneration, and decoder-only
    else:
        seq2seq = any(type(m).__name__.endswith(_SEQ2SEQ_SUFFIXES) for m in modules)
    pad, eos = (getattr(config, key, None) for key in ("pad_token_id", "eos_token_id"))
    pad = pad if isinstance(pad, int) and not isinstance(pad, bool) else None
    if pad is not None and (pad == eos or (isinstance(eos, (list, tuple)) and pad in eos)):
        pad = None  # the pad id is the EOS, which a healthy label row ends with: not padding alone
    causal = causal_class(module)
    hf = causal is not None and any(
        type(m).__name__ == causal and type(m).__module__.startswith("transformers.") for m in modules
    )
    return LabelConvention(seq2seq, pad, causal if hf and not seq2seq else None)


def infer_sequence_objective(
    targets: Any,
    logits: Any = None,
    *,
    batch: Any = None,
    module: Any = None,
    loss: Any = None,
    computes_loss: bool = False,
    shift: ShiftArg = "auto",
    ignore_index: int | None = -100,
) -> SequenceObjective | None:
    """How a model's sequence outputs line up with token targets; ``None`` unless the targets are tokens.

    The one place every check learns whether it looks at a language model. Token targets are
    integer ``(N, T)`` (with ``(N, T, V)`` logits when ``logits`` is given, see
    :func:`is_token_targets`). The shift is decided by the first rule that applies:

    1. ``shift=`` given: as given;
    2. ``loss`` (the loss the step measured) equals the cross-entropy of exactly one alignment of
       ``logits`` and ``targets``: that one (the strongest evidence: what the model computes);
    3. the targets already are an input of ``batch`` one position ahead (``y[t] = x[t + 1]``,
       nanoGPT's batches): 0;
    4. an encoder-decoder model (``config.is_encoder_decoder``, ``...ForConditionalGeneration``): 0;
    5. ``config.is_decoder`` or a causal model class (:data:`CAUSAL_MODEL_SUFFIXES`): 1;
    6. the targets equal an input of ``batch`` (where not ``ignore_index``) and the model computes
       its own loss (``computes_loss``: its output has ``.loss``; it shifts inside): 1;
    7. otherwise 0 (per-token classification: tagging, or targets shifted by the data).

    Args:
        targets: the batch's targets.
        logits: the model's logits on that batch, if known.
        batch: the batch (its integer tensors are compared with the targets).
        module: the model (its config and class names are read).
        loss: the loss measured on that batch (a float or scalar tensor), if known.
        computes_loss: the model's output carries its own loss (Hugging Face's ``output.loss``).
        shift: ``"auto"`` or the shift to use (a callback's ``shift=`` override).
        ignore_index: the target value that marks positions without a loss (``-100``).

    Returns:
        a :class:`SequenceObjective`, or ``None`` for targets that are not tokens.
    """
    check_shift_argument(shift, "infer_sequence_objective")
    if not is_token_targets(targets, logits):
        return None
    config = model_config(module) if module is not None else None
    vocab = int(logits.shape[-1]) if isinstance(logits, torch.Tensor) else getattr(config, "vocab_size", None)
    vocab = int(vocab) if isinstance(vocab, int) else None

    def objective(value: int, reason: str) -> SequenceObjective:
        return SequenceObjective(value, ignore_index, vocab, reason)

    if shift != "auto":
        return objective(int(shift), f"shift={shift} was given")
    if isinstance(loss, torch.Tensor):
        loss = float(loss.detach().float()) if loss.numel() == 1 else None
    if isinstance(loss, (int, float)) and isinstance(logits, torch.Tensor) and targets.shape[1] > 1:
        found = _shift_from_loss(float(loss), logits, targets, ignore_index)
        if found is not None:
            where = "the next token" if found else "the same position"
            return objective(found, f"the loss equals the cross-entropy of each position against {where}")
    relation = relation_to_inputs(targets, batch, ignore_index) if batch is not None else None
    if relation == "shifted":
        return objective(0, "the targets already are the inputs one position ahead")
    if config is not None and getattr(config, "is_encoder_decoder", False) is True:
        return objective(0, "an encoder-decoder model (config.is_encoder_decoder)")
    if config is not None and getattr(config, "is_decoder", False) is True:
        return objective(1, "the model config says is_decoder=True")
    name = causal_class(module) if module is not None else None
    if name is not None:
        return objective(1, f"{name} is a causal language model")
    if relation == "equal" and computes_loss:
        return objective(1, "the labels are the input ids and the model computes its own loss")
    return objective(0, "per-token targets")
