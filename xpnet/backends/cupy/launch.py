"""Compiling and launching the raw CUDA kernels of cupy_kernels and cupy_philox: their shared CUDA prelude
(MATH), the NVRTC options, a per-device compile cache and the grid-stride launch.

Every kernel is compiled with --fmad=false: each operation then rounds like the reference's separate array
operations (no fused multiply-adds), so the kernels match the reference to the last bit or nearly.
Importing this module needs neither CuPy nor a GPU; CuPy is imported inside the functions.
"""
from __future__ import annotations

from typing import Any

import numpy as np

OPTIONS = ("-std=c++17", "--fmad=false")
BLOCK = 256
_SUFFIX = {"float32": "f32", "float64": "f64"}

MATH = r"""
// Overloads so one template body serves float and double.
__device__ __forceinline__ float xp_exp(float x) { return expf(x); }
__device__ __forceinline__ double xp_exp(double x) { return exp(x); }
__device__ __forceinline__ float xp_log(float x) { return logf(x); }
__device__ __forceinline__ double xp_log(double x) { return log(x); }
__device__ __forceinline__ float xp_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double xp_sqrt(double x) { return sqrt(x); }
// Grid-stride loop: correct for any grid size, so the launch may cap its grid.
#define XP_FOR(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                          i += (long long)blockDim.x * gridDim.x)
"""

# Keyed by the CUDA source text itself, so modules with their own CUDA_SOURCES never collide.
_modules: dict[tuple[str, int], Any] = {}
_kernels: dict[tuple[str, str, int], Any] = {}


def import_cupy() -> Any:
    import cupy

    return cupy


def kernel(code: str, name: str) -> Any:
    """The RawKernel `name` from the CUDA source `code` for the current device, compiled once."""
    cupy = import_cupy()
    dev = cupy.cuda.runtime.getDevice()  # a loaded module belongs to one device
    key = (code, name, dev)
    if key not in _kernels:
        if (code, dev) not in _modules:
            _modules[code, dev] = cupy.RawModule(code=code, options=OPTIONS)
        _kernels[key] = _modules[code, dev].get_function(name)
    return _kernels[key]


def launch(code: str, name: str, n: int, args: tuple[Any, ...]) -> None:
    """One launch of a grid-stride kernel over n items (none when n == 0)."""
    if n > 0:
        kernel(code, name)((min(-(-n // BLOCK), 1 << 20),), (BLOCK,), args)


def suffix(dtype: Any) -> str:
    """'f32' or 'f64', the entry points' suffix for dtype; TypeError for any other dtype."""
    name = np.dtype(dtype).name
    if name not in _SUFFIX:
        raise TypeError(f"xpnet's CuPy kernels support float32 and float64 arrays, got {name}")
    return _SUFFIX[name]
