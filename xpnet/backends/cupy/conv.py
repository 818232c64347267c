"""CuPy kernels for the window ops of the convolution and max-pool layers: one CUDA launch each.

The references in core/conv.py and core/pool.py build these from K*K strided slices, so each op costs
about K*K launches plus temporaries on CuPy (and col2im / the max-pool backward K*K read-modify-writes of
the whole output). Here each op is one kernel, one thread per output element:

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
CuPy is imported and the kernels compiled (once per device, cached) on first use, so this module imports
without CuPy; `tools/check_cuda_sources.py` compiles CUDA_SOURCES with NVRTC on a machine without a GPU.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from xpnet.backends.ops import register

NAMESPACE = "array_api_compat.cupy"  # array_api_compat/cupy/__init__.py: the namespace core's lookup sees
BLOCK = 256  # threads per block: the kernels are memory-bound, any multiple of 32 from 128 up does
_INT32_LIMIT = 2**31 - 1 - BLOCK  # the last block's threads compute indices up to total + BLOCK - 1
_DTYPES = {"float32": "f32", "float64": "f64"}

CUDA_SOURCES: dict[str, str] = {
    "conv_pool": r"""
// Window kernels for xpnet/backends/cupy_conv.py. Each entry point is a template body instantiated by
// XPNET_KERNELS below for T in {float, double} and flat-index type I in {int, long long}: extern "C"
// names (im2col_f32_i32, ...) need no C++ name mangling to look up. One thread per output element.

// The windows covering padded position p along one axis are those with output index o, 0 <= o < n_out,
// and offset p - o * stride in [0, k). The first, in the reference's order of ascending offset, has the
// largest o: min(p / stride, n_out - 1). Each next one has offset + stride and o - 1.
template <typename I>
__device__ __forceinline__ I last_window(I p, I stride, I n_out) {
    const I o = p / stride;
    return o < n_out - 1 ? o : n_out - 1;
}

// cols[(c, i, j), (oh, ow, b)] = x[c, oh * stride + i - pad, ow * stride + j - pad, b], 0 in the padding.
// The batch index b is innermost in both arrays, so neighbouring threads read and write neighbouring
// addresses (coalesced) whenever N > 1.
template <typename T, typename I>
__device__ __forceinline__ void im2col_body(const T* __restrict__ x, T* __restrict__ cols, I total,
                                            I h, I w, I n, I ho, I wo, I k, I stride, I pad) {
    const I t = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x;
    if (t >= total) return;
    I q = t;
    const I b = q % n; q /= n;
    const I ow = q % wo; q /= wo;
    const I oh = q % ho; q /= ho;
    const I j = q % k; q /= k;
    const I i = q % k;
    const I c = q / k;
    const I hi = oh * stride + i - pad, wi = ow * stride + j - pad;  // in the unpadded input
    cols[t] = (hi >= 0 && hi < h && wi >= 0 && wi < w) ? x[((c * h + hi) * w + wi) * n + b] : T(0);
}

// x[c, hi, wi, b] = the sum of cols over the windows covering (hi, wi): a gather, so no atomics, and
// the additions run in window position (i, j) ascending, the order the reference adds its K*K slices.
template <typename T, typename I>
__device__ __forceinline__ void col2im_body(const T* __restrict__ cols, T* __restrict__ x, I total,
                                            I h, I w, I n, I ho, I wo, I k, I stride, I pad) {
    const I t = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x;
    if (t >= total) return;
    I q = t;
    const I b = q % n; q /= n;
    const I wp = q % w + pad; q /= w;  // positions in the padded input, where windows start at 0
    const I hp = q % h + pad;
    const I c = q / h;
    const I oh0 = last_window(hp, stride, ho), ow0 = last_window(wp, stride, wo);
    const I row = ho * wo * n;  // the length of one row (c, i, j) of cols
    T acc = T(0);
    for (I i = hp - oh0 * stride, oh = oh0; i < k && oh >= 0; i += stride, --oh) {
        for (I j = wp - ow0 * stride, ow = ow0; j < k && ow >= 0; j += stride, --ow) {
            acc += cols[((c * k + i) * k + j) * row + (oh * wo + ow) * n + b];
        }
    }
    x[t] = acc;
}

