"""Whether per-pixel targets line up with their images: mask boundaries on image edges, against the mask mirrored.

A segmentation mask changes label where the image changes (an object's outline), so the image's
edges are stronger on the mask's boundary than elsewhere. A flip, a 180° rotation or a transpose
applied to the image and not to its mask (or the other way round: the recipe's "labels not flipped
with the images") moves the boundary off the edges, and the mask mirrored the same way fits better.
:func:`mask_alignment` scores each sample: the mean edge strength on the mask's boundary over the
image's mean, for the mask as given, mirrored left-right, up-down, both (rotated 180°) and (square
images) transposed.
The image is smoothed first (a 3x3 box), so that pixel noise does not drown the outlines, its edges
are divided by their neighbourhood's mean (:data:`LOCAL`), so that a mirrored boundary falling into
a textured region does not fit by chance, and a fit is read as its excess over 1 (a boundary on
nothing in particular scores about 1).

Example:
    >>> import torch
    >>> x = torch.zeros(4, 1, 16, 16)
    >>> x[:, :, 4:12, 2:7] = 1.0                         # an off-centre square in every image
    >>> mask = (x[:, 0] > 0.5).long()
    >>> mask_alignment(x, mask).misaligned               # the masks sit on the squares
    []
    >>> mask_alignment(x, torch.cat([mask[:2], mask[2:].flip(-1)])).misaligned   # two flipped alone
    [2, 3]
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from lightning_recipe.core.tasks import is_binary_valued

__all__ = [
    "FIT_RATIO",
    "LOCAL",
    "MAX_FLOAT_LABELS",
    "MIN_EXCESS",
    "TRANSFORMS",
    "Alignment",
    "label_map",
    "mask_alignment",
]

#: A sample is misaligned when a mirrored mask's excess fit (fit - 1) is at least this many times
#: the excess of the mask as given.
FIT_RATIO = 1.5
#: A sample is judged only when one version's boundary has at least this much more than the image's
#: mean edge strength (fit >= 1.2): a mask whose outline follows nothing in the image tells nothing.
MIN_EXCESS = 0.2
#: The mirrorings tried, by name.
TRANSFORMS = ("mirrored left-right", "mirrored up-down", "rotated 180°", "transposed")
#: A float map with more distinct whole values than this is an image, not labels.
MAX_FLOAT_LABELS = 32
#: Edges are read against their neighbourhood (this many pixels across): an outline stands out of its
#: surroundings, the texture of a busy region does not, wherever a mirrored boundary falls.
LOCAL = 9


@dataclass
class Alignment:
    """The scores of one batch: ``fit[i]`` the given mask's, ``best[i]`` the best mirrored mask's.

    ``bounded``: samples whose mask has a boundary and whose image has edges; ``evaluable``: of
    those, the ones where some version fits (:data:`MIN_EXCESS`); ``misaligned``: those whose
    mirrored mask's excess fit is :data:`FIT_RATIO` times the given one's; ``how``: for each
    misaligned sample, which mirroring.
    """

    bounded: list[int] = field(default_factory=list)
    fit: list[float] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    evaluable: list[int] = field(default_factory=list)
    misaligned: list[int] = field(default_factory=list)
    how: list[str] = field(default_factory=list)

    @property
    def commonest(self) -> str:
        """The mirroring most misaligned samples fit best (empty when none)."""
        return Counter(self.how).most_common(1)[0][0] if self.how else ""


def label_map(x: torch.Tensor, targets: object) -> torch.Tensor | None:
    """``targets`` as an ``(N, H, W)`` integer label map when they label each pixel of the images ``x``.

    ``x``: ``(N, C, H, W)`` or ``(N, H, W)``. Targets of shape ``(N, H, W)`` or ``(N, 1, H, W)`` with
    integer labels (or floats of at most :data:`MAX_FLOAT_LABELS` whole values), or ``(N, K, H, W)``
    probabilities, one-hot or multi-hot masks (their argmax); anything else (class labels, boxes,
    another resolution, continuous maps, target images) gives ``None``.

    Example:
        >>> x = torch.zeros(2, 3, 8, 8)
        >>> label_map(x, torch.zeros(2, 8, 8, dtype=torch.long)).shape, label_map(x, torch.tensor([0, 1]))
        (torch.Size([2, 8, 8]), None)
    """
    if not isinstance(targets, torch.Tensor) or x.dim() not in (3, 4) or targets.dim() not in (3, 4):
        return None
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    if targets.shape[0] != n or tuple(targets.shape[-2:]) != (h, w) or min(h, w) < 4:
        return None
    t = targets.detach()
    if t.is_complex():
        return None
    if t.dim() == 4 and t.shape[1] > 1:
        if not t.is_floating_point():
            return (
                t.argmax(dim=1) if is_binary_valued(t) else None
            )  # integer or bool one-hot / multi-hot masks
        in_unit = bool(((t >= 0) & (t <= 1)).all())
        one_per_pixel = bool(((t.sum(dim=1) - 1).abs() < 1e-3).all())
        binary = is_binary_valued(t)
        if not (in_unit and (one_per_pixel or binary)):
            return None  # a target image (denoising, super-resolution), not class scores
        return t.argmax(dim=1)
    t = t[:, 0] if t.dim() == 4 else t
    continuous = t.is_floating_point() and (
        not bool((t == t.round()).all()) or t.unique().numel() > MAX_FLOAT_LABELS
    )
    if continuous:
        return None  # a depth or heat map, a target image: no label boundaries
    return t.long()


def _edges(x: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)``: the smoothed image's absolute forward differences to the right plus down, summed
    over channels, over their mean in a :data:`LOCAL` window."""
    x = x.detach().float()
    if x.dim() == 3:
        x = x[:, None]
    x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    right = F.pad((x[..., :, 1:] - x[..., :, :-1]).abs(), (0, 1))
    down = F.pad((x[..., 1:, :] - x[..., :-1, :]).abs(), (0, 0, 0, 1))
    edges = (right + down).sum(dim=1, keepdim=True)
    local = F.avg_pool2d(edges, LOCAL, stride=1, padding=LOCAL // 2, count_include_pad=False)
    edges = edges / (local + 1e-3 * edges.mean(dim=(-2, -1), keepdim=True) + 1e-12)
    return edges[:, 0]


def _boundary(m: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` bool: where the label differs from the one to the right or below (the same pixel
    pairs as :func:`_edges`)."""
    right = F.pad((m[..., :, 1:] != m[..., :, :-1]).float(), (0, 1))
    down = F.pad((m[..., 1:, :] != m[..., :-1, :]).float(), (0, 0, 0, 1))
    return (right + down) > 0


def _fit(edges: torch.Tensor, mean: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per sample: mean edge strength on ``m``'s boundary over the image's mean (NaN without a boundary)."""
    b = _boundary(m).float()
    count = b.sum(dim=(-2, -1))
    on = (edges * b).sum(dim=(-2, -1)) / count.clamp_min(1)
    return torch.where(count > 0, on / mean.clamp_min(1e-12), torch.full_like(on, float("nan")))


def mask_alignment(x: torch.Tensor, targets: object) -> Alignment:
    """How well each sample's label map (:func:`label_map`) fits its image, as given and mirrored.

    Returns an empty :class:`Alignment` when the targets are not per-pixel labels of ``x``.
    """
    m = label_map(x, targets)
    out = Alignment()
    if m is None:
        return out
    edges = _edges(x)
    mean = edges.mean(dim=(-2, -1))
    mirrored = [m.flip(-1), m.flip(-2), m.flip((-2, -1))]
    mirrored += [m.transpose(-1, -2)] if m.shape[-1] == m.shape[-2] else []
    given = _fit(edges, mean, m)
    others = torch.stack([_fit(edges, mean, t) for t in mirrored], dim=1).nan_to_num(nan=0.0)
    best, which = others.max(dim=1)
    out.fit, out.best = given.cpu().tolist(), best.cpu().tolist()
    for i, (fit, alt, k, level) in enumerate(
        zip(out.fit, out.best, which.cpu().tolist(), mean.cpu().tolist())
    ):
        if math.isnan(fit) or level <= 0:  # no boundary (one label) or a blank image
            continue
        out.bounded.append(i)
        if max(fit, alt) - 1.0 < MIN_EXCESS:
            continue
        out.evaluable.append(i)
        if alt - 1.0 >= FIT_RATIO * max(fit - 1.0, 0.0):
            out.misaligned.append(i)
            out.how.append(TRANSFORMS[k])
    return out
