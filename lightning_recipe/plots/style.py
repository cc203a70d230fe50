"""The one style of the recipe's figures: palette, figure factory (matplotlib's Agg canvas, no pyplot
global state) and image grids from numpy. Every ``plots/<step>.py`` module draws with these.

Example:
    >>> import numpy as np
    >>> fig = new_figure(2, 1.5)
    >>> ax = fig.add_subplot()
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> figure_to_array(fig).shape[2], figure_to_array(fig).dtype
    (3, dtype('uint8'))
    >>> image_grid(np.zeros((5, 1, 8, 8)), ncols=3, pad=1).shape
    (17, 26, 3)
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lightning_recipe.core.images import is_image_like  # noqa: F401  (re-exported for old imports)

#: Series colours, in order (matplotlib's default cycle, muted): the first is the model itself.
PALETTE: tuple[str, ...] = (
    "#3b75af",
    "#ef8636",
    "#519e3e",
    "#8d69b8",
    "#c53a32",
    "#84584e",
    "#d57dbf",
    "#7f7f7f",
)
#: Colours that carry a verdict: good, doubtful, bad, neutral.
STATUS_COLORS: dict[str, str] = {
    "pass": "#2ca02c",
    "warn": "#ff7f0e",
    "fail": "#d62728",
    "skipped": "#bdbdbd",
}

#: The width of a figure drawn for a TensorBoard card: 4.4 in at :data:`CARD_DPI` is about 640 px, so
#: that a 9 pt label is about 18 px and stays legible when TensorBoard shows the image in its ~350 px
#: card (and sharp at actual size); several panels go one a row.
CARD_WIDTH_IN = 4.4
CARD_DPI = 145

__all__ = [
    "CARD_DPI",
    "CARD_WIDTH_IN",
    "OUTLINE",
    "PALETTE",
    "STATUS_COLORS",
    "figure_to_array",
    "image_grid",
    "labelled_image_grid_figure",
    "new_figure",
    "to_display_images",
]


def new_figure(width: float = 4.0, height: float = 3.0, dpi: int = 80) -> Figure:
    """A matplotlib ``Figure`` on its own Agg canvas; nothing touches pyplot's global state."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render ``fig`` and return an ``(H, W, 3)`` uint8 RGB array."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def encode_png(image: np.ndarray) -> bytes:
    """The PNG bytes of an ``(H, W, 3)`` or ``(H, W, 4)`` uint8 image.

    zlib level 3: on the recipe's figures (flat colours) as small as TensorBoard's ``add_image``
    (level 6, after a float copy and a resize to the same size) in well under half its time.
    """
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="PNG", compress_level=3)
    return out.getvalue()


