"""Reading and writing the safetensors format: a JSON header and raw little-endian arrays, nothing that
can run code. The header is parsed here with `json`, so a file that is not safetensors (a pickle renamed,
a truncated download) is refused with a message rather than half-read."""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as _load_tensors
from safetensors.numpy import save as _save_tensors

from xpnet.errors import CheckpointError, CorruptFileError
from xpnet.io.atomic import atomic_write_bytes

_MAX_HEADER = 100 * 1024 * 1024
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
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    header = _parse_header(path, data)
    expected = (header.get("__metadata__") or {}).get(CHECKSUM_KEY)
    if expected is not None:
        actual = hashlib.sha256(_data_section(data)).hexdigest()
        if json.loads(expected) != actual:
            raise CorruptFileError(f"{path}: checksum mismatch - the file is corrupt or was cut short "
                                  f"(expected sha256 {json.loads(expected)[:16]}..., got {actual[:16]}...)")
    try:
        arrays = _load_tensors(data)
    except Exception as exc:  # safetensors raises its own error type for every kind of damage
        raise CorruptFileError(f"{path}: corrupt safetensors data ({exc})") from None
    raw_meta = header.get("__metadata__") or {}
    try:
        metadata = {k: json.loads(v) for k, v in raw_meta.items() if k != CHECKSUM_KEY}
    except (TypeError, ValueError):
        raise CorruptFileError(f"{path}: unreadable xpnet metadata in the header") from None
    return arrays, metadata


def _parse_header(path: Path, data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise CorruptFileError(f"{path}: not an xpnet model file (only {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise CorruptFileError(f"{path}: not a safetensors file (bad header length; a pickle or a truncated file?)")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, ValueError):
        raise CorruptFileError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CorruptFileError(f"{path}: not a safetensors file (header is not a JSON object)")
    return header
