"""The one place that writes recipe evidence: TensorBoard, or files when there is no TensorBoard.

Every function takes the ``Trainer`` and an explicit ``step``; they write on global rank zero only
and do nothing elsewhere (callers build figures only on rank zero too). With a
``TensorBoardLogger`` attached, values go to its ``SummaryWriter``; without one, the same content
is written as files under ``<log_dir>/recipe/`` (scalars to ``scalars.csv``, images and figures
as PNG, text as Markdown, histograms as JSON) and a warning says so once. With no logger at all
(``Trainer(logger=False)``) nothing is written, as Lightning writes no logs then.

Figures are the slow part. :func:`log_figure` accepts a *builder* (a function returning a
``Figure``; a ``functools.partial`` of a module-level plot function with numpy arguments can be
pickled). By default (:func:`set_render_process` ``("auto")``) a picklable builder is drawn in a
separate rendering process when torch leaves a CPU core free, so matplotlib neither holds the
training process's GIL nor its core, and inline (at once, on the calling thread) otherwise; the
image written is the same. A rendering thread in the training process (``"thread"``) was measured
slower than inline on 2 cores: matplotlib holds the GIL, so every GIL-releasing torch op of the
training thread waits behind it, and a figure cost about three times its own CPU time. Figures for
the process or the thread go through one FIFO queue (nothing dropped or reordered); :func:`drain`
waits for it, and recipe callbacks call it at the end of fit.

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

import atexit
import contextlib
import csv
import json
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

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
    "set_render_process",
    "shutdown",
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


def _add_png(
    writer: Any, target: str | None, tag: str, png: bytes, shape: tuple[int, ...], step: int
) -> None:
    """Write an encoded PNG: to the ``SummaryWriter``'s event file as it is (no decoding, no
    re-encoding), or to ``target`` when there is no TensorBoard."""
    if writer is None:
        assert target is not None
        with open(target, "wb") as fh:
            fh.write(png)
        return
    from tensorboard.compat.proto.summary_pb2 import Summary

    height, width, channels = (int(n) for n in shape)
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png)
    # what SummaryWriter.add_image writes, without its float copy, resize and second encoding
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), int(step))
    _flush(writer)


def log_image(trainer: Trainer, tag: str, image: np.ndarray, step: int) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB image at an explicit step (rank zero)."""
    if not trainer.is_global_zero:
        return
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"log_image({tag!r}): expected an (H, W, 3) array, got shape {image.shape}.")
    writer = get_writer(trainer)
    if writer is not None and image.dtype == np.uint8:
        from lightning_recipe.plots.style import encode_png

        _add_png(writer, None, tag, encode_png(image), image.shape, step)
        return
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
class _RenderProcess:
    """The rendering process: a fresh interpreter (``lightning_recipe._render_worker``) that turns
    picklable figure builders into RGB arrays, off the training process's GIL and core.

    Started lazily by the render thread on rank zero (only rank zero renders); the thread waits up to
    :data:`_READY_WAIT_S` for it to say it is ready (it imports numpy and matplotlib only: about half
    a second), and renders itself when it cannot start or dies. It is kept for the next fit of the
    same interpreter and stopped by :func:`shutdown` or at exit (it also exits when its input closes,
    so it never outlives the training process). Never inherited: a forked child starts without one.
    """

    def __init__(self) -> None:
        self._proc: Any = None
        self._ready = False
        self._failed = False
        self._lock = threading.Lock()
        self.rendered = 0  # figures rendered there (tests read it)

    def _start(self) -> None:
        import subprocess
        import sys

        from lightning_recipe._render_worker import command

        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
        paths = [p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        try:
            self._proc = subprocess.Popen(
                command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True
            )
        except OSError:
            self._failed = True

    def _is_ready(self, wait: float = 0.0) -> bool:
        if self._ready:
            return True
        import select

        from lightning_recipe._render_worker import read_frame

        if self._proc.poll() is not None:
            self._failed = True
            return False
        if not select.select([self._proc.stdout], [], [], wait)[0]:
            return False  # still importing after `wait`: render this one on the thread
        try:
            read_frame(self._proc.stdout)
        except (EOFError, OSError):
            self._failed = True
            return False
        self._ready = True
        return True

    def render(self, builder: Callable[[], Figure]) -> tuple[bytes, tuple[int, ...], float] | None:
        """``(png, shape, cpu seconds)`` from the process, or ``None``: render it here instead."""
        import pickle

        from lightning_recipe._render_worker import read_frame, write_frame

        with self._lock:
            if self._failed:
                return None
            if self._proc is None:
                self._start()
                if self._failed:
                    return None
            if not self._is_ready(_READY_WAIT_S):
                return None
            try:
                payload = pickle.dumps(builder, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # a lambda or a closure: the thread draws it
                return None
            try:
                write_frame(self._proc.stdin, payload)
                reply = pickle.loads(read_frame(self._proc.stdout))
            except (EOFError, OSError, pickle.UnpicklingError):
                self._failed = True
                self._stop()
                return None
        if reply[0] == "ok":
            self.rendered += 1
            return reply[1], tuple(reply[2]), float(reply[3])
        if reply[0] == "unpicklable":
            return None
        raise RuntimeError(f"the rendering process failed: {reply[1]}")

    def _stop(self) -> None:
        proc, self._proc, self._ready = self._proc, None, False
        if proc is None:
            return
        with contextlib.suppress(Exception):
            proc.stdin.close()  # the worker exits at the end of its input
        try:
            proc.wait(timeout=5)
        except Exception:
            proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        with contextlib.suppress(Exception):
            proc.stdout.close()

    def stop(self) -> None:
        with self._lock:
            self._stop()
            self._failed = False  # the next fit may try again

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


#: How long the render thread waits for a starting rendering process before it draws a figure itself.
_READY_WAIT_S = 10.0


class _Renderer:
    """One daemon thread rendering figures in submission order, behind a bounded queue.

    Each job is ``(key, job)``: figures of one key (a writer and a tag) are written in the order they
    were submitted (TensorBoard lists a tag's images in the order written). :meth:`drain` draws queued figures on the calling thread too, beside the
    render thread: at the end of fit the training process has nothing else to do, so the last
    figures are drawn on two cores (here and in the rendering process) instead of one after another.
    """

    def __init__(self, maxsize: int = 64) -> None:
        self._queue: queue.Queue[tuple[Any, int, Callable[[bool], None]] | None] = queue.Queue(
            maxsize=maxsize
        )
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._turn = threading.Condition()
        self._tickets: dict[Any, int] = {}  # per key: the next ticket to hand out at submission
        self._serving: dict[Any, int] = {}  # per key: the ticket whose figure may be drawn now
        self.helped = 0  # figures drain() drew itself (tests read it)

    def submit(self, key: Any, job: Callable[[bool], None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lightning-recipe-render", daemon=True)
                self._thread.start()
        with self._turn:
            ticket = self._tickets.get(key, 0)
            self._tickets[key] = ticket + 1
        self._queue.put((key, ticket, job))  # blocks when full: never drops a step

    def _do(self, item: tuple[Any, int, Callable[[bool], None]] | None, here: bool) -> None:
        try:
            if item is None:
                return
            key, ticket, job = item
            with self._turn:  # the figures of one tag in the order they were submitted
                while self._serving.get(key, 0) != ticket:
                    self._turn.wait()
            try:
                job(here)
            except BaseException as err:  # reported by drain()
                self._errors.append(err)
            finally:
                with self._turn:
                    self._serving[key] = ticket + 1
                    self._turn.notify_all()
        finally:
            self._queue.task_done()

    def wait_for(self, key: Any) -> None:
        """Wait until every figure submitted under ``key`` is written (not those of other keys)."""
        with self._turn:
            while self._serving.get(key, 0) < self._tickets.get(key, 0):
                self._turn.wait()

    def _run(self) -> None:
        while True:
            self._do(self._queue.get(), here=False)

    def drain(self, help_out: bool = True) -> None:
        """Wait until every submitted figure is written; ``help_out``: draw queued ones here meanwhile."""
        while help_out:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._do(item, here=True)
            self.helped += 1
        self._queue.join()
        if self._errors:
            err = self._errors[0]
            self._errors.clear()
            warnings.warn(f"lightning_recipe: rendering a figure failed: {err!r}", stacklevel=2)


RenderMode = Literal["auto", "inline", "process", "thread"]

_renderer = _Renderer()
_process = _RenderProcess()
_mode: dict[str, RenderMode] = {"mode": "auto"}


def set_async_rendering(enabled: bool) -> None:
    """Render figures on the background thread (``set_render_process("thread")``) or on the calling
    thread (``set_render_process("inline")``); the default is ``"auto"``."""
    set_render_process("thread" if enabled else "inline")


def set_render_process(mode: RenderMode) -> None:
    """Where figures are drawn: ``"auto"`` (default: the process when torch leaves a CPU core free,
    ``torch.get_num_threads() < os.cpu_count()``, else inline), ``"inline"`` (at once, on the thread
    that logs them), ``"process"`` (a rendering process, see :class:`_RenderProcess`: it takes
    matplotlib off the training process's GIL and core; it starts in about half a second on another
    core and is kept for the next fit) or ``"thread"`` (a render thread of the training process: slower than inline, kept
    for comparison). The ``LIGHTNING_RECIPE_RENDER`` environment variable sets the same.

    Example:
        >>> set_render_process("thread"); set_render_process("inline")
    """
    if mode not in ("auto", "inline", "process", "thread"):
        raise ValueError(f"set_render_process(mode={mode!r}): pass 'inline', 'thread', 'process' or 'auto'.")
    if mode == "inline":
        _renderer.drain()  # what the thread holds is written before what is drawn inline
    _mode["mode"] = mode


def _render_mode() -> str:
    mode = os.environ.get("LIGHTNING_RECIPE_RENDER", _mode["mode"])
    if mode != "auto":
        return mode
    import sys

    torch = sys.modules.get("torch")
    free_core = torch is not None and torch.get_num_threads() < (os.cpu_count() or 1)
    # a process that could not start is not tried again by "auto" (the thread would draw instead)
    return "process" if free_core and not _process._failed else "inline"


def drain() -> None:
    """Wait until every submitted figure is rendered and written, and flush the writers."""
    _renderer.drain()
    _flush_all()


def shutdown() -> None:
    """:func:`drain`, then stop the rendering process (the next figure for it starts a new one).
    Recipe callbacks only drain at the end of fit: the process is kept for the next fit of the same
    interpreter (a start costs ~0.45 s of CPU) and stopped at exit."""
    drain()
    _process.stop()


def _stop_at_exit() -> None:
    if _process._lock.acquire(timeout=10):  # a figure still in flight: wait for it a little
        try:
            _process._stop()
        finally:
            _process._lock.release()


atexit.register(_stop_at_exit)


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
    from lightning_recipe.plots.style import encode_png, figure_to_array

    writer = get_writer(trainer)
    if writer is None and _writes_nothing(trainer):
        return  # not even rendered
    target = None if writer is not None else _file_for(trainer, tag, step, ".png")

    from lightning_recipe.core.budget import charge_render, current_meter

    owner = current_meter()
    mode = _render_mode()
    background = callable(figure) and mode in ("thread", "process")

    def job(here: bool = False) -> None:  # here: on the thread that drains, never in the process
        use_process = background and mode == "process" and not here
        remote = _process.render(figure) if use_process else None  # type: ignore[arg-type]
        if remote is not None:  # drawn and encoded there: the bytes go to the event file as they are
            png, shape, seconds = remote
            if owner is not None:  # the process's CPU time is charged as the thread's would be
                owner[0].add_render(owner[1], seconds)
        else:
            fig = figure() if callable(figure) else figure
            image = figure_to_array(fig)
            fig.clear()
            png, shape = encode_png(image), image.shape
        _add_png(writer, target, tag, png, shape, step)

    key = (id(writer), tag) if writer is not None else (os.path.dirname(str(target)), tag)
    if background:
        _renderer.submit(key, charge_render(owner, job))  # its CPU time is charged to the hook's callback
    else:
        # the tag's figures still queued (submitted before the mode changed, or a builder queued
        # while this one is a Figure) go first; other tags' figures do not hold it
        _renderer.wait_for(key)
        try:  # a figure that fails is a warning, as on the thread: the check's verdicts stand
            charge_render(
                owner, job, in_hook=True
            )()  # the hook's wall time holds it: noted as rendering only
        except Exception as err:
            warnings.warn(f"lightning_recipe: rendering a figure failed: {err!r}", stacklevel=2)


def _reset_renderer_after_fork() -> None:
    # A forked process (ddp_fork, ddp_notebook, dataloader workers) inherits the parent's queue with
    # the parent's thread registered as its consumer; that thread does not exist in the child.
    global _renderer, _process
    _renderer = _Renderer()
    _process = _RenderProcess()  # the parent's: its pipes are not this process's to use


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_renderer_after_fork)