def to_display_images(images: np.ndarray, per_image: bool = True) -> np.ndarray:
    """Scale images to [0, 1] for display and return ``(N, H, W, 3)`` float32.

    Accepts ``(N, H, W)``, ``(N, 1, H, W)``, ``(N, 3, H, W)`` or ``(N, 4, H, W)``; other channel
    counts show their channel mean. ``per_image`` scales each image by its own min/max (so a
    low-contrast image stays visible); otherwise one scale for the whole batch.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"to_display_images: expected (N, C, H, W) or (N, H, W), got shape {x.shape}.")
    c = x.shape[1]
    if c == 4:
        x = x[:, :3]
    elif c not in (1, 3):
        x = x.mean(axis=1, keepdims=True)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    axes = (1, 2, 3) if per_image else None
    lo = x.min(axis=axes, keepdims=True) if per_image else x.min()
    hi = x.max(axis=axes, keepdims=True) if per_image else x.max()
    x = (x - lo) / np.maximum(hi - lo, 1e-12)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    return np.transpose(x, (0, 2, 3, 1)).astype(np.float32)


def image_grid(
    images: np.ndarray,
    ncols: int | None = None,
    pad: int = 1,
    per_image: bool = True,
    scale: int = 1,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile a batch of images into one ``(H, W, 3)`` uint8 grid.

    Args:
        images: ``(N, C, H, W)`` or ``(N, H, W)``, any range (scaled by :func:`to_display_images`).
        ncols: tiles per row (default: about square).
        pad: pixels between tiles.
        per_image: scale each tile by its own range.
        scale: integer up-scaling of each pixel (nearest), so tiny images stay readable.
        pad_value: brightness of the padding, 0 to 1.
    """
    x = to_display_images(images, per_image=per_image)
    n, h, w, _ = x.shape
    if scale > 1:
        x = x.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    grid = np.full((nrows * h + (nrows - 1) * pad, ncols * w + (ncols - 1) * pad, 3), pad_value, np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = x[i]
    return (grid * 255).round().astype(np.uint8)


#: The colour of mask outlines drawn over images (RGB in [0, 1]): a red that stands out of grey and most photographs.
OUTLINE = (1.0, 0.15, 0.1)


def labelled_image_grid_figure(
    images: np.ndarray,
    titles: list[str] | None = None,
    ncols: int | None = None,
    suptitle: str | None = None,
    tile_px: int = 64,
    per_image: bool = True,
    title_colors: list[str] | None = None,
    masks: np.ndarray | None = None,
) -> Figure:
    """Images as one grid with a (possibly multi-line) title above each tile.

    Drawn as a single image axis plus text, which renders an order of magnitude faster than one
    axis per tile. Tiles are scaled to about ``tile_px`` pixels (nearest neighbour; large images are
    subsampled), each to its own range unless ``per_image=False``. ``masks``: ``(N, H, W)`` label
    maps of the images, their boundaries drawn over them in :data:`OUTLINE` (after subsampling, so a
    thin outline stays visible).

    Example:
        >>> fig = labelled_image_grid_figure(np.random.rand(10, 1, 8, 8), [str(i) for i in range(10)], 8, "demo")
        >>> figure_to_array(fig).shape
        (186, 548, 3)
    """
    x = to_display_images(images, per_image=per_image)
    n, h, w, _ = x.shape
    step = max(1, math.ceil(max(h, w) / (1.5 * tile_px)))
    x = x[:, ::step, ::step]
    if masks is not None:
        m = np.asarray(masks)[: len(x), ::step, ::step]
        edge = np.zeros(m.shape, bool)
        edge[:, :, 1:] |= m[:, :, 1:] != m[:, :, :-1]
        edge[:, 1:, :] |= m[:, 1:, :] != m[:, :-1, :]
        x = x.copy()
        x[: len(m)][edge] = OUTLINE
    h, w = x.shape[1], x.shape[2]
    scale = max(1, round(tile_px / max(h, w)))
    x = x.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = h * scale, w * scale
    lines = max((t.count("\n") + 1 for t in titles), default=1) if titles else 0
    band = 12 * lines + 2 if titles else 0
    pad = 4
    ncols = max(1, min(ncols or max(1, math.ceil(math.sqrt(n))), n))
    nrows = math.ceil(n / ncols)
    grid = np.ones((nrows * (th + band + pad) + pad, ncols * (tw + pad) + pad, 3), np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = pad + r * (th + band + pad) + band, pad + c * (tw + pad)
        grid[top : top + th, left : left + tw] = x[i]
    head = 18 if suptitle else 0
    dpi = 80
    fig = new_figure(grid.shape[1] / dpi, (grid.shape[0] + head) / dpi, dpi=dpi)
    ax = fig.add_axes((0, 0, 1, grid.shape[0] / (grid.shape[0] + head)))
    ax.imshow(grid, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if titles:
        for i in range(min(n, len(titles))):
            r, c = divmod(i, ncols)
            color = title_colors[i] if title_colors is not None and i < len(title_colors) else "black"
            ax.text(
                pad + c * (tw + pad) + tw / 2,
                pad + r * (th + band + pad) + band - 3,
                titles[i],
                ha="center",
                va="bottom",
                fontsize=8,
                color=color,
                linespacing=1.0,
            )
    if suptitle:
        fig.text(0.5, 1 - 3 / (grid.shape[0] + head), suptitle, ha="center", va="top", fontsize=8.5)
    return fig
