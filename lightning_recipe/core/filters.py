"""First-layer filters as images, how noise-like they are, and filters that are copies of each other.

The recipe's "visualize the first-layer weights": learned first-layer filters of a net on natural
data are smooth (neighbouring weights agree); filters that still look like their random init
after training, or that are all identical (symmetry never broken), point at a problem.

* :func:`filter_tiles` turns a first layer's weight into ``(N, C, h, w)`` tiles: a ``Conv2d``
  weight as is (C = 3 for RGB input, otherwise the mean over input channels), a ``Linear`` over
  a flattened image reshaped to that image's shape; ``None`` for anything else.
* :func:`smoothness`: the mean lag-1 spatial correlation of neighbouring weights within each
  tile (about 0 for i.i.d. noise, up to 1 for smooth blobs and edges).
* :func:`identical_filters`: which filters are (numerically) equal to another filter.

Example:
    >>> import torch
    >>> from torch import nn
    >>> conv = nn.Conv2d(3, 8, 5)
    >>> tiles = filter_tiles(conv.weight)
    >>> tiles.shape
    (8, 3, 5, 5)
    >>> abs(smoothness(tiles)) < 0.3                     # random init: noise
    True
    >>> smooth = torch.ones(8, 3, 5, 5) * torch.linspace(-1, 1, 5)   # ramps: smooth
    >>> round(smoothness(smooth.numpy()), 2)
    0.86
    >>> int(identical_filters(torch.ones(8, 3, 5, 5)).sum())   # constant init: all copies
    8
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "filter_tiles",
    "grey_mode",
    "identical_filters",
    "image_shape_for",
    "relative_change",
    "smoothness",
    "smoothness_per_filter",
]


def grey_mode(in_channels: int) -> str:
    """How a Conv2d filter with ``in_channels`` inputs is shown: ``"rgb"``, ``"grey"`` or ``"channel_mean"``."""
    if in_channels == 3:
        return "rgb"
    if in_channels == 4:
        return "rgb"  # RGBA input: the first three channels
    if in_channels == 1:
        return "grey"
    return "channel_mean"


def image_shape_for(in_features: int, input_shape: Sequence[int] | None) -> tuple[int, int, int] | None:
    """The ``(C, H, W)`` image a ``Linear(in_features, ...)`` reads, when the model's input is that image flattened.

    Args:
        in_features: the Linear layer's input width.
        input_shape: the shape of the model's input batch, ``(N, C, H, W)`` or ``(N, H, W)``.

    Example:
        >>> image_shape_for(64, (32, 1, 8, 8)), image_shape_for(64, (32, 64))
        ((1, 8, 8), None)
    """
    if input_shape is None:
        return None
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 4 and shape[2] >= 2 and shape[3] >= 2:
        c, h, w = shape[1:]
    elif len(shape) == 3 and shape[1] >= 2 and shape[2] >= 2:
        c, h, w = 1, shape[1], shape[2]
    else:
        return None
    if c * h * w != in_features:
        return None
    return (c, h, w)


def _as_numpy(weight: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(weight, torch.Tensor):
        return weight.detach().to("cpu", torch.float64).numpy()
    return np.asarray(weight, dtype=np.float64)


def filter_tiles(
    weight: torch.Tensor | np.ndarray,
    image_shape: Sequence[int] | None = None,
    max_filters: int | None = None,
) -> np.ndarray | None:
    """The filters of a first layer as ``(N, C, h, w)`` float64 tiles (C is 1 or 3), or ``None``.

    * a 4-D ``Conv2d`` weight ``(O, I, kh, kw)``: RGB tiles when I is 3 (or 4: the first three),
      one grey tile per filter when I is 1, the mean over input channels otherwise;
    * a 2-D ``Linear`` weight ``(O, F)`` with ``image_shape`` ``(C, H, W)`` and ``C*H*W == F``: each
      row reshaped to the image (RGB for C = 3, channel mean for other C > 1);
    * anything else: ``None`` (not an image).

    Args:
        weight: the layer's weight.
        image_shape: for a Linear layer, the ``(C, H, W)`` image its input is a flattening of.
        max_filters: keep only the first ``max_filters`` filters.
    """
    w = _as_numpy(weight)
    if w.ndim == 4:
        tiles = w
    elif w.ndim == 2 and image_shape is not None:
        c, h, ww = (int(s) for s in image_shape)
        if c * h * ww != w.shape[1]:
            return None
        tiles = w.reshape(w.shape[0], c, h, ww)
    else:
        return None
    if max_filters is not None:
        tiles = tiles[:max_filters]
    mode = grey_mode(tiles.shape[1])
    if mode == "rgb":
        tiles = tiles[:, :3]
    elif mode == "channel_mean":
        tiles = tiles.mean(axis=1, keepdims=True)
    return np.ascontiguousarray(tiles)


def smoothness_per_filter(tiles: np.ndarray) -> np.ndarray:
    """Lag-1 spatial correlation of each tile (``(N,)``; NaN for a constant tile or one without neighbours).

    For each tile (mean removed), the sum of products of horizontally and vertically adjacent
    weights, divided by the matching sum of squares: a Pearson-like correlation between a weight
    and its neighbours. I.i.d. noise gives about 0 (slightly negative for small tiles), smooth
    blobs and edges approach 1, checkerboards approach -1.
    """
    t = np.asarray(tiles, dtype=np.float64)
    if t.ndim == 3:
        t = t[:, None]
    n = t.shape[0]
    if n == 0 or (t.shape[2] < 2 and t.shape[3] < 2):
        return np.full(n, math.nan)
    t = t - t.mean(axis=(1, 2, 3), keepdims=True)
    num = np.zeros(n)
    den = np.zeros(n)
    if t.shape[3] >= 2:
        a, b = t[..., :, 1:], t[..., :, :-1]
        num += (a * b).sum(axis=(1, 2, 3))
        den += 0.5 * ((a * a).sum(axis=(1, 2, 3)) + (b * b).sum(axis=(1, 2, 3)))
    if t.shape[2] >= 2:
        a, b = t[..., 1:, :], t[..., :-1, :]
        num += (a * b).sum(axis=(1, 2, 3))
        den += 0.5 * ((a * a).sum(axis=(1, 2, 3)) + (b * b).sum(axis=(1, 2, 3)))
    scale = np.abs(t).reshape(n, -1).max(axis=1) if t.size else np.zeros(n)
    tiny = den <= (1e-12 * np.maximum(scale, 1e-30)) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[tiny] = math.nan
    return out


def smoothness(tiles: np.ndarray) -> float:
    """Mean of :func:`smoothness_per_filter` over the tiles that have one (NaN if none)."""
    per = smoothness_per_filter(tiles)
    per = per[np.isfinite(per)]
    return float(per.mean()) if per.size else math.nan


def relative_change(current: np.ndarray | torch.Tensor, initial: np.ndarray | torch.Tensor) -> float:
    """``||current - initial|| / ||initial||`` (the change is absolute when the init is all zeros).

    Example:
        >>> relative_change(np.array([1.0, 1.0]), np.array([1.0, 0.0]))
        1.0
    """
    a, b = _as_numpy(current), _as_numpy(initial)
    norm = float(np.linalg.norm(b))
    diff = float(np.linalg.norm(a - b))
    return diff / norm if norm > 0 else diff


def identical_filters(
    weight: torch.Tensor | np.ndarray, rtol: float = 1e-5, max_filters: int = 512
) -> np.ndarray:
    """A boolean mask over the (first ``max_filters``) filters: True where another filter is the same.

    Two filters are "the same" when their distance is at most ``rtol`` times the typical filter
    norm. Random inits never have such pairs; a constant init (every weight equal) makes all
    filters copies that receive identical gradients forever: symmetry is never broken.
    """
    w = _as_numpy(weight)
    if w.ndim < 2 or w.shape[0] < 2:
        return np.zeros(w.shape[0] if w.ndim else 0, dtype=bool)
    rows = w.reshape(w.shape[0], -1)[:max_filters]
    norms = np.linalg.norm(rows, axis=1)
    typical = float(np.median(norms))
    scale = typical if typical > 0 else float(np.abs(rows).max())
    tol = rtol * scale if scale > 0 else 0.0
    sq = norms**2
    gram = rows @ rows.T
    dist2 = np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0.0)
    # the expansion loses precision for near-equal rows: it only proposes candidates, checked exactly
    close = dist2 <= 4 * tol**2 + 1e-10 * float(sq.max())
    close = np.triu(close, k=1)
    ii, jj = np.nonzero(close)
    mask = np.zeros(rows.shape[0], dtype=bool)
    for start in range(0, ii.size, 2048):
        i, j = ii[start : start + 2048], jj[start : start + 2048]
        same = np.linalg.norm(rows[i] - rows[j], axis=1) <= tol
        mask[i[same]] = True
        mask[j[same]] = True
    return mask
