"""Model files made by an attacker: each class of hostile file ends in one clean error naming the file, read
in a fresh process capped at a normal run's address space + 500 MB (tests/helpers/hostile.py), never hanging.

Classes: what a path names (devices, FIFOs, sparse giants, directories), what a header declares (lengths,
offsets, shapes the data does not hold, layers far larger than the file), and what its JSON holds (nesting,
types, ranges)."""
from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.errors import CheckpointError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
import hostile  # noqa: E402


def raw_file(path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    """A safetensors-shaped file: 8-byte length, the JSON of `header`, then `data`."""
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


def model_header(config: object, tensors: dict | None = None, **fields: object) -> dict:
    meta = {"format": "xpnet-1", "config": config, "dtype": "float32", "metadata": {"task": "linear"}, **fields}
    return {"__metadata__": {k: json.dumps(v) for k, v in meta.items()}, **(tensors or {})}


def dense(n_in: int, n_out: int) -> dict:
    return {"type": "Sequential", "layers": [{"type": "Dense", "in_features": n_in, "out_features": n_out}]}


def _eval(path: Path) -> hostile.Outcome:
    outcome = hostile.run_case("cli", "eval", "--model", str(path))
    assert outcome.code == 2 and outcome.one_line, outcome.stderr
    assert str(path) in outcome.stderr, outcome.stderr
    return outcome


# -- what the path names ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_symlink_to_a_device_is_refused_unread(tmp_path, target):
    link = tmp_path / "model.safetensors"
    link.symlink_to(target)
    assert "character device" in _eval(link).stderr


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    assert "FIFO" in _eval(fifo).stderr


@pytest.mark.parametrize("size", [10 * 2 ** 30, 2 ** 31 + 1])
def test_a_sparse_giant_is_refused_from_its_size(tmp_path, size):
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as f:
        f.truncate(size)
    assert "bytes, more than" in _eval(path).stderr


def test_a_sparse_file_under_the_limit_is_refused_from_its_header(tmp_path):
    path = raw_file(tmp_path / "model.safetensors", b"{}", length=2 ** 30)  # the header "is" 1 GiB
    with open(path, "r+b") as f:
        f.truncate(2 ** 31 - 2 ** 20)
    assert "bad header length" in _eval(path).stderr


def test_a_directory_and_a_symlink_loop_are_refused(tmp_path):
    (tmp_path / "dir.safetensors").mkdir()
    assert "directory" in _eval(tmp_path / "dir.safetensors").stderr
    loop = tmp_path / "loop.safetensors"
    loop.symlink_to(loop)
    _eval(loop)


def test_a_symlink_to_a_regular_model_file_loads(tmp_path):
    path = xn.save_model(tmp_path / "real.safetensors", xn.Sequential([xn.Dense(1, 1)]), {"task": "linear"})
    link = tmp_path / "link.safetensors"
    link.symlink_to(path)
    assert hostile.run_case("cli", "eval", "--model", str(link)).code == 0


# -- what the header declares -----------------------------------------------------------------------------------
F32 = {"dtype": "F32"}

DECLARED = {
    "header length 2^63": lambda p: raw_file(p, b"{}", length=2 ** 63),
    "header length past the end": lambda p: raw_file(p, b"{}", length=100),
    "offsets past the data": lambda p: raw_file(p, model_header(dense(1, 1), {
        "0.weight": {**F32, "shape": [1, 1], "data_offsets": [0, 4]},
        "0.bias": {**F32, "shape": [1], "data_offsets": [4, 2 ** 40]}}), b"\0" * 8),
    "shape larger than its bytes": lambda p: raw_file(p, model_header(dense(1, 1), {
        "0.weight": {**F32, "shape": [2 ** 31, 2 ** 31], "data_offsets": [0, 4]},
        "0.bias": {**F32, "shape": [1], "data_offsets": [4, 8]}}), b"\0" * 8),
    "overlapping tensors": lambda p: raw_file(p, model_header(dense(1, 1), {
        "0.weight": {**F32, "shape": [1, 1], "data_offsets": [0, 4]},
        "0.bias": {**F32, "shape": [1], "data_offsets": [0, 4]}}), b"\0" * 8),
    "Dense(40000, 40000) in 200 bytes": lambda p: raw_file(p, model_header(dense(40000, 40000))),
    "a thousand huge layers, no tensors": lambda p: raw_file(p, model_header(
        {"type": "Sequential", "layers": [{"type": "Dense", "in_features": 9999, "out_features": 9999}] * 1000})),
    "Conv2D(4096, 4096, 64) with a tiny weight": lambda p: raw_file(p, model_header(
        {"type": "Sequential", "layers": [{"type": "Conv2D", "in_channels": 4096, "out_channels": 4096,
                                           "kernel_size": 64}]},
        {"0.weight": {**F32, "shape": [1], "data_offsets": [0, 4]},
         "0.bias": {**F32, "shape": [4096], "data_offsets": [4, 16388]}}), b"\0" * 16388),
    "tensors of another dtype": lambda p: raw_file(p, model_header(dense(1, 1), {
        "0.weight": {"dtype": "F64", "shape": [1, 1], "data_offsets": [0, 8]},
        "0.bias": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}}), b"\0" * 16),
    "an unknown tensor dtype": lambda p: raw_file(p, model_header(dense(1, 1), {
        "0.weight": {"dtype": "O", "shape": [1, 1], "data_offsets": [0, 4]}}), b"\0" * 4),
}


