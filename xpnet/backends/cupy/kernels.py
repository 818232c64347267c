"""CuPy's fast kernels: the same maths as core's Array API reference, each one or two CUDA launches.

Written as raw CUDA C (optim.cu, softmax_ce.cu, elementwise.cu beside this file: CUDA_SOURCES, compiled by
NVRTC on first use and cached per device) because a GPU step is bound by launches, not arithmetic: Adam over
the flat buffer is one launch instead of about ten. Importing this module needs neither CuPy nor a GPU
(tools/check_cuda_sources.py compiles CUDA_SOURCES without one); CuPy is imported inside the functions.

CUDA-graph mode: the optimizer's `lr` and `step`, and `gate`, may be 0-d device arrays read by the kernel
at run time, so one captured graph replays with new values. Call each kernel once before capture so that
compilation happens outside the graph. Compiling and launching (with --fmad=false, so that each operation
rounds like the reference's separate array operations) is launch.py's; the Philox generator
`philox_uniform`, registered here with the rest, lives in philox.py.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xpnet.backends import ops
from xpnet.backends.cupy.launch import BLOCK as _BLOCK
from xpnet.backends.cupy.launch import NAMESPACE, cuda_source, kernel, launch
from xpnet.backends.cupy.launch import import_cupy as _cupy
from xpnet.backends.cupy.launch import suffix as _suffix
from xpnet.backends.cupy.philox import philox_uniform

_NULL = np.uint64(0)  # a null pointer argument: "no gate" / "no velocity" / "scalar passed by value"
# How the kernel reads a scalar that lives on the device: its dtype, or 0 for "use the value argument".
_SCALAR_KIND = {"float32": 1, "float64": 2, "int64": 3, "int32": 4}
CUDA_SOURCES: dict[str, str] = {name: cuda_source(f"{name}.cu") for name in ("optim", "softmax_ce", "elementwise")}


# -- compiling and launching (launch.py) and argument checks --------------------------------------------
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
    for op, fn in ((ops.CONCAT_INTO, concat_into), (ops.SGD_UPDATE, sgd_update), (ops.ADAM_UPDATE, adam_update),
                   (ops.SOFTMAX_CROSS_ENTROPY_LABELS, softmax_cross_entropy_labels),
                   (ops.RELU_FORWARD, relu_forward), (ops.BIAS_RELU_FORWARD, bias_relu_forward),
                   (ops.SIGMOID_BACKWARD, sigmoid_backward), (ops.TANH_BACKWARD, tanh_backward),
                   (ops.PHILOX_UNIFORM, philox_uniform)):
        ops.register(NAMESPACE, op, fn)
