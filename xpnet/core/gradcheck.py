"""Finite-difference gradient check: compares a module's backward with central differences in float64.

Written against the Array API only (perturbations are built from `arange == i` masks, no setitem), so it
runs on every backend, array-api-strict included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from xpnet.core.arrays import namespace


@dataclass
class GradcheckResult:
    name: str  # 'input' or the parameter's name
    max_abs_error: float
    max_rel_error: float


def _unit(xp: Any, like: Any, i: int) -> Any:
    n = 1
    for d in like.shape:
        n *= d
    flat = xp.astype(xp.arange(n, device=like.device) == i, like.dtype)
    return xp.reshape(flat, like.shape)


def _numeric(xp: Any, f: Callable[[Any], Any], x: Any, eps: float) -> Any:
    """d f / d x by central differences, one element at a time."""
    n = 1
    for d in x.shape:
        n *= d
    cols = []
    for i in range(n):
        e = _unit(xp, x, i) * eps
        cols.append((float(f(x + e)) - float(f(x - e))) / (2 * eps))
    return xp.reshape(xp.asarray(cols, dtype=x.dtype, device=x.device), x.shape)


def _compare(xp: Any, name: str, analytic: Any, numeric: Any) -> GradcheckResult:
    err = xp.abs(analytic - numeric)
    scale = xp.maximum(xp.abs(analytic), xp.abs(numeric))
    rel = err / xp.maximum(scale, xp.asarray(1e-8, dtype=err.dtype, device=err.device))
    return GradcheckResult(name, float(xp.max(err)), float(xp.max(rel)))


def gradcheck_module(module: Any, x: Any, eps: float = 1e-6) -> list[GradcheckResult]:
    """Check dL/dx and every dL/dparam of `module` at float64 input x, for L = sum(forward(x) * r)."""
    xp = namespace(x)
    y = module.forward(x)
    # A fixed pseudo-random projection makes every output element matter with a distinct weight.
    n_out = 1
    for d in y.shape:
        n_out *= d
    r = xp.reshape(xp.sin(xp.arange(1, n_out + 1, dtype=y.dtype, device=y.device) * 1.37), y.shape)

    def loss_at(inp: Any) -> Any:
        return xp.sum(module.forward(inp) * r)

    module.zero_grad()
    module.forward(x)
    dx = module.backward(r)
    results = [_compare(xp, "input", dx, _numeric(xp, loss_at, x, eps))]
    for name, p in module.named_parameters():
        analytic, original = p.grad, p.value

        def loss_at_param(v: Any, p: Any = p) -> Any:
            p.value = v
            return xp.sum(module.forward(x) * r)

        numeric = _numeric(xp, loss_at_param, original, eps)
        p.value = original
        results.append(_compare(xp, name, analytic, numeric))
    return results


def gradcheck_loss(loss: Any, pred: Any, target: Any, eps: float = 1e-6) -> GradcheckResult:
    """Check loss.backward() against central differences of loss.forward(pred, target)."""
    xp = namespace(pred)
    loss.forward(pred, target)
    analytic = loss.backward()
    numeric = _numeric(xp, lambda p: loss.forward(p, target), pred, eps)
    return _compare(xp, "prediction", analytic, numeric)
