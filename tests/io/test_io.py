"""Model files load on any backend; checkpoints resume exactly; writes are atomic."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import xpnet as xn
from xpnet.io import Checkpoints, latest_checkpoint, load_checkpoint
from xpnet.models import mlp


def test_model_saved_on_one_backend_loads_on_every_other(backend, tmp_path):
    model = mlp((6, 5, 3), "tanh", dtype="float64", seed=1).to(backend)
    x_host = np.random.default_rng(0).random((4, 6))
    expected = backend.to_numpy(model.forward(backend.asarray(x_host, "float64")))
    weights = {k: backend.to_numpy(v) for k, v in model.state_dict().items()}
    path = xn.save_model(tmp_path / "m.safetensors", model, {"note": "hello"})
    targets = ["numpy", "strict"] + (["torch"] if importlib.util.find_spec("torch") else [])
    for target in targets:
        loaded, meta = xn.load_model(path, target), xn.model_metadata(path)
        assert meta == {"note": "hello"} and loaded.dtype == "float64"
        assert loaded.backend.name == target
        for k, v in loaded.state_dict().items():
            np.testing.assert_array_equal(loaded.backend.to_numpy(v), weights[k])  # bit-exact weights
        out = loaded.backend.to_numpy(loaded.forward(loaded.backend.asarray(x_host, "float64")))
        np.testing.assert_allclose(out, expected, rtol=1e-12)  # BLAS libraries round differently
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp files left behind


def test_rescale_and_architecture_round_trip(tmp_path):
    model = xn.Sequential([xn.Rescale([2.0], [1.0]), xn.Dense(1, 2), xn.LeakyReLU(0.2), xn.Dropout(0.1), xn.Dense(2, 1)])
    loaded = xn.load_model(xn.save_model(tmp_path / "r.safetensors", model))
    assert repr(loaded) == repr(model)
    assert loaded.layers[2].alpha == 0.2 and loaded.layers[3].p == 0.1 and loaded.layers[0].scale == [2.0]


def _data():
    rng = np.random.default_rng(1)
    x = rng.random((300, 8), dtype=np.float32)
    return x, (x[:, 0] > 0.5).astype(np.int64)


def _run(tmp_path, epochs, resume=False, checkpoint_dir=None):
    model = mlp((8, 16, 2), "relu", dropout=0.2, seed=2)
    opt = xn.Adam(model.parameters(), lr=1e-2)
    ckpt = Checkpoints(checkpoint_dir, resume=resume, keep=None) if checkpoint_dir else None
    history = xn.fit(model, xn.SoftmaxCrossEntropy(), opt, _data(), epochs=epochs, batch_size=32, seed=5,
                     checkpoints=ckpt)
    return model, opt, history


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path):
    straight, _, straight_history = _run(tmp_path, epochs=4)
    ckpt = tmp_path / "ckpt"
    _run(tmp_path, epochs=2, checkpoint_dir=ckpt)  # "interrupted" after epoch 2
    assert latest_checkpoint(ckpt).name == "ckpt-e0002-b000010.safetensors"
    resumed, opt, history = _run(tmp_path, epochs=4, resume=True, checkpoint_dir=ckpt)
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3, 4]
    assert opt.steps == 4 * 10
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert history["train_loss"] == straight_history["train_loss"]


def test_checkpoint_refuses_another_optimizer(tmp_path):
    ckpt = tmp_path / "c"
    model, _, _ = _run(tmp_path, epochs=1, checkpoint_dir=ckpt)
    from xpnet.errors import CheckpointError

    with pytest.raises(CheckpointError, match="optimizer Adam.*uses SGD"):
        load_checkpoint(latest_checkpoint(ckpt), model, xn.SGD(model.parameters()))


def test_early_stopping_stops_and_history_says_so():
    x, y = _data()
    model = mlp((8, 16, 2), "relu", seed=2)
    stopper = xn.EarlyStopping("val_loss", patience=2)
    h = xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters(), lr=1e-9), (x, y), epochs=50,
               batch_size=64, validation=(x, y), callbacks=[stopper])
    assert h.stopped_early and len(h.epochs) < 50 and stopper.stopped_epoch == len(h.epochs)
