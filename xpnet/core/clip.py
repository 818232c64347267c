"""Gradient clipping by global norm: every gradient scaled by min(1, max_norm / ||all gradients||_2)."""
from __future__ import annotations

import math
from typing import Any, Sequence

from xpnet.core.arrays import namespace
from xpnet.core.module import Parameter


def check_max_norm(max_norm: float) -> float:
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not math.isfinite(max_norm) \
            or max_norm <= 0:
        raise ValueError(f"clip_norm must be a positive finite number, got {max_norm!r}")
    return float(max_norm)


def clip_grad_norm(params: Sequence[Parameter], max_norm: float) -> Any:
    """Replace each Parameter's gradient by a scaled one so that their global L2 norm is at most max_norm;
    returns the norm before clipping as a 0-d array, None when no parameter has a gradient. Device work only
    (no host read), so it runs inside a captured step; parameters without a gradient are left out."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return None
    xp = namespace(grads[0].grad)
    total = xp.sqrt(sum(xp.sum(p.grad * p.grad) for p in grads))
    one = xp.ones((), dtype=total.dtype, device=total.device)
    scale = xp.minimum(max_norm / (total + 1e-12), one)  # the epsilon keeps all-zero gradients finite
    for p in grads:
        p.grad = p.grad * scale
    return total
