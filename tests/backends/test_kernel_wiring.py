"""The kernel table and its wiring. Every op a backend registers is named in the table (a misspelt name
is refused), and the layers call a backend's fused kernels where one is registered (CuPy registers them; see
tests/backends/test_cupy_kernels.py for their maths). Here NumPy stand-ins with the same contracts are registered
for the NumPy namespace, to check the wiring on any machine: same results, and each kernel really ran."""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends import ops as kernels
from xpnet.backends.host import host_namespace

XP = host_namespace()
ROOT = Path(__file__).resolve().parents[2]
CUPY_OPS = {"matmul", "concat_into", "sgd_update", "adam_update", "softmax_cross_entropy_labels", "relu_forward",
            "bias_relu_forward", "sigmoid_backward", "tanh_backward", "philox_uniform", "im2col", "col2im",
            "max_pool2d", "max_pool2d_backward", "guard_watch"}


def test_the_table_names_each_op_once_with_its_contract():
    constants = {name: value for name, value in vars(kernels).items() if name.isupper() and isinstance(value, str)}
    assert set(constants.values()) == set(kernels.OPS)  # one constant per op, and no op without one
    assert all(name == value.upper() for name, value in constants.items())
    assert all(kernels.OPS[op].startswith("(") for op in kernels.OPS)  # each contract opens with its signature


def test_registering_an_unknown_op_is_a_value_error_naming_the_known_ones(monkeypatch):
    monkeypatch.setattr(kernels, "_table", dict(kernels._table))
    with pytest.raises(ValueError, match=r"'relu_foward'.*bias_relu_forward, col2im"):
        kernels.register(XP.__name__, "relu_foward", lambda xp, x: (x, x))
    assert (XP.__name__, "relu_foward") not in kernels._table
    kernels.register(XP.__name__, kernels.RELU_FORWARD, lambda xp, x: (x, x))  # a known name still registers


def test_every_op_the_numpy_backend_registers_is_in_the_table():
    numpy_ops = {op for ns, op in kernels.registered() if ns == XP.__name__}
    assert {"concat_into", "adam_update", "softmax_cross_entropy_labels", "max_pool2d"} <= numpy_ops
    assert numpy_ops <= set(kernels.OPS)


def test_every_op_the_cupy_modules_register_is_in_the_table():
    """Each module's register_all in a fresh process (they register without importing CuPy)."""
    code = ("import sys; from xpnet.backends import ops; from xpnet.backends.cupy import conv, cublas, guard, kernels; "
            "[m.register_all() for m in (conv, cublas, guard, kernels)]; assert 'cupy' not in sys.modules; "
            "print(sorted(op for ns, op in ops.registered() if ns == 'array_api_compat.cupy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert set(ast.literal_eval(out.strip().splitlines()[-1])) == CUPY_OPS
    assert CUPY_OPS <= set(kernels.OPS)


def test_every_literal_op_name_in_the_package_is_in_the_table():
    """lookup() answers None for an unknown name, so a misspelt literal there would silently never run."""
    for path in sorted((ROOT / "xpnet").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                    "lookup", "register"):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        assert arg.value in kernels.OPS, f"{path.relative_to(ROOT)}:{node.lineno}: {arg.value!r}"


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

    counted(kernels.BIAS_RELU_FORWARD, bias_relu)
    counted(kernels.RELU_FORWARD, lambda xp, x: (x * (x > 0), (x > 0).astype(x.dtype)))
    counted(kernels.SIGMOID_BACKWARD, lambda xp, dy, y: dy * y * (1.0 - y))
    counted(kernels.TANH_BACKWARD, lambda xp, dy, y: dy * (1.0 - y * y))
    counted(kernels.MATMUL, lambda a, b: a @ b)
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


def test_a_copied_model_runs_its_own_layers_through_the_fused_pair(monkeypatch):
    """Sequential plans the Dense+ReLU pair once; a deep copy made after that must not run the original's."""
    import copy

    install_stand_ins(monkeypatch)
    model = xn.Sequential([xn.Dense(3, 4), xn.ReLU(), xn.Dense(4, 2)])
    x = np.ones((2, 3), dtype=np.float32)
    model.forward(x)  # the plan now exists
    clone = copy.deepcopy(model)
    clone.layers[0].weight.value[...] = 0
    np.testing.assert_array_equal(clone.forward(x), np.zeros((2, 2), dtype=np.float32))  # every bias is zero
    assert np.any(model.forward(x) != 0)
