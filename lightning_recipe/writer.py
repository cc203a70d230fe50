"""The one place that writes recipe evidence: TensorBoard, or files when there is no TensorBoard.

Every function takes the ``Trainer`` and an explicit ``step``; they write on global rank zero only
and do nothing elsewhere (callers build figures only on rank zero too). With a
``TensorBoardLogger`` attached, values go to its ``SummaryWriter``; without one, the same content
is written as files under ``<log_dir>/recipe/`` (scalars to ``scalars.csv``, images and figures
as PNG, text as Markdown, histograms as JSON) and a warning says so once. With no logger at all
(``Trainer(logger=False)``) nothing is written, as Lightning writes no logs then.

Figures are the slow part. :func:`log_figure` accepts a *builder* (a function returning a
``Figure``) and renders it on one background thread, so the training loop does not wait for
matplotlib. The queue is bounded (the loop waits when it is full: nothing is dropped) and FIFO
(nothing is reordered); :func:`drain` waits for it, and recipe callbacks call it at the end of fit.

Example:
    >>> from lightning.pytorch import Trainer
    >>> from lightning.pytorch.loggers import CSVLogger
    >>> trainer = Trainer(logger=CSVLogger(getfixture("tmp_path")), default_root_dir=getfixture("tmp_path"))
    >>> log_scalars(trainer, {"recipe/demo/value": 1.5}, step=0)   # no TensorBoard: a CSV file
    >>> open(os.path.join(log_dir(trainer), "recipe", "scalars.csv")).read().splitlines()[1]
    'recipe/demo/value,0,1.5'
    >>> quiet = Trainer(logger=False, default_root_dir=getfixture("tmp_path") / "quiet")
    >>> log_scalars(quiet, {"recipe/demo/value": 1.5}, step=0)   # no logger at all: no file
    >>> os.path.exists(log_dir(quiet))
    False
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lightning.pytorch import Trainer
    from matplotlib.figure import Figure

__all__ = [
    "drain",
    "get_writer",
    "log_dir",
    "log_figure",
    "log_histogram",
    "log_image",
    "log_scalars",
    "log_text",
    "set_async_rendering",
]

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message in _warned:
        return
    _warned.add(message)
    from lightning.pytorch.utilities.rank_zero import rank_zero_warn

    from lightning_recipe.findings import RecipeWarning

    rank_zero_warn(message, category=RecipeWarning)


def get_writer(trainer: Trainer) -> Any | None:
    """The ``SummaryWriter`` of the trainer's first ``TensorBoardLogger`` (``None`` if it has none)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def log_dir(trainer: Trainer) -> str:
    """Where the run's files go: the TensorBoard run folder, else the first logger's, else the root dir.

    Unlike ``Trainer.log_dir`` this is no collective, so it is safe on rank zero alone.
    """
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.log_dir
    if trainer.loggers:
        first = trainer.loggers[0]
        directory = first.log_dir if isinstance(first, CSVLogger) else first.save_dir
        if directory is not None:
            return str(directory)
    return str(trainer.default_root_dir)


def _writes_nothing(trainer: Trainer) -> bool:
    """No logger at all (``Trainer(logger=False)``): Lightning writes no logs, and neither do we."""
    return not trainer.loggers


def _fallback_dir(trainer: Trainer) -> str:
    directory = os.path.join(log_dir(trainer), "recipe")
    os.makedirs(directory, exist_ok=True)
    _warn_once(
        f"lightning_recipe: no TensorBoardLogger is attached; recipe images, figures and text are "
        f"written as files under {directory!r} instead."
    )
    return directory


def _file_for(trainer: Trainer, tag: str, step: int, suffix: str) -> str:
    base = _fallback_dir(trainer)
    rel = tag[len("recipe/") :] if tag.startswith("recipe/") else tag
    folder = os.path.join(base, *rel.split("/"))
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"step_{int(step):08d}{suffix}")


#: Seconds between two flushes of a writer (a flush waits for TensorBoard's writer thread: doing it
#: after every value cost more than writing the value); :func:`drain` flushes them all.
FLUSH_EVERY_S = 2.0
_flushed: dict[int, tuple[float, Any]] = {}


def _flush(writer: Any, force: bool = False) -> None:
    flush = getattr(writer, "flush", None)
    if not callable(flush):
        return
    now = time.monotonic()
    last = _flushed.get(id(writer))
    if force or last is None or now - last[0] >= FLUSH_EVERY_S:
        flush()
        _flushed[id(writer)] = (now, writer)
    else:
        _flushed[id(writer)] = (last[0], writer)


def _flush_all() -> None:
    for key, (_, writer) in list(_flushed.items()):
        with contextlib.suppress(Exception):  # a writer closed by its logger already
            _flush(writer, force=True)
        _flushed.pop(key, None)


