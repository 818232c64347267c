"""The fake cupy.ndarray: a NumPy buffer behind a wrapper that is deliberately NOT a NumPy array.

np.asarray(x), float(x), bool(x), x.get() ... are the host boundary, as in CuPy: the first raises like CuPy,
the others count as device-to-host reads (refused during capture). Every computation goes through `call`,
which refuses NumPy arrays as operands (CuPy raises TypeError for them), refuses cuBLAS during capture (as
CuPy's cuBLAS wrapper does) and records the operation on a capture's tape.
"""
from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from . import _capture as cap

# NumPy functions that CuPy implements with cuBLAS/cuSOLVER: CuPy refuses them while a stream captures.
BLAS_NAMES = {"matmul", "dot", "vdot", "inner", "tensordot", "einsum", "kron", "solve", "inv", "det", "svd",
              "qr", "cholesky", "eigh", "norm", "lstsq", "pinv", "matrix_power", "multi_dot", "vecdot", "matvec",
              "vecmat"}


class _Ptr:
    """x.data: only .ptr is used (raw kernel arguments, cuBLAS operands)."""

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr


def new(a: np.ndarray) -> ndarray:
    """A fresh device buffer holding `a` (which must not alias any other device array)."""
    w = ndarray.__new__(ndarray)
    w._a = a
    cap.note_allocation(a)
    return w


def view(a: np.ndarray) -> ndarray:
    """A device array sharing memory with an existing one."""
    w = ndarray.__new__(ndarray)
    w._a = a
    return w


def unwrap(x: Any) -> Any:
    """Device arrays (also inside lists, tuples, dicts) replaced by their NumPy buffers."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, list):
        return [unwrap(v) for v in x]
    if isinstance(x, tuple):
        return tuple(unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: unwrap(v) for k, v in x.items()}
    return x


def _buffers(x: Any, out: list[np.ndarray]) -> list[np.ndarray]:
    if isinstance(x, ndarray):
        out.append(x._a)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _buffers(v, out)
    elif isinstance(x, dict):
        for v in x.values():
            _buffers(v, out)
    return out


def has_host_array(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return True
    if isinstance(x, (list, tuple)):
        return builtins.any(has_host_array(v) for v in x)
    if isinstance(x, dict):
        return builtins.any(has_host_array(v) for v in x.values())
    return False


def call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Any:
    """Run NumPy's `fn` as a CuPy device operation: results that do not alias an input become fresh device
    arrays; during capture the operation is also recorded, to recompute those same arrays at each replay."""
    if cap.capturing() and name in BLAS_NAMES:
        raise cap.violation(f"cupy (fake): cuBLAS call ({name}) during stream capture (CuPy's cublas.setStream "
                            "refuses a capturing stream)", NotImplementedError)
    if has_host_array(args) or has_host_array(kwargs):
        raise TypeError(f"Unsupported type <class 'numpy.ndarray'> (a NumPy array passed to cupy {name})")
    out = kwargs.get("out")
    inputs = _buffers(args, []) + _buffers({k: v for k, v in kwargs.items() if k != "out"}, [])
    if out is not None:
        outs = out if isinstance(out, tuple) else (out,)
        targets = [o._a for o in outs if isinstance(o, ndarray)]
        cap.run_or_record(lambda: fn(*unwrap(args), **unwrap(kwargs)), targets, name)
        return out[0] if isinstance(out, tuple) and len(out) == 1 else out
    result = fn(*unwrap(args), **unwrap(kwargs))
    fresh: list[ndarray] = []

    def wrap(r: Any) -> Any:
        if isinstance(r, np.ndarray):
            if builtins.any(np.may_share_memory(r, i) for i in inputs):
                return view(r)  # a view (reshape, slice, transpose) of an input: no new buffer, nothing to record
            w = new(r)
            fresh.append(w)
            return w
        if isinstance(r, np.generic):  # CuPy reductions give 0-d device arrays, never host scalars
            w = new(np.asarray(r))
            fresh.append(w)
            return w
        if isinstance(r, tuple) and builtins.any(isinstance(v, (np.ndarray, np.generic)) for v in r):
            return type(r)(*[wrap(v) for v in r]) if hasattr(r, "_fields") else tuple(wrap(v) for v in r)
        if isinstance(r, list) and r and builtins.all(isinstance(v, np.ndarray) for v in r):
            return [wrap(v) for v in r]
        return r

    wrapped = wrap(result)
    if fresh and cap.capturing():
        cap.record(_replay_into(fn, args, kwargs, fresh, name), name)
    return wrapped


def _replay_into(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], fresh: list[ndarray],
                 name: str) -> Callable[[], None]:
    """The replay of a captured op with new outputs: recompute and copy into the buffers captured, as a
    graph's kernel writes into the addresses allocated at capture."""
    def thunk() -> None:
        flat: list[Any] = []

        def walk(v: Any) -> None:
            if isinstance(v, (np.ndarray, np.generic)):
                flat.append(v)
            elif isinstance(v, (tuple, list)):
                for u in v:
                    walk(u)

        walk(fn(*unwrap(args), **unwrap(kwargs)))
        inputs = _buffers(args, [])
        targets = iter(fresh)
        target = next(targets, None)
        for v in flat:  # the fresh outputs, in order, among results that are not views of an input
            if target is None:
                break
            is_view = isinstance(v, np.ndarray) and builtins.any(np.may_share_memory(v, i) for i in inputs)
            if np.shape(v) == target._a.shape and not is_view:
                np.copyto(target._a, v, casting="unsafe")
                target = next(targets, None)
        assert target is None, f"fake cupy: the replay of {name} did not produce the captured outputs"
    return thunk


