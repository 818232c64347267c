"""The layers call a backend's fused kernels where one is registered (CuPy registers them; see
tests/test_cupy_kernels.py for their maths). Here NumPy stand-ins with the same contracts are registered
for the NumPy namespace, to check the wiring on any machine: same results, and each kernel really ran."""
from __future__ import annotations

from collections import Counter

import numpy as np
import xpnet as xn
from xpnet.backends import ops as kernels
from xpnet.backends.host import host_namespace

XP = host_namespace()


def install_stand_ins(monkeypatch):
    calls: Counter[str] = Counter()

    def counted(name, fn):
        def wrapper(*args):
            calls[name] += 1
            return fn(*args)
        monkeypatch.setitem(kernels._table, (XP.__name__, name), wrapper)

    def bias_relu(xp, y, b):
        z = y + b
        mask = (z > 0).astype(z.dtype)
        return z * mask, mask

    counted("bias_relu_forward", bias_relu)
    counted("relu_forward", lambda xp, x: (x * (x > 0), (x > 0).astype(x.dtype)))
    counted("sigmoid_backward", lambda xp, dy, y: dy * y * (1.0 - y))
    counted("tanh_backward", lambda xp, dy, y: dy * (1.0 - y * y))
    counted("matmul", lambda a, b: a @ b)
    return calls


def _train(seed=0):
    rng = np.random.default_rng(seed)
    model = xn.Sequential([xn.Dense(5, 8, rng=rng), xn.ReLU(), xn.Dense(8, 8, rng=rng), xn.Tanh(),
                           xn.Dense(8, 6, rng=rng), xn.Sigmoid(), xn.ReLU(), xn.Dense(6, 3, rng=rng)])
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    xn.fit(model, xn.SoftmaxCrossEntropy(), xn.Adam(model.parameters(), lr=0.01), (x, y), epochs=2, batch_size=8)
    return [p.value.copy() for p in model.parameters()]


def test_fused_kernels_are_called_and_change_nothing(monkeypatch):
    plain = _train()
    stand_ins = install_stand_ins(monkeypatch)
    fused = _train()
    # 2 epochs x 5 batches, plus the one-row forward with which fit checks the input width
    assert stand_ins["bias_relu_forward"] == 11  # Dense(5, 8) + ReLU fused
    assert stand_ins["relu_forward"] == 11  # the ReLU after Sigmoid has no Dense before it
    assert stand_ins["tanh_backward"] == stand_ins["sigmoid_backward"] == 10
    assert stand_ins["matmul"] >= 10 * (4 + 3 + 2)  # forward, dW for all, dx for all but the first Dense
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