# ---------------------------------------------------------------------- scalars, text, images
def log_scalars(trainer: Trainer, values: Mapping[str, float], step: int) -> None:
    """Write scalars at an explicit step (rank zero)."""
    if not trainer.is_global_zero or not values:
        return
    writer = get_writer(trainer)
    clean = {tag: float(v) for tag, v in values.items()}
    if writer is not None:
        for tag, value in clean.items():
            writer.add_scalar(tag, value, global_step=int(step))
        _flush(writer)
        from lightning_recipe.dashboard import note_scalars

        note_scalars(writer, clean, int(step))  # the custom-scalars layout is built from the tags seen
        return
    if _writes_nothing(trainer):
        return
    path = os.path.join(_fallback_dir(trainer), "scalars.csv")
    new = not os.path.exists(path)
    with open(path, "a", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        if new:
            out.writerow(["tag", "step", "value"])
        for tag, value in clean.items():
            out.writerow([tag, int(step), value])


def log_text(trainer: Trainer, tag: str, text: str, step: int) -> None:
    """Write Markdown text (TensorBoard's Text tab) at an explicit step (rank zero)."""
    if not trainer.is_global_zero:
        return
    writer = get_writer(trainer)
    if writer is not None:
        writer.add_text(tag, text, global_step=int(step))
        _flush(writer)
        return
    if _writes_nothing(trainer):
        return
    with open(_file_for(trainer, tag, step, ".md"), "w", encoding="utf-8") as fh:
        fh.write(text)


def _write_png(path: str, image: np.ndarray) -> None:
    from matplotlib.image import imsave

    imsave(path, image)


def log_image(trainer: Trainer, tag: str, image: np.ndarray, step: int) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB image at an explicit step (rank zero)."""
    if not trainer.is_global_zero:
        return
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"log_image({tag!r}): expected an (H, W, 3) array, got shape {image.shape}.")
    writer = get_writer(trainer)
    if writer is not None:
        writer.add_image(tag, image, global_step=int(step), dataformats="HWC")
        _flush(writer)
        return
    if _writes_nothing(trainer):
        return
    _write_png(_file_for(trainer, tag, step, ".png"), image)


def log_histogram(trainer: Trainer, tag: str, values: Any, step: int, bins: int | str = 64) -> None:
    """Write a histogram of ``values`` (tensor or array) at an explicit step (rank zero)."""
    if not trainer.is_global_zero:
        return
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return
    writer = get_writer(trainer)
    if writer is not None:
        writer.add_histogram(
            tag, arr, global_step=int(step), bins=bins if isinstance(bins, str) else "tensorflow"
        )
        _flush(writer)
        return
    if _writes_nothing(trainer):
        return
    counts, edges = np.histogram(arr, bins=bins if isinstance(bins, int) else 64)
    with open(_file_for(trainer, tag, step, ".json"), "w", encoding="utf-8") as fh:
        json.dump({"counts": counts.tolist(), "edges": edges.tolist()}, fh)


# ---------------------------------------------------------------------- figures
class _Renderer:
    """One daemon thread rendering figures in submission order, behind a bounded queue."""

    def __init__(self, maxsize: int = 8) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lightning-recipe-render", daemon=True)
                self._thread.start()
        self._queue.put(job)  # blocks when full: never drops a step

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is not None:
                    job()
            except BaseException as err:  # reported by drain()
                self._errors.append(err)
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        self._queue.join()
        if self._errors:
            err = self._errors[0]
            self._errors.clear()
            warnings.warn(f"lightning_recipe: rendering a figure failed: {err!r}", stacklevel=2)


_renderer = _Renderer()
_async = {"enabled": True}


def set_async_rendering(enabled: bool) -> None:
    """Render figures on a background thread (default) or on the calling thread."""
    _async["enabled"] = bool(enabled)
    if not enabled:
        _renderer.drain()


def drain() -> None:
    """Wait until every submitted figure is rendered and written, and flush the writers."""
    _renderer.drain()
    _flush_all()


def log_figure(
    trainer: Trainer,
    tag: str,
    figure: Figure | Callable[[], Figure],
    step: int,
) -> None:
    """Render a figure to an image and write it at an explicit step (rank zero).

    Args:
        trainer: the trainer.
        tag: ``recipe/<step>/<name>``.
        figure: a ``Figure`` (rendered now), or a builder returning one, rendered on the background
            thread. A builder must only use data it owns (numpy copies), never live tensors.
        step: the global step to write it at.
    """
    if not trainer.is_global_zero:
        return
    from lightning_recipe.plots.style import figure_to_array

    writer = get_writer(trainer)
    if writer is None and _writes_nothing(trainer):
        return  # not even rendered
    target = None if writer is not None else _file_for(trainer, tag, step, ".png")

    def job() -> None:
        fig = figure() if callable(figure) else figure
        image = figure_to_array(fig)
        fig.clear()
        if writer is not None:
            writer.add_image(tag, image, global_step=int(step), dataformats="HWC")
            _flush(writer)
        else:
            assert target is not None
            _write_png(target, image)

    if callable(figure) and _async["enabled"]:
        from lightning_recipe.core.budget import charge_render, current_meter

        _renderer.submit(
            charge_render(current_meter(), job)
        )  # its CPU time is charged to the hook's callback
    else:
        job()


def _reset_renderer_after_fork() -> None:
    # A forked process (ddp_fork, ddp_notebook, dataloader workers) inherits the parent's queue with
    # the parent's thread registered as its consumer; that thread does not exist in the child.
    global _renderer
    _renderer = _Renderer()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_renderer_after_fork)
