"""CuPy's fast kernels: the same maths as core's Array API reference, each one or two CUDA launches.

Written as raw CUDA C (CUDA_SOURCES, compiled by NVRTC on first use and cached per device) because a GPU
step is bound by launches, not arithmetic: Adam over the flat buffer is one launch instead of about ten.
Importing this module needs neither CuPy nor a GPU (tools/check_cuda_sources.py compiles CUDA_SOURCES
without one); CuPy is imported inside the functions.

CUDA-graph mode: the optimizer's `lr` and `step`, and `gate`, may be 0-d device arrays read by the kernel
at run time, so one captured graph replays with new values. Call each kernel once before capture so that
compilation happens outside the graph. Compiling and launching (with --fmad=false, so that each operation
rounds like the reference's separate array operations) is cupy_launch's; the Philox generator
`philox_uniform`, registered here with the rest, lives in cupy_philox.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xpnet.backends.cupy.launch import BLOCK as _BLOCK
from xpnet.backends.cupy.launch import MATH as _MATH
from xpnet.backends.cupy.launch import import_cupy as _cupy
from xpnet.backends.cupy.launch import kernel, launch
from xpnet.backends.cupy.launch import suffix as _suffix
from xpnet.backends.cupy.philox import philox_uniform
from xpnet.backends.ops import register

NAMESPACE = "array_api_compat.cupy"  # array_api_compat.cupy.__name__, what kernels.lookup(xp, op) keys on
_NULL = np.uint64(0)  # a null pointer argument: "no gate" / "no velocity" / "scalar passed by value"
# How the kernel reads a scalar that lives on the device: its dtype, or 0 for "use the value argument".
_SCALAR_KIND = {"float32": 1, "float64": 2, "int64": 3, "int32": 4}


def _entry_points(body: str, params: str, args: str) -> str:
    """extern "C" float and double kernels `xpnet_<body>_f32/_f64` that call the template `<body><T>`."""
    return "".join(f'extern "C" __global__ void xpnet_{body}_{sfx}({params.format(T=t)}) {{ {body}<{t}>({args}); }}\n'
                   for sfx, t in (("f32", "float"), ("f64", "double")))


_OPTIM = _MATH + r"""
// A scalar given either by value (ptr null, kind 0) or as a device 0-d array that a CUDA graph replay
// may have changed since capture: kind says its dtype.
__device__ __forceinline__ double read_scalar(const void* ptr, int kind, double value) {
    switch (kind) {
        case 1: return (double)*(const float*)ptr;
        case 2: return *(const double*)ptr;
        case 3: return (double)*(const long long*)ptr;
        case 4: return (double)*(const int*)ptr;
        default: return value;
    }
}

// core.update_math.sgd_update; vel null when momentum == 0. gate (a device bool) false: change nothing.
template <typename T>
__device__ void sgd_update(T* p, const T* g, T* vel, long long n, const void* lr_ptr, int lr_kind,
                           double lr_value, double momentum, int nesterov, double wd, const bool* gate) {
    if (gate != nullptr && !*gate) return;
    const T lr = (T)read_scalar(lr_ptr, lr_kind, lr_value), mu = (T)momentum, wd_t = (T)wd;
    XP_FOR(i, n) {
        T gi = g[i];
        if (wd != 0.0) gi = gi + wd_t * p[i];
        if (vel != nullptr) {
            const T vi = vel[i] * mu + gi;
            vel[i] = vi;
            gi = nesterov ? gi + mu * vi : vi;
        }
        p[i] = p[i] - lr * gi;
    }
}

