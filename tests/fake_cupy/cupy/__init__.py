"""A FAKE CuPy: a test double for running xpnet's CuPy code path on a machine without a GPU.

It is not a GPU emulator. It keeps arrays in NumPy buffers and models the rules that code written for
CUDA graphs must obey, so that breaking one fails a CPU test:
  * the host boundary: np.asarray(x) raises as in CuPy; float(x), x.get(), asnumpy ... count as
    device-to-host reads, and NumPy operands to CuPy functions or kernels raise TypeError;
  * stream capture: while a stream captures, device work is recorded and replayed by Graph.launch() on the
    same buffers; host reads, host-to-device copies, synchronisation, CuPy's cuBLAS calls (a @ b) and work
    on another stream raise (and are listed in VIOLATIONS, so swallowing the error does not hide it);
  * RawModule kernels: the CUDA C source is compiled for the host by g++ and each launch is checked
    against the kernel's C signature as CuPy marshals arguments (PROBLEMS lists mismatches).
tests/fake_cupy/fake_cublas.py adds a cuBLAS that checks the handle/stream/workspace sequence.

What it does NOT model:
  * asynchrony: every operation finishes before the call returns, so a missing synchronisation, a race
    between streams or threads of one kernel, or a host buffer reused before its copy ran goes unnoticed;
  * memory reuse: buffers are never recycled (a graph's temporaries stay alive through the tape), so a
    replay writing into memory that the pool has since handed to someone else cannot be caught;
  * real GPU arithmetic: kernels run as host C++ (CUDA's fast-math intrinsics, warp scheduling and
    atomics' ordering differ), GEMMs are NumPy's, and results are checked against NumPy with tolerances;
  * lazy module loading and NVRTC: a RawModule is compiled when constructed, never lazily; the only
    related check is that a kernel is first fetched outside a capture;
  * NCCL across real processes: its allReduce sums mirror copies of this process's buffer (cupy/_nccl.py);
  * more than one device, 2-D/3-D launch grids, graph-in-graph launches, CuPy's memory pools and most of
    CuPy's API beyond what xpnet calls.

It must never be importable as `cupy` in the main pytest process (tests decide GPU skips by whether cupy
imports): tests/backends/test_cupy_on_fake.py runs it in subprocesses with tests/fake_cupy first on sys.path.
"""
from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _capture
from ._capture import CUDARuntimeError, Device, Graph, MemoryPool, Stream, current_stream
from ._capture import using_allocator
from ._ndarray import call as _call
from ._ndarray import has_host_array as _has_host_array
from ._ndarray import ndarray
from ._ndarray import new as _new
from ._ndarray import unwrap as _unwrap  # not `unwrap`: NumPy has a function of that name

# Re-exported: the fake's bookkeeping that the harness reads, and CuPy's raw kernels.
from ._capture import PROBLEMS as PROBLEMS
from ._capture import STATS as STATS
from ._capture import VIOLATIONS as VIOLATIONS
from ._capture import CaptureError as CaptureError
from ._raw import RawKernel as RawKernel
from ._raw import RawModule as RawModule

__version__ = "13.9.9+fake"
IS_FAKE = True  # what the test harness checks before trusting any result

_self = sys.modules[__name__]
_exported: list[str] = []


def _wrap(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def f(*args: Any, **kwargs: Any) -> Any:
        return _call(fn, args, kwargs, name)
    f.__name__ = f.__qualname__ = name
    return f


# Every NumPy function becomes a device operation; types and constants are shared as they are.
_OWN = {"ndarray", "asarray", "array", "asanyarray", "ascontiguousarray", "asnumpy", "zeros", "ones", "empty",
        "full", "zeros_like", "ones_like", "empty_like", "full_like", "arange", "eye", "identity", "linspace",
        "copyto"}
_NOT_CUPY = {"testing", "lib", "ma", "polynomial", "ctypeslib", "char", "rec", "strings", "f2py", "typing",
             "exceptions", "dtypes", "version"}
for _name in dir(np):
    if _name.startswith("_") or _name in _OWN or _name in _NOT_CUPY:
        continue
    _value = getattr(np, _name)
    if isinstance(_value, types.ModuleType):
        continue
    setattr(_self, _name, _value if isinstance(_value, type) or not callable(_value) else _wrap(_value, _name))
    _exported.append(_name)
bool_ = np.bool_


def _creation(fn: Callable[..., Any], name: str, fills: bool = True) -> Callable[..., Any]:
    """zeros/ones/arange/...: a new buffer, filled by a kernel (recorded during capture); empty: not filled."""
    def f(*args: Any, **kwargs: Any) -> ndarray:
        kwargs.pop("device", None)
        if _has_host_array(args) or _has_host_array(kwargs):
            raise TypeError(f"Unsupported type numpy.ndarray in cupy.{name}")
        w = _new(fn(*_unwrap(args), **_unwrap(kwargs)))
        if fills and _capture.capturing():
            _capture.record(lambda: np.copyto(w._a, fn(*_unwrap(args), **_unwrap(kwargs))), name)
        return w
    f.__name__ = f.__qualname__ = name
    return f


for _name in ("zeros", "ones", "full", "arange", "eye", "identity", "linspace", "zeros_like", "ones_like",
              "full_like"):
    setattr(_self, _name, _creation(getattr(np, _name), _name))
for _name in ("empty", "empty_like"):
    setattr(_self, _name, _creation(getattr(np, _name), _name, fills=False))


def asarray(a: Any, dtype: Any = None, order: str | None = None, *, blocking: bool = False) -> ndarray:
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    _capture.host_to_device("asarray")
    return _new(np.array(a, dtype=dtype, order=order or "K"))


def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", subok: bool = False, ndmin: int = 0,
          *, blocking: bool = False) -> ndarray:
    if isinstance(obj, ndarray):
        if not copy and (dtype is None or np.dtype(dtype) == obj.dtype):
            return obj
        return _call(lambda a: np.array(a, dtype=dtype, order=order, ndmin=ndmin), (obj,), {}, "array")
    _capture.host_to_device("array")
    return _new(np.array(obj, dtype=dtype, order=order, ndmin=ndmin))


