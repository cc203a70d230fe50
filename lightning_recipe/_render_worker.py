"""The rendering process of :mod:`lightning_recipe.writer`: figure builders in, PNG images out.

Started by the writer as a fresh interpreter (:func:`command`: no fork, no copy of the training
process, no CUDA context). It reads length-prefixed pickles of
figure builders (a ``functools.partial`` of a module-level plot function with numpy arguments)
from stdin and answers each with ``("ok", png_bytes, (height, width, 3), cpu_seconds)`` (encoded
here: the training process only appends the bytes to its event file), ``("unpicklable", reason)`` (the
writer renders that one itself) or ``("error", message)``. It exits when stdin closes, so it never
outlives the training process. The packages' ``__init__`` modules (which import Lightning and torch)
are not run: it is ready once numpy and matplotlib are imported.

Example:
    >>> import io, pickle
    >>> frame = io.BytesIO()
    >>> write_frame(frame, pickle.dumps(("ok", 1)))
    >>> _ = frame.seek(0); pickle.loads(read_frame(frame))
    ('ok', 1)
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import time
from typing import IO, Any

_HEADER = struct.Struct("<Q")


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    """One message: its length (8 bytes), then its bytes."""
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> bytes:
    """The next message; ``EOFError`` when the other side closed the pipe."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("render pipe closed")
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("render pipe closed")
    return payload


def command(then: str = "from lightning_recipe._render_worker import main; main()") -> list[str]:
    """The worker's command line: ``lightning_recipe``, ``lightning_recipe.core``,
    ``lightning_recipe.core.checks`` and ``lightning_recipe.plots`` as bare packages (their
    ``__init__`` modules import Lightning and torch; a plot module imports what it needs, when a
    builder that uses it arrives), then :func:`main`: ready after numpy and matplotlib, in well under
    a second instead of ~3 s. ``then``: the code to run after that (tests import the plot modules)."""
    here = os.path.dirname(os.path.abspath(__file__))
    packages = {
        "lightning_recipe": here,
        "lightning_recipe.core": os.path.join(here, "core"),
        "lightning_recipe.core.checks": os.path.join(here, "core", "checks"),
        "lightning_recipe.plots": os.path.join(here, "plots"),
    }
    boot = (
        "import sys, types\n"
        f"for name, path in {packages!r}.items():\n"
        "    package = types.ModuleType(name); package.__path__ = [path]; sys.modules[name] = package\n"
        f"{then}"
    )
    return [sys.executable, "-c", boot]


def _render(builder: Any) -> tuple[bytes, tuple[int, ...], float]:
    from lightning_recipe.plots.style import encode_png, figure_to_array

    start = time.process_time()
    fig = builder()
    image = figure_to_array(fig)
    fig.clear()
    return encode_png(image), image.shape, time.process_time() - start


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")  # the protocol's own pipe; anything printed goes to stderr
    os.dup2(2, 1)
    inp = os.fdopen(os.dup(0), "rb")
    os.environ.setdefault("MPLBACKEND", "Agg")
    import lightning_recipe.plots.style  # noqa: F401  (the imports, before saying it is ready)

    write_frame(out, pickle.dumps(("ready", os.getpid())))
    while True:
        try:
            payload = read_frame(inp)
        except EOFError:
            return
        try:
            builder = pickle.loads(payload)
        except Exception as err:
            reply: tuple[Any, ...] = ("unpicklable", f"{type(err).__name__}: {err}")
        else:
            try:
                reply = ("ok", *_render(builder))
            except Exception as err:
                reply = ("error", f"{type(err).__name__}: {err}")
        write_frame(out, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    main()
