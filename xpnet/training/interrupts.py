"""Ctrl-C and SIGTERM become a clean stop after the current step, so a checkpoint can be written."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator


@contextmanager
def interrupt_requests() -> Iterator[Callable[[], bool]]:
    """While active, SIGINT (Ctrl-C) and SIGTERM set a flag instead of killing the step half-way; a second
    Ctrl-C interrupts at once. Yields a function telling whether a stop was asked for."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked.is_set
        return

    def handler(signum: int, frame: Any) -> None:
        if asked.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        asked.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked.is_set
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