// core.update_math.adam_update with torch's bias correction; c1, c2 in double from the (device) step.
template <typename T>
__device__ void adam_update(T* p, const T* g, T* m, T* v, long long n, const void* lr_ptr, int lr_kind,
                            double lr_value, const void* step_ptr, int step_kind, double step_value,
                            double beta1, double beta2, double eps, double wd, int decoupled, const bool* gate) {
    if (gate != nullptr && !*gate) return;
    const double lr = read_scalar(lr_ptr, lr_kind, lr_value), step = read_scalar(step_ptr, step_kind, step_value);
    const double c1 = 1.0 - pow(beta1, step), c2 = 1.0 - pow(beta2, step);
    const T decay = (T)(1.0 - lr * wd), wd_t = (T)wd, b1 = (T)beta1, b2 = (T)beta2;
    const T one_b1 = (T)(1.0 - beta1), one_b2 = (T)(1.0 - beta2);
    const T inv_sqrt_c2 = (T)(1.0 / sqrt(c2)), eps_t = (T)eps, step_size = (T)(lr / c1);
    XP_FOR(i, n) {
        T pi = p[i], gi = g[i];
        if (decoupled) pi = pi * decay;
        else if (wd != 0.0) gi = gi + wd_t * pi;
        const T mi = m[i] * b1 + one_b1 * gi;
        const T vi = v[i] * b2 + one_b2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (xp_sqrt(vi) * inv_sqrt_c2 + eps_t));
    }
}
""" + _entry_points("sgd_update", "{T}* p, const {T}* g, {T}* vel, long long n, const void* lr_ptr, int lr_kind, "
                    "double lr_value, double momentum, int nesterov, double wd, const bool* gate",
                    "p, g, vel, n, lr_ptr, lr_kind, lr_value, momentum, nesterov, wd, gate") \
  + _entry_points("adam_update", "{T}* p, const {T}* g, {T}* m, {T}* v, long long n, const void* lr_ptr, "
                  "int lr_kind, double lr_value, const void* step_ptr, int step_kind, double step_value, "
                  "double beta1, double beta2, double eps, double wd, int decoupled, const bool* gate",
                  "p, g, m, v, n, lr_ptr, lr_kind, lr_value, step_ptr, step_kind, step_value, beta1, beta2, eps, "
                  "wd, decoupled, gate")

_SOFTMAX_CE = _MATH + r"""
template <typename T> __device__ __forceinline__ T warp_max(T x) {
    for (int o = 16; o > 0; o >>= 1) { const T y = __shfl_xor_sync(0xffffffffu, x, o); x = y > x ? y : x; }
    return x;
}
template <typename T> __device__ __forceinline__ T warp_sum(T x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// One warp per row (blockDim a multiple of 32, so a warp never straddles rows and exits as a whole):
// the max-shifted logsumexp keeps logits of +-1e4 finite. Writes the row's loss and its gradient row.
// A label outside 0..c-1 gives NaN (loss and gradient row) instead of reading out of bounds.
template <typename T>
__device__ void softmax_ce_rows(const T* logits, const long long* labels, T* grad, T* row_loss, long long n,
                                int c, T inv_n) {
    const long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (row >= n) return;
    const T* x = logits + row * c;
    T* dx = grad + row * c;
    T mx = x[0];
    for (int j = lane; j < c; j += 32) mx = x[j] > mx ? x[j] : mx;
    mx = warp_max(mx);
    T total = 0;
    for (int j = lane; j < c; j += 32) total += xp_exp(x[j] - mx);
    total = warp_sum(total);
    const long long label = labels[row];
    if (label < 0 || label >= c) {
        const T nan = (T)__longlong_as_double(0x7ff8000000000000LL);
        for (int j = lane; j < c; j += 32) dx[j] = nan;
        if (lane == 0) row_loss[row] = nan;
        return;
    }
    for (int j = lane; j < c; j += 32) {
        T prob = xp_exp(x[j] - mx) / total;
        if (j == label) prob = prob - (T)1;
        dx[j] = prob * inv_n;
    }
    if (lane == 0) row_loss[row] = xp_log(total) - (x[label] - mx);
}

// One block: the mean of the per-row losses, accumulated in double.
template <typename T>
__device__ void mean_rows(const T* row_loss, T* out, long long n) {
    __shared__ double partial[32];
    double acc = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) acc += (double)row_loss[i];
    acc = warp_sum(acc);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x < 32) {
        acc = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0;
        acc = warp_sum(acc);
        if (threadIdx.x == 0) *out = (T)(acc / (double)n);
    }
}
""" + _entry_points("softmax_ce_rows", "const {T}* logits, const long long* labels, {T}* grad, {T}* row_loss, "
                    "long long n, int c, {T} inv_n", "logits, labels, grad, row_loss, n, c, inv_n") \
  + _entry_points("mean_rows", "const {T}* row_loss, {T}* out, long long n", "row_loss, out, n")

_ELEMENTWISE = _MATH + r"""
// The 0/1 mask as a float, and y = x * mask (not max(x, 0)): NaN and -0.0 come out as the reference's.
template <typename T>
__device__ void relu_forward(const T* x, T* y, T* mask, long long n) {
    XP_FOR(i, n) { const T xi = x[i], mi = xi > (T)0 ? (T)1 : (T)0; mask[i] = mi; y[i] = xi * mi; }
}
// z = y + b over the rows of (n, f) y; out may be y itself (each element is read before it is written).
template <typename T>
__device__ void bias_relu_forward(const T* y, const T* b, T* out, T* mask, long long n, long long f) {
    XP_FOR(i, n) { const T z = y[i] + b[i % f], mi = z > (T)0 ? (T)1 : (T)0; mask[i] = mi; out[i] = z * mi; }
}
template <typename T>
__device__ void sigmoid_backward(const T* dy, const T* y, T* dx, long long n) {
    XP_FOR(i, n) { const T yi = y[i]; dx[i] = (dy[i] * yi) * ((T)1 - yi); }
}
template <typename T>
__device__ void tanh_backward(const T* dy, const T* y, T* dx, long long n) {
    XP_FOR(i, n) { const T yi = y[i]; dx[i] = dy[i] * ((T)1 - yi * yi); }
}
""" + _entry_points("relu_forward", "const {T}* x, {T}* y, {T}* mask, long long n", "x, y, mask, n") \
  + _entry_points("bias_relu_forward", "const {T}* y, const {T}* b, {T}* out, {T}* mask, long long n, long long f",
                  "y, b, out, mask, n, f") \
  + _entry_points("sigmoid_backward", "const {T}* dy, const {T}* y, {T}* dx, long long n", "dy, y, dx, n") \
  + _entry_points("tanh_backward", "const {T}* dy, const {T}* y, {T}* dx, long long n", "dy, y, dx, n")


CUDA_SOURCES: dict[str, str] = {"optim": _OPTIM, "softmax_ce": _SOFTMAX_CE, "elementwise": _ELEMENTWISE}


# -- compiling and launching (cupy_launch) and argument checks --------------------------------------------
def _kernel(source: str, name: str) -> Any:
    """The RawKernel `name` from CUDA_SOURCES[source] for the current device, compiled once."""
    return kernel(CUDA_SOURCES[source], name)


def _launch(source: str, name: str, n: int, args: tuple[Any, ...]) -> None:
    """One launch of a grid-stride kernel over n items (none when n == 0)."""
    launch(CUDA_SOURCES[source], name, n, args)


def _same_dtype(*arrays: Any) -> str:
    sfx = _suffix(arrays[0].dtype)
    if any(a.dtype != arrays[0].dtype for a in arrays):
        raise TypeError(f"arrays must share one dtype, got {[np.dtype(a.dtype).name for a in arrays]}")
    return sfx


def _in_place(name: str, a: Any) -> None:
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} is updated in place by a flat kernel and must be C-contiguous")


def _contiguous(a: Any) -> Any:
    return a if a.flags.c_contiguous else _cupy().ascontiguousarray(a)


def _same_shape(*arrays: Any) -> None:
    if any(tuple(a.shape) != tuple(arrays[0].shape) for a in arrays):
        raise ValueError(f"shapes must match, got {[tuple(a.shape) for a in arrays]}")


def _scalar(x: Any, name: str, cast: Any) -> tuple[Any, np.int32, np.float64]:
    """(pointer, kind, value) kernel arguments for a Python number or a 0-d device array."""
    cupy = _cupy()
    if isinstance(x, cupy.ndarray):
        kind = _SCALAR_KIND.get(np.dtype(x.dtype).name)
        if x.size != 1 or kind is None:
            raise TypeError(f"{name} as a device array must be one float32/float64/int32/int64 value, "
                            f"got shape {tuple(x.shape)} {np.dtype(x.dtype).name}")
        return x, np.int32(kind), np.float64(0.0)
    return _NULL, np.int32(0), np.float64(cast(x))


def _closed(gate: Any) -> bool:
    """True for a host False: the update is skipped without a launch."""
    return isinstance(gate, (bool, np.bool_)) and not gate


def _gate(gate: Any) -> Any:
    """The gate argument: null for None or a host True, else a 0-d bool device array read by the kernel."""
    if gate is None or isinstance(gate, (bool, np.bool_)):
        return _NULL
    cupy = _cupy()
    if not isinstance(gate, cupy.ndarray) or gate.dtype != np.bool_ or gate.size != 1:
        raise TypeError(f"gate must be None or a 0-d bool device array, got {gate!r}")
    return gate


# -- the ops ----------------------------------------------------------------------------------------------
def concat_into(arrays: Sequence[Any], out: Any) -> Any:
    """Every array flattened, one after another, into the preallocated 1-D `out` (the flat gradient).
    One device-to-device copy per array rather than cupy.concatenate: for more than 8 arrays CuPy builds
    pointer tables on the host and uploads them from pinned buffers, which a captured graph would re-read
    (stale) on every replay."""
    start = 0
    for a in arrays:
        stop = start + a.size
        out[start:stop] = a.reshape(-1)
        start = stop
    return out


def sgd_update(xp: Any, p: Any, g: Any, velocity: Any, *, lr: Any, momentum: float, nesterov: bool,
               weight_decay: float, gate: Any = None) -> tuple[Any, Any]:
    """core.update_math.sgd_update in one launch, in place; `lr` a number or a 0-d device array."""
    if _closed(gate):
        return p, velocity
    use_velocity = bool(momentum)  # as the reference: momentum 0 leaves any velocity untouched
    if use_velocity and velocity is None:
        raise ValueError("sgd_update: momentum needs a velocity array")
    arrays = (p, g, velocity) if use_velocity else (p, g)
    sfx = _same_dtype(*arrays)
    _same_shape(*arrays)
    _in_place("p", p)
    if use_velocity:
        _in_place("velocity", velocity)
    as_t = np.dtype(p.dtype).type  # a Python lr rounds like a device lr of p's dtype: both paths agree
    lr_args = _scalar(lr, "lr", lambda x: float(as_t(x)))
    with p.device:
        _launch("optim", f"xpnet_sgd_update_{sfx}", p.size,
                (p, _contiguous(g), velocity if use_velocity else _NULL, np.int64(p.size), *lr_args,
                 np.float64(momentum), np.int32(bool(nesterov)), np.float64(weight_decay), _gate(gate)))
    return p, velocity


def adam_update(xp: Any, p: Any, g: Any, m: Any, v: Any, *, lr: Any, beta1: float, beta2: float, eps: float,
                step: Any, weight_decay: float, decoupled: bool, gate: Any = None) -> tuple[Any, Any, Any]:
    """core.update_math.adam_update in one launch, in place; `lr`, `step` numbers or 0-d device arrays."""
    if _closed(gate):
        return p, m, v
    sfx = _same_dtype(p, g, m, v)
    _same_shape(p, g, m, v)
    for name, a in (("p", p), ("m", m), ("v", v)):
        _in_place(name, a)
    as_t = np.dtype(p.dtype).type
    lr_args = _scalar(lr, "lr", lambda x: float(as_t(x)))
    step_args = _scalar(step, "step", float)
    with p.device:
        _launch("optim", f"xpnet_adam_update_{sfx}", p.size,
                (p, _contiguous(g), m, v, np.int64(p.size), *lr_args, *step_args, np.float64(beta1),
                 np.float64(beta2), np.float64(eps), np.float64(weight_decay), np.int32(bool(decoupled)),
                 _gate(gate)))
    return p, m, v


def softmax_cross_entropy_labels(xp: Any, logits: Any, labels: Any) -> tuple[Any, Any]:
    """(mean loss 0-d, dL/dlogits (n, c)) for logits (n, c) and integer labels (n,): two launches."""
    cupy = _cupy()
    sfx = _suffix(logits.dtype)
    if logits.ndim != 2 or logits.shape[1] == 0 or tuple(labels.shape) != (logits.shape[0],):
        raise ValueError(f"expected logits (n, c>0) and labels (n,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if labels.dtype != np.int64:
        if np.dtype(labels.dtype).kind not in "iu":
            raise TypeError(f"labels must be integers, got {np.dtype(labels.dtype).name}")
        labels = labels.astype(np.int64)  # one extra launch; callers pass int64
    n, c = logits.shape
    logits, labels = _contiguous(logits), _contiguous(labels)
    with logits.device:
        grad = cupy.empty((n, c), dtype=logits.dtype)
        row_loss = cupy.empty(n, dtype=logits.dtype)
        loss = cupy.empty((), dtype=logits.dtype)
        rows_per_block = _BLOCK // 32
        if n:
            _kernel("softmax_ce", f"xpnet_softmax_ce_rows_{sfx}")(
                (-(-n // rows_per_block),), (_BLOCK,),
                (logits, labels, grad, row_loss, np.int64(n), np.int32(c), logits.dtype.type(1.0 / max(n, 1))))
        _kernel("softmax_ce", f"xpnet_mean_rows_{sfx}")((1,), (_BLOCK,), (row_loss, loss, np.int64(n)))
    return loss, grad


def relu_forward(xp: Any, x: Any) -> tuple[Any, Any]:
    """(x * mask, mask) with mask = (x > 0) as x's dtype: one launch."""
    cupy = _cupy()
    sfx = _suffix(x.dtype)
    x = _contiguous(x)
    with x.device:
        y, mask = cupy.empty(x.shape, x.dtype), cupy.empty(x.shape, x.dtype)
        _launch("elementwise", f"xpnet_relu_forward_{sfx}", x.size, (x, y, mask, np.int64(x.size)))
    return y, mask


