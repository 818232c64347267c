"""Backend selection, status reporting, and the user's own arrays staying where they are."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends import backend_for, backend_status, get_backend


def test_selection_by_name_env_and_auto(monkeypatch):
    assert get_backend("numpy").name == "numpy"
    assert get_backend("strict").name == "strict"
    monkeypatch.setenv("XPNET_BACKEND", "strict")
    assert get_backend().name == "strict"
    monkeypatch.delenv("XPNET_BACKEND")
    auto = get_backend("auto")
    cupy_ok = next(s for s in backend_status() if s.name == "cupy").available
    assert auto.name == ("cupy" if cupy_ok else "numpy")


def test_status_says_why_a_backend_is_unavailable():
    status = {s.name: s for s in backend_status()}
    assert set(status) == {"numpy", "cupy", "torch", "strict"}
    assert status["numpy"].available and "numpy" in status["numpy"].versions
    if not status["cupy"].available:
        assert "CuPy is not installed" in status["cupy"].reason or "no CUDA device" in status["cupy"].reason


def test_info_command_lists_every_backend(capsys):
    from xpnet.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("numpy", "cupy", "torch", "strict"):
        assert f"  {name}" in out


def test_round_trip_through_the_host_keeps_values(backend):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = backend.asarray(a)
    assert backend_for(x).same_as(backend)
    np.testing.assert_array_equal(backend.to_numpy(x), a)
    assert backend.to_numpy(backend.asarray(a, "float64")).dtype == np.float64


def test_fit_takes_the_users_own_arrays_and_moves_the_model(backend):
    rng = np.random.default_rng(0)
    x_host = rng.random((200, 4), dtype=np.float32)
    y_host = (x_host[:, 0] + x_host[:, 1] > 1.0).astype(np.int64)
    x, y = backend.asarray(x_host), backend.asarray(y_host)
    model = xn.Sequential([xn.Dense(4, 16), xn.ReLU(), xn.Dense(16, 2)])
    h = xn.fit(model, xn.SoftmaxCrossEntropy(), xn.Adam(model.parameters(), 1e-2), (x, y), epochs=30,
               batch_size=50, validation=(x, y))
    assert model.backend.same_as(backend)
    assert h["val_accuracy"][-1] > 0.9
    pred = xn.predict(model, x)
    assert backend_for(pred).same_as(backend) and tuple(pred.shape) == (200, 2)


def test_float64_numpy_data_is_cast_to_a_float32_model():
    x = np.random.default_rng(0).random((32, 3))  # NumPy's default float64
    model = xn.Sequential([xn.Dense(3, 1)])
    xn.fit(model, xn.MSE(), xn.SGD(model.parameters()), (x, x[:, :1]), epochs=1, batch_size=8)
    assert model.dtype == "float32"


def test_model_to_moves_and_casts():
    pytest.importorskip("torch")
    model = xn.Sequential([xn.Dense(3, 2)]).to("torch", dtype="float64")
    assert model.backend.name == "torch" and model.dtype == "float64"


def test_asarray_keeps_zero_d_arrays_zero_d(backend):
    """np.ascontiguousarray turns a 0-d array into shape (1,); a backend's copy must keep the shape (the
    device guard and the graph step's scalars are 0-d)."""
    import numpy as np

    a = backend.asarray(np.asarray(0.5, dtype=np.float32))
    assert tuple(a.shape) == () and float(backend.to_numpy(a)) == 0.5
