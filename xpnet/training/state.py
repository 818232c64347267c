"""The per-step state around the one step body: the loss sum, the non-finite bookkeeping, the learning rate
and the update number. Two kinds, one interface, so the step body never asks which it has:

- HostState (a CPU, where reading a value is free): the loss is read every step, so a NaN stops or skips
  that very step before anything is updated; lr and update number come from the optimizer itself.
- DeviceState (a GPU, where every read waits for the device): the sums and NaN flags live on the device, a
  step whose loss is not finite has its update dropped there (the optimizer's gate), lr and update number
  are device scalars the host refills before each step (a captured graph reads them at each replay), and
  the host reads everything in one transfer per window.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpnet.backends import Backend
from xpnet.backends import ops
from xpnet.core.arrays import namespace
from xpnet.core.module import Module
from xpnet.core.optim import Optimizer
from xpnet.distributed.reducer import GradientReducer
from xpnet.errors import DivergedError
from xpnet.training.diagnose import NonFiniteLoss, describe_nonfinite
from xpnet.training.history import History

RETRY_HINT = "lower the learning rate, or pass on_nan='skip' / --on-nan skip"


@dataclass
class Reading:
    loss_sum: float  # sum over the steps that counted of loss * rows
    seen: int  # rows of those steps
    skipped: int  # steps whose update was dropped
    died_at: int  # with on_nan='stop': the first non-finite step, counted from the last reset; else 0
    steps: int  # steps watched since the last reset


class HostState:
    """Every loss read on the host before the update: exact NaN handling, at one (free) read per step."""

    lr: Any = None  # None: the optimizer's own schedule and step count
    count: Any = None

    def __init__(self, optimizer: Optimizer, on_nan: str, history: History, read_loss: bool = True) -> None:
        self.optimizer, self.on_nan, self.history, self.read_loss = optimizer, on_nan, history, read_loss
        self.reset()

    def reset(self, loss_sum: float = 0.0, seen: int = 0) -> None:
        self.loss_sum: Any = loss_sum
        self.seen = seen

    def begin(self) -> None:
        """Before a step: nothing to refill, the optimizer counts its own updates."""

    def watch(self, value: Any, rows: int) -> None:
        """Raise NonFiniteLoss before anything is updated, else add the loss to the sum; no gate.
        Without read_loss (a one-off train_step) nothing is read or summed."""
        if not self.read_loss:
            return
        if not bool(namespace(value).isfinite(value)):
            raise NonFiniteLoss(float(value))
        self.loss_sum, self.seen = self.loss_sum + value * rows, self.seen + rows

    def non_finite(self, value: float, where: str, model: Module, xb: Any,
                   reducer: GradientReducer | None = None) -> None:
        """on_nan='skip': drop the step and say so; 'stop': raise naming the layer that went wrong (with a
        reducer: on which processes)."""
        if self.on_nan == "skip":
            self.optimizer.zero_grad()
            self.history.skipped_steps += 1
            print(f"xpnet: skipped {where}: loss is {value}", file=sys.stderr)
            return
        detail = describe_nonfinite(model, xb) if reducer is None else \
            reducer.diagnose(lambda: describe_nonfinite(model, xb))
        raise DivergedError(f"loss became {value} at {where}; {detail}; the weights were not updated with it - "
                            f"{RETRY_HINT}")

    def totals(self, epoch: int, first_batch: int) -> tuple[float, int]:
        return float(self.loss_sum), self.seen


class DeviceState:
    """The loss sum, NaN flags, lr and update number on the device; `totals` is the one read per window."""

    def __init__(self, backend: Backend, optimizer: Optimizer, on_nan: str, history: History) -> None:
        xp, dev = backend.xp, backend.device
        self.backend, self.xp, self.optimizer, self.history = backend, xp, optimizer, history
        self.stop = on_nan == "stop"
        dtype = optimizer.params[0].value.dtype
        # One float64 vector holds every sum, so a read is one device-to-host copy:
        # [loss_sum, seen, skipped, died_at, steps]
        self.sums = xp.zeros((5,), dtype=xp.float64, device=dev)
        self.alive = xp.ones((), dtype=xp.bool, device=dev)
        self.lr = xp.zeros((), dtype=dtype, device=dev)
        self.count = xp.zeros((), dtype=dtype, device=dev)
        self._zero = xp.zeros((), dtype=xp.float64, device=dev)
        self._one = xp.ones((), dtype=xp.float64, device=dev)
        self._kernel = ops.lookup(xp, ops.GUARD_WATCH)
        self.reset()

    def reset(self, loss_sum: float = 0.0, seen: int = 0) -> None:
        """Start a new series of windows in the same arrays (a captured graph holds their addresses)."""
        self.sums[...] = self.xp.asarray(np.array([loss_sum, seen, 0, 0, 0], dtype=np.float64),
                                         device=self.backend.device)
        self.alive[...] = True
        self._counted_from, self._skipped = self.optimizer.steps, 0

    def begin(self) -> None:
        """Before each step, eager or replayed: the rate and the update number (fills, no transfer), counted."""
        opt = self.optimizer
        self.lr[...] = opt.schedule(opt.lr, opt.steps + 1)
        self.count[...] = float(opt.steps + 1)
        opt.count_update(1)

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

    def read(self) -> Reading:
        """Wait for the device and return the sums (the one host synchronisation per window)."""
        v = self.backend.to_numpy(self.sums)
        return Reading(float(v[0]), int(round(v[1])), int(round(v[2])), int(round(v[3])), int(round(v[4])))

    def totals(self, epoch: int, first_batch: int) -> tuple[float, int]:
        """Read once; report newly skipped steps; raise DivergedError (weights as before the bad step)."""
        r = self.read()
        if r.died_at:
            # The device dropped the bad step and every one after it; the host counted them all.
            self.optimizer.count_update(self._counted_from + r.died_at - 1 - self.optimizer.steps)
            where = f"epoch {epoch}, batch {first_batch + r.died_at} (optimizer step {self.optimizer.steps + 1})"
            raise DivergedError(f"loss became non-finite at {where}; the weights were not updated with it or "
                                f"any later step - {RETRY_HINT}")
        if r.skipped > self._skipped:
            new, self._skipped = r.skipped - self._skipped, r.skipped
            self.history.skipped_steps += new
            print(f"xpnet: skipped {new} step(s) of epoch {epoch} (up to batch {first_batch + r.steps}) "
                  f"whose loss was not finite", file=sys.stderr)
        return r.loss_sum, r.seen


StepState = HostState | DeviceState
