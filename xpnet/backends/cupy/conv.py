"""CuPy kernels for the window ops of the convolution and max-pool layers: one CUDA launch each.

The references in core/conv.py and core/pool.py build these from K*K strided slices, so each op costs
about K*K launches plus temporaries on CuPy (and col2im / the max-pool backward K*K read-modify-writes of
the whole output). Here each op is one kernel (conv_pool.cu), one loop iteration per output element:

- im2col: x (C, H, W, N) -> columns (C*K*K, Ho*Wo*N), rows (c, i, j), columns (oh, ow, n), zero padding.
- col2im: its adjoint, as a gather: each input element sums the column entries of the windows covering it,
  so there are no atomics, and the sum runs in the reference's order (window position (i, j) ascending),
  which makes the result deterministic and the same floating-point sum as the reference's.
- max_pool2d: (N, C, H, W) -> y (N, C, Ho, Wo) and, as `saved`, (the winning window position as int16,
  x's shape): the reference's own `saved`, so either backward can take either forward's (fast paths can
  be switched off between a forward and its backward).
- max_pool2d_backward: a gather too: each input element sums dy over the windows whose winner it is.

Inputs are made C-contiguous first (a copy when they are not, e.g. the NCHW view of (C, H, W, N) memory
that Conv2D outputs); outputs are C-contiguous. float32 and float64 only. Flat indices are 32-bit when
every index fits (GPU integer division is several times cheaper than 64-bit), 64-bit otherwise.
Compiling (with the other kernels' options) and launching is launch.py's, so this module imports without
CuPy; `tools/check_cuda_sources.py` compiles CUDA_SOURCES with NVRTC on a machine without a GPU.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from xpnet.backends import ops
from xpnet.backends.cupy.launch import MAX_THREADS, NAMESPACE, cuda_source, launch, suffix
from xpnet.backends.cupy.launch import import_cupy as _cupy
from xpnet.backends.ops import out_size

# 32-bit indices while a grid-stride index stays below 2**31: it runs up to total + MAX_THREADS - 1.
_INT32_LIMIT = 2**31 - 1 - MAX_THREADS
CUDA_SOURCES: dict[str, str] = {"conv_pool": cuda_source("conv_pool.cu")}


def _device(x: Any) -> Any:
    """The context that makes x's device current, so outputs are allocated and kernels launched there."""
    return x.device


# -- argument checks and the shared launch details ----------------------------------------------------------
def _checked(op: str, a: Any, ndim: int) -> None:
    """Raise a clear error unless `a` is a float32/float64 CuPy array of `ndim` axes."""
    if not isinstance(a, _cupy().ndarray):
        raise TypeError(f"CuPy {op} takes CuPy arrays, got {type(a).__name__}")
    try:
        suffix(a.dtype)
    except TypeError as exc:
        raise TypeError(f"CuPy {op}: {exc}") from None
    if a.ndim != ndim:
        raise ValueError(f"CuPy {op} expects a {ndim}-d array, got shape {tuple(a.shape)}")


def _kernel_name(op: str, dtype: Any, *sizes: int) -> tuple[str, type]:
    """The entry point for `dtype`, 32-bit indexed when every array of `sizes` elements allows it, and the
    NumPy scalar type its integer arguments must be passed as (CuPy passes them by their exact C type)."""
    wide = max(sizes) > _INT32_LIMIT
    return f"xpnet_{op}_{suffix(dtype)}_{'i64' if wide else 'i32'}", (np.int64 if wide else np.int32)


def _launch(name: str, total: int, args: tuple[Any, ...]) -> None:
    launch(CUDA_SOURCES["conv_pool"], name, total, args)


def _check_window(op: str, k: int, stride: int, padding: int = 0) -> None:
    if k < 1 or stride < 1 or padding < 0:
        raise ValueError(f"CuPy {op}: kernel size and stride must be >= 1 and padding >= 0, "
                         f"got k={k}, stride={stride}, padding={padding}")


# -- the ops, with core/conv.py's and core/pool.py's signatures ---------------------------------------------
def im2col(xp: Any, x: Any, k: int, stride: int, padding: int) -> Any:
    """x: (C, H, W, N) -> columns (C*K*K, Ho*Wo*N), rows ordered (c, i, j), as core.conv.im2col."""
    _check_window("im2col", k, stride, padding)
    _checked("im2col", x, 4)
    with _device(x):
        x = _cupy().ascontiguousarray(x)  # the kernel indexes C order; no copy when it already is
        c, h, w, n = (int(s) for s in x.shape)
        ho, wo = out_size(h, k, stride, padding), out_size(w, k, stride, padding)
        cols = _cupy().empty((c * k * k, max(ho, 0) * max(wo, 0) * n), dtype=x.dtype)
        name, i = _kernel_name("im2col", x.dtype, x.size, cols.size)
        _launch(name, cols.size, (x, cols, i(cols.size), i(h), i(w), i(n), i(ho), i(wo), i(k), i(stride),
                                  i(padding)))
        return cols


