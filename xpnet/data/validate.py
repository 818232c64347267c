"""Checks on a whole dataset, done once before training: each failure names what is wrong."""
from __future__ import annotations

from typing import Any

from xpnet.backends import Backend, backend_for, transfer
from xpnet.core.arrays import dtype_name
from xpnet.errors import DataError, DTypeError, ShapeError


def to_backend(backend: Backend, a: Any) -> Any:
    """`a` on `backend`, copied through the host only if it lives elsewhere (labels as NumPy, say)."""
    if backend_for(a).same_as(backend):
        return a
    return transfer(a, backend)


def model_inputs(backend: Backend, x: Any, dtype: str, what: str) -> Any:
    """x on `backend` as a floating array of `dtype`: floating inputs of another precision are cast (the
    model's dtype decides, the same in fit, evaluate and predict); integers, bools and empty sets are refused."""
    xp = backend.xp
    x = to_backend(backend, x)
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError(f"{what} inputs are empty (shape {tuple(x.shape)})")
    if not xp.isdtype(x.dtype, "real floating"):
        raise DTypeError(f"{what} inputs are {dtype_name(xp, x.dtype)}; the model needs floating-point inputs "
                         f"({dtype}) - convert them first (for pixels: x.astype('{dtype}') / 255)")
    if dtype_name(xp, x.dtype) != dtype:
        x = xp.astype(x, backend.dtype(dtype))
    return x


def check_inputs(backend: Backend, x: Any, dtype: str, what: str) -> Any:
    """model_inputs, also refusing NaN/inf: a whole set checked once, before training or evaluating on it."""
    xp = backend.xp
    x = model_inputs(backend, x, dtype, what)
    finite = xp.all(xp.isfinite(x), axis=tuple(range(1, x.ndim))) if x.ndim > 1 else xp.isfinite(x)
    if not bool(xp.all(finite)):
        first = int(xp.argmax(xp.astype(~finite, xp.int32)))
        raise DataError(f"{what} inputs contain NaN or inf (first in row {first}); clean or impute them before training")
    return x


def check_targets(backend: Backend, y: Any, n: int, what: str) -> Any:
    """y on `backend` with one row per input row."""
    y = to_backend(backend, y)
    if y.ndim == 0 or y.shape[0] != n:
        raise ShapeError(f"{what} has {n} inputs but {y.shape[0] if y.ndim else 0} targets (shape {tuple(y.shape)})")
    xp = backend.xp
    if xp.isdtype(y.dtype, "real floating") and not bool(xp.all(xp.isfinite(y))):
        raise DataError(f"{what} targets contain NaN or inf")
    return y


def data_pair(data: Any, what: str, y: Any = None, *, apart: bool = False) -> tuple[Any, Any]:
    """(x, y) from a call's data: one (x, y) pair, as fit takes it, or x and `y` given apart where the call
    allows both (`apart`: the TypeError for any other form then names both)."""
    forms = "an (x, y) pair or as x, y" if apart else "an (x, y) pair"
    if y is None:
        if isinstance(data, (tuple, list)) and len(data) == 2:
            return data[0], data[1]
        kind = f"a {len(data)}-item {type(data).__name__}" if isinstance(data, (tuple, list)) else \
            f"one {type(data).__name__}" + (" and no targets" if apart else "")
        raise TypeError(f"{what} takes the data as {forms}; got {kind}")
    if isinstance(data, (tuple, list)):
        raise TypeError(f"{what} takes the data as {forms}; with y given, x must be an array, "
                        f"got a {type(data).__name__}")
    return data, y
