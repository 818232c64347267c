"""The step body captured once per batch size as a device graph (a CUDA graph on CuPy) and replayed per batch.

A replay must find everything at the addresses it was recorded with, so nothing the step reads may be a
fresh host value: the epoch's order sits in a device index buffer, the step gathers its batch from it at a
device cursor that it advances itself, and the learning rate and update number are the DeviceState's
device scalars, refilled by the host before each step (fills: no transfer, no wait).

Each batch size runs eagerly the first time it is met (a real step, which also builds the optimizer's flat
buffers, compiles every kernel and creates the cuBLAS handle outside the capture), is captured the second
time, then replayed. On a backend without capture (`Backend.supports_capture` False) the same step runs
eagerly every time, which is how CPU tests check that this mode computes what the eager one does. If a
capture fails, one line says why and every later step runs the same body eagerly: slower, never a crash.
"""
from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from xpnet.backends import Backend
from xpnet.core.integers import default_int, default_int_name
from xpnet.distributed.shard import Part, part_of
from xpnet.training.state import DeviceState
from xpnet.training.step import Step


@dataclass
class _Graph:
    rows: int  # of the global batch; this process trains on `part` of them
    part: Part
    uses: int = 0
    replay: Callable[[], None] | None = None
    arange: Any = None  # the offsets of this process's rows within the batch
    bound: tuple[Any, ...] = ()  # the parameter and state arrays the replay writes into


@dataclass
class GraphBuffers:
    """The device arrays every replay reads and writes, kept across epochs with the graphs themselves."""

    # Of the namespace's default integer dtype (int64 on CuPy): only xp.take reads them, no kernel of ours.
    index: Any  # (n,): this epoch's order
    cursor: Any  # 0-d: the first row of the next batch within `index`
    state: DeviceState
    graphs: dict[int, _Graph] = field(default_factory=dict)
    capture_failed: str = ""  # why a capture failed, once one has: from then on every step runs eagerly


# Graphs live as long as the model they were captured for (fit and repeated train_epoch calls reuse them).
_cache: "weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], GraphBuffers]]" = weakref.WeakKeyDictionary()


def graph_buffers(step: Step, backend: Backend, x: Any, y: Any, batch_size: int, key: tuple[Any, ...]) -> GraphBuffers:
    """The model's buffers for this run, reused where the same objects train again (their graphs too)."""
    cached = _cache.get(step.model)
    if cached is not None and _same(cached[0], key):
        return cached[1]
    xp, dev = backend.xp, backend.device
    int_dtype = default_int(xp, dev)
    buf = GraphBuffers(index=xp.zeros((x.shape[0],), dtype=int_dtype, device=dev),
                       cursor=xp.zeros((), dtype=int_dtype, device=dev), state=step.state)
    _cache[step.model] = (key, buf)
    return buf


class GraphRunner:
    """The step body over fixed device buffers, recorded as a graph per batch size and replayed."""

    def __init__(self, step: Step, backend: Backend, x: Any, y: Any, batch_size: int, rank: int = 0,
                 size: int = 1) -> None:
        self.backend, self.x, self.y, self.batch_size, self.rank, self.size = backend, x, y, batch_size, rank, size
        key = (step.optimizer, step.loss, x, y, batch_size, step.state.stop, step.model.training, step.clip_norm,
               step.reducer, rank, size)
        self.buf = graph_buffers(step, backend, x, y, batch_size, key)
        # The state the graphs were recorded with is the one that must go on being read; it reports to
        # this run's history.
        self.buf.state.history = step.state.history
        self.step = Step(step.model, step.loss, step.optimizer, self.buf.state, step.clip_norm, step.reducer)
        self.state = self.buf.state

    def steps(self, epoch: int, order: Any, first_batch: int) -> Iterator[int]:
        n, size, buf = self.x.shape[0], self.batch_size, self.buf
        # Once per epoch: the order crosses to the device (one copy), the cursor is set.
        buf.index[...] = self.backend.asarray(np.arange(n) if order is None else np.asarray(order),
                                              default_int_name(self.backend.xp, self.backend.device))
        buf.cursor[...] = first_batch * size
        for start in range(first_batch * size, n, size):
            rows = min(size, n - start)
            self.step.begin()
            graph = buf.graphs.get(rows)
            if graph is None:
                graph = buf.graphs[rows] = _Graph(rows, part_of(rows, self.rank, self.size))
            self._run(graph)
            yield rows

    def _run(self, graph: _Graph) -> None:
        if graph.arange is None:
            xp, part = self.backend.xp, graph.part
            graph.arange = xp.arange(part.start, part.stop, dtype=default_int(xp, self.backend.device),
                                     device=self.backend.device)
        if graph.replay is not None and not _same(graph.bound, self._bound()):
            # Something rebound the weights or the optimizer state (a checkpoint loaded, model.to(...)):
            # the recorded graphs would go on updating the old arrays. Record afresh.
            self.buf.graphs.clear()
            graph.replay = None
            self.buf.graphs[graph.rows] = graph
        graph.uses += 1
        if graph.uses == 1 or self.buf.capture_failed or (graph.replay is None and not self._flat_ready()):
            self._body(graph)()  # eager: a real step that also prepares everything the capture needs
            return
        if graph.replay is None and not self._capture(graph):
            return  # the capture failed and the step ran eagerly instead
        graph.replay()

    def _capture(self, graph: _Graph) -> bool:
        try:
            graph.replay = self.backend.capture(self._body(graph))
        except Exception as exc:  # a driver, a library that synchronises, anything: train on, eagerly
            self.buf.capture_failed = f"{type(exc).__name__}: {_first_line(exc)}"
            print(f"xpnet: CUDA-graph capture failed ({self.buf.capture_failed}); training continues with the "
                  f"same step run eagerly (--no-graph / graph=False skips the attempt)", file=sys.stderr)
            self._body(graph)()
            return False
        graph.bound = self._bound()
        return True

    def _body(self, graph: _Graph) -> Callable[[], None]:
        xp, buf, rows, step = self.backend.xp, self.buf, graph.rows, self.step

        def body() -> None:
            idx = xp.take(buf.index, buf.cursor + graph.arange)
            xb, yb = xp.take(self.x, idx, axis=0), xp.take(self.y, idx, axis=0)
            buf.cursor[...] = buf.cursor + rows
            step(xb, yb, graph.part)

        return body

    def _bound(self) -> tuple[Any, ...]:
        opt = self.step.optimizer
        return tuple(p.value for p in opt.params) + tuple(v for st in opt.state for k, v in st.items() if k != "step")

    def _flat_ready(self) -> bool:
        """False while an optimizer that updates through the flat buffer has not built it yet."""
        opt = self.step.optimizer
        return not (opt.flat and opt.roles) or opt.uses_flat_buffer()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Objects by identity, held strongly: a recycled id() must never revive another run's graphs."""
    return len(a) == len(b) and all(x is y or (type(x) in (int, float, bool, str) and x == y)
                                    for x, y in zip(a, b))
