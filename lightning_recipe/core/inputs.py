"""What goes into the net: layout, per-channel statistics and what is visibly wrong with a batch.

The recipe's "visualize just before the net" looks at the exact tensor the model receives. This
module computes the numbers behind that look, without Lightning:

* :func:`detect_layout`: ``"image"`` (``(N, C, H, W)`` with C in 1/3/4, or ``(N, H, W)``),
  ``"tabular"`` (``(N, F)`` floats), ``"tokens"`` (integer ids), or ``"other"``;
* :func:`input_stats`: per-channel (image) or per-feature (tabular) mean, std, min and max, the
  overall mean and std, and the NaN/Inf counts;
* :func:`diagnose_inputs`: the problems a person would see: NaN/Inf, inputs that are not
  normalised (keyed on mean and std, never on a ``[-1, 1]`` range: a z-scored input reaches
  +-3 and is healthy), and near-constant inputs (std ~1e-3: normalised twice).

Example:
    >>> import torch
    >>> raw = torch.randint(0, 256, (8, 3, 16, 16)).float()       # raw 0-255 pixels
    >>> stats = input_stats(raw, "image")
    >>> [d.code for d in diagnose_inputs(stats)]
    ['not_normalised']
    >>> z = torch.randn(64, 10)                                      # z-scored features
    >>> diagnose_inputs(input_stats(z, "tabular"))
    []
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lightning_recipe.core.format import sig as _fmt

__all__ = [
    "CONSTANT_STD",
    "LAYOUTS",
    "NORMALISED_SCALE",
    "Diagnosis",
    "InputStats",
    "Layout",
    "detect_layout",
    "diagnose_inputs",
    "input_stats",
    "markdown_table",
]

Layout = Literal["image", "tabular", "tokens", "other"]
LAYOUTS: tuple[str, ...] = ("image", "tabular", "tokens", "other")

#: A channel whose |mean| or std exceeds this is "not normalised" (raw 0-255 pixels: mean ~120,
#: std ~70; a z-scored input: mean ~0, std ~1; [0, 1] images: mean ~0.4, std ~0.3).
NORMALISED_SCALE = 5.0
#: An overall std below this (with non-zero values around) is "near-constant": the classic result
#: of normalising twice (``x / 255`` applied to an image already in [0, 1] gives std ~1e-3).
CONSTANT_STD = 1e-2


def detect_layout(x: torch.Tensor) -> Layout:
    """Guess the layout of an input batch from its dtype and shape.

    * integer or bool dtype with 1 or 2 dims: ``"tokens"`` (ids; 3-4 dim integer tensors shaped
      like images are ``"image"``: raw uint8 pixels);
    * ``(N, C, H, W)`` with C in {1, 3, 4} and H, W >= 4, or ``(N, H, W)`` with H, W >= 4 (both as
      floats): ``"image"``;
    * ``(N, F)`` floats: ``"tabular"``;
    * anything else (sequences of vectors, 5-D volumes): ``"other"``.

    Example:
        >>> detect_layout(torch.zeros(2, 3, 8, 8)), detect_layout(torch.zeros(2, 5))
        ('image', 'tabular')
        >>> detect_layout(torch.zeros(2, 7, dtype=torch.long))
        'tokens'
    """
    shape = tuple(x.shape)
    integer = not (x.is_floating_point() or x.is_complex())
    image = (len(shape) == 4 and shape[1] in (1, 3, 4) and shape[2] >= 4 and shape[3] >= 4) or (
        len(shape) == 3 and shape[1] >= 4 and shape[2] >= 4 and not integer
    )
    if image:
        return "image"
    if integer and len(shape) in (1, 2):
        return "tokens"
    if len(shape) == 2 and not integer:
        return "tabular"
    return "other"


@dataclass
class InputStats:
    """Statistics of one input batch.

    Attributes:
        layout: the layout the statistics were computed for.
        shape: the batch's shape.
        dtype: the batch's dtype, as a string.
        mean, std, min, max: per channel (image), per feature (tabular), one value otherwise;
            over finite values only.
        overall_mean, overall_std: over all finite values.
        overall_min, overall_max: over all finite values.
        nan, inf: how many NaN and infinite values the batch holds.
        numel: number of values.
    """

    layout: str
    shape: tuple[int, ...]
    dtype: str
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    overall_mean: float
    overall_std: float
    overall_min: float
    overall_max: float
    nan: int
    inf: int
    numel: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def channel_name(self) -> str:
        return "channel" if self.layout == "image" else "feature" if self.layout == "tabular" else "all"


def _channel_view(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``(K, M)``: one row per channel/feature, all values of that channel in the row."""
    if layout == "image" and x.dim() == 4:
        return x.transpose(0, 1).reshape(x.shape[1], -1)
    if layout == "tabular" and x.dim() == 2:
        return x.transpose(0, 1)
    return x.reshape(1, -1)


