"""Property-based fuzzing of the safetensors and checkpoint header parsers: random mutations of a valid model
file and of a valid checkpoint (bytes flipped, cut or inserted; header fields replaced by random JSON) never
give anything but a clean xpnet error, or a file that loads. Each property runs with the process's address
space capped at its size on entry + 500 MB (a soft RLIMIT_AS, restored after), so an allocation driven by a
mutated header fails the test as a MemoryError; an alarm guards against a hang."""
from __future__ import annotations

import contextlib
import functools
import json
import resource
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpnet as xn
from xpnet.errors import XpnetError
from xpnet.io import Checkpoints, checkpoint_files

HEADROOM = 500 * 1024 * 1024
FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextlib.contextmanager
def bounded(seconds: int = 120) -> Iterator[None]:
    """Cap this process's address space at its current size + HEADROOM, and raise if the block hangs."""
    size = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + HEADROOM if hard == resource.RLIM_INFINITY else min(size + HEADROOM, hard)

    def hung(*_: Any) -> None:
        raise TimeoutError(f"a fuzzed file took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, previous)


def _model() -> xn.Sequential:
    rng = np.random.default_rng(0)
    return xn.Sequential([xn.Dense(4, 3, rng=rng), xn.ReLU(), xn.Dropout(0.1), xn.Dense(3, 2, rng=rng)])


X = np.random.default_rng(1).random((32, 4), dtype=np.float32)
Y = (X[:, 0] > 0.5).astype(np.int64)


@functools.lru_cache(maxsize=1)
def valid_files() -> tuple[bytes, bytes]:
    """(a model file, a mid-epoch checkpoint of a model like it) as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        model_file = xn.save_model(Path(tmp) / "m.safetensors", _model(), {"task": "linear", "n": [1, {"a": 2}]})
        model = _model()
        xn.fit(model, xn.SoftmaxCrossEntropy(), xn.Adam(model.parameters()), (X, Y), epochs=2, batch_size=16,
               checkpoints=Checkpoints(Path(tmp) / "ckpt", every_steps=1, keep=None))
        mid = Path(tmp) / "ckpt" / "ckpt-e0002-b000001.safetensors"
        return model_file.read_bytes(), mid.read_bytes()


def _split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = {k: json.loads(v) for k, v in header["__metadata__"].items()}
    return header, data[8 + n:]


def _join(header: dict, rest: bytes) -> bytes:
    meta = header.get("__metadata__")
    if isinstance(meta, dict):
        header = {**header, "__metadata__": {k: json.dumps(v) for k, v in meta.items()}}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + rest


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every position in a JSON tree, as a tuple of keys and indices."""
    found = [prefix]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found += _paths(child, prefix + (key,))
    return found


def _replace(tree: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[path[0]] = _replace(tree[path[0]], path[1:], new)
    return copy


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats()
                    | st.text(max_size=12) | st.sampled_from(["F32", "F64", "object", "int32", "Dense", "0.m"]),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=4), max_leaves=12)


@st.composite
def header_mutation(draw: Any, which: int) -> bytes:
    """A valid file whose header has one position (a field, a tensor entry, a list item...) replaced."""
    header, rest = _split(valid_files()[which])
    path = draw(st.sampled_from(_paths(header)[1:]))
    return _join(_replace(header, path, draw(JSON)), rest)


@st.composite
def byte_mutation(draw: Any, which: int) -> bytes:
    """A valid file with bytes flipped, then possibly cut short, a run of bytes inserted, or a new length."""
    data = bytearray(valid_files()[which])
    for at, mask in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), max_size=6)):
        data[at] ^= mask
    kind = draw(st.sampled_from(["flips", "cut", "insert", "length"]))
    if kind == "cut":
        del data[draw(st.integers(0, len(data))):]
    elif kind == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    elif kind == "length":
        data[:8] = struct.pack("<Q", draw(st.integers(0, 2 ** 64 - 1)))
    return bytes(data)


def _load_model(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        path.write_bytes(data)
        try:
            xn.load_model(path)
        except XpnetError as exc:
            assert str(path) in str(exc), exc  # every refusal names the file


def _resume(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ckpt-e0002-b000001.safetensors").write_bytes(data)
        model = _model()
        try:
            xn.fit(model, xn.SoftmaxCrossEntropy(), xn.Adam(model.parameters()), (X, Y), epochs=2, batch_size=16,
                   checkpoints=Checkpoints(tmp, every_steps=1, keep=2, resume=True))
        except XpnetError:
            pass
        assert len(checkpoint_files(tmp)) <= 2


@FUZZ
@given(st.one_of(header_mutation(0), byte_mutation(0)))
def _fuzz_model_file(data: bytes) -> None:
    _load_model(data)


@FUZZ
@given(st.one_of(header_mutation(1), byte_mutation(1)))
def _fuzz_checkpoint(data: bytes) -> None:
    _resume(data)


def test_a_mutated_model_file_loads_or_is_refused_cleanly(capsys):
    valid_files()
    with bounded():
        _fuzz_model_file()


def test_a_mutated_checkpoint_resumes_or_is_refused_cleanly(capsys):
    valid_files()
    with bounded():
        _fuzz_checkpoint()


def test_the_mutations_reach_past_the_parser():
    """The fuzzing means something only if some mutations parse and fail later checks, and some load."""
    outcomes = set()
    for data in (_join(_replace(_split(valid_files()[0])[0], path, "x"), _split(valid_files()[0])[1])
                 for path in _paths(_split(valid_files()[0])[0])[1:]):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "m").write_bytes(data)
            try:
                xn.load_model(Path(tmp) / "m")
                outcomes.add("loaded")
            except XpnetError as exc:
                outcomes.add(type(exc).__name__)
    assert {"loaded", "CheckpointError"} <= outcomes


def test_the_cap_is_real():
    """bounded() does stop an allocation past its headroom. Checked in a fresh process: in a long pytest
    process, address space that earlier tests mapped and other threads release can hide the cap."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import numpy as np; "
            "from test_header_fuzz import HEADROOM, bounded\n"
            "try:\n    with bounded():\n        np.ones(HEADROOM // 8 + 2 ** 20)\n"
            "except MemoryError:\n    print('refused')\n")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == "refused"
