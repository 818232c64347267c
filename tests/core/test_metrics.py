"""Metrics against hand-computed values, on every backend."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xpnet.core import metrics


def test_classification_and_regression_metrics(backend):
    scores = backend.asarray(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), "float32")
    labels = backend.asarray(np.array([1, 0, 0, 0]), "int64")
    assert metrics.accuracy(scores, labels) == pytest.approx(0.75)
    onehot = backend.asarray(np.eye(2)[[1, 0, 0, 0]], "float32")
    assert metrics.accuracy(scores, onehot) == pytest.approx(0.75)
    assert int(metrics.correct_count(scores, labels)) == 3

    pred = backend.asarray(np.array([[1.0], [2.0], [3.0], [5.0]]), "float64")
    target = backend.asarray(np.array([1.0, 2.0, 4.0, 4.0]), "float64")
    assert metrics.mse(pred, target) == pytest.approx(0.5)
    assert metrics.mae(pred, target) == pytest.approx(0.5)
    # SS_tot = sum((t - 2.75)^2) = 3.0625 + 0.5625 + 1.5625 + 1.5625 = 6.75; SS_res = 2
    assert metrics.r2(pred, target) == pytest.approx(1 - 2 / 6.75)
    assert metrics.psnr(pred, target, max_value=5.0) == pytest.approx(10 * math.log10(25 / 0.5))
    assert metrics.psnr(target, target) == math.inf


def test_softmax_cross_entropy_is_finite_at_extreme_logits(backend):
    import xpnet as xn

    logits = backend.asarray(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]]), "float32")
    labels = backend.asarray(np.array([1, 2]), "int64")
    loss = xn.SoftmaxCrossEntropy()
    value = float(loss(logits, labels))
    grad = backend.to_numpy(loss.backward())
    assert value == pytest.approx(1e4, rel=1e-6)  # row 0 is wrong by 2e4, row 1 right: mean 1e4
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)
    bce = xn.BinaryCrossEntropy()
    assert math.isfinite(float(bce(logits, backend.asarray(np.ones((2, 3)), "float32"))))
    sig = xn.Sigmoid().forward(logits)
    assert np.all(np.isfinite(backend.to_numpy(sig)))
