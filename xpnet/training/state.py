"""Loss sums and the NaN guard kept on the device, read back once per progress window.

On a GPU, `float(loss)` or `bool(isfinite(loss))` waits for every queued kernel: doing it each step
serialises the host and the device and costs more than a small network's whole step. Here the step's
loss is checked on the device, its update is dropped there (the optimizer's `gate`) when the loss is not
finite, and the host reads the sums, the skip count and where the run died in one transfer per window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xpnet.backends import Backend
from xpnet.backends.ops import lookup


@dataclass
class WindowReading:
    loss_sum: float  # sum over the steps that counted of loss * rows
    seen: int  # rows of those steps
    skipped: int  # steps whose update was dropped
    died_at: int  # with on_nan='stop': the first non-finite step, counted from the guard's start; else 0
    steps: int  # steps watched since the guard's start


class DeviceGuard:
    """Per-step `watch(loss, rows)` returns the gate for the optimizer; `read()` syncs once."""

    def __init__(self, backend: Backend, on_nan: str, loss_sum: float = 0.0, seen: int = 0) -> None:
        xp, dev = backend.xp, backend.device
        self.xp, self.backend, self.stop = xp, backend, on_nan == "stop"
        # One float64 vector holds every sum, so `read` is a single device-to-host copy:
        # [loss_sum, seen, skipped, died_at, steps]
        self.sums = xp.asarray(np.array([loss_sum, seen, 0, 0, 0], dtype=np.float64), device=dev)
        self.alive = xp.ones((), dtype=xp.bool, device=dev)
        self._zero = xp.zeros((), dtype=xp.float64, device=dev)
        self._one = xp.ones((), dtype=xp.float64, device=dev)
        self._kernel = lookup(xp, "guard_watch")

    def reset(self, loss_sum: float = 0.0, seen: int = 0) -> None:
        """Start a new window series in the same arrays (a captured graph holds their addresses)."""
        self.sums[...] = self.xp.asarray(np.array([loss_sum, seen, 0, 0, 0], dtype=np.float64),
                                         device=self.backend.device)
        self.alive[...] = True

    def watch(self, value: Any, rows: int) -> Any:
        """Record a step's 0-d loss (device work only); returns the 0-d boolean gate for its update."""
        if self._kernel is not None:  # the same bookkeeping in one launch
            return self._kernel(self.sums, self.alive, value, rows, self.stop)
        xp = self.xp
        ok = xp.isfinite(value)
        gate = (self.alive & ok) if self.stop else ok
        counted = xp.astype(gate, xp.float64)
        loss = xp.where(gate, xp.astype(value, xp.float64), self._zero)  # where, not a product: NaN * 0 is NaN
        first_death = xp.astype(self.alive & ~ok, xp.float64) if self.stop else self._zero
        here = self.sums[4] + 1.0
        self.sums += xp.stack([loss * rows, counted * rows, 1.0 - counted, first_death * here, self._one])
        if self.stop:
            self.alive[...] = gate
        return gate

    def read(self) -> WindowReading:
        """Wait for the device and return the sums (the one host synchronisation per window)."""
        v = self.backend.to_numpy(self.sums)
        return WindowReading(float(v[0]), int(round(v[1])), int(round(v[2])), int(round(v[3])), int(round(v[4])))
