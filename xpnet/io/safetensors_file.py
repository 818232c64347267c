"""Reading and writing the safetensors format: a JSON header and raw little-endian arrays, nothing that
can run code. Reading is bounded and typed: only a regular file of at most MAX_FILE_BYTES is opened, only its
8-byte length and a header of at most _MAX_HEADER bytes are read first, every header field is checked (dtype,
shape, byte range against the file's size), and the arrays are read only when the caller asks, so a file
that is not safetensors (a pickle renamed, a truncated download, a hostile header) is refused with one error
before anything it declares is allocated. CorruptFileError is damage (cut short, bit-flipped, not this format:
a resume skips it for an older checkpoint); CheckpointError is a readable file xpnet must not use (not a
regular file, too large, a field of the wrong type: a resume stops on it)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as _save_tensors

from xpnet.errors import CheckpointError, CorruptFileError
from xpnet.io.atomic import atomic_write_bytes
from xpnet.io.fields import Fields, check, parse_json
from xpnet.io.regular import open_regular

# A checkpoint's header holds its history: ~250 bytes an epoch, so 8 MiB is over 30,000 epochs.
_MAX_HEADER = 8 * 1024 * 1024
# xpnet's models are megabytes (the MNIST MLP 0.4 MB, LeNet 0.25 MB); a file this large is refused unread.
MAX_FILE_BYTES = 2 * 1024 ** 3
_MAX_NDIM = 32
_DTYPES = {"F16": ("float16", "<f2"), "F32": ("float32", "<f4"), "F64": ("float64", "<f8"), "I8": ("int8", "i1"),
           "I16": ("int16", "<i2"), "I32": ("int32", "<i4"), "I64": ("int64", "<i8"), "U8": ("uint8", "u1"),
           "U16": ("uint16", "<u2"), "U32": ("uint32", "<u4"), "U64": ("uint64", "<u8"), "BOOL": ("bool", "?")}
_NUMPY_DTYPES = dict(_DTYPES.values())  # xpnet's dtype name -> the little-endian numpy dtype it is read as
CHECKSUM_KEY = "sha256"


def write_safetensors(path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> Path:
    """Atomically write host arrays plus JSON-able metadata (stored as one JSON string per key), with the
    SHA-256 of the array bytes in the header so a torn or bit-flipped file is detected on load."""
    tensors = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # ascontiguousarray would make 0-d 1-d
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    draft = _save_tensors(tensors, metadata=meta)
    # The data section does not depend on the header's contents, so its digest can go into the header.
    meta[CHECKSUM_KEY] = json.dumps(hashlib.sha256(_data_section(draft)).hexdigest())
    return atomic_write_bytes(path, _save_tensors(tensors, metadata=meta))


def _data_section(data: bytes) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    return data[8 + n:]


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, metadata) from a file written by `write_safetensors`; CheckpointError if it is not one."""
    with SafetensorsFile(path) as f:
        return f.read_arrays(), f.metadata


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header declares it: xpnet's dtype name, shape, and byte range in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


