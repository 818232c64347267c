"""Property-based tests (hypothesis): for any small shapes, layers keep their shape contracts and their
backward passes match finite differences."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import xpnet as xn
from xpnet.core.gradcheck import gradcheck_loss, gradcheck_module

# Central differences (eps 1e-6) of a float64 value F carry about F * 2e-10 of round-off; values here stay
# under ~100, so 1e-7 absolute bounds it, while a wrong gradient is off by orders of magnitude more.
ATOL = 1e-7

ACTIVATIONS = [xn.Identity, xn.Sigmoid, xn.Tanh, xn.Swish, xn.GELU, xn.Softmax, lambda: xn.LeakyReLU(0.1)]


@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples in every CI run
@given(batch=st.integers(1, 5), n_in=st.integers(1, 6), n_out=st.integers(1, 6), act=st.sampled_from(ACTIVATIONS),
       seed=st.integers(0, 2**16))
def test_dense_then_activation_shapes_and_gradients(batch, n_in, n_out, act, seed):
    rng = np.random.default_rng(seed)
    model = xn.Sequential([xn.Dense(n_in, n_out, dtype="float64", rng=rng), act()])
    x = rng.uniform(-2, 2, (batch, n_in))
    assert model.forward(x).shape == (batch, n_out)
    for r in gradcheck_module(model, x):
        assert r.max_rel_error < 1e-5 or r.max_abs_error < ATOL, r


@settings(max_examples=25, deadline=None, derandomize=True)  # the same examples in every CI run
@given(batch=st.integers(1, 6), classes=st.integers(2, 7), scale=st.floats(0.01, 50.0), seed=st.integers(0, 2**16))
def test_softmax_cross_entropy_gradient_and_bounds(batch, classes, scale, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, classes)) * scale
    labels = rng.integers(0, classes, batch)
    loss = xn.SoftmaxCrossEntropy()
    value = float(loss(logits, labels))
    assert value >= 0 and np.isfinite(value)
    grad = loss.backward()
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)  # softmax minus one-hot sums to zero per row
    if scale < 10:  # finite differences are meaningful where the loss is not saturated
        r = gradcheck_loss(xn.SoftmaxCrossEntropy(), logits, labels)
        assert r.max_rel_error < 1e-5 or r.max_abs_error < ATOL, r
