"""Float64 finite-difference gradient checks for every layer, activation and loss, on every backend."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.core.gradcheck import gradcheck_loss, gradcheck_module
from xpnet.errors import NotDifferentiableError

TOL = 1e-6


def _inputs(backend, shape, seed=0, away_from_zero=True):
    """Random float64 inputs; kept away from 0 so ReLU/LeakyReLU/MAE kinks don't bias the differences."""
    a = np.random.default_rng(seed).uniform(-2.0, 2.0, size=shape)
    if away_from_zero:
        a = np.where(np.abs(a) < 0.1, a + np.sign(a + 1e-12) * 0.2, a)
    return backend.asarray(a, "float64")


LAYERS = {
    "Dense": lambda: xn.Dense(5, 4, dtype="float64", rng=np.random.default_rng(1)),
    "Dense-no-bias": lambda: xn.Dense(5, 3, bias=False, init="he", dtype="float64", rng=np.random.default_rng(2)),
    "Identity": xn.Identity,
    "ReLU": xn.ReLU,
    "LeakyReLU": lambda: xn.LeakyReLU(0.1),
    "Sigmoid": xn.Sigmoid,
    "Tanh": xn.Tanh,
    "Swish": xn.Swish,
    "GELU": xn.GELU,
    "Softmax": xn.Softmax,
    "Rescale": lambda: xn.Rescale([0.5, 2.0, -1.0, 3.0, 0.1], [1.0, 0.0, 2.0, -1.0, 0.5]),
    "MLP": lambda: xn.Sequential([xn.Dense(5, 6, dtype="float64", rng=np.random.default_rng(3)), xn.Tanh(),
                                  xn.Dense(6, 3, dtype="float64", rng=np.random.default_rng(4))]),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_gradients_match_finite_differences(backend, name):
    module = LAYERS[name]()
    if module.parameters():
        module.to(backend, dtype="float64")
    results = gradcheck_module(module, _inputs(backend, (3, 5)))
    assert len(results) == 1 + len(module.parameters())
    for r in results:
        assert r.max_rel_error < TOL or r.max_abs_error < 1e-9, (name, r)


def test_dropout_backward_uses_the_forward_mask(backend):
    layer = xn.Dropout(0.5)
    x = _inputs(backend, (40, 50))
    y = layer.forward(x)
    dy = _inputs(backend, (40, 50), seed=1)
    dx = layer.backward(dy)
    y_np, x_np = backend.to_numpy(y), backend.to_numpy(x)
    mask = y_np / x_np  # 0 where dropped, 1/(1-p) = 2 where kept
    assert set(np.round(np.unique(mask), 6)) == {0.0, 2.0}
    np.testing.assert_allclose(backend.to_numpy(dx), backend.to_numpy(dy) * mask, rtol=1e-12)
    assert 0.4 < (mask == 0).mean() < 0.6
    layer.eval()
    np.testing.assert_array_equal(backend.to_numpy(layer.forward(x)), x_np)


def test_step_refuses_backward_with_a_reason(backend):
    layer = xn.Step()
    y = layer.forward(backend.asarray(np.array([[-1.0, 0.0, 2.0]]), "float64"))
    np.testing.assert_array_equal(backend.to_numpy(y), [[0.0, 1.0, 1.0]])
    with pytest.raises(NotDifferentiableError, match="Sigmoid"):
        layer.backward(y)


def _labels(backend, n, c, seed=0):
    return backend.asarray(np.random.default_rng(seed).integers(0, c, n), "int64")


def _probs(backend, n, c, seed=0):
    p = np.random.default_rng(seed).uniform(0.1, 1.0, (n, c))
    return backend.asarray(p / p.sum(1, keepdims=True), "float64")


LOSSES = {
    "MSE": (xn.MSE, lambda b: _inputs(b, (4, 3), seed=5)),
    "MAE": (xn.MAE, lambda b: _inputs(b, (4, 3), seed=5) * 10.0),
    "BCE-logits": (lambda: xn.BinaryCrossEntropy(from_logits=True),
                   lambda b: b.asarray(np.random.default_rng(6).uniform(0, 1, (4, 3)), "float64")),
    "BCE-probabilities": (lambda: xn.BinaryCrossEntropy(from_logits=False),
                          lambda b: b.asarray(np.random.default_rng(6).uniform(0, 1, (4, 3)), "float64")),
    "SoftmaxCE-labels": (xn.SoftmaxCrossEntropy, lambda b: _labels(b, 4, 3)),
    "SoftmaxCE-onehot": (xn.SoftmaxCrossEntropy, lambda b: _probs(b, 4, 3)),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradients_match_finite_differences(backend, name):
    make_loss, make_target = LOSSES[name]
    pred = _inputs(backend, (4, 3))
    if name == "BCE-probabilities":  # predictions must be probabilities, away from the clip
        pred = backend.asarray(np.random.default_rng(7).uniform(0.05, 0.95, (4, 3)), "float64")
    r = gradcheck_loss(make_loss(), pred, make_target(backend))
    assert r.max_rel_error < TOL or r.max_abs_error < 1e-9, (name, r)


class _WrongTanh(xn.Tanh):
    """Tanh whose backward forgets the square: the check must catch it."""

    def backward(self, dy):
        return dy * (1.0 - self._y)


def test_gradcheck_catches_a_wrong_backward(backend):
    (r,) = gradcheck_module(_WrongTanh(), _inputs(backend, (3, 5)))
    assert r.max_rel_error > 1e-2


def test_training_backward_skips_only_what_nobody_reads(backend):
    """need_dx=False gives the same parameter gradients, returns no dx, and leaves custom layers alone."""

    class Plain(xn.Module):  # a user's layer that knows nothing of need_dx
        def forward(self, x):
            return x * 2.0

        def backward(self, dy):
            return dy * 2.0

    def grads(need_dx):
        model = xn.Sequential([Plain(), xn.Dense(5, 4, dtype="float64", rng=np.random.default_rng(1)), xn.Tanh(),
                               xn.Dense(4, 2, dtype="float64", rng=np.random.default_rng(2))]).to(backend)
        model.forward(_inputs(backend, (3, 5)))
        dx = model.backward(_inputs(backend, (3, 2), seed=3), need_dx=need_dx)
        return dx, [backend.to_numpy(p.grad) for p in model.parameters()]

    dx_full, full = grads(True)
    dx_none, skipped = grads(False)
    assert dx_none is None and tuple(dx_full.shape) == (3, 5)
    for a, b in zip(full, skipped):
        np.testing.assert_array_equal(a, b)
