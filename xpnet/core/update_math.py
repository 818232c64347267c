"""The optimizers' arithmetic as pure functions on arrays: the Array API reference that a backend may
replace with a fused kernel of the same signature (see backends/kernels.py).

Each takes the parameter, its gradient and its state arrays, and returns them updated: the same objects,
changed in place, where the arrays are writeable; new ones where they are not (JAX). They run once per
parameter, or once over the flat buffer that every parameter is a view into (core/flat.py).
"""
from __future__ import annotations

import math
from typing import Any


def sgd_update(xp: Any, p: Any, g: Any, velocity: Any, *, lr: float, momentum: float, nesterov: bool,
               weight_decay: float) -> tuple[Any, Any]:
    """p -= lr * g (+ L2); with momentum v = mu v + g and the step is v (Nesterov: g + mu v).
    A zero-initialised velocity gives torch's first step (v = g) exactly."""
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    p -= lr * g
    return p, velocity


def adam_update(xp: Any, p: Any, g: Any, m: Any, v: Any, *, lr: float, beta1: float, beta2: float, eps: float,
                step: int, weight_decay: float, decoupled: bool) -> tuple[Any, Any, Any]:
    """Adam (AdamW when `decoupled`), bias-corrected as torch.optim.Adam at update number `step`."""
    if decoupled:
        p *= 1.0 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * p
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    c1, c2 = 1.0 - beta1 ** step, 1.0 - beta2 ** step
    denom = xp.sqrt(v) * (1.0 / math.sqrt(c2)) + eps
    p -= (lr / c1) * (m / denom)
    return p, m, v
