"""The IDX file format (LeCun's MNIST container): reading, validating and writing unsigned-byte IDX files."""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from xpnet.errors import DataError
from xpnet.io.atomic import atomic_write_bytes

UBYTE = 0x08  # the IDX type code for unsigned bytes, the only element type MNIST uses


def idx_magic(ndim: int) -> int:
    """The IDX magic number of an unsigned-byte file with `ndim` dimensions (0x803 for MNIST images)."""
    return (UBYTE << 8) | ndim


def read_bytes(path: str | os.PathLike) -> bytes:
    """The uncompressed bytes of `path`, gunzipped when its name ends in .gz."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    return gunzip(data, path) if path.suffix == ".gz" else data


def gunzip(data: bytes, name: str | os.PathLike) -> bytes:
    """Decompress gzip `data`, raising DataError naming `name` if the stream is corrupt."""
    try:
        return gzip.decompress(data)
    # BadGzipFile (CRC or header errors) is an OSError; a cut stream is EOFError; bad deflate data is zlib.error.
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: corrupt gzip stream ({exc or type(exc).__name__}); "
                        f"delete the file to re-download it") from exc


def parse_idx(data: bytes, name: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Parse uncompressed IDX bytes into a read-only uint8 array; `name` only labels error messages."""
    if len(data) < 4:
        raise DataError(f"{name}: not an IDX file: only {len(data)} bytes, shorter than the 4-byte magic number")
    magic = int.from_bytes(data[:4], "big")
    ndim = data[3]
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{name}: bad IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
    if data[0] != 0 or data[1] != 0 or data[2] != UBYTE or ndim == 0:
        raise DataError(f"{name}: bad IDX magic number 0x{magic:08x}: only unsigned-byte IDX files "
                        f"(0x000008NN) are supported")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header: need {header} bytes for {ndim} dimensions, "
                        f"file has {len(data)}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    actual = len(data) - header
    if actual != expected:
        dims = "x".join(map(str, shape))
        what = "truncated" if actual < expected else "over-long"
        raise DataError(f"{name}: {what}: header says {dims} = {expected} payload bytes, "
                        f"file holds {actual}; delete the file to re-download it")
    # frombuffer avoids a copy; the array is read-only because it views immutable bytes.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzipped if its name ends in .gz) into a uint8 array."""
    return parse_idx(read_bytes(path), path, expected_magic)


def encode_idx(array: np.ndarray) -> bytes:
    """The uncompressed IDX bytes of a uint8 array."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim == 0:
        raise DataError(f"IDX needs a uint8 array with at least one dimension, got {array.dtype} {array.shape}")
    header = idx_magic(array.ndim).to_bytes(4, "big")
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_gz_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Gzip `data` into `path` atomically (temp file, fsync, rename), so `path` is never partial."""
    atomic_write_bytes(path, gzip.compress(data, mtime=0))


def write_idx_gz(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file, atomically."""
    write_gz_atomic(path, encode_idx(array))
