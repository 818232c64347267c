"""Graph mode: the whole training step over fixed device buffers, captured once and replayed per batch.

A replay must find everything at the addresses it was recorded with, so nothing the step reads may be a
fresh host value: the epoch's shuffle order sits in a device index buffer, the step gathers its batch from
it at a device cursor that it advances itself, and the learning rate and update number are device
scalars the host refills before each replay (fill kernels: no transfer, no wait).
The loss sum and NaN check are the windowed stepper's device guard, so nothing is read back per step.

Each batch size is run eagerly the first time it is met (a real step, which also builds the optimizer's
flat buffers and compiles every kernel outside the capture), captured the second time, then replayed.
An epoch with a partial last batch therefore holds two graphs. On a backend without capture
(`Backend.supports_capture` False: NumPy, torch, strict) the same step runs eagerly every time, which is
how CPU tests check that graph mode computes what eager mode does. If a capture fails, one line says why
and every later step of that model runs the same body eagerly: slower, never a crash.
"""
from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from xpnet.training.step import WindowedStepper, forward_backward


@dataclass
class _Graph:
    rows: int
    uses: int = 0
    replay: Callable[[], None] | None = None
    arange: Any = None
    bound: tuple[Any, ...] = ()  # the parameter and state arrays the replay writes into


@dataclass
class GraphBuffers:
    """The device state every replay reads and writes; kept across epochs with the graphs themselves."""

    index: Any  # (n,) int64: this epoch's order
    cursor: Any  # 0-d int64: the first row of the next batch within `index`
    lr: Any  # 0-d, the model's dtype: the rate for the next update (refilled by the host per step)
    count: Any  # 0-d, the model's dtype: the next update's number (Adam's bias correction), refilled too
    graphs: dict[int, _Graph] = field(default_factory=dict)
    guard: Any = None
    capture_failed: str = ""  # why capture failed, once it has: from then on the step runs eagerly


# Graphs live as long as the model they were captured for (fit and repeated train_epoch calls reuse them).
_cache: "weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], GraphBuffers]]" = weakref.WeakKeyDictionary()


