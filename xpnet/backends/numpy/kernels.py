"""NumPy's fast kernels: the same maths as core's Array API reference, with `out=` and fewer passes.

Registered by the numpy backend; each is tested equal to its reference (tests/backends/test_fast_kernels.py).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from xpnet.backends.ops import ADAM_UPDATE, CONCAT_INTO, SOFTMAX_CROSS_ENTROPY_LABELS, register

NAMESPACE = "array_api_compat.numpy"


def concat_into(arrays: list[np.ndarray], out: np.ndarray) -> np.ndarray:
    """Every array flattened, one after another, into the preallocated `out` (the flat gradient)."""
    return np.concatenate([a.reshape(-1) for a in arrays], out=out)


def adam_update(xp: Any, p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, *, lr: Any, beta1: float,
                beta2: float, eps: float, step: Any, weight_decay: float, decoupled: bool,
                gate: Any = None) -> tuple[Any, Any, Any]:
    """core.update_math.adam_update as 12 elementwise passes that reuse one temporary array.
    Uses p -= lr sqrt(c2)/c1 * m / (sqrt(v) + eps sqrt(c2)), algebraically the reference's update."""
    if gate is not None and not bool(gate):  # a step dropped for a NaN loss (reading it is free on the host)
        return p, m, v
    lr, step = float(lr), float(step)  # 0-d arrays in graph mode
    if decoupled:
        p *= 1.0 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * p
    tmp = np.multiply(g, 1.0 - beta1)
    m *= beta1
    m += tmp
    np.multiply(g, g, out=tmp)
    tmp *= 1.0 - beta2
    v *= beta2
    v += tmp
    c1, sqrt_c2 = 1.0 - beta1 ** step, math.sqrt(1.0 - beta2 ** step)
    np.sqrt(v, out=tmp)
    tmp += eps * sqrt_c2
    np.divide(m, tmp, out=tmp)
    tmp *= lr * sqrt_c2 / c1
    p -= tmp
    return p, m, v


def softmax_cross_entropy_labels(xp: Any, logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean loss, dL/dlogits) for integer labels: the label's term picked by index instead of a one-hot."""
    n = logits.shape[0]
    rows = _rows(n)
    z = logits - np.max(logits, axis=1, keepdims=True)
    picked = z[rows, labels]
    np.exp(z, out=z)
    total = np.add.reduce(z, axis=1, keepdims=True)
    loss = (np.add.reduce(np.log(total), axis=None) - np.add.reduce(picked)) / n  # 0-d, logits' dtype
    z /= total
    z[rows, labels] -= 1.0
    z *= 1.0 / n
    return np.asarray(loss), z


_row_cache: dict[int, np.ndarray] = {}


def _rows(n: int) -> np.ndarray:
    if n not in _row_cache:
        _row_cache[n] = np.arange(n)
    return _row_cache[n]


def register_all() -> None:
    register(NAMESPACE, CONCAT_INTO, concat_into)
    register(NAMESPACE, ADAM_UPDATE, adam_update)
    register(NAMESPACE, SOFTMAX_CROSS_ENTROPY_LABELS, softmax_cross_entropy_labels)
