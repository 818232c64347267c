"""Guards around training: Ctrl-C/SIGTERM become a clean stop after the current step, and a NaN loss is
traced to the first layer whose output (or parameters) stopped being finite."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from xpnet.core.arrays import namespace
from xpnet.core.module import Module, Sequential


class NonFiniteLoss(ArithmeticError):
    """Raised inside a training step, before the update, when the batch loss is NaN or infinite."""

    def __init__(self, value: float) -> None:
        super().__init__(f"non-finite loss {value}")
        self.value = value


def _finite(a: Any) -> bool:
    xp = namespace(a)
    return bool(xp.all(xp.isfinite(a)))


def describe_nonfinite(model: Module, x: Any) -> str:
    """Which layer first holds or produces non-finite values on input x (a short phrase for a message)."""
    layers = model.layers if isinstance(model, Sequential) else [model]
    was_training = model.training
    model.eval()
    try:
        for i, layer in enumerate(layers):
            for name, p in layer.named_parameters():
                if not _finite(p.value):
                    return f"parameter {name!r} of layer {i} ({layer!r}) is not finite (an earlier update diverged)"
            x = layer.forward(x)
            if not _finite(x):
                return f"the output of layer {i} ({layer!r}) is the first to hold NaN or inf"
    finally:
        model.train(was_training)
    return "every layer's output is finite, so the loss itself overflowed"


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
