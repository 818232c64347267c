"""Devices, streams, stream capture and graphs of the fake CuPy, plus the bookkeeping the tests read.

The capture model: while a stream captures, every device operation is appended to a tape (a thunk that
`Graph.launch` re-runs in order, against the same buffers, as a CUDA graph replays against the same
addresses). An operation also runs at capture time only when everything it writes was allocated during
this capture, so capturing changes no state that existed before it, as on a GPU, yet shape logic and
temporaries downstream still see arrays. Operations a real capture refuses raise `CaptureError` and are
also kept in VIOLATIONS, so a caller that swallows the exception still fails the test.
"""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self

STATS: dict[str, int] = {"launches": 0, "recorded": 0, "replays": 0, "gemm_captured": 0, "h2d": 0,
                         "host_reads": 0}
PROBLEMS: list[str] = []  # suspicious but not fatal (a wrong scalar type, an unpooled capture allocation)
VIOLATIONS: list[str] = []  # capture rules broken; each one also raised


class CUDARuntimeError(RuntimeError):
    """Stands for cupy_backends.cuda.api.runtime.CUDARuntimeError."""


class CaptureError(CUDARuntimeError):
    """An operation a capturing stream refuses (real CUDA: cudaErrorStreamCaptureUnsupported and friends)."""


def violation(what: str, exc_type: type[Exception] = CaptureError) -> Exception:
    """Record a broken capture rule and return the exception to raise for it."""
    VIOLATIONS.append(what)
    if exc_type is CaptureError:
        return CaptureError(f"cudaErrorStreamCaptureUnsupported: operation not permitted when stream is "
                            f"capturing ({what})")
    return exc_type(what)


class _State:
    """The process-wide device state (CUDA's is per process too)."""

    def __init__(self) -> None:
        self.device = 0
        self.device_count = 1
        self.streams: list[Stream] = []  # `with stream:` stack; empty means the legacy null stream
        self.capture: Stream | None = None  # the capturing stream
        self.tape: list[Callable[[], None]] = []
        self.fresh: dict[int, np.ndarray] = {}  # id(root buffer) -> buffer, for buffers allocated in capture
        self.allocator: Any = None  # set by using_allocator


S = _State()
_stream_ptrs = itertools.count(0x1000)


def capturing() -> bool:
    return S.capture is not None


def root(a: np.ndarray) -> np.ndarray:
    """The NumPy buffer that owns a's memory (a view's base chain, followed to its end)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def note_allocation(a: np.ndarray) -> None:
    """A new device buffer: during capture it is 'fresh', i.e. writable by ops run at capture time."""
    if S.capture is not None:
        r = root(a)
        S.fresh[id(r)] = r
        if S.allocator is None:  # xpnet captures under using_allocator(pool.malloc); CuPy would use the default
            PROBLEMS.append("allocation during capture outside using_allocator")


def record(thunk: Callable[[], None], what: str) -> None:
    """Append a device op to the capture's tape (nothing when no stream captures)."""
    if S.capture is None:
        return
    if current_stream() is not S.capture:
        # Real CUDA: work on another stream during a global/thread-local capture is an error, and in relaxed
        # mode it simply runs outside the graph; either way the graph would miss it.
        raise violation(f"{what} issued on {current_stream()} while {S.capture} captures")
    S.tape.append(thunk)
    STATS["recorded"] += 1


def run_or_record(thunk: Callable[[], None], targets: list[np.ndarray], what: str) -> None:
    """Run a device op that writes `targets`: now, or when capturing record it, and run it now as well only
    when every target was allocated during this capture."""
    if S.capture is None:
        thunk()
        return
    record(thunk, what)
    if all(id(root(t)) in S.fresh for t in targets):
        thunk()


def host_read(what: str) -> None:
    """A device-to-host copy (which waits for the device): refused while capturing."""
    STATS["host_reads"] += 1
    if S.capture is not None:
        raise violation(f"host read: {what}")


def host_to_device(what: str) -> None:
    """A host-to-device copy: refused while capturing (the graph would bake in a pageable host buffer)."""
    STATS["h2d"] += 1
    if S.capture is not None:
        raise violation(f"host-to-device copy: {what}")


class Device:
    """cupy.cuda.Device: a context manager that makes a device current (one fake device, id 0)."""

    compute_capability = "90"

    def __init__(self, device: Any = None) -> None:
        self.id = S.device if device is None else int(device)
        if not 0 <= self.id < S.device_count:
            raise CUDARuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {self.id}")
        self._prev: list[int] = []

    def __int__(self) -> int:
        return self.id

    __index__ = __int__

    def use(self) -> None:
        S.device = self.id

    def __enter__(self) -> Self:
        self._prev.append(S.device)
        S.device = self.id
        return self

    def __exit__(self, *exc: object) -> None:
        S.device = self._prev.pop()

    def synchronize(self) -> None:
        if S.capture is not None:
            raise violation("cudaDeviceSynchronize")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("cuda", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


class Graph:
    """cupy.cuda.graph.Graph: the tape of one capture, re-run in order by launch()."""

    def __init__(self, tape: list[Callable[[], None]]) -> None:
        self.tape = tape

    def launch(self, stream: Any = None) -> None:
        if S.capture is not None:  # legal as a child graph on a GPU; xpnet never does it, so not modelled
            raise violation("graph launch during capture (not modelled by the fake)")
        STATS["replays"] += 1
        for thunk in self.tape:
            thunk()


class Stream:
    """cupy.cuda.Stream with begin_capture()/end_capture(); `with stream:` makes it current."""

    null: Stream

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False,
                 priority: int | None = None) -> None:
        self.ptr = 0 if null else next(_stream_ptrs)
        self.non_blocking = non_blocking

    def __enter__(self) -> Self:
        S.streams.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        S.streams.pop()

    def use(self) -> Stream:
        S.streams.append(self)
        return self

    def synchronize(self) -> None:
        if S.capture is not None:
            raise violation(f"cudaStreamSynchronize({self.ptr})")

    def done(self) -> bool:
        return True

    def begin_capture(self, mode: Any = None) -> None:
        if self.ptr == 0:
            raise CUDARuntimeError("cudaErrorStreamCaptureUnsupported: the legacy null stream cannot capture")
        if S.capture is not None:
            raise CUDARuntimeError("cudaErrorIllegalState: a stream is already capturing")
        if current_stream() is not self:  # legal, but then the step's work goes to another stream
            PROBLEMS.append("begin_capture on a stream that is not the current one")
        S.capture, S.tape = self, []
        S.fresh.clear()

    def end_capture(self) -> Graph:
        if S.capture is not self:
            raise CUDARuntimeError("cudaErrorIllegalState: this stream is not capturing")
        graph = Graph(S.tape)
        S.capture, S.tape = None, []
        return graph

    def is_capturing(self) -> bool:
        return S.capture is self

    def __repr__(self) -> str:
        return f"<fake Stream {self.ptr:#x}>"


Stream.null = Stream(null=True)


def current_stream(device_id: int | None = None) -> Stream:
    return S.streams[-1] if S.streams else Stream.null


class MemoryPool:
    """cupy.cuda.MemoryPool, reduced to what xpnet calls; there is no real memory to pool."""

    def malloc(self, size: int) -> int:
        return size


@contextlib.contextmanager
def using_allocator(allocator: Any = None) -> Iterator[None]:
    prev, S.allocator = S.allocator, allocator
    try:
        yield
    finally:
        S.allocator = prev
