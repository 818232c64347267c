"""cupy.RawModule / RawKernel: the CUDA C source built for the host by g++ (host_cuda), every launch checked
against the kernel's C signature the way CuPy marshals arguments.

CuPy passes a Python int as a 64-bit integer, a Python float as a double and a NumPy scalar with its own
size, whatever the kernel declares: a mismatch compiles and runs on a GPU and reads garbage, so it is listed
in PROBLEMS here (and the kernel still gets the value converted, so one bug does not hide the next).
"""
from __future__ import annotations

import ctypes
from typing import Any

import host_cuda
import numpy as np

from . import _capture as cap
from ._ndarray import ndarray

def _check_dims(name: str, grid: Any, block: Any) -> None:
    for dims in (grid, block):
        if not isinstance(dims, tuple) or not 1 <= len(dims) <= 3 or not all(
                isinstance(v, (int, np.integer)) and v > 0 for v in dims):
            raise ValueError(f"{name}: bad grid/block {grid} {block} (tuples of 1-3 positive ints)")
    if len(grid) > 1 or len(block) > 1:
        raise NotImplementedError(f"{name}: the fake runs 1-D launches only, got grid {grid} block {block}")
    if block[0] > 1024:
        raise ValueError(f"{name}: block {block} has more than 1024 threads (CUDA_ERROR_INVALID_VALUE)")


def _check_scalar(kernel: str, value: Any, param: host_cuda.Param) -> None:
    """Flag a scalar that CuPy would pass with another size than the kernel's parameter."""
    want = param.dtype
    if isinstance(value, np.generic):
        got = value.dtype.name
    elif isinstance(value, bool):
        got = "bool"
    elif isinstance(value, int):
        got = "int64"
    elif isinstance(value, float):
        got = "float64"
    else:
        raise TypeError(f"{kernel}: unsupported scalar {value!r} for {param.name}")
    if got != want:
        cap.PROBLEMS.append(f"KERNEL {kernel}: {got} value for {param.type} {param.name} (CuPy passes it as {got})")


class RawKernel:
    """One kernel of a RawModule; calling it launches it on the current stream (or records it in a capture)."""

    def __init__(self, lib: ctypes.CDLL, params: list[host_cuda.Param], name: str) -> None:
        self.name, self.params, self.lib = name, params, lib

    def __call__(self, grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...], shared_mem: int = 0,
                 stream: Any = None, enable_cooperative_groups: bool = False) -> None:
        name = self.name
        _check_dims(name, grid, block)
        if not isinstance(args, tuple):
            raise TypeError(f"{name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            raise TypeError(f"{name}: {len(args)} arguments for the parameters {[p.name for p in self.params]}")
        written: list[np.ndarray] = []
        values: list[Any] = []  # device arrays (addresses read at each run, as a replay does), None, scalars
        for value, p in zip(args, self.params):
            if isinstance(value, np.ndarray):
                raise TypeError(f"{name}: a NumPy array for {p.name} (CuPy refuses host arrays)")
            if p.pointer:
                if isinstance(value, ndarray):
                    if not value.flags.c_contiguous:
                        cap.PROBLEMS.append(f"KERNEL {name}: a non-contiguous array for {p.name}")
                    if p.dtype is not None and np.dtype(p.dtype) != value.dtype and not _philox_words(name, value, p):
                        cap.PROBLEMS.append(f"KERNEL {name}: a {value.dtype} array for {p.type}* {p.name}")
                    if not p.const:
                        written.append(value._a)
                    values.append(value)
                elif isinstance(value, np.uint64) and int(value) == 0:
                    values.append(None)  # the kernels' "no pointer" (an optional gate)
                else:
                    raise TypeError(f"{name}: {type(value).__name__} {value!r} for the pointer {p.name}")
            else:
                if isinstance(value, ndarray):
                    raise TypeError(f"{name}: an array for the scalar {p.type} {p.name}")
                _check_scalar(name, value, p)
                values.append(value)

        def launch() -> None:
            host_cuda.run(self.lib, name, self.params, int(grid[0]), int(block[0]),
                          [v._a if isinstance(v, ndarray) else v for v in values])

        cap.STATS["launches"] += 1
        cap.run_or_record(launch, written, f"kernel {name}")


def _philox_words(name: str, value: ndarray, p: host_cuda.Param) -> bool:
    """xpnet's Philox kernels read their uint64 counter as two 32-bit words, on purpose."""
    return name.startswith("xpnet_philox") and value.dtype == np.uint64 and p.dtype == "uint32"


class RawModule:
    """cupy.RawModule(code=..., options=...), built by g++ when constructed (of NVRTC's options, only whether
    they turn fused multiply-adds off is checked: the host build never fuses)."""

    def __init__(self, code: str | None = None, path: str | None = None, options: tuple[str, ...] = (),
                 backend: str = "nvrtc", translate_cucomplex: bool = False, enable_cooperative_groups: bool = False,
                 name_expressions: Any = None, log_stream: Any = None, jitify: bool = False) -> None:
        if code is None:
            raise NotImplementedError("fake cupy: RawModule(path=...) (only code= is used by xpnet)")
        if cap.capturing():
            cap.PROBLEMS.append("RawModule built during capture (compiling and loading a module)")
        if not isinstance(options, tuple):
            cap.PROBLEMS.append(f"RawModule options not a tuple: {options!r}")  # CuPy requires a tuple
        if "--fmad=false" not in options:  # the host build never fuses (-ffp-contract=off); the GPU then would
            cap.PROBLEMS.append(f"RawModule compiled without --fmad=false: {options!r}")
        self.options = options
        self.lib, self.signatures = host_cuda.build(code)
        self._fetched: set[str] = set()

    def get_function(self, name: str) -> RawKernel:
        if name not in self.signatures:
            raise cap.CUDARuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found: {name}")
        if cap.capturing() and name not in self._fetched:
            # The first cuModuleGetFunction of a kernel may load it (lazy loading): keep it out of captures.
            cap.PROBLEMS.append(f"kernel {name} first fetched during capture")
        self._fetched.add(name)
        return RawKernel(self.lib, self.signatures[name], name)