def input_stats(x: torch.Tensor, layout: str | None = None) -> InputStats:
    """Per-channel (or per-feature) mean/std/min/max of ``x`` over finite values, plus NaN/Inf counts.

    Computed in float64 on ``x``'s device; only small results are copied to the CPU.

    Args:
        x: an input batch (any dtype; integers are read as numbers).
        layout: the layout (default: :func:`detect_layout`).

    Example:
        >>> s = input_stats(torch.tensor([[0.0, 10.0], [2.0, float("nan")]]), "tabular")
        >>> s.mean.tolist(), s.nan
        ([1.0, 10.0], 1)
    """
    if layout is None:
        layout = detect_layout(x)
    t = x.detach()
    if t.is_complex():
        t = t.abs()
    t = t.to(torch.float64)
    finite = torch.isfinite(t)
    nan = int(torch.isnan(t).sum())
    inf = int(torch.isinf(t).sum())
    rows = _channel_view(t, layout)
    mask = _channel_view(finite, layout)
    count = mask.sum(dim=1).to(torch.float64)
    safe = torch.where(mask, rows, torch.zeros((), dtype=torch.float64, device=rows.device))
    total = safe.sum(dim=1)
    mean = total / count.clamp(min=1)
    var = (torch.where(mask, rows - mean[:, None], torch.zeros_like(rows)) ** 2).sum(dim=1) / count.clamp(
        min=1
    )
    big = torch.tensor(math.inf, dtype=torch.float64, device=rows.device)
    lo = torch.where(mask, rows, big).amin(dim=1) if rows.shape[1] else torch.full_like(mean, math.nan)
    hi = torch.where(mask, rows, -big).amax(dim=1) if rows.shape[1] else torch.full_like(mean, math.nan)
    empty = count == 0
    nan_t = torch.tensor(math.nan, dtype=torch.float64, device=rows.device)
    mean, lo, hi = (torch.where(empty, nan_t, v) for v in (mean, lo, hi))
    std = torch.where(empty, nan_t, var.sqrt())
    n_all = count.sum()
    o_mean = total.sum() / n_all.clamp(min=1)
    o_var = (torch.where(mask, rows - o_mean, torch.zeros_like(rows)) ** 2).sum() / n_all.clamp(min=1)
    packed = torch.stack([o_mean, o_var.sqrt(), n_all]).cpu().tolist()
    has = packed[2] > 0
    finite_lo = float(lo[~empty].min()) if bool((~empty).any()) else math.nan
    finite_hi = float(hi[~empty].max()) if bool((~empty).any()) else math.nan
    return InputStats(
        layout=layout,
        shape=tuple(x.shape),
        dtype=str(x.dtype).replace("torch.", ""),
        mean=mean.cpu().numpy(),
        std=std.cpu().numpy(),
        min=lo.cpu().numpy(),
        max=hi.cpu().numpy(),
        overall_mean=packed[0] if has else math.nan,
        overall_std=packed[1] if has else math.nan,
        overall_min=finite_lo,
        overall_max=finite_hi,
        nan=nan,
        inf=inf,
        numel=int(t.numel()),
    )


@dataclass
class Diagnosis:
    """One problem seen in a batch.

    Attributes:
        code: ``"nan_inf"``, ``"not_normalised"`` or ``"near_constant"``.
        status: ``"fail"`` (NaN/Inf) or ``"warn"``.
        message: one actionable line.
        numbers: the measurements behind it.
    """

    code: str
    status: Literal["warn", "fail"]
    message: str
    numbers: dict[str, Any]