class ndarray(NDArrayOperatorsMixin):
    """cupy.ndarray over a NumPy buffer `_a`. Arithmetic arrives through __array_ufunc__."""

    __array_priority__ = 100
    _a: np.ndarray

    def __init__(self, shape: Any, dtype: Any = float, memptr: Any = None, strides: Any = None,
                 order: str = "C") -> None:
        self._a = np.empty(shape, dtype)
        cap.note_allocation(self._a)

    shape = property(lambda s: s._a.shape)
    dtype = property(lambda s: s._a.dtype)
    ndim = property(lambda s: s._a.ndim)
    size = property(lambda s: s._a.size)
    strides = property(lambda s: s._a.strides)
    itemsize = property(lambda s: s._a.itemsize)
    nbytes = property(lambda s: s._a.nbytes)
    flags = property(lambda s: s._a.flags)
    T = property(lambda s: view(s._a.T))
    mT = property(lambda s: view(np.swapaxes(s._a, -1, -2)))
    data = property(lambda s: _Ptr(s._a.ctypes.data))  # the address is the NumPy buffer's: cuBLAS reads it

    @property
    def device(self) -> cap.Device:
        return cap.Device(0)

    @property
    def base(self) -> ndarray | None:
        # Only `is None` is asked of it (views vs owners); CuPy would return the owning array.
        return None if self._a.base is None else self

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        cap.host_read("repr")
        return "fake" + repr(self._a)

    __str__ = __repr__

    # -- the host boundary
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly.")

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)  # kDLCUDA

    def __dlpack__(self, **kwargs: Any) -> Any:
        raise BufferError("fake cupy: device (kDLCUDA) memory cannot be exported to the host")

    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
        cap.host_read("get")
        return self._a.copy()

    def set(self, arr: np.ndarray, stream: Any = None) -> None:
        cap.host_to_device("set")
        self._a[...] = arr

    def item(self) -> Any:
        cap.host_read("item")
        return self._a.item()

    def tolist(self) -> Any:
        cap.host_read("tolist")
        return self._a.tolist()

    def __bool__(self) -> bool:
        cap.host_read("bool")
        return bool(self._a)

    def __float__(self) -> float:
        cap.host_read("float")
        return float(self._a)

    def __int__(self) -> int:
        cap.host_read("int")
        return int(self._a)

    def __index__(self) -> int:
        cap.host_read("index")
        return self._a.__index__()

    def __complex__(self) -> complex:
        cap.host_read("complex")
        return complex(self._a)

    def __format__(self, spec: str) -> str:
        cap.host_read("format")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __reduce__(self) -> Any:
        raise TypeError("fake cupy: pickling a device array")

    # -- arithmetic
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return call(getattr(ufunc, method), inputs, kwargs, ufunc.__name__)

    # -- indexing
    def __getitem__(self, key: Any) -> ndarray:
        if has_host_array(key):
            raise TypeError("fake cupy: a NumPy index array")
        r = self._a[unwrap(key)]
        if isinstance(r, np.ndarray) and np.may_share_memory(r, self._a):
            return view(r)
        w = new(np.asarray(r))  # advanced indexing (or a 0-d element): a gather kernel into a new buffer
        if cap.capturing():
            cap.record(lambda: np.copyto(w._a, self._a[unwrap(key)], casting="unsafe"), "getitem")
        return w

    def __setitem__(self, key: Any, value: Any) -> None:
        if has_host_array(key):
            raise TypeError("fake cupy: a NumPy index array")
        if isinstance(value, np.ndarray):  # CuPy copies it to the device first
            cap.PROBLEMS.append(f"setitem with a NumPy array value (shape {value.shape})")
            cap.host_to_device("setitem of a NumPy value")

        def thunk() -> None:
            self._a[unwrap(key)] = unwrap(value)
        cap.run_or_record(thunk, [self._a], "setitem")

    def fill(self, value: Any) -> None:
        cap.run_or_record(lambda: self._a.fill(unwrap(value)), [self._a], "fill")

    def __getattr__(self, name: str) -> Any:
        # Methods (astype, reshape, sum, ...) are NumPy's, run through `call`; those CuPy lacks are refused.
        if name.startswith("_"):
            raise AttributeError(name)
        if not hasattr(np.ndarray, name) or name in ("sort", "put", "resize", "itemset", "setfield", "tofile",
                                                      "dump", "dumps", "tobytes"):
            raise AttributeError(f"fake cupy ndarray has no attribute {name!r}")

        def method(a: np.ndarray, *args: Any, **kwargs: Any) -> Any:
            return getattr(a, name)(*args, **kwargs)
        return lambda *args, **kwargs: call(method, (self,) + args, kwargs, name)
