"""The same seed gives the same network and the same training on every backend."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.models import mnist_mlp

OTHERS = ["strict", "torch"]


def _data(n=640, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 784)).astype(np.float32)
    y = (x[:, :10].argmax(1)).astype(np.int64)  # a learnable rule
    return x, y


def test_same_seed_same_initial_weights_everywhere():
    if pytest.importorskip("torch") is None:
        return
    reference = mnist_mlp(seed=7).state_dict()
    for name in OTHERS:
        model = mnist_mlp(seed=7).to(name)
        backend = model.backend
        assert backend.name == name
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(backend.to_numpy(value), reference[key], err_msg=f"{name} {key}")
    other = mnist_mlp(seed=8).state_dict()
    assert not np.array_equal(other["0.weight"], reference["0.weight"])


def _losses(backend_name, optimizer, steps=20):
    pytest.importorskip("torch")
    x, y = _data()
    model = mnist_mlp(seed=3).to(backend_name)
    backend = model.backend
    opt = _opt(optimizer, model)
    loss = xn.SoftmaxCrossEntropy()
    xb, yb = backend.asarray(x), backend.asarray(y)
    out = []
    for i in range(steps):
        s = slice((i * 32) % 640, (i * 32) % 640 + 32)
        out.append(float(xn.train_step(model, loss, opt, xb[s, ...], yb[s])))
    return np.array(out)


def _opt(name, model):
    from xpnet.core.optim import make_optimizer

    return make_optimizer(name, model.parameters())


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_twenty_steps_give_the_same_losses_on_every_backend(optimizer):
    reference = _losses("numpy", optimizer)
    assert reference[-1] < reference[0]  # it learns
    for name in OTHERS:
        np.testing.assert_allclose(_losses(name, optimizer), reference, rtol=1e-5, atol=1e-6, err_msg=name)
