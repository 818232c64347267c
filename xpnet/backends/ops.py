"""The kernel table: every op a backend may speed up, named once with its contract, and the registry.

Core asks `lookup(xp, OP)` and falls back to its own pure Array API code when the answer is None, so it
never branches on a library's name. A backend registers a kernel only under a name of OPS (anything else
is a ValueError, so a misspelt kernel cannot sit unused), and every registered kernel is tested equal to
its reference. `xp` in a signature is the arrays' Array API namespace.
"""
from __future__ import annotations

import os
from typing import Any, Callable

MATMUL = "matmul"
CONCAT_INTO = "concat_into"
SGD_UPDATE = "sgd_update"
ADAM_UPDATE = "adam_update"
SOFTMAX_CROSS_ENTROPY_LABELS = "softmax_cross_entropy_labels"
RELU_FORWARD = "relu_forward"
BIAS_RELU_FORWARD = "bias_relu_forward"
SIGMOID_BACKWARD = "sigmoid_backward"
TANH_BACKWARD = "tanh_backward"
IM2COL = "im2col"
COL2IM = "col2im"
MAX_POOL2D = "max_pool2d"
MAX_POOL2D_BACKWARD = "max_pool2d_backward"
GUARD_WATCH = "guard_watch"
PHILOX_UNIFORM = "philox_uniform"

# op -> its signature and contract; the reference named last is what the kernel must equal.
OPS: dict[str, str] = {
    MATMUL: "(a, b) -> a @ b for 2-D a, b (core.arrays.matmul)",
    CONCAT_INTO: "(arrays, out) -> out: each array flattened, one after another, into 1-D out (core.flat)",
    SGD_UPDATE: "(xp, p, g, velocity, *, lr, momentum, nesterov, weight_decay, gate=None) -> (p, velocity), "
                "in place; lr a number or 0-d array, gate a 0-d bool that skips the update "
                "(core.update_math.sgd_update)",
    ADAM_UPDATE: "(xp, p, g, m, v, *, lr, beta1, beta2, eps, step, weight_decay, decoupled, gate=None) -> "
                 "(p, m, v), in place; lr, step numbers or 0-d arrays (core.update_math.adam_update)",
    SOFTMAX_CROSS_ENTROPY_LABELS: "(xp, logits (n, c), labels (n,) integers) -> (mean loss 0-d, dL/dlogits "
                                  "(n, c)) (core.losses.SoftmaxCrossEntropy)",
    RELU_FORWARD: "(xp, x) -> (x * mask, mask), mask = (x > 0) in x's dtype (core.activations.ReLU)",
    BIAS_RELU_FORWARD: "(xp, y (n, f), b (f,)) -> (z * mask, mask) for z = y + b, mask = (z > 0); may write "
                       "over y (core.dense: Dense followed by ReLU)",
    SIGMOID_BACKWARD: "(xp, dy, y) -> dy * y * (1 - y) for the sigmoid's output y (core.activations.Sigmoid)",
    TANH_BACKWARD: "(xp, dy, y) -> dy * (1 - y * y) for tanh's output y (core.activations.Tanh)",
    IM2COL: "(xp, x (C, H, W, N), k, stride, padding) -> columns (C*k*k, Ho*Wo*N), rows (c, i, j), "
            "Ho = out_size(H, k, stride, padding) (core.conv.im2col)",
    COL2IM: "(xp, columns, shape (C, H, W, N), k, stride, padding) -> x of shape: im2col's adjoint, overlaps "
            "summed in window order (core.conv.col2im)",
    MAX_POOL2D: "(xp, x (N, C, H, W), k, stride) -> (y (N, C, Ho, Wo), saved): each window's first maximum "
                "(core.pool.max_pool2d)",
    MAX_POOL2D_BACKWARD: "(xp, dy, saved, k, stride) -> dx; saved from this op's or the reference's forward "
                         "(core.pool.max_pool2d_backward)",
    GUARD_WATCH: "(sums (5,) float64, alive 0-d bool, loss 0-d, rows, stop) -> 0-d bool gate, device only "
                 "(training.state.DeviceState.watch)",
    PHILOX_UNIFORM: "(shape, dtype, seed, counter, out=None) -> uniforms in [0, 1) of a counter-based stream "
                    "that a captured graph advances (Backend.uniform)",
}

_table: dict[tuple[str, str], Callable[..., Any]] = {}
# XPNET_FAST_PATHS=0 runs the pure Array API reference everywhere: to debug a kernel, or to measure what
# the fast paths buy (`xpnet bench --backends numpy,numpy-portable`).
_enabled = os.environ.get("XPNET_FAST_PATHS", "1") != "0"


def out_size(size: int, k: int, stride: int, padding: int = 0) -> int:
    """Output length of a window sweep (conv, pooling) along one axis: windows that do not fit are dropped.
    Here, below core, so that core's references and the backends' kernels share one rule."""
    return (size + 2 * padding - k) // stride + 1


def set_fast_paths(enabled: bool) -> None:
    """Turn every registered kernel and the optimizers' flat buffer on or off for this process."""
    global _enabled
    _enabled = enabled


def fast_paths_enabled() -> bool:
    return _enabled


def register(namespace_name: str, op: str, fn: Callable[..., Any]) -> None:
    """Register `fn` as the kernel for `op` (a name of OPS) on arrays whose namespace module is called
    `namespace_name`; ValueError for any other op name."""
    if op not in OPS:
        raise ValueError(f"unknown kernel op {op!r}: registering it would change nothing; "
                         f"the ops are {', '.join(sorted(OPS))}")
    _table[(namespace_name, op)] = fn


def lookup(xp: Any, op: str) -> Callable[..., Any] | None:
    """The registered kernel for `op` in namespace `xp`, or None to use the reference code."""
    return _table.get((xp.__name__, op)) if _enabled else None


def registered() -> list[tuple[str, str]]:
    return sorted(_table)