// y[nc, oh, ow] = the window's maximum and index[nc, oh, ow] = i * k + j of its first maximum in
// row-major window order: a later value wins only if strictly greater, so ties keep the first. A NaN
// makes y NaN but moves no index, as the reference's xp.maximum and `part > best` do.
template <typename T, typename I>
__device__ __forceinline__ void max_pool_body(const T* __restrict__ x, T* __restrict__ y,
                                              short* __restrict__ index, I total, I h, I w, I ho, I wo,
                                              I k, I stride) {
    const I t = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x;
    if (t >= total) return;
    const I ow = t % wo, oh = (t / wo) % ho, nc = t / (wo * ho);
    const T* win = x + (nc * h + oh * stride) * w + ow * stride;
    T best = win[0];
    int arg = 0;
    for (I i = 0; i < k; ++i) {
        for (I j = 0; j < k; ++j) {
            const T v = win[i * w + j];
            if (v > best) {
                best = v;
                arg = (int)(i * k + j);
            } else if (v != v) {
                best = v;  // NaN: every later comparison is false, so y stays NaN
            }
        }
    }
    y[t] = best;
    index[t] = (short)arg;
}

// dx[nc, hi, wi] = the sum of dy over the windows whose winner (hi, wi) is: each window's gradient goes
// to exactly one element. A gather over the covering windows, in the reference's (i, j) order.
template <typename T, typename I>
__device__ __forceinline__ void max_pool_backward_body(const T* __restrict__ dy,
                                                       const short* __restrict__ index,
                                                       T* __restrict__ dx, I total, I h, I w, I ho,
                                                       I wo, I k, I stride) {
    const I t = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x;
    if (t >= total) return;
    const I wi = t % w, hi = (t / w) % h, nc = t / (w * h);
    const I oh0 = last_window(hi, stride, ho), ow0 = last_window(wi, stride, wo);
    T acc = T(0);
    for (I i = hi - oh0 * stride, oh = oh0; i < k && oh >= 0; i += stride, --oh) {
        for (I j = wi - ow0 * stride, ow = ow0; j < k && ow >= 0; j += stride, --ow) {
            const I o = (nc * ho + oh) * wo + ow;
            if (index[o] == i * k + j) acc += dy[o];
        }
    }
    dx[t] = acc;
}

#define XPNET_KERNELS(SUFFIX, T, I)                                                                     \
    extern "C" __global__ void im2col_##SUFFIX(const T* x, T* cols, I total, I h, I w, I n, I ho,     \
                                               I wo, I k, I stride, I pad) {                           \
        im2col_body<T, I>(x, cols, total, h, w, n, ho, wo, k, stride, pad);                           \
    }                                                                                                  \
    extern "C" __global__ void col2im_##SUFFIX(const T* cols, T* x, I total, I h, I w, I n, I ho,     \
                                               I wo, I k, I stride, I pad) {                           \
        col2im_body<T, I>(cols, x, total, h, w, n, ho, wo, k, stride, pad);                           \
    }                                                                                                  \
    extern "C" __global__ void max_pool_##SUFFIX(const T* x, T* y, short* index, I total, I h, I w,   \
                                                 I ho, I wo, I k, I stride) {                          \
        max_pool_body<T, I>(x, y, index, total, h, w, ho, wo, k, stride);                             \
    }                                                                                                  \
    extern "C" __global__ void max_pool_backward_##SUFFIX(const T* dy, const short* index, T* dx,     \
                                                          I total, I h, I w, I ho, I wo, I k,          \
                                                          I stride) {                                  \
        max_pool_backward_body<T, I>(dy, index, dx, total, h, w, ho, wo, k, stride);                  \
    }