asanyarray = asarray


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    if isinstance(a, ndarray):
        return _call(lambda x: np.ascontiguousarray(x, dtype=dtype), (a,), {}, "ascontiguousarray")
    _capture.host_to_device("ascontiguousarray")
    return _new(np.ascontiguousarray(a, dtype=dtype))


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None, blocking: bool = True) -> np.ndarray:
    if isinstance(a, ndarray):
        _capture.host_read("asnumpy")
        return np.array(a._a, order=order)
    return np.asarray(a, order=order)


def copyto(dst: ndarray, src: Any, casting: str = "same_kind", where: Any = True) -> None:
    _capture.run_or_record(lambda: np.copyto(dst._a, _unwrap(src), casting=casting, where=_unwrap(where)),
                           [dst._a], "copyto")


def get_current_stream(device_id: int | None = None) -> Stream:
    return current_stream(device_id)


# -- submodules: cupy.cuda (runtime, device, stream, graph, memory), cupy.linalg, cupy.fft, cupy.random
def _module(name: str, **attrs: Any) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _properties(device: int) -> dict[str, Any]:
    return {"name": b"NVIDIA H100 80GB HBM3 (fake)", "totalGlobalMem": 80 << 30, "multiProcessorCount": 132,
            "major": 9, "minor": 0}


# Only what xpnet calls: anything else is an AttributeError, so new CuPy use shows here first.
runtime = _module("cupy.cuda.runtime", getDeviceCount=lambda: _capture.S.device_count,
                  getDevice=lambda: _capture.S.device, runtimeGetVersion=lambda: 12080,
                  driverGetVersion=lambda: 12080, getDeviceProperties=_properties, CUDARuntimeError=CUDARuntimeError)
cuda = _module("cupy.cuda", runtime=runtime, Device=Device, Stream=Stream, MemoryPool=MemoryPool,
               get_current_stream=get_current_stream, using_allocator=using_allocator)
cuda.device = _module("cupy.cuda.device", Device=Device)
cuda.graph = _module("cupy.cuda.graph", Graph=Graph)
cuda.stream = _module("cupy.cuda.stream", Stream=Stream, get_current_stream=get_current_stream)
cuda.memory = _module("cupy.cuda.memory", MemoryPool=MemoryPool)
from . import _nccl  # noqa: E402 - after cupy.cuda exists

cuda.nccl = _module("cupy.cuda.nccl", get_unique_id=_nccl.get_unique_id, NcclCommunicator=_nccl.NcclCommunicator,
                    NCCL_FLOAT32=_nccl.NCCL_FLOAT32, NCCL_FLOAT64=_nccl.NCCL_FLOAT64, NCCL_SUM=_nccl.NCCL_SUM)


def _numpy_submodule(name: str, npmod: types.ModuleType) -> types.ModuleType:
    m = _module(f"cupy.{name}")
    m.__all__ = [n for n in dir(npmod) if not n.startswith("_") and callable(getattr(npmod, n))
                 and not isinstance(getattr(npmod, n), type)]
    for n in m.__all__:
        setattr(m, n, _wrap(getattr(npmod, n), n))
    return m


linalg = _numpy_submodule("linalg", np.linalg)
fft = _numpy_submodule("fft", np.fft)
random = _module("cupy.random")  # xpnet draws dropout masks from its own Philox kernel, never cupy.random

__all__: list[str] = []  # what `from cupy import *` (array_api_compat.cupy does it) takes
__all__.extend(sorted(set(_exported) | _OWN | {"bool_", "cuda", "linalg", "fft", "RawModule", "RawKernel",
                                          "get_current_stream"}))
