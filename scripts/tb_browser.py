"""TensorBoard in a real browser: start TensorBoard on a log dir, drive headless Chromium over the
DevTools protocol (standard library only), read what a person sees and take screenshots.

Used by ``tests/test_browser.py`` and ``scripts/screenshots.py``. TensorBoard's pages are a
single-page app whose plugins live in shadow DOM and iframes, so ``chromium --dump-dom`` sees none
of their text; :meth:`Browser.text` walks shadow roots and same-origin iframes instead.

    with TensorBoard("lightning_logs") as tb, Browser() as browser:
        browser.open(tb.url("#text"), wait_for="pass")
        print(browser.text()[:200])
        browser.screenshot("text.png")
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium executable on ``PATH`` (``$CHROMIUM`` first), or ``None``."""
    for name in (os.environ.get("CHROMIUM"), *CHROMIUM_NAMES):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def find_tensorboard() -> str:
    """The ``tensorboard`` beside this Python (a venv's), else the one on ``PATH``."""
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    return exe if os.path.exists(exe) else (shutil.which("tensorboard") or "tensorboard")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, data: bytes | None = None, timeout: float = 10.0) -> bytes:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()


def _stop(proc: subprocess.Popen | None) -> None:
    """Terminate a child process that is still running (kill it after 10 s)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class TensorBoard:
    """``tensorboard --logdir <logdir>`` on 127.0.0.1 and a free port, until the context exits."""

    def __init__(self, logdir: str, port: int | None = None) -> None:
        self.logdir = str(logdir)
        self.port = port or free_port()
        self._proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in __exit__)

    def url(self, fragment: str = "", query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{('?' + query) if query else ''}{fragment}"

    def get(self, path: str, post: Any = None) -> bytes:
        data = None if post is None else json.dumps(post).encode()
        return _get(f"http://127.0.0.1:{self.port}{path}", data)

    def json(self, path: str, post: Any = None) -> Any:
        return json.loads(self.get(path, post))

    def __enter__(self) -> TensorBoard:
        cmd = [find_tensorboard(), "--logdir", self.logdir, "--host", "127.0.0.1", "--port", str(self.port)]
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"tensorboard exited: {self._log.read().decode(errors='replace')[-2000:]}")
            try:
                if self.json("/data/runs"):
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise TimeoutError(f"tensorboard on {self.logdir!r} did not list a run within 90 s")

    def __exit__(self, *exc: Any) -> None:
        _stop(self._proc)
        self._log.close()


class _WebSocket:
    """The least of RFC 6455 a DevTools session needs: masked text frames out, frames in."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        assert url.startswith("ws://")
        host_port, _, path = url[5:].partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the websocket: {head[:200]!r}")
        self._buf = head.split(b"\r\n\r\n", 1)[1]

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if b0 & 0x0F == 0x9:  # ping: the protocol never needs an answer from us here
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


_DEEP_TEXT = r"""
(() => {
  const skip = new Set(["SCRIPT", "STYLE", "TEMPLATE", "NOSCRIPT"]);
  const out = [];
  const walk = (node) => {
    if (node.nodeType === 3) { out.push(node.textContent); return; }
    if (node.nodeType === 1 && skip.has(node.tagName)) return;
    if (node.shadowRoot) walk(node.shadowRoot);
    if (node.tagName === "IFRAME") { try { walk(node.contentDocument); } catch (e) {} }
    for (const child of node.childNodes) walk(child);
  };
  walk(document);
  return out.join(" ").replace(/\s+/g, " ");
})()
"""

_DEEP_IMAGES = r"""
(() => {
  const out = [];
  const walk = (node) => {
    if (node.nodeType !== 1 && node.nodeType !== 9 && node.nodeType !== 11) return;
    if (node.tagName === "IMG") out.push({src: node.currentSrc || node.src, w: node.naturalWidth, h: node.naturalHeight});
    if (node.shadowRoot) walk(node.shadowRoot);
    if (node.tagName === "IFRAME") { try { walk(node.contentDocument); } catch (e) {} }
    for (const child of node.childNodes) walk(child);
  };
  walk(document);
  return JSON.stringify(out);
})()
"""


class Browser:
    """Headless Chromium driven over the DevTools protocol, one page, until the context exits."""

    def __init__(self, width: int = 1400, height: int = 1000, chromium: str | None = None) -> None:
        self.chromium = chromium or find_chromium()
        if self.chromium is None:
            raise FileNotFoundError("no chromium on PATH: apt-get install -y chromium")
        self.width, self.height = width, height
        self._profile = tempfile.mkdtemp(prefix="tb-chromium-")
        self._proc: subprocess.Popen | None = None
        self._ws: _WebSocket | None = None
        self._id = 0

    def __enter__(self) -> Browser:
        port = free_port()
        args = [
            self.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={self._profile}", f"--remote-debugging-port={port}",
            f"--window-size={self.width},{self.height}", "about:blank",
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        pages: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not pages:
            try:
                pages = [
                    p
                    for p in json.loads(_get(f"http://127.0.0.1:{port}/json/list"))
                    if p.get("type") == "page"
                ]
            except OSError:
                time.sleep(0.3)
        if not pages:
            self.__exit__(None, None, None)
            raise TimeoutError("headless chromium did not open its DevTools port within 30 s")
        self._ws = _WebSocket(pages[0]["webSocketDebuggerUrl"])
        self.call("Page.enable")
        self.resize(self.width, self.height)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ws is not None:
            self._ws.close()
        _stop(self._proc)
        shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv())
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def open(self, url: str, wait_for: str | None = None, timeout: float = 30.0, settle: float = 1.5) -> str:
        """Load ``url``; wait until the page's text holds ``wait_for`` (and ``settle`` seconds more)."""
        self.call(
            "Page.navigate", url="about:blank"
        )  # a fresh app: a changed #fragment alone keeps the old tab
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            time.sleep(0.5)
            text = self.text()
            if wait_for is None or wait_for in text:
                break
        else:
            raise TimeoutError(
                f"{url}: {wait_for!r} did not appear within {timeout} s; the page says {text[:300]!r}"
            )
        time.sleep(settle)
        return self.text()

    def text(self) -> str:
        """Every text node of the page, through shadow roots and same-origin iframes."""
        return str(self.evaluate(_DEEP_TEXT) or "")

    def images(self) -> list[dict[str, Any]]:
        """Every ``<img>`` of the page: ``src`` and its decoded size (0 when it did not load)."""
        return json.loads(self.evaluate(_DEEP_IMAGES) or "[]")

    def screenshot(self, path: str) -> str:
        """A PNG of the viewport."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(data))
        return path
