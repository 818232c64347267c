"""Installs the fake CuPy and cuBLAS in this process: run it first thing, in a subprocess only.

After install(), `import cupy` is the fake (a real CuPy on the path is refused, not silently used) and
xpnet.backends.cupy.cublas talks to the fake cuBLAS through its own ctypes bindings.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent


def install() -> tuple[types.ModuleType, object]:
    """Put tests/fake_cupy first on sys.path, import the fake cupy, and give backends/cupy/cublas.py the fake cuBLAS.
    Returns (the cupy module, the FakeCublas)."""
    if "cupy" in sys.modules and not getattr(sys.modules["cupy"], "IS_FAKE", False):
        raise RuntimeError("a real CuPy is already imported in this process; the fake must come first")
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import cupy

    if not getattr(cupy, "IS_FAKE", False) or Path(cupy.__file__).resolve().parent != HERE / "cupy":
        raise RuntimeError(f"`import cupy` found {cupy.__file__}, not the fake in {HERE / 'cupy'}")
    import fake_cublas

    from xpnet.backends.cupy import cublas as cuda_blas

    if cuda_blas._lib is not None:
        raise RuntimeError("cuda_blas already loaded a cuBLAS before the fake was installed")
    lib, fake = fake_cublas.load()
    cuda_blas._lib = cuda_blas._bind(lib)  # library() returns it from now on; _open_cublas is never reached
    return cupy, fake
