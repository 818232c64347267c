"""JAX through the generic backend: fit, evaluate and predict on jax.numpy arrays learn, and raise no warning.

JAX without x64 mode has no int64 and warns whenever one is asked for, so a warning here means xpnet asked
for a dtype of its own choosing instead of the namespace's default. float64 (a gradient check) needs x64 mode,
which is process-wide and meant to be set at startup: that part runs in a fresh interpreter.
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

import xpnet as xn  # noqa: E402
from xpnet.backends import backend_for  # noqa: E402


def _blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    x = (centres[y] + 0.6 * rng.standard_normal((n, 2))).astype(np.float32)
    return x, y


def _mlp(dropout=0.0):
    rng = np.random.default_rng(1)
    return xn.Sequential([xn.Dense(2, 32, rng=rng), xn.ReLU(), xn.Dropout(dropout), xn.Dense(32, 3, rng=rng)])


def test_an_mlp_trains_evaluates_and_predicts_on_jax_arrays_without_a_warning():
    assert not jax.config.jax_enable_x64  # the default, in which an int64 request warns
    x_host, y_host = _blobs()
    x, y = jnp.asarray(x_host), jnp.asarray(y_host)  # labels: JAX's default int32
    model = _mlp(dropout=0.1)
    loss = xn.SoftmaxCrossEntropy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = xn.fit(model, loss, xn.Adam(model.parameters(), lr=1e-2), (x, y), epochs=6, batch_size=40,
                         validation=(x[:80], y[:80]), clip_norm=5.0)
        metrics = xn.evaluate(model, loss, (x, y))
        assert xn.evaluate(model, loss, x, y) == metrics
        out = xn.predict(model, x)
    losses = history["train_loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    assert metrics["accuracy"] > 0.9 and history["val_accuracy"][-1] > 0.9
    assert model.backend.xp is backend_for(x).xp and backend_for(out).xp is backend_for(x).xp
    assert out.shape == (240, 3) and out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(jnp.argmax(out, axis=1)) == y_host,
                                  np.asarray(jnp.argmax(xn.predict(model, x_host), axis=1)) == y_host)


def test_a_numpy_trained_model_follows_jax_inputs_and_regression_metrics_work():
    rng = np.random.default_rng(2)
    x_host = rng.standard_normal((300, 3)).astype(np.float32)
    y_host = (x_host @ np.array([[1.5], [-2.0], [0.5]], np.float32)).astype(np.float32)
    model = xn.Sequential([xn.Dense(3, 1, rng=rng)])
    xn.fit(model, xn.MSE(), xn.SGD(model.parameters(), lr=0.1), (x_host, y_host), epochs=20, batch_size=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = xn.evaluate(model, xn.MSE(), (jnp.asarray(x_host), jnp.asarray(y_host)))
    assert model.backend.xp is backend_for(jnp.asarray(x_host)).xp
    assert metrics["r2"] > 0.99 and metrics["mse"] < 1e-2


_X64 = r"""
import json, warnings
import jax
jax.config.update("jax_enable_x64", True)
warnings.simplefilter("error")
import jax.numpy as jnp
import numpy as np
import xpnet as xn
from xpnet.backends import backend_for
from xpnet.core.gradcheck import gradcheck_loss, gradcheck_module

rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((3, 3)))
assert x.dtype == jnp.float64
model = xn.Sequential([xn.Dense(3, 4, dtype="float64", rng=rng), xn.Tanh(), xn.Dense(4, 2, dtype="float64", rng=rng)])
model.to(backend_for(x))
errors = [(r.max_rel_error, r.max_abs_error) for r in gradcheck_module(model, x)]
labels = jnp.asarray(np.array([0, 1, 1]))
r = gradcheck_loss(xn.SoftmaxCrossEntropy(), model.forward(x), labels)
errors.append((r.max_rel_error, r.max_abs_error))
# Training in float64 with int64 labels, JAX's defaults in x64 mode: still no warning.
h = xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters(), lr=0.1), (x, labels), epochs=2,
           batch_size=2)
print(json.dumps({"errors": errors, "dtype": model.dtype, "loss": h["train_loss"][-1]}))
"""


def test_gradients_match_finite_differences_in_float64_under_x64_mode():
    done = subprocess.run([sys.executable, "-c", _X64], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["dtype"] == "float64" and np.isfinite(result["loss"])
    assert len(result["errors"]) == 6  # the input, four parameters, the loss
    assert all(rel < 1e-6 or abs_ < 1e-9 for rel, abs_ in result["errors"]), result