@pytest.mark.parametrize("case", sorted(DECLARED))
def test_what_a_header_declares_is_checked_before_anything_is_allocated(tmp_path, case):
    path = DECLARED[case](tmp_path / "model.safetensors")
    _eval(path)
    with pytest.raises(CheckpointError, match=str(path)):
        xn.load_model(path)


# -- what the JSON holds ----------------------------------------------------------------------------------------
def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


UNTYPED = {
    "a deeply nested header": lambda p: raw_file(p, ("{\"a\": " + nested(100_000) + "}").encode()),
    "a deeply nested metadata value": lambda p: raw_file(p, {"__metadata__": {"format": '"xpnet-1"',
                                                                              "config": nested(50_000)}}),
    "nesting just over the limit": lambda p: raw_file(p, {"__metadata__": {"format": '"xpnet-1"',
                                                                           "config": nested(40)}}),
    "a config that is a list": lambda p: raw_file(p, model_header([1, 2])),
    "a config that is null": lambda p: raw_file(p, model_header(None)),
    "layers that are a string": lambda p: raw_file(p, model_header({"type": "Sequential", "layers": "abc"})),
    "a layer that is a number": lambda p: raw_file(p, model_header({"type": "Sequential", "layers": [7]})),
    "a size that is a string": lambda p: raw_file(p, model_header(dense(1, 1) | {"layers": [
        {"type": "Dense", "in_features": "1", "out_features": 1}]})),
    "a slope that is NaN": lambda p: raw_file(p, model_header({"type": "Sequential", "layers": [
        {"type": "LeakyReLU", "alpha": float("nan")}]})),
    "a rate that is a list": lambda p: raw_file(p, model_header({"type": "Sequential", "layers": [
        {"type": "Dropout", "p": [0.5]}]})),
    "an argument the layer does not take": lambda p: raw_file(p, model_header({"type": "Sequential", "layers": [
        {"type": "ReLU", "exec": "print(1)"}]})),
    "a missing argument": lambda p: raw_file(p, model_header({"type": "Sequential", "layers": [
        {"type": "Dense", "in_features": 1}]})),
    "dtype given as an int": lambda p: raw_file(p, model_header(dense(1, 1), dtype=32)),
    "dtype 'object'": lambda p: raw_file(p, model_header(dense(1, 1), dtype="object")),
    "dtype int32": lambda p: raw_file(p, model_header(dense(1, 1), dtype="int32")),
    "a layer dtype int64": lambda p: raw_file(p, model_header({"type": "Sequential", "layers": [
        {"type": "Dense", "in_features": 1, "out_features": 1, "dtype": "int64"}]})),
    "metadata that is a list": lambda p: raw_file(p, model_header(dense(1, 1), metadata=[1, 2])),
    "a data seed that is a list": lambda p: xn.save_model(p, xn.Sequential([xn.Dense(5, 1)]),
                                                          {"task": "housing", "data_seed": [1]}),
    "__metadata__ that is a list": lambda p: raw_file(p, {"__metadata__": ["format"]}),
    "a metadata value that is not a string": lambda p: raw_file(p, {"__metadata__": {"format": 1}}),
    "a metadata value that is not JSON": lambda p: raw_file(p, {"__metadata__": {"format": "{{"}}),
    "a tensor entry that is a list": lambda p: raw_file(p, model_header(dense(1, 1), {"0.weight": [1]})),
    "a shape of strings": lambda p: raw_file(p, model_header(dense(1, 1), {
        "0.weight": {**F32, "shape": ["a"], "data_offsets": [0, 4]}}), b"\0" * 4),
    "negative offsets": lambda p: raw_file(p, model_header(dense(1, 1), {
        "0.weight": {**F32, "shape": [1], "data_offsets": [-4, 0]}}), b"\0" * 4),
    "a checksum that is a number": lambda p: raw_file(p, model_header(dense(1, 1), sha256=5)),
}


@pytest.mark.parametrize("case", sorted(UNTYPED))
def test_every_field_read_from_json_is_typed(tmp_path, case):
    path = UNTYPED[case](tmp_path / "model.safetensors")
    _eval(path)
    if "data seed" not in case:  # read by `xpnet eval` (the task's data), not by load_model
        with pytest.raises(CheckpointError, match=str(path)):
            xn.load_model(path)


def test_a_valid_file_still_loads_after_all_these_checks(tmp_path):
    model = xn.Sequential([xn.Rescale([2.0], [1.0]), xn.Dense(1, 3), xn.LeakyReLU(0.2), xn.Dense(3, 1)])
    path = xn.save_model(tmp_path / "m.safetensors", model, {"task": "linear", "nested": {"a": [1, {"b": None}]}})
    loaded, meta = xn.load_model(path), xn.model_metadata(path)
    assert meta["nested"] == {"a": [1, {"b": None}]} and repr(loaded) == repr(model)
    for a, b in zip(loaded.parameters(), model.parameters()):
        np.testing.assert_array_equal(a.value, b.value)
