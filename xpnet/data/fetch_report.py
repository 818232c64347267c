"""What a first MNIST fetch tells the user on stderr while it runs: each source it tries, each one that failed and
why, which one served the files, and progress in bytes: a bar on a terminal, a plain line per finished step
elsewhere (a log collects every redraw of a bar)."""
from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
import time
import urllib.error
from typing import Any, Iterator

from xpnet.errors import DataError

TICK_S = 0.5  # how often the bar of a step whose size is unknown (pip) redraws its clock


def human_size(n: int) -> str:
    """A size for people: '9.9 MB', '28.9 kB'."""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def reason(exc: BaseException, timeout_s: float) -> str:
    """Why a download failed, in a few words: 'timed out after 30 s', 'HTTP 404 Not Found', 'DNS lookup
    failed (...)', 'connection refused', 'TLS: ...', or a check the file failed."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout_s:g} s"
    if isinstance(cause, socket.gaierror):
        return f"DNS lookup failed ({cause.strerror or cause})"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ConnectionError):
        return f"connection failed ({cause.strerror or type(cause).__name__})"
    if isinstance(cause, ssl.SSLError):
        return f"TLS: {cause.reason or cause}"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    text = " ".join(str(cause).split())
    if isinstance(exc, DataError):  # its message starts with the URL, which the line already names
        return text.split(": ", 1)[-1]
    return text or type(cause).__name__


class FetchReport:
    """Lines on `stream` (stderr), prefixed 'xpnet: MNIST: '; bars only where `bar` and the stream is a
    terminal. A silent report (enabled=False) prints nothing: the library default."""

    def __init__(self, enabled: bool, bar: bool = True, stream: Any = None) -> None:
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.bars = enabled and bar and callable(isatty) and bool(isatty())

    def say(self, text: str) -> None:
        if self.enabled:
            print(f"xpnet: MNIST: {text}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def transfer(self, name: str, total: int | None) -> Iterator[Any]:
        """A byte counter for one file: `update(n)` after each chunk. A bar on a terminal; elsewhere the caller
        says a line when the file is done (it knows whether it passed its checks)."""
        if not self.bars:
            yield _NoBar()
            return
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"xpnet: MNIST: {name}", file=self.stream,
                   leave=False, dynamic_ncols=True)
        try:
            yield bar
        finally:
            bar.close()

    @contextlib.contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        """A step whose progress cannot be seen from here (pip downloading): on a terminal a clock that ticks
        until it ends, so a long wait does not look like a hang."""
        if not self.bars:
            yield
            return
        from tqdm import tqdm

        bar = tqdm(desc=f"xpnet: MNIST: {what}", bar_format="{desc}: {elapsed}", file=self.stream, leave=False)
        done = threading.Event()

        def tick() -> None:
            while not done.wait(TICK_S):
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
            bar.close()


class _NoBar:
    def update(self, n: int) -> None:
        """Nothing to draw."""


def elapsed(since: float) -> str:
    return f"{time.perf_counter() - since:.1f} s"