class SafetensorsFile:
    """A safetensors file opened and its header read: bounded, typed, and checked against the file's size, so
    a caller can compare what it declares with what it expects before any array is read (`read_arrays`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = open_regular(self.path, MAX_FILE_BYTES, CheckpointError)
        try:
            self.tensors, self.metadata, self._checksum = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()

    def _read_header(self) -> tuple[dict[str, TensorInfo], dict[str, Any], str | None]:
        path, size = self.path, os.fstat(self._file.fileno()).st_size
        head = self._file.read(8)
        if len(head) < 8:
            raise CorruptFileError(f"{path}: not an xpnet model file (only {len(head)} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise CorruptFileError(f"{path}: not a safetensors file (bad header length; a pickle or a truncated file?)")
        header = parse_json(self._file.read(n), path, "not a safetensors file: its header")
        if not isinstance(header, dict):
            raise CorruptFileError(f"{path}: not a safetensors file (header is not a JSON object)")
        self._data_start, self._data_size = 8 + n, size - 8 - n
        raw_meta = header.pop("__metadata__", None)
        raw_meta = Fields(path, {} if raw_meta is None else raw_meta, "__metadata__")
        tensors = {name: self._tensor(name, entry) for name, entry in header.items()}
        _check_tiling(path, tensors, self._data_size)
        texts = {k: raw_meta.get(k, str) for k in raw_meta.value}
        metadata = {k: parse_json(v, path, f"metadata field {k!r}") for k, v in texts.items() if k != CHECKSUM_KEY}
        checksum = parse_json(texts[CHECKSUM_KEY], path, "the checksum") if CHECKSUM_KEY in texts else None
        if checksum is not None and not (isinstance(checksum, str) and re.fullmatch(r"[0-9a-f]{64}", checksum)):
            raise CheckpointError(f"{path}: field __metadata__.{CHECKSUM_KEY} is not a SHA-256 digest")
        return tensors, metadata, checksum

    def _tensor(self, name: str, entry: Any) -> TensorInfo:
        label = f"tensor {tensor_label(name)}"
        f = Fields(self.path, entry, label)
        code = f.get("dtype", str)
        if code not in _DTYPES:
            raise CheckpointError(f"{self.path}: {label} has dtype {code[:20]!r}, which xpnet does not read")
        shape = tuple(check(self.path, f.name("shape") + "[]", d, int, low=0) for d in f.get("shape", list))
        offsets = f.get("data_offsets", list)
        if len(shape) > _MAX_NDIM or len(offsets) != 2:
            raise CheckpointError(f"{self.path}: {label} needs at most {_MAX_NDIM} dimensions and 2 data offsets")
        begin, end = (check(self.path, f.name("data_offsets") + "[]", o, int, low=0) for o in offsets)
        nbytes = math.prod(shape) * np.dtype(_DTYPES[code][1]).itemsize
        if end - begin != nbytes or end > self._data_size:
            raise CorruptFileError(f"{self.path}: {label} declares {nbytes:,} bytes at {begin:,}..{end:,}, "
                                   f"which the file's {self._data_size:,} bytes of data do not hold")
        return TensorInfo(_DTYPES[code][0], shape, begin, end)

    def read_arrays(self) -> dict[str, np.ndarray]:
        """Every tensor the header names, read from its byte range after the checksum of the data is verified."""
        data = bytearray(self._data_size)
        self._file.seek(self._data_start)
        view, got = memoryview(data), 0
        while got < len(data) and (n := self._file.readinto(view[got:])):
            got += n
        if got < len(data):
            raise CorruptFileError(f"{self.path}: cut short while it was read ({got:,} of {len(data):,} data bytes)")
        if self._checksum is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != self._checksum:
                raise CorruptFileError(f"{self.path}: checksum mismatch - the file is corrupt or was cut short "
                                      f"(expected sha256 {self._checksum[:16]}..., got {actual[:16]}...)")
        return {name: np.frombuffer(data, _NUMPY_DTYPES[t.dtype], math.prod(t.shape), t.begin).reshape(t.shape)
                for name, t in self.tensors.items()}


def tensor_label(name: str) -> str:
    """A tensor's name for a message: quoted, and cut short (a hostile header may name one in megabytes)."""
    text = repr(name)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_tiling(path: Path, tensors: dict[str, TensorInfo], data_size: int) -> None:
    """The tensors' byte ranges follow one another from 0 to the end of the data: no overlap, gap or tail."""
    at = 0
    for name, t in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if t.begin != at:
            raise CorruptFileError(f"{path}: tensor {tensor_label(name)} starts at byte {t.begin:,} of the data, "
                                   f"expected {at:,} (tensors overlap or leave a gap)")
        at = t.end
    if at != data_size:
        raise CorruptFileError(f"{path}: {data_size - at:,} bytes after the last tensor (a damaged or foreign file)")
