"""ONE training step: zero_grad -> forward -> loss -> backward -> (allreduce) -> (clip) -> optimizer.step.

Every mode runs this body: called per batch here (EagerRunner), or captured once per batch size and
replayed as a CUDA graph (captured.py). What differs between a CPU and a GPU is the step's state
(state.py), not the step: a feature of the step is one edit here and reaches every mode. Data-parallel
training is the same body with one allreduce between backward and the update (xpnet/distributed/).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from xpnet.backends import Backend
from xpnet.core.clip import clip_grad_norm
from xpnet.core.losses import Loss
from xpnet.core.module import Module
from xpnet.core.optim import Optimizer
from xpnet.distributed.reducer import GradientReducer
from xpnet.distributed.shard import Part, local_batches
from xpnet.training.diagnose import NonFiniteLoss
from xpnet.training.history import History
from xpnet.training.state import DeviceState, HostState, StepState
from xpnet.training.thread_tuning import tuner_for


@dataclass
class Step:
    """The step body over a model, loss and optimizer, with the state that watches its loss."""

    model: Module
    loss: Loss
    optimizer: Optimizer
    state: StepState
    clip_norm: float | None = None
    reducer: GradientReducer | None = None  # data-parallel: sums every process's gradients

    def begin(self) -> None:
        """Before each step, eager or replayed: the host's fills (rate, update number, stop request)."""
        self.state.begin()
        if self.reducer is not None:
            self.reducer.begin()

    def __call__(self, xb: Any, yb: Any, part: Part | None = None) -> Any:
        """Train on one batch (this process's `part` of a global batch); returns the (global) mean loss as a
        0-d device array. On a HostState a non-finite loss raises NonFiniteLoss before anything is updated;
        on a DeviceState it closes the update's gate."""
        opt, model = self.optimizer, self.model
        opt.zero_grad()
        value = self.loss.forward(model.forward(xb), yb)
        grad = self.loss.backward()
        if part is not None and part.weight != 1.0:  # the processes' gradients then sum to the batch mean's
            grad = grad * part.weight
        model.backward(grad, need_dx=False) if model.skips_dx else model.backward(grad)
        if self.reducer is not None:  # the one allreduce: gradients, loss and stop requests of every process
            value = self.reducer(opt.params, value, 1.0 if part is None else part.weight)
        gate = self.state.watch(value, xb.shape[0] if part is None else part.rows)
        if self.clip_norm is not None:
            clip_grad_norm(opt.params, self.clip_norm)
        if gate is None and self.state.lr is None:
            opt.step()  # a CPU step: the optimizer's own schedule and counts (a plain step() suffices)
        else:
            opt.step(gate=gate, lr=self.state.lr, step=self.state.count)
        return value


def train_step(model: Module, loss: Loss, optimizer: Optimizer, x: Any, y: Any, check_finite: bool = False,
               clip_norm: float | None = None) -> Any:
    """One forward, backward and update on a batch; returns the batch loss as a 0-d device array.
    With check_finite, a NaN/inf loss raises NonFiniteLoss before anything is updated."""
    state = HostState(optimizer, "stop", History(), read_loss=check_finite)
    return Step(model, loss, optimizer, state, clip_norm)(x, y)


def make_state(mode: str, backend: Backend, optimizer: Optimizer, on_nan: str, history: History) -> StepState:
    """'checked' reads every loss on the host; 'windowed' and 'graph' keep the books on the device."""
    if mode == "checked":
        return HostState(optimizer, on_nan, history)
    return DeviceState(backend, optimizer, on_nan, history)


class EagerRunner:
    """Runs the step body once per batch, gathering each batch (this process's part of it) from the epoch's order."""

    def __init__(self, step: Step, backend: Backend, x: Any, y: Any, batch_size: int, rank: int = 0,
                 size: int = 1) -> None:
        self.step, self.backend, self.x, self.y, self.batch_size = step, backend, x, y, batch_size
        self.state, self.rank, self.size = step.state, rank, size
        self.tuner = tuner_for(backend, size)  # None where the thread count is fixed or not ours to choose

    def steps(self, epoch: int, order: Any, first_batch: int) -> Iterator[int]:
        """Train on every batch from `first_batch` on; yields each step's (global) row count once it is done."""
        # One process alone is rank 0 of 1: its part of each batch is the whole batch, at weight 1.
        batches = local_batches(self.backend, self.x, self.y, self.batch_size, order, first_batch, self.rank,
                                self.size)
        tuner = self.tuner
        if tuner is not None:
            tuner.begin()
        for batch, (xb, yb, part) in enumerate(batches, first_batch + 1):
            self.step.begin()
            try:
                self.step(xb, yb, part)
            except NonFiniteLoss as exc:  # only a HostState raises it
                where = f"epoch {epoch}, batch {batch} (optimizer step {self.step.optimizer.steps + 1})"
                self.state.non_finite(exc.value, where, self.step.model, xb, self.step.reducer)
            if tuner is not None:
                tuner.end(part.rows)
            yield part.rows
            if tuner is not None:  # the time the caller spent (progress, checkpoints) is not the step's
                tuner.begin()