XPNET_KERNELS(f32_i32, float, int)
XPNET_KERNELS(f32_i64, float, long long)
XPNET_KERNELS(f64_i32, double, int)
XPNET_KERNELS(f64_i64, double, long long)
""",
}


# -- the seams to CuPy: everything device-specific goes through these three ---------------------------------
def _cupy() -> Any:
    import cupy

    return cupy


def out_size(size: int, k: int, stride: int, padding: int = 0) -> int:
    """Output length of a window sweep (core/conv.py's rule; backends may not import core)."""
    return (size + 2 * padding - k) // stride + 1


def _device(x: Any) -> Any:
    """The context that makes x's device current, so outputs are allocated and kernels launched there."""
    return x.device


@functools.cache
def _module(device_id: int) -> Any:
    """CUDA_SOURCES compiled and loaded on one device (CuPy also caches the binary on disk)."""
    cupy = _cupy()
    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=CUDA_SOURCES["conv_pool"], options=("-std=c++17",))


def _launch(name: str, total: int, args: tuple[Any, ...]) -> None:
    """Run kernel `name` with one thread per element of `total`, on the current device and stream."""
    if total == 0:
        return  # a grid of zero blocks is a launch error
    cupy = _cupy()
    kernel = _module(cupy.cuda.Device().id).get_function(name)
    kernel(((total + BLOCK - 1) // BLOCK,), (BLOCK,), args)


# -- argument checks and the shared launch details ----------------------------------------------------------
def _checked(op: str, a: Any, ndim: int) -> None:
    """Raise a clear error unless `a` is a float32/float64 CuPy array of `ndim` axes."""
    if not isinstance(a, _cupy().ndarray):
        raise TypeError(f"cupy_conv.{op} takes CuPy arrays, got {type(a).__name__}")
    if a.dtype.name not in _DTYPES:
        raise TypeError(f"cupy_conv.{op} supports float32 and float64 arrays, got {a.dtype.name}")
    if a.ndim != ndim:
        raise ValueError(f"cupy_conv.{op} expects a {ndim}-d array, got shape {tuple(a.shape)}")


def _kernel_name(op: str, dtype: Any, *sizes: int) -> tuple[str, type]:
    """The entry point for `dtype`, 32-bit indexed when every array of `sizes` elements allows it, and the
    NumPy scalar type its integer arguments must be passed as (CuPy passes them by their exact C type)."""
    wide = max(sizes) > _INT32_LIMIT
    return f"{op}_{_DTYPES[dtype.name]}_{'i64' if wide else 'i32'}", (np.int64 if wide else np.int32)


def _check_window(op: str, k: int, stride: int, padding: int = 0) -> None:
    if k < 1 or stride < 1 or padding < 0:
        raise ValueError(f"cupy_conv.{op}: kernel size and stride must be >= 1 and padding >= 0, "
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
        raise ValueError(f"cupy_conv.col2im: columns of shape {tuple(cols.shape)} do not fit {tuple(shape)} "
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
        raise ValueError(f"cupy_conv.max_pool2d: window positions are saved as int16, k={k} has {k * k}")
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
            raise ValueError(f"cupy_conv.max_pool2d_backward: dy {tuple(dy.shape)} and index {tuple(index.shape)} "
                             f"must both be {(nb, c, ho, wo)} for input {shape}, k={k}, stride={stride}")
        dx = cp.empty(shape, dtype=dy.dtype)
        name, i = _kernel_name("max_pool_backward", dy.dtype, dx.size, dy.size)
        _launch(name, dx.size, (dy, index, dx, i(dx.size), i(h), i(w), i(ho), i(wo), i(k), i(stride)))
        return dx


def register_all() -> None:
    register(NAMESPACE, "im2col", im2col)
    register(NAMESPACE, "col2im", col2im)
    register(NAMESPACE, "max_pool2d", max_pool2d)
    register(NAMESPACE, "max_pool2d_backward", max_pool2d_backward)