class GraphStepper(WindowedStepper):
    """The windowed step with its inputs gathered on the device, recorded as a graph per batch size."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        b, xp = self.backend, self.backend.xp
        # Objects by identity, held strongly: a recycled id() must never revive another run's graphs.
        key = (self.optimizer, self.loss, self.x, self.y, self.batch_size, self.on_nan, self.model.training)
        cached = _cache.get(self.model)
        if cached is not None and _same(cached[0][:4], key[:4]) and cached[0][4:] == key[4:]:
            self.buf = cached[1]
            self.guard = self.buf.guard
            self.guard.reset(self._loss_sum, self._seen)  # same arrays: the graphs hold their addresses
        else:
            dtype = self.optimizer.params[0].value.dtype
            self.buf = GraphBuffers(index=xp.zeros((self.x.shape[0],), dtype=xp.int64, device=b.device),
                                    cursor=xp.zeros((), dtype=xp.int64, device=b.device),
                                    lr=xp.zeros((), dtype=dtype, device=b.device),
                                    count=xp.zeros((), dtype=dtype, device=b.device), guard=self.guard)
            _cache[self.model] = (key, self.buf)

    def batches(self, order: Any, first_batch: int) -> Iterator[int]:
        n, size, buf = self.x.shape[0], self.batch_size, self.buf
        self._first_batch = first_batch
        # Once per epoch: the order crosses to the device (one copy), the cursor and counter are set.
        host_order = np.arange(n) if order is None else np.asarray(order)
        buf.index[...] = self.backend.asarray(host_order, "int64")
        buf.cursor[...] = first_batch * size
        for start in range(first_batch * size, n, size):
            yield min(size, n - start)

    def step(self, epoch: int, batch: int) -> None:
        rows = min(self.batch_size, self.x.shape[0] - (batch - 1) * self.batch_size)
        graph = self.buf.graphs.setdefault(rows, _Graph(rows))
        if graph.arange is None:
            graph.arange = self.backend.xp.arange(rows, dtype=self.backend.xp.int64, device=self.backend.device)
        opt = self.optimizer
        self.buf.lr[...] = opt.schedule(opt.lr, opt.steps + 1)  # the host knows the schedule: a fill, no copy
        self.buf.count[...] = float(_next_update(opt))
        if graph.replay is not None and not _same(graph.bound, self._bound()):
            # Something rebound the weights or the optimizer state (a checkpoint loaded, model.to(...)):
            # the recorded graphs would go on updating the old arrays. Record afresh.
            self.buf.graphs.clear()
            graph = self.buf.graphs.setdefault(rows, _Graph(rows, arange=graph.arange))
        graph.uses += 1
        if graph.uses == 1 or self.buf.capture_failed or (graph.replay is None and not self._flat_ready()):
            # Eager: a real step that also builds the optimizer's flat buffers (whose first gather must run,
            # not be recorded) and compiles every kernel and the cuBLAS handle outside the capture. After a
            # failed capture every step runs this way: the same body, the same device state.
            self._body(graph)()
            return
        if graph.replay is None:
            counts = _counts(opt)
            try:
                graph.replay = self.backend.capture(self._body(graph))
            except Exception as exc:  # a driver, a library that synchronises, anything: train on, eagerly
                _restore(opt, counts)  # the recorded step never ran; the host counted what it reached
                self.buf.capture_failed = f"{type(exc).__name__}: {_first_line(exc)}"
                print(f"xpnet: CUDA-graph capture failed ({self.buf.capture_failed}); training continues with "
                      f"the same step run eagerly (--no-graph / graph=False skips the attempt)", file=sys.stderr)
                self._body(graph)()
                return
            graph.bound = self._bound()
            if self.backend.supports_capture:
                _restore(opt, counts)  # capturing ran the step's Python once (counting a step) but updated nothing
        if self.backend.supports_capture:
            graph.replay()
            opt.advance(1)  # the replay updated the weights; the host counts it
        else:
            graph.replay()  # eager stand-in: the step's Python ran and counted itself

    def _bound(self) -> tuple[Any, ...]:
        opt = self.optimizer
        return tuple(p.value for p in opt.params) + tuple(v for st in opt.state for k, v in st.items() if k != "step")

    def _flat_ready(self) -> bool:
        """False while an optimizer that updates through the flat buffer has not built it yet."""
        opt = self.optimizer
        return not (opt.flat and opt.roles) or opt.uses_flat_buffer()

    def _body(self, graph: _Graph) -> Callable[[], None]:
        xp, buf, rows = self.backend.xp, self.buf, graph.rows

        def body() -> None:
            idx = xp.take(buf.index, buf.cursor + graph.arange)
            xb, yb = xp.take(self.x, idx, axis=0), xp.take(self.y, idx, axis=0)
            buf.cursor[...] = buf.cursor + rows
            self.optimizer.zero_grad()
            value = forward_backward(self.model, self.loss, xb, yb)
            self.optimizer.step(gate=self.guard.watch(value, rows), lr=buf.lr, step=buf.count)

        return body


def _next_update(opt: Any) -> int:
    """The update number the next step gives every parameter (they move together on the flat path)."""
    return max((st.get("step", 0) for st in opt.state), default=0) + 1


def _counts(opt: Any) -> tuple[int, list[Any]]:
    """The optimizer's host-side step counts, to put back after a capture (which runs no update)."""
    return opt.steps, [st.get("step") for st in opt.state]


def _restore(opt: Any, counts: tuple[int, list[Any]]) -> None:
    opt.steps = counts[0]
    for st, step in zip(opt.state, counts[1]):
        if step is None:
            st.pop("step", None)
        else:
            st["step"] = step


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))
