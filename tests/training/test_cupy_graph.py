"""CuPy specifics of the GPU loop (skipped without a CUDA device): graph replays match eager steps with
dropout too, the Philox stream's state survives a checkpoint, and MNIST learns in graph mode."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends.cupy import cuda_device_present

pytestmark = pytest.mark.skipif(not cuda_device_present(), reason="needs a CUDA GPU")


def _run(graph: bool, dropout: float):
    cupy_backend = xn.get_backend("cupy")
    rng = np.random.default_rng(0)
    model = xn.Sequential([xn.Dense(20, 64, rng=rng), xn.ReLU(), xn.Dropout(dropout), xn.Dense(64, 4, rng=rng)])
    x = rng.normal(size=(300, 20)).astype(np.float32)
    y = rng.integers(0, 4, size=300)
    opt = xn.Adam(model.parameters(), lr=3e-3, schedule=xn.Cosine(100))
    hist = xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (cupy_backend.asarray(x), cupy_backend.asarray(y)),
                  epochs=3, batch_size=64, graph=graph, seed=3)
    return [cupy_backend.to_numpy(p.value) for p in model.parameters()], hist


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_graph_replays_match_eager_steps(dropout):
    eager, eager_hist = _run(False, dropout)
    graph, graph_hist = _run(True, dropout)
    # One GEMM route and the same kernels in both modes: the same bits, not merely close ones.
    for a, b in zip(graph, eager):
        np.testing.assert_array_equal(a, b)
    assert graph_hist["train_loss"] == eager_hist["train_loss"]


def test_philox_state_round_trips():
    b = xn.get_backend("cupy")
    b.seed(5)
    b.uniform((10,), b.xp.float32)
    state = b.rng_state()
    first = b.to_numpy(b.uniform((1000,), b.xp.float32))
    b.seed(99)
    b.set_rng_state(state)
    np.testing.assert_array_equal(b.to_numpy(b.uniform((1000,), b.xp.float32)), first)
    assert 0.0 <= first.min() and first.max() < 1.0 and abs(first.mean() - 0.5) < 0.05


def test_mnist_mlp_learns_in_graph_mode(mnist_dir):
    from xpnet.data.mnist import load_mnist
    from xpnet.models import mnist_mlp
    from xpnet.recipes import pixels

    b = xn.get_backend("cupy")
    x, y, xt, yt = load_mnist(mnist_dir, download=False)
    x, xt, y, yt = pixels(x), pixels(xt), y.astype(np.int64), yt.astype(np.int64)
    model = mnist_mlp(seed=0)
    opt = xn.Adam(model.parameters(), lr=3e-3)
    xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (b.asarray(x[:20000]), b.asarray(y[:20000])), epochs=2,
           batch_size=128, graph=True)
    acc = xn.evaluate(model, xn.SoftmaxCrossEntropy(), b.asarray(xt), b.asarray(yt))["accuracy"]
    assert acc > 0.93
