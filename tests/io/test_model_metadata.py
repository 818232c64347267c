"""load_model returns the model alone; model_metadata reads a file's metadata from its header, checked as
load_model checks it, without reading an array or building a layer."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import xpnet as xn
import xpnet.io
from xpnet.errors import CheckpointError, CorruptFileError
from xpnet.io import Checkpoints, checkpoint_files


def _saved(tmp_path, metadata=None):
    model = xn.Sequential([xn.Dense(3, 4), xn.ReLU(), xn.Dense(4, 2)])
    return model, xn.save_model(tmp_path / "m.safetensors", model, metadata)


def test_load_model_returns_the_model_and_model_metadata_its_metadata(tmp_path):
    model, path = _saved(tmp_path, {"task": "mnist", "nested": {"a": [1, None]}})
    loaded = xn.load_model(path, backend="numpy")
    assert isinstance(loaded, xn.Module) and repr(loaded) == repr(model)
    assert xn.model_metadata(path) == {"task": "mnist", "nested": {"a": [1, None]}}
    assert xn.model_metadata(str(path)) == xn.model_metadata(path)


def test_model_metadata_is_exported_beside_load_model():
    assert xn.model_metadata is xpnet.io.model_metadata
    assert "model_metadata" in xn.__all__ and "model_metadata" in xpnet.io.__all__


def test_a_model_saved_without_metadata_has_an_empty_dict(tmp_path):
    assert xn.model_metadata(_saved(tmp_path)[1]) == {}


def test_a_checkpoints_metadata_is_the_one_given_to_checkpoints(tmp_path):
    x = np.random.default_rng(0).random((20, 3), dtype=np.float32)
    model = xn.Sequential([xn.Dense(3, 2)])
    xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters()), (x, (x[:, 0] > 0.5).astype(np.int64)),
           batch_size=10, checkpoints=Checkpoints(tmp_path, metadata={"task": "toy"}))
    assert xn.model_metadata(checkpoint_files(tmp_path)[-1]) == {"task": "toy"}


def test_model_metadata_reads_the_header_only(tmp_path):
    # A flipped weight byte fails the data checksum, which only reading the arrays verifies.
    _, path = _saved(tmp_path, {"task": "linear"})
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert xn.model_metadata(path) == {"task": "linear"}
    with pytest.raises(CorruptFileError, match="checksum mismatch"):
        xn.load_model(path)


def _raw(path, header, length=None):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text)
    return path


@pytest.mark.parametrize("make, error, message", [
    (lambda p: (p.write_bytes(b"\x80\x04\x95 a pickle, renamed"), p)[1], CorruptFileError, "not a safetensors"),
    (lambda p: _raw(p, {}, length=2 ** 40), CorruptFileError, "bad header length"),
    (lambda p: _raw(p, {"__metadata__": {"format": json.dumps("other")}}), CheckpointError, "not one written by xpnet"),
    (lambda p: _raw(p, {"__metadata__": {"format": json.dumps("xpnet-1"), "config": json.dumps({}),
                                         "metadata": json.dumps([1])}}), CheckpointError, "field metadata must be"),
    (lambda p: _raw(p, {"__metadata__": {"format": json.dumps("xpnet-1"), "config": json.dumps({}),
                                         "metadata": "[" * 40 + "]" * 40}}), CheckpointError, "nested"),
    (lambda p: (os.mkdir(p), p)[1], CheckpointError, "is a directory"),
])
def test_model_metadata_refuses_what_load_model_refuses(tmp_path, make, error, message):
    path = make(tmp_path / "bad.safetensors")
    for read in (xn.model_metadata, xn.load_model):
        with pytest.raises(error, match=message) as caught:
            read(path)
        assert str(path) in str(caught.value)
