"""The optimizers' arithmetic as pure functions on arrays: the Array API reference that a backend may
replace with a fused kernel of the same signature (see backends/ops.py).

Each takes the parameter, its gradient and its state arrays, and returns them updated: the same objects,
changed in place, where the arrays are writeable; new ones where they are not (JAX). They run once per
parameter, or once over the flat buffer that every parameter is a view into (core/flat.py).

`lr` and `step` are Python numbers in eager training, or 0-d arrays on the device when the step is
replayed as a captured graph (their values change between replays, so they cannot be baked in).
`gate`, when given, is a 0-d boolean array: where it holds False the update changes nothing, so a step
whose loss was NaN can be dropped on the device without reading the loss back to the host.
"""
from __future__ import annotations

import math
from typing import Any

from xpnet.core.arrays import is_writeable


def sgd_update(xp: Any, p: Any, g: Any, velocity: Any, *, lr: Any, momentum: float, nesterov: bool,
               weight_decay: float, gate: Any = None) -> tuple[Any, Any]:
    """p -= lr * g (+ L2); with momentum v = mu v + g and the step is v (Nesterov: g + mu v).
    A zero-initialised velocity gives torch's first step (v = g) exactly."""
    if gate is not None:
        return _gated(xp, gate, lambda *a: sgd_update(xp, *a, lr=lr, momentum=momentum, nesterov=nesterov,
                                                      weight_decay=weight_decay), p, g, velocity)
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    p -= lr * g
    return p, velocity


def adam_update(xp: Any, p: Any, g: Any, m: Any, v: Any, *, lr: Any, beta1: float, beta2: float, eps: float,
                step: Any, weight_decay: float, decoupled: bool, gate: Any = None) -> tuple[Any, Any, Any]:
    """Adam (AdamW when `decoupled`), bias-corrected as torch.optim.Adam at update number `step`."""
    if gate is not None:
        return _gated(xp, gate, lambda *a: adam_update(xp, *a, lr=lr, beta1=beta1, beta2=beta2, eps=eps, step=step,
                                                       weight_decay=weight_decay, decoupled=decoupled), p, g, m, v)
    if decoupled:
        p *= 1.0 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * p
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    c1, c2 = 1.0 - beta1 ** step, 1.0 - beta2 ** step
    inv_sqrt_c2 = 1.0 / (math.sqrt(c2) if isinstance(c2, float) else xp.sqrt(c2))
    denom = xp.sqrt(v) * inv_sqrt_c2 + eps
    p -= (lr / c1) * (m / denom)
    return p, m, v


def _gated(xp: Any, gate: Any, update: Any, p: Any, g: Any, *state: Any) -> tuple[Any, ...]:
    """Run `update` on copies, then keep the new values only where `gate` holds: the reference pays for the
    copies; a fused kernel reads the gate and skips the write instead."""
    old = [None if a is None else xp.asarray(a, copy=True) for a in (p, *state)]
    clean_g = xp.where(gate, g, xp.zeros_like(g))  # a NaN gradient must not reach the state even when gated off
    new = update(p, clean_g, *state)
    out = []
    for a, before in zip(new, old):
        if a is None:
            out.append(None)
            continue
        kept = xp.where(gate, a, before)
        if is_writeable(a):
            a[...] = kept
            out.append(a)
        else:
            out.append(kept)
    return tuple(out)

