"""Every fast kernel equals its Array API reference on the same inputs; the flat optimizer path equals the
per-parameter path."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends.host import host_namespace
from xpnet.backends.ops import lookup, registered
from xpnet.core import update_math
from xpnet.models import mlp

XP = host_namespace()


def test_numpy_registers_its_kernels():
    names = {op for ns, op in registered() if ns == XP.__name__}
    assert {"adam_update", "concat_into", "softmax_cross_entropy_labels"} <= names


@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-6), ("float64", 1e-13)])
@pytest.mark.parametrize("weight_decay,decoupled", [(0.0, False), (0.1, False), (0.1, True)])
@pytest.mark.parametrize("step", [1, 7])
def test_adam_kernel_equals_reference(dtype, rtol, weight_decay, decoupled, step):
    rng = np.random.default_rng(step)
    p, g, m = (rng.normal(size=1000).astype(dtype) for _ in range(3))
    v = rng.random(1000).astype(dtype)
    kw = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, step=step, weight_decay=weight_decay, decoupled=decoupled)
    ref = update_math.adam_update(XP, p.copy(), g.copy(), m.copy(), v.copy(), **kw)
    fast = lookup(XP, "adam_update")(XP, p.copy(), g.copy(), m.copy(), v.copy(), **kw)
    for a, b in zip(fast, ref):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-3)


def test_concat_kernel_equals_reference():
    arrays = [np.arange(6.0).reshape(2, 3), np.ones(4), np.full((1, 2), 7.0)]
    out = np.empty(12)
    np.testing.assert_array_equal(lookup(XP, "concat_into")(arrays, out), XP.concat([a.reshape(-1) for a in arrays]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_cross_entropy_kernel_equals_the_one_hot_reference(dtype):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(64, 10)) * 5).astype(dtype)
    logits[0, 3], logits[1, 0] = 1e4, -1e4  # extremes stay finite
    labels = rng.integers(0, 10, 64)
    loss = xn.SoftmaxCrossEntropy()
    fast = float(loss(logits, labels)), loss.backward()
    onehot = np.eye(10, dtype=dtype)[labels]  # float targets take the reference path
    ref = float(loss(logits, onehot)), loss.backward()
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert fast[0] == pytest.approx(ref[0], rel=tol) and np.isfinite(fast[0])
    np.testing.assert_allclose(fast[1], ref[1], rtol=tol, atol=tol * 1e-2)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_flat_path_equals_per_parameter_path(backend, optimizer):
    from xpnet.core.optim import make_optimizer

    rng = np.random.default_rng(0)
    x = backend.asarray(rng.random((32, 6)), "float64")
    y = backend.asarray(rng.integers(0, 3, 32), "int64")

    def run(flat: bool):
        model = mlp((6, 8, 3), "tanh", dtype="float64", seed=1).to(backend)
        opt = make_optimizer(optimizer, model.parameters(), 0.05, weight_decay=0.01)
        opt.flat = flat
        for _ in range(5):
            xn.train_step(model, xn.SoftmaxCrossEntropy(), opt, x, y)
        return model, opt

    (flat_model, flat_opt), (ref_model, _) = run(True), run(False)
    assert (flat_opt._flat is not None) == bool(flat_opt.roles)  # stateless SGD stays per parameter
    for a, b in zip(flat_model.parameters(), ref_model.parameters()):
        np.testing.assert_allclose(backend.to_numpy(a.value), backend.to_numpy(b.value), rtol=1e-12, atol=1e-14)


def test_flat_buffers_rebuild_after_parameters_are_replaced():
    model = mlp((4, 3, 2), "relu", seed=0)
    opt = xn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = np.random.default_rng(0).random((8, 4), dtype=np.float32), np.zeros(8, np.int64)
    xn.train_step(model, xn.SoftmaxCrossEntropy(), opt, x, y)
    first = opt._flat
    model.load_state_dict({k: np.zeros(v.shape, np.float32) for k, v in model.state_dict().items()})
    xn.train_step(model, xn.SoftmaxCrossEntropy(), opt, x, y)
    assert opt._flat is not first  # rebuilt around the loaded values, which are now what gets updated
    assert all(p.value is v for p, v in zip(model.parameters(), opt._flat.views))
