"""fit, evaluate and predict take data alike: the same (x, y) form, the model following the inputs' backend
and device, and floating inputs cast to the model's dtype (integers refused) in all three."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends import backend_for
from xpnet.errors import DataError, DTypeError, ShapeError


def _data(dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.random((120, 4)).astype(dtype)
    return x, (x[:, 0] + x[:, 1] > 1.0).astype(np.int64)


def _trained():
    model = xn.Sequential([xn.Dense(4, 16, rng=np.random.default_rng(1)), xn.ReLU(),
                           xn.Dense(16, 2, rng=np.random.default_rng(2))])
    xn.fit(model, xn.SoftmaxCrossEntropy(), xn.Adam(model.parameters(), lr=1e-2), _data(), epochs=20, batch_size=30)
    return model


# -- one data form ----------------------------------------------------------------------------------------------
def test_evaluate_takes_the_pair_fit_takes_and_x_y_apart_alike():
    model, loss, (x, y) = _trained(), xn.SoftmaxCrossEntropy(), _data()
    apart = xn.evaluate(model, loss, x, y)
    assert xn.evaluate(model, loss, (x, y)) == apart == xn.evaluate(model, loss, [x, y])
    assert apart["accuracy"] > 0.9
    assert xn.evaluate(model, loss, (x, y), batch_size=7) == pytest.approx(apart)


@pytest.mark.parametrize("call, message", [
    (lambda m, l, x, y: xn.evaluate(m, l, x), "one ndarray and no targets"),
    (lambda m, l, x, y: xn.evaluate(m, l, (x, y, y)), "a 3-item tuple"),
    (lambda m, l, x, y: xn.evaluate(m, l, (x,)), "a 1-item tuple"),
    (lambda m, l, x, y: xn.evaluate(m, l, (x, y), y), "with y given, x must be an array, got a tuple"),
    (lambda m, l, x, y: xn.fit(m, l, xn.SGD(m.parameters()), x), "fit takes the data as an \\(x, y\\) pair"),
    (lambda m, l, x, y: xn.fit(m, l, xn.SGD(m.parameters()), (x, y), validation=x), "fit's validation"),
])
def test_a_wrong_data_form_is_a_type_error_that_shows_both_right_ones(call, message):
    model, (x, y) = _trained(), _data()
    with pytest.raises(TypeError, match=message):
        call(model, xn.SoftmaxCrossEntropy(), x, y)


def test_evaluates_batch_size_and_communicator_are_keywords():
    model, (x, y) = _trained(), _data()
    with pytest.raises(TypeError):
        xn.evaluate(model, xn.SoftmaxCrossEntropy(), x, y, 10)  # would read as a batch size before


def test_evaluate_checks_the_targets_against_the_inputs():
    model, (x, y) = _trained(), _data()
    with pytest.raises(ShapeError, match="120 inputs but 119 targets"):
        xn.evaluate(model, xn.SoftmaxCrossEntropy(), (x, y[:-1]))


# -- the model follows the inputs ------------------------------------------------------------------------------
def test_a_numpy_model_evaluates_and_predicts_arrays_of_any_backend(backend):
    model, (x, y) = _trained(), _data()
    expected = xn.evaluate(model, xn.SoftmaxCrossEntropy(), x, y)
    # The labels may stay on the host: they follow x, as in fit.
    got = xn.evaluate(model, xn.SoftmaxCrossEntropy(), (backend.asarray(x), y))
    assert model.backend.same_as(backend)
    assert got["accuracy"] == expected["accuracy"] and got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    back = _trained()
    out = xn.predict(back, backend.asarray(x))
    assert backend_for(out).same_as(backend) and back.backend.same_as(backend)
    np.testing.assert_allclose(backend.to_numpy(out), xn.predict(_trained(), x), rtol=1e-5, atol=1e-6)


def test_a_model_loaded_on_numpy_evaluates_torch_inputs(tmp_path):
    torch = pytest.importorskip("torch")
    x, y = _data()
    path = xn.save_model(tmp_path / "m.safetensors", _trained())
    model = xn.load_model(path, backend="numpy")
    metrics = xn.evaluate(model, xn.SoftmaxCrossEntropy(), torch.from_numpy(x), torch.from_numpy(y))
    assert metrics["accuracy"] > 0.9 and model.backend.name == "torch"
    assert isinstance(xn.predict(xn.load_model(path), torch.from_numpy(x)), torch.Tensor)


# -- one dtype rule --------------------------------------------------------------------------------------------
def test_float64_data_that_fit_trains_on_is_what_evaluate_and_predict_take(backend):
    x64, y = _data(np.float64)
    x, y = backend.asarray(x64, "float64"), backend.asarray(y)
    model = xn.Sequential([xn.Dense(4, 8), xn.ReLU(), xn.Dense(8, 2)])
    xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters(), lr=0.1), (x, y), epochs=2, batch_size=40)
    assert model.dtype == "float32"
    out = xn.predict(model, x)
    assert backend.to_numpy(out).dtype == np.float32 and tuple(out.shape) == (120, 2)
    assert 0.0 <= xn.evaluate(model, xn.SoftmaxCrossEntropy(), (x, y))["accuracy"] <= 1.0
    assert model.dtype == "float32"  # inputs are cast; the model is not


def test_a_float64_model_takes_float32_inputs_in_all_three():
    x, y = _data(np.float32)
    model = xn.Sequential([xn.Dense(4, 2)]).to("numpy", dtype="float64")
    xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters()), (x, y), epochs=1, batch_size=40)
    assert xn.predict(model, x).dtype == np.float64
    assert set(xn.evaluate(model, xn.SoftmaxCrossEntropy(), (x, y))) == {"loss", "accuracy"}


@pytest.mark.parametrize("kind", ["int64", "uint8", "bool"])
def test_integer_or_bool_inputs_are_refused_alike_by_all_three(kind):
    x, y = _data()
    bad = (x * 255).astype(kind) if kind != "bool" else x > 0.5
    model = _trained()
    calls = {"fit": lambda: xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters()), (bad, y)),
             "evaluate": lambda: xn.evaluate(model, xn.SoftmaxCrossEntropy(), (bad, y)),
             "predict": lambda: xn.predict(model, bad)}
    for name, call in calls.items():
        with pytest.raises(DTypeError, match=f"inputs are {kind}; the model needs floating-point inputs"):
            call()


def test_empty_inputs_are_refused_by_predict_with_the_fit_message():
    with pytest.raises(DataError, match="inputs are empty"):
        xn.predict(_trained(), np.zeros((0, 4), np.float32))


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_predict_and_evaluate_refuse_a_batch_size_that_is_not_positive(bad):
    model = xn.Sequential([xn.Dense(3, 2)])
    x, y = np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match=f"batch_size must be a positive integer, got {bad!r}"):
        xn.predict(model, x, batch_size=bad)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        xn.evaluate(model, xn.MSE(), (x, y), batch_size=bad)