def bias_relu_forward(xp: Any, y: Any, b: Any) -> tuple[Any, Any]:
    """For y (n, f) and b (f,): z = y + b, mask = (z > 0) as dtype, out = z * mask, written over y when
    y is C-contiguous (the caller's matmul output). Returns (out, mask); one launch."""
    cupy = _cupy()
    sfx = _same_dtype(y, b)
    if y.ndim != 2 or tuple(b.shape) != (y.shape[1],):
        raise ValueError(f"expected y (n, f) and b (f,), got {tuple(y.shape)} and {tuple(b.shape)}")
    out = y if y.flags.c_contiguous else cupy.ascontiguousarray(y)
    with y.device:
        mask = cupy.empty(out.shape, out.dtype)
        _launch("elementwise", f"xpnet_bias_relu_forward_{sfx}", out.size,
                (out, _contiguous(b), out, mask, np.int64(out.size), np.int64(max(out.shape[1], 1))))
    return out, mask


def _backward(name: str, dy: Any, y: Any) -> Any:
    cupy = _cupy()
    sfx = _same_dtype(dy, y)
    _same_shape(dy, y)
    dy, y = _contiguous(dy), _contiguous(y)
    with y.device:
        dx = cupy.empty(y.shape, y.dtype)
        _launch("elementwise", f"xpnet_{name}_{sfx}", y.size, (dy, y, dx, np.int64(y.size)))
    return dx


def sigmoid_backward(xp: Any, dy: Any, y: Any) -> Any:
    """dy * y * (1 - y) for the sigmoid's output y: one launch."""
    return _backward("sigmoid_backward", dy, y)


def tanh_backward(xp: Any, dy: Any, y: Any) -> Any:
    """dy * (1 - y * y) for tanh's output y: one launch."""
    return _backward("tanh_backward", dy, y)


def register_all() -> None:
    """Register every op for CuPy arrays as array-api-compat presents them (no CuPy import needed)."""
    for op, fn in (("concat_into", concat_into), ("sgd_update", sgd_update), ("adam_update", adam_update),
                   ("softmax_cross_entropy_labels", softmax_cross_entropy_labels), ("relu_forward", relu_forward),
                   ("bias_relu_forward", bias_relu_forward), ("sigmoid_backward", sigmoid_backward),
                   ("tanh_backward", tanh_backward), ("philox_uniform", philox_uniform)):
        register(NAMESPACE, op, fn)