def diagnose_inputs(
    stats: InputStats,
    scale: float = NORMALISED_SCALE,
    constant_std: float = CONSTANT_STD,
) -> list[Diagnosis]:
    """What is visibly wrong with a batch, from its statistics (empty list: nothing).

    * ``nan_inf`` (fail): the batch holds NaN or infinite values.
    * ``not_normalised`` (warn): a channel's (image) or feature's (tabular) ``|mean|`` or std is
      above ``scale`` (raw 0-255 pixels, unscaled physical units). Keyed on mean/std, not on the
      range: a z-scored input legitimately reaches +-3 or more.
    * ``near_constant`` (warn): the overall std is below ``constant_std`` (double normalisation,
      a scale applied twice, an input zeroed by mistake).

    Token ids are never diagnosed for scale (ids are not meant to be normalised).
    """
    out: list[Diagnosis] = []
    if stats.nan or stats.inf:
        out.append(
            Diagnosis(
                "nan_inf",
                "fail",
                f"the batch going into the net holds {stats.nan} NaN and {stats.inf} infinite values "
                f"out of {stats.numel}; find where the data pipeline produces them (division by a zero std, "
                "log of 0, a corrupt file).",
                {"nan": stats.nan, "inf": stats.inf, "numel": stats.numel},
            )
        )
    if stats.layout == "tokens" or not np.isfinite(stats.overall_std):
        return out
    with np.errstate(invalid="ignore"):
        mag = np.fmax(np.abs(stats.mean), stats.std)
    if mag.size and np.isfinite(mag).any():
        worst = int(np.nanargmax(mag))
        if mag[worst] > scale:
            where = (
                f"{stats.channel_name} {worst}: "
                if stats.layout in ("image", "tabular") and mag.size > 1
                else ""
            )
            bad = int(np.sum(mag > scale))
            count = f" ({bad} of {mag.size} {stats.channel_name}s)" if mag.size > 1 else ""
            out.append(
                Diagnosis(
                    "not_normalised",
                    "warn",
                    f"inputs are not normalised{count}: {where}mean {_fmt(float(stats.mean[worst]))}, "
                    f"std {_fmt(float(stats.std[worst]))} (range {_fmt(stats.overall_min)} to "
                    f"{_fmt(stats.overall_max)}); scale them to mean ~0 and std ~1 ("
                    + (
                        "e.g. divide raw pixels by 255 and subtract the mean)."
                        if stats.layout == "image"
                        else "e.g. standardise each feature with the training set's mean and std; a raw "
                        "waveform by its own, as audio feature extractors do)."
                    ),
                    {
                        "mean": float(stats.mean[worst]),
                        "std": float(stats.std[worst]),
                        "index": worst,
                        "count": bad,
                        "min": stats.overall_min,
                        "max": stats.overall_max,
                    },
                )
            )
    if stats.overall_std < constant_std:
        out.append(
            Diagnosis(
                "near_constant",
                "warn",
                f"inputs are nearly constant: std {stats.overall_std:.2g} around mean "
                f"{_fmt(stats.overall_mean)}; normalised twice (e.g. divided by 255 again), or zeroed by "
                "mistake? The net cannot tell samples apart.",
                {"std": stats.overall_std, "mean": stats.overall_mean},
            )
        )
    return out


def markdown_table(header: list[str], rows: list[list[Any]], max_rows: int = 16, max_cols: int = 12) -> str:
    """A Markdown table (TensorBoard's Text tab), bounded in rows and columns; floats to 4 digits.

    Example:
        >>> print(markdown_table(["a", "b"], [[1, 0.123456]]))
        | a | b |
        | --- | --- |
        | 1 | 0.1235 |
    """
    cut_cols = len(header) > max_cols
    header = [str(h) for h in header[:max_cols]] + (["…"] if cut_cols else [])

    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows[:max_rows]:
        cells = [cell(v) for v in row[:max_cols]] + (["…"] if cut_cols else [])
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > max_rows:
        lines.append(f"\n({len(rows) - max_rows} more rows not shown)")
    return "\n".join(lines)