def col2im(xp: Any, cols: Any, shape: tuple[int, int, int, int], k: int, stride: int, padding: int) -> Any:
    """The adjoint of im2col: columns (C*K*K, Ho*Wo*N) -> (C, H, W, N) of `shape`, overlaps summed."""
    _check_window("col2im", k, stride, padding)
    c, h, w, n = (int(s) for s in shape)
    ho, wo = out_size(h, k, stride, padding), out_size(w, k, stride, padding)
    _checked("col2im", cols, 2)
    want = (c * k * k, max(ho, 0) * max(wo, 0) * n)
    if tuple(cols.shape) != want:
        raise ValueError(f"CuPy col2im: columns of shape {tuple(cols.shape)} do not fit {tuple(shape)} "
                         f"with k={k}, stride={stride}, padding={padding} (want {want})")
    with _device(cols):
        cols = _cupy().ascontiguousarray(cols)
        x = _cupy().empty((c, h, w, n), dtype=cols.dtype)
        name, i = _kernel_name("col2im", cols.dtype, x.size, cols.size)
        _launch(name, x.size, (cols, x, i(x.size), i(h), i(w), i(n), i(ho), i(wo), i(k), i(stride), i(padding)))
        return x


def max_pool2d(xp: Any, x: Any, k: int, stride: int) -> tuple[Any, Any]:
    """(y, saved) as core.pool.max_pool2d: each window's first maximum, and (int16 index of the winning
    window position, x's shape) — the reference's own `saved`, so the two backwards are interchangeable."""
    _check_window("max_pool2d", k, stride)
    if k * k > 32767:
        raise ValueError(f"CuPy max_pool2d: window positions are saved as int16, k={k} has {k * k}")
    _checked("max_pool2d", x, 4)
    with _device(x):
        x = _cupy().ascontiguousarray(x)
        nb, c, h, w = (int(s) for s in x.shape)
        ho, wo = out_size(h, k, stride), out_size(w, k, stride)
        cp = _cupy()
        y = cp.empty((nb, c, max(ho, 0), max(wo, 0)), dtype=x.dtype)
        index = cp.empty(y.shape, dtype=cp.int16)
        name, i = _kernel_name("max_pool", x.dtype, x.size, y.size)
        _launch(name, y.size, (x, y, index, i(y.size), i(h), i(w), i(ho), i(wo), i(k), i(stride)))
        return y, (index, (nb, c, h, w))


def max_pool2d_backward(xp: Any, dy: Any, saved: Any, k: int, stride: int) -> Any:
    """dx as core.pool.max_pool2d_backward: each window's dy at its winning position, summed where windows
    overlap; `saved` from this module's max_pool2d or the reference's."""
    _check_window("max_pool2d_backward", k, stride)
    index, shape = saved[0], tuple(int(s) for s in saved[1])
    _checked("max_pool2d_backward", dy, 4)
    with _device(dy):
        cp = _cupy()
        dy = cp.ascontiguousarray(dy)
        # The reference's index is int16 too; anything else is converted rather than misread.
        index = cp.ascontiguousarray(index if index.dtype == cp.int16 else index.astype(cp.int16))
        nb, c, h, w = shape
        ho, wo = out_size(h, k, stride), out_size(w, k, stride)
        if tuple(dy.shape) != (nb, c, ho, wo) or tuple(index.shape) != tuple(dy.shape):
            raise ValueError(f"CuPy max_pool2d_backward: dy {tuple(dy.shape)} and index {tuple(index.shape)} "
                             f"must both be {(nb, c, ho, wo)} for input {shape}, k={k}, stride={stride}")
        dx = cp.empty(shape, dtype=dy.dtype)
        name, i = _kernel_name("max_pool_backward", dy.dtype, dx.size, dy.size)
        _launch(name, dx.size, (dy, index, dx, i(dx.size), i(h), i(w), i(ho), i(wo), i(k), i(stride)))
        return dx


def register_all() -> None:
    for op, fn in ((ops.IM2COL, im2col), (ops.COL2IM, col2im), (ops.MAX_POOL2D, max_pool2d),
                   (ops.MAX_POOL2D_BACKWARD, max_pool2d_backward)):
        ops.register(NAMESPACE, op, fn)
