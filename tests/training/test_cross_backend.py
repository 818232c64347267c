"""The same seed gives the same network and the same training on every backend."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends.cupy import cuda_device_present
from xpnet.models import mnist_mlp

OTHERS = ["strict", "torch"] + (["cupy"] if cuda_device_present() else [])


@pytest.fixture(autouse=True)
def _no_tf32():
    """torch may run float32 matmuls on CUDA in TF32 (10-bit mantissa) depending on global settings; these
    tests compare float32 rounding, so they ask for full float32 explicitly and put the setting back."""
    torch = pytest.importorskip("torch")
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


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
    return np.array(out), "cuda" in backend.describe_device()


def _opt(name, model):
    from xpnet.core.optim import make_optimizer

    return make_optimizer(name, model.parameters())


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_twenty_steps_give_the_same_losses_on_every_backend(optimizer):
    reference, _ = _losses("numpy", optimizer)
    assert reference[-1] < reference[0]  # it learns
    for name in OTHERS:
        losses, on_gpu = _losses(name, optimizer)
        # On a GPU cuBLAS sums each product in another order than the CPU's BLAS (and picks its kernel by
        # shape): a few float32 ulps per step, which 20 momentum/Adam steps grow, so allow 10x more there.
        rtol = 1e-4 if on_gpu else 1e-5
        np.testing.assert_allclose(losses, reference, rtol=rtol, atol=rtol / 10, err_msg=name)
