"""How a training step runs and how its loss reaches the host: one loop (train._EpochRun), three ways.

- CheckedStepper: reads every batch's loss (free on a CPU), so a NaN stops or skips that very step.
- WindowedStepper: for a GPU, where each read waits for the device. The loss sum and the NaN check stay
  on the device (device_guard.py); a NaN step's update is dropped there; the host reads once per window.
- GraphStepper (graph.py): the windowed step over fixed buffers, captured once and replayed per batch.
"""
from __future__ import annotations

import sys
from typing import Any, Iterator

from xpnet.backends import Backend
from xpnet.core.arrays import namespace
from xpnet.core.losses import Loss
from xpnet.core.module import Module
from xpnet.core.optim import Optimizer
from xpnet.data.batches import iterate_batches
from xpnet.training.state import DeviceGuard, WindowReading
from xpnet.errors import DivergedError
from xpnet.training.interrupts import NonFiniteLoss, describe_nonfinite


def train_step(model: Module, loss: Loss, optimizer: Optimizer, x: Any, y: Any, check_finite: bool = False) -> Any:
    """One forward, backward and update on a batch; returns the batch loss as a 0-d device array.
    With check_finite, a NaN/inf loss raises NonFiniteLoss before anything is updated."""
    optimizer.zero_grad()
    value = loss.forward(model.forward(x), y)
    if check_finite and not bool(namespace(value).isfinite(value)):
        raise NonFiniteLoss(float(value))
    _backward(model, loss)
    optimizer.step()
    return value


def forward_backward(model: Module, loss: Loss, x: Any, y: Any) -> Any:
    """Forward, loss and backward on a batch (gradients accumulated, nothing updated); returns the loss."""
    value = loss.forward(model.forward(x), y)
    _backward(model, loss)
    return value


def _backward(model: Module, loss: Loss) -> None:
    grad = loss.backward()
    model.backward(grad, need_dx=False) if model.skips_dx else model.backward(grad)


class Stepper:
    """batches() yields each step's row count; step() trains on it; totals() reads (loss sum, rows)."""

    def __init__(self, backend: Backend, model: Module, loss: Loss, optimizer: Optimizer, x: Any, y: Any,
                 batch_size: int, on_nan: str, history: Any, loss_sum: float, seen: int) -> None:
        self.backend, self.model, self.loss, self.optimizer = backend, model, loss, optimizer
        self.x, self.y, self.batch_size, self.on_nan, self.history = x, y, batch_size, on_nan, history
        self._loss_sum, self._seen = loss_sum, seen

    def batches(self, order: Any, first_batch: int) -> Iterator[int]:
        for self._xb, self._yb in iterate_batches(self.backend, self.x, self.y, self.batch_size, order, first_batch):
            yield self._xb.shape[0]

    def step(self, epoch: int, batch: int) -> None:
        raise NotImplementedError

    def totals(self, epoch: int) -> tuple[float, int]:
        raise NotImplementedError


class CheckedStepper(Stepper):
    """Every loss read on the host before the update: exact NaN handling, at one sync per step."""

    def step(self, epoch: int, batch: int) -> None:
        xb, yb = self._xb, self._yb
        try:
            value = train_step(self.model, self.loss, self.optimizer, xb, yb, check_finite=True)
        except NonFiniteLoss as exc:
            self._non_finite(exc.value, epoch, batch, xb)
            return
        self._loss_sum, self._seen = self._loss_sum + value * xb.shape[0], self._seen + xb.shape[0]

    def _non_finite(self, value: float, epoch: int, batch: int, xb: Any) -> None:
        where = f"epoch {epoch}, batch {batch} (optimizer step {self.optimizer.steps + 1})"
        if self.on_nan == "skip":
            self.optimizer.zero_grad()
            self.history.skipped_steps += 1
            print(f"xpnet: skipped {where}: loss is {value}", file=sys.stderr)
            return
        cause = describe_nonfinite(self.model, xb)
        raise DivergedError(f"loss became {value} at {where}; {cause}; the weights were not updated "
                            f"with it - lower the learning rate, or pass on_nan='skip' / --on-nan skip")

    def totals(self, epoch: int) -> tuple[float, int]:
        return float(self._loss_sum), self._seen


class WindowedStepper(Stepper):
    """The loss sum and NaN check on the device; `totals` is the one read per window."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.guard = DeviceGuard(self.backend, self.on_nan, self._loss_sum, self._seen)
        self._first_batch = 0
        self._skipped = 0

    def batches(self, order: Any, first_batch: int) -> Iterator[int]:
        self._first_batch = first_batch
        return super().batches(order, first_batch)

    def step(self, epoch: int, batch: int) -> None:
        self.optimizer.zero_grad()
        value = forward_backward(self.model, self.loss, self._xb, self._yb)
        self.optimizer.step(gate=self.guard.watch(value, self._xb.shape[0]))

    def totals(self, epoch: int) -> tuple[float, int]:
        reading = self.guard.read()
        self.check(reading, epoch)
        return reading.loss_sum, reading.seen

    def check(self, r: WindowReading, epoch: int) -> None:
        """Report skipped steps; raise DivergedError (weights as before the bad step) on a stop."""
        if r.died_at:
            dropped = r.steps - r.died_at + 1  # the bad step and every one after it in the window
            self.optimizer.advance(-dropped)
            where = f"epoch {epoch}, batch {self._first_batch + r.died_at} (optimizer step {self.optimizer.steps + 1})"
            raise DivergedError(f"loss became non-finite at {where}; the weights were not updated with it or "
                                f"any later step - lower the learning rate, or pass on_nan='skip' / --on-nan skip")
        if r.skipped > self._skipped:
            new, self._skipped = r.skipped - self._skipped, r.skipped
            self.history.skipped_steps += new
            print(f"xpnet: skipped {new} step(s) of epoch {epoch} (up to batch {self._first_batch + r.steps}) "
                  f"whose loss was not finite", file=sys.stderr)


def make_stepper(kind: str, *args: Any) -> Stepper:
    """'checked', 'windowed' or 'graph' (graph.py imports lazily: it is only needed on request)."""
    if kind == "graph":
        from xpnet.training.graph import GraphStepper

        return GraphStepper(*args)
    return {"checked": CheckedStepper, "windowed": WindowedStepper}[kind](*args)


__all__ = ["CheckedStepper", "Stepper", "WindowedStepper", "forward_backward", "make_stepper"]
