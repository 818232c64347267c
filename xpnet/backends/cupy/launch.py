"""Compiling and launching xpnet's raw CUDA kernels: reading their .cu sources beside this file, the NVRTC
options, one per-device compile cache, the dtype suffix of the entry points, and the grid-stride launch.

Every kernel is compiled with --fmad=false: each operation then rounds like the reference's separate array
operations (no fused multiply-adds), so the kernels match the reference to the last bit or nearly.
Importing this module needs neither CuPy nor a GPU; CuPy is imported inside the functions.
"""
from __future__ import annotations

import re
from importlib import resources
from typing import Any

import numpy as np

NAMESPACE = "array_api_compat.cupy"  # array_api_compat.cupy.__name__: what ops.lookup keys CuPy arrays by
OPTIONS = ("-std=c++17", "--fmad=false")
BLOCK = 256  # threads per block: the kernels are memory-bound, any multiple of 32 from 128 up does
MAX_BLOCKS = 1 << 20  # the grid cap: grid-stride loops cover the rest
MAX_THREADS = BLOCK * MAX_BLOCKS  # the most threads one launch starts
_SUFFIX = {"float32": "f32", "float64": "f64"}
_INCLUDE = re.compile(r'^#include "(\w+\.cuh)"[ \t]*$', re.MULTILINE)

# Keyed by the CUDA source text itself, so modules with their own CUDA_SOURCES never collide.
_modules: dict[tuple[str, int], Any] = {}
_kernels: dict[tuple[str, str, int], Any] = {}


def cuda_source(filename: str) -> str:
    """The CUDA C source `filename` of this package, each `#include "x.cuh"` replaced by that header's
    text: one self-contained string, so the compile cache and the tests' host build key on all of it."""
    folder = resources.files(__package__)
    return _INCLUDE.sub(lambda m: folder.joinpath(m.group(1)).read_text(), folder.joinpath(filename).read_text())


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


def blocks(n: int) -> int:
    """The grid of a grid-stride launch over n items: one thread per item, up to MAX_BLOCKS blocks."""
    return min(-(-n // BLOCK), MAX_BLOCKS)


def launch(code: str, name: str, n: int, args: tuple[Any, ...]) -> None:
    """One launch of grid-stride kernel `name` over n items on the current device and stream (none when
    n == 0: an empty grid is a launch error)."""
    if n > 0:
        kernel(code, name)((blocks(n),), (BLOCK,), args)


def suffix(dtype: Any) -> str:
    """'f32' or 'f64', the entry points' suffix for dtype; TypeError for any other dtype."""
    name = np.dtype(dtype).name
    if name not in _SUFFIX:
        raise TypeError(f"xpnet's CuPy kernels support float32 and float64 arrays, got {name}")
    return _SUFFIX[name]
