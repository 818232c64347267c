"""The one collective of a data-parallel step: gradients, loss and stop requests summed in one buffer.

After backward, each process writes into one flat buffer [its gradients..., its loss, its stop request]
(gradients and loss already weighted by its share of the global batch: shard.py) and one allreduce sums the
buffer across processes. Every process then holds:
  - the gradient of the global batch's mean loss: its parameters' `grad` become views of the buffer, so
    gradient clipping and the update see the sum, never a process's own part;
  - the global batch's mean loss, which is not finite on every process as soon as one process's loss is not:
    the NaN guard then stops or skips that step everywhere at once, with no collective of its own;
  - the number of processes that had been asked to stop (Ctrl-C, SIGTERM) before the step, so all of them
    stop after the same step even when the signal reached them at different times.
"""
from __future__ import annotations

from itertools import accumulate
from typing import Any, Callable, Sequence

from xpnet.backends.ops import CONCAT_INTO, lookup
from xpnet.core.arrays import namespace
from xpnet.core.module import Parameter
from xpnet.distributed.communicator import Communicator


class GradientReducer:
    """The flat buffer over `params` and the allreduce of it; `read_every` steps between host reads of the
    stop count (1 on a CPU; more where a read waits for the device)."""

    def __init__(self, communicator: Communicator, params: Sequence[Parameter], read_every: int = 1) -> None:
        values = [p.value for p in params]
        xp = self.xp = namespace(*values)
        self.communicator, self.read_every = communicator, read_every
        offsets = list(accumulate((int(v.size) for v in values), initial=0))
        n = offsets[-1]
        self.buffer = xp.zeros((n + 2,), dtype=values[0].dtype, device=values[0].device)
        self.grads = [xp.reshape(self.buffer[a:b], v.shape) for a, b, v in zip(offsets, offsets[1:], values)]
        self.flat = self.buffer[:n]
        self.loss = xp.reshape(self.buffer[n:n + 1], ())
        self._stop = self.buffer[n + 1:n + 2]
        self._zeros = [None] * len(values)
        self._concat = lookup(xp, CONCAT_INTO)
        self.requested: Callable[[], bool] = lambda: False  # this process's own stop request (see listen)
        self.local: Any = None
        self.steps, self._read_at, self._stopping = 0, -1, False

    def listen(self, requested: Callable[[], bool]) -> None:
        """Take a new run's stop request, forgetting a stop an earlier run agreed on: the reducer outlives
        runs (it is cached per optimizer), and a remembered stop would end the next one after its first step."""
        self.requested, self._stopping = requested, False

    def begin(self) -> None:
        """Before each step, outside any capture: this process's stop request into its slot (a fill)."""
        self._stop[...] = 1.0 if self.requested() else 0.0
        self.steps += 1

    def __call__(self, params: Sequence[Parameter], value: Any, weight: float) -> Any:
        """Sum every process's gradients (already weighted) and `value * weight`; returns the global mean loss
        as a 0-d view of the buffer. A parameter without a gradient here keeps none (it adds zeros)."""
        xp = self.xp
        grads = [p.grad if p.grad is not None else self._zero(i, p) for i, p in enumerate(params)]
        if self._concat is not None:
            self._concat(grads, self.flat)
        else:
            self.flat[...] = xp.concat([xp.reshape(g, (-1,)) for g in grads])
        self.local = value  # this process's own loss, for the message should the sum not be finite
        self.loss[...] = value * weight
        self.communicator.allreduce(self.buffer)
        for p, g in zip(params, self.grads):
            if p.grad is not None:
                p.grad = g
        return self.loss

    def diagnose(self, describe: Callable[[], str]) -> str:
        """Which processes' own losses were not finite, and why (describe(): this process's reason). A
        collective: every process calls it, after the same step, whose summed loss was not finite."""
        mine = None if bool(self.xp.isfinite(self.local)) else describe()
        found = [f"process {r}: {d}" for r, d in enumerate(self.communicator.allgather(mine)) if d is not None]
        return "; ".join(found) or "each process's own loss was finite, and their sum overflowed"

    def stop_agreed(self) -> bool:
        """True once any process had asked to stop before the last step. Read from the buffer every
        `read_every` steps (all processes read at the same steps, so they decide alike) and remembered."""
        if self.steps != self._read_at and self.steps % self.read_every == 0:
            self._read_at = self.steps
            self._stopping = float(self._stop[0]) > 0.0
        return self._stopping

    def _zero(self, i: int, p: Parameter) -> Any:
        if self._zeros[i] is None:
            self._zeros[i] = self.xp.zeros_like(p.value)
        return self._zeros[i]
