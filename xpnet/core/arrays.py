"""Small helpers every layer uses: the namespace of an array, dtype names, and input checks that name the
problem. Checks read only shapes and dtypes, never values, so they cost no device synchronisation."""
from __future__ import annotations

from typing import Any

import array_api_compat

from xpnet.backends.ops import MATMUL, lookup
from xpnet.errors import DTypeError, ShapeError

FLOAT_NAMES = ("float16", "float32", "float64")
DTYPE_NAMES = FLOAT_NAMES + ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")


_by_type: dict[type, Any] = {}


def namespace(*arrays: Any) -> Any:
    """The Array API namespace shared by `arrays` (NumPy through array-api-compat, torch, strict, ...).

    For one array it is cached by the array's type: array_namespace costs 1-2 us on NumPy and ~20 us on
    array-api-strict, and a training step asks a few dozen times."""
    if len(arrays) == 1:
        kind = type(arrays[0])
        xp = _by_type.get(kind)
        if xp is None:
            xp = _by_type[kind] = array_api_compat.array_namespace(arrays[0])
        return xp
    return array_api_compat.array_namespace(*arrays)


def dtype_name(xp: Any, dtype: Any) -> str:
    """'float32' for the float32 of any library; the library's own spelling if it is none of ours."""
    for name in DTYPE_NAMES:
        if getattr(xp, name, None) == dtype:
            return name
    return str(dtype)


def check_float_dtype(owner: str, dtype: Any) -> str:
    """`dtype` if it names a floating-point type; else DTypeError saying which to pass. Weights are trained by
    small steps, which an integer dtype cannot take (and exp/log in the layers above would fail later)."""
    if isinstance(dtype, str) and dtype in FLOAT_NAMES:
        return dtype
    raise DTypeError(f"{owner} needs a floating-point dtype ({', '.join(map(repr, FLOAT_NAMES))}), got {dtype!r}; "
                     f"pass dtype='float32' (the default) or 'float64'")


def is_writeable(x: Any) -> bool:
    return array_api_compat.is_writeable_array(x)


def check_matrix_input(owner: Any, x: Any, width: int, dtype: Any) -> None:
    """Raise a message naming the layer `owner` unless x is (batch, width) with the layer's floating dtype."""
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) == 2 and shape[1] == width and x.dtype == dtype:
        return  # the hot path: no message is built
    layer = repr(owner)
    if shape is None:
        raise DTypeError(f"{layer} expects an array, got {type(x).__name__}")
    if len(shape) != 2:
        raise ShapeError(f"{layer} expects input of shape (batch, {width}), got {tuple(shape)} "
                         f"(flatten images first, e.g. reshape to (batch, {width}))")
    if shape[1] != width:
        raise ShapeError(f"{layer} expects input width {width}, got {shape[1]} (input shape {tuple(shape)})")
    check_input_dtype(layer, x, dtype)


def check_input_dtype(layer: str, x: Any, dtype: Any) -> None:
    """Raise a DTypeError naming `layer` unless x has the layer's weight dtype: integer input, a float of
    another width, or (the same name from two libraries) input of another array library than the weights."""
    if x.dtype == dtype:
        return
    xp = namespace(x)
    got, want = dtype_name(xp, x.dtype), dtype_name(xp, dtype)
    if got == want or want not in FLOAT_NAMES:  # the same name from two libraries: not a dtype problem
        raise DTypeError(library_mismatch(layer, x, dtype))
    if not xp.isdtype(x.dtype, "real floating"):
        raise DTypeError(f"{layer} expects floating-point input ({want}), got {got}; "
                         f"convert it, e.g. xp.astype(x, xp.{want}) / 255 for pixels")
    raise DTypeError(f"{layer} has {want} weights but got {got} input; convert the input to {want} "
                     f"or move the model with model.to(backend, dtype='{got}')")


def library_mismatch(layer: str, x: Any, weight_dtype: Any) -> str:
    """The message for input of one array library into weights of another: it names both libraries, since
    their dtypes print alike (float32 and float32) and the fix is to move the model, not cast the input."""
    theirs = namespace(x).__name__.removeprefix("array_api_compat.")
    ours = type(weight_dtype).__module__.split(".")[0]  # numpy.dtype, torch.dtype, array_api_strict._dtypes...
    return (f"{layer} has weights of {ours} but got input of {theirs}; move the model to the input's backend: "
            f"model.to(xpnet.backend_for(x)) (fit, evaluate and predict do this themselves)")


def matmul(a: Any, b: Any) -> Any:
    """a @ b, or the backend's registered "matmul" where it has one (on CuPy a direct cuBLAS call, the same
    eagerly and inside a CUDA-graph capture, where CuPy's own `@` is refused)."""
    kernel = lookup(namespace(a), MATMUL)
    return a @ b if kernel is None else kernel(a, b)
