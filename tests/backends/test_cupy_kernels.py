"""CuPy's CUDA kernels (backends/cupy/kernels.py) equal their Array API references on the GPU; the device
scalars and the gate behave as CUDA-graph mode needs; philox_uniform (backends/cupy/philox.py) equals its
NumPy mirror bit for bit.

Skipped without a CUDA device; tests/backends/test_philox.py checks the Philox mirror on the CPU.
"""
from __future__ import annotations

import numpy as np
import pytest

from xpnet.backends.cupy import kernels as ck
from xpnet.backends.cupy import philox as ph
from xpnet.backends.cupy import cuda_device_present
from xpnet.backends.ops import fast_paths_enabled, lookup, set_fast_paths
from xpnet.core import update_math
from xpnet.core.losses import SoftmaxCrossEntropy

pytestmark = pytest.mark.skipif(not cuda_device_present(), reason="needs a CUDA GPU")

DTYPES = ["float32", "float64"]
TOL = {"float32": 2e-6, "float64": 1e-13}
ADAM = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


@pytest.fixture(scope="module")
def xp():
    import array_api_compat.cupy as xp

    return xp


def close(a, b, dtype, rtol=None):
    rtol = TOL[dtype] if rtol is None else rtol
    assert a.dtype == b.dtype
    np.testing.assert_allclose(a.get(), b.get(), rtol=rtol, atol=rtol * 1e-3)


def same_bits(a, b):
    """Bit-identical (NaN payloads and the sign of zero included)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    unsigned = f"u{a.dtype.itemsize}"
    np.testing.assert_array_equal(a.get().view(unsigned), b.get().view(unsigned))


def host_arrays(dtype, size=1000, seed=0):
    rng = np.random.default_rng(seed)
    p, g, s = (rng.normal(size=size).astype(dtype) for _ in range(3))
    return p, g, s, rng.random(size).astype(dtype)


def test_registered_under_the_namespace_array_api_compat_gives_cupy(cp, xp):
    import array_api_compat

    ck.register_all()
    assert array_api_compat.array_namespace(cp.zeros(1)).__name__ == ck.NAMESPACE == xp.__name__
    if fast_paths_enabled():
        assert lookup(xp, "adam_update") is ck.adam_update
        assert lookup(xp, "softmax_cross_entropy_labels") is ck.softmax_cross_entropy_labels


def test_concat_into(cp, xp):
    arrays = [cp.arange(6.0).reshape(2, 3), cp.ones(4), cp.full((1, 2), 7.0)]
    out = cp.empty(12)
    ck.concat_into(arrays, out)
    same_bits(out, xp.concat([xp.reshape(a, (-1,)) for a in arrays]))
    many = [cp.full((i + 1,), float(i)) for i in range(12)]  # more than 8: LeNet has 10 parameters
    out = cp.empty(sum(a.size for a in many))
    same_bits(ck.concat_into(many, out), xp.concat(many))


# -- optimizers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.0, False, 0.0), (0.0, False, 0.01), (0.9, False, 0.0),
                                                            (0.9, True, 0.01)])
def test_sgd_equals_reference(cp, xp, dtype, momentum, nesterov, weight_decay):
    p, g, vel, _ = host_arrays(dtype)
    kw = {"lr": 0.05, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}
    ref = update_math.sgd_update(xp, cp.asarray(p), cp.asarray(g), cp.asarray(vel) if momentum else None, **kw)
    args = [cp.asarray(p), cp.asarray(g), cp.asarray(vel) if momentum else None]
    fast = ck.sgd_update(xp, *args, **kw)
    assert fast[0] is args[0] and fast[1] is args[2]  # updated in place
    close(fast[0], ref[0], dtype)
    if momentum:
        close(fast[1], ref[1], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay,decoupled", [(0.0, False), (0.1, False), (0.1, True)])
@pytest.mark.parametrize("step", [1, 7, 1000])
def test_adam_equals_reference(cp, xp, dtype, weight_decay, decoupled, step):
    p, g, m, v = host_arrays(dtype, seed=step)
    kw = dict(lr=1e-2, step=step, weight_decay=weight_decay, decoupled=decoupled, **ADAM)
    ref = update_math.adam_update(xp, *(cp.asarray(a) for a in (p, g, m, v)), **kw)
    args = [cp.asarray(a) for a in (p, g, m, v)]
    fast = ck.adam_update(xp, *args, **kw)
    assert fast[0] is args[0] and fast[1] is args[2] and fast[2] is args[3]
    for a, b in zip(fast, ref):
        close(a, b, dtype)


def test_any_c_contiguous_shape_updates_like_the_flat_buffer(cp, xp):
    p, g, m, v = host_arrays("float32", size=70)
    kw = dict(lr=1e-2, step=3, weight_decay=0.0, decoupled=False, **ADAM)
    flat = ck.adam_update(xp, *(cp.asarray(a) for a in (p, g, m, v)), **kw)
    shaped = ck.adam_update(xp, *(cp.asarray(a).reshape(10, 7) for a in (p, g, m, v)), **kw)
    for a, b in zip(flat, shaped):
        same_bits(a, b.reshape(-1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step_dtype", ["float32", "float64"])
def test_device_lr_and_step_equal_python_numbers(cp, xp, dtype, step_dtype):
    p, g, m, v = host_arrays(dtype)
    for lr, step in ((1e-3, 1), (3e-4, 250)):
        kw = dict(weight_decay=0.1, decoupled=True, **ADAM)
        by_number = ck.adam_update(xp, *(cp.asarray(a) for a in (p, g, m, v)), lr=lr, step=step, **kw)
        by_device = ck.adam_update(xp, *(cp.asarray(a) for a in (p, g, m, v)), lr=cp.asarray(lr, dtype=dtype),
                                   step=cp.asarray(step, dtype=step_dtype), **kw)
        for a, b in zip(by_number, by_device):
            same_bits(a, b)
        kw = {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}
        by_number = ck.sgd_update(xp, cp.asarray(p), cp.asarray(g), cp.asarray(m), lr=lr, **kw)
        by_device = ck.sgd_update(xp, cp.asarray(p), cp.asarray(g), cp.asarray(m), lr=cp.asarray(lr, dtype=dtype), **kw)
        for a, b in zip(by_number, by_device):
            same_bits(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_changed_device_lr_is_read_at_launch(cp, xp, dtype):
    p, g, m, v = host_arrays(dtype)
    lr = cp.asarray(1e-3, dtype=dtype)
    lr.fill(5e-3)  # what a CUDA graph replay sees: the value now, not at capture
    by_device = ck.adam_update(xp, *(cp.asarray(a) for a in (p, g, m, v)), lr=lr, step=2, weight_decay=0.0,
                               decoupled=False, **ADAM)
    by_number = ck.adam_update(xp, *(cp.asarray(a) for a in (p, g, m, v)), lr=5e-3, step=2, weight_decay=0.0,
                               decoupled=False, **ADAM)
    for a, b in zip(by_device, by_number):
        same_bits(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gate_false_changes_nothing_even_with_nan_gradients(cp, xp, dtype):
    p, _, m, v = host_arrays(dtype)
    g = cp.full(p.shape, cp.nan, dtype=dtype)
    closed, opened = cp.asarray(False), cp.asarray(True)
    args = [cp.asarray(a) for a in (p, m, v)]
    ck.adam_update(xp, args[0], g, args[1], args[2], lr=cp.asarray(1e-2, dtype=dtype), step=cp.asarray(3.0),
                   weight_decay=0.1, decoupled=True, gate=closed, **ADAM)
    for a, host in zip(args, (p, m, v)):
        same_bits(a, cp.asarray(host))
    vel = cp.asarray(m)
    q = cp.asarray(p)
    ck.sgd_update(xp, q, g, vel, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1, gate=closed)
    same_bits(q, cp.asarray(p))
    same_bits(vel, cp.asarray(m))
    ck.sgd_update(xp, q, g, vel, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1, gate=opened)
    assert bool(cp.isnan(q).all())  # an open gate does update


@pytest.mark.parametrize("dtype", DTYPES)
def test_gate_true_equals_no_gate(cp, xp, dtype):
    p, g, m, v = host_arrays(dtype)
    kw = dict(lr=1e-2, step=4, weight_decay=0.0, decoupled=False, **ADAM)
    gated = ck.adam_update(xp, *(cp.asarray(a) for a in (p, g, m, v)), gate=cp.asarray(True), **kw)
    plain = ck.adam_update(xp, *(cp.asarray(a) for a in (p, g, m, v)), **kw)
    for a, b in zip(gated, plain):
        same_bits(a, b)


def test_a_captured_cuda_graph_replays_with_new_scalars_and_new_random_numbers(cp, xp):
    dtype, size = "float32", 513
    p0, _, m0, v0 = host_arrays(dtype, size=size)
    grads = [np.random.default_rng(10 + k).normal(size=size).astype(dtype) for k in range(3)]
    kw = dict(weight_decay=0.1, decoupled=True, **ADAM)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        p, g, m, v = (cp.asarray(a) for a in (p0, grads[0], m0, v0))
        lr, step = cp.asarray(1e-3, dtype=dtype), cp.asarray(1.0, dtype=cp.float32)
        counter, noise = cp.zeros((), dtype=cp.uint64), cp.empty(100, dtype=dtype)
        key = cp.asarray(ph.philox_key(5))  # a captured graph reads its key from the device: no copy inside
        ck.adam_update(xp, p.copy(), g, m.copy(), v.copy(), lr=lr, step=step, **kw)  # compiles before capture
        ph.philox_uniform(100, dtype, key, counter, out=noise)
        counter.fill(0)
        stream.synchronize()
        stream.begin_capture()
        try:
            ck.adam_update(xp, p, g, m, v, lr=lr, step=step, **kw)
            ph.philox_uniform(100, dtype, key, counter, out=noise)
        finally:
            graph = stream.end_capture()  # a stream left capturing would break every test after this one
    ep, em, ev = (cp.asarray(a) for a in (p0, m0, v0))
    for k in range(3):
        with stream:
            g[...] = cp.asarray(grads[k])
            lr.fill(1e-3 * (k + 1))
            step.fill(k + 1)
            graph.launch()
        stream.synchronize()
        ck.adam_update(xp, ep, cp.asarray(grads[k]), em, ev, lr=1e-3 * (k + 1), step=k + 1, **kw)
        for a, b in zip((p, m, v), (ep, em, ev)):
            same_bits(a, b)
        np.testing.assert_array_equal(noise.get(), ph.philox_uniform_numpy(100, dtype, 5, k))
        assert int(counter) == k + 1


def test_an_int_seed_inside_a_capture_is_refused_and_leaves_the_stream_usable(cp):
    counter, stream = cp.zeros((), dtype=cp.uint64), cp.cuda.Stream(non_blocking=True)
    ph.philox_uniform(8, "float32", 5, counter)  # compiled outside the capture
    with stream:
        stream.begin_capture()
        try:
            with pytest.raises(TypeError, match="device key"):
                ph.philox_uniform(8, "float32", 5, counter)
        finally:
            stream.end_capture()
    assert int(counter) == 1  # nothing was recorded or run by the refused call


def test_non_contiguous_state_is_refused_and_other_dtypes_raise_type_error(cp, xp):
    p = cp.zeros((4, 6), dtype=cp.float32)
    kw = dict(lr=0.1, step=1, weight_decay=0.0, decoupled=False, **ADAM)
    with pytest.raises(ValueError, match="C-contiguous"):
        ck.adam_update(xp, p.T, p.T, p.T, p.T, **kw)
    with pytest.raises(TypeError, match="float32 and float64"):
        ck.adam_update(xp, *(cp.zeros(4, dtype=cp.int32) for _ in range(4)), **kw)
    with pytest.raises(TypeError, match="one dtype"):
        ck.sgd_update(xp, cp.zeros(4), cp.zeros(4, dtype=cp.float32), None, lr=0.1, momentum=0.0, nesterov=False,
                      weight_decay=0.0)
    with pytest.raises(TypeError, match="float32 and float64"):
        ck.relu_forward(xp, cp.zeros(3, dtype=cp.float16))


# -- loss and activations ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(64, 10), (5, 1), (3, 70), (300, 3)])
def test_softmax_cross_entropy_equals_the_array_api_path(cp, xp, dtype, n, c):
    rng = np.random.default_rng(n * c)
    logits = (rng.normal(size=(n, c)) * 5).astype(dtype)
    logits[0, 0] = 1e4  # extremes stay finite
    logits[-1, -1] = -1e4
    logits, labels = cp.asarray(logits), cp.asarray(rng.integers(0, c, n))
    loss, grad = ck.softmax_cross_entropy_labels(xp, logits, labels)
    was = fast_paths_enabled()
    set_fast_paths(False)
    try:
        reference = SoftmaxCrossEntropy()
        ref_loss = reference(logits, labels)
        ref_grad = reference.backward()
    finally:
        set_fast_paths(was)
    assert loss.shape == () and loss.dtype == logits.dtype and grad.dtype == logits.dtype
    assert bool(cp.isfinite(loss)) and bool(cp.isfinite(grad).all())
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert float(loss) == pytest.approx(float(ref_loss), rel=tol, abs=tol)
    close(grad, ref_grad, dtype, rtol=tol)


def test_softmax_cross_entropy_marks_out_of_range_labels_with_nan(cp, xp):
    logits = cp.asarray(np.random.default_rng(0).normal(size=(3, 4)))
    loss, grad = ck.softmax_cross_entropy_labels(xp, logits, cp.asarray([0, 9, -1]))
    assert bool(cp.isnan(loss))
    assert cp.isnan(grad).all(axis=1).get().tolist() == [False, True, True]


def _with_edge_values(dtype, shape, seed=0):
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    x.reshape(-1)[:3] = [0.0, -0.0, np.nan]
    return x


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_forward_equals_the_formula(cp, xp, dtype):
    x = cp.asarray(_with_edge_values(dtype, (33, 17)))
    for arr in (x, x.T):  # a transposed (non-contiguous) input too
        y, mask = ck.relu_forward(xp, arr)
        ref_mask = xp.astype(arr > 0, arr.dtype)
        same_bits(mask, ref_mask)
        same_bits(y, arr * ref_mask)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_relu_forward_equals_the_formula_and_reuses_y(cp, xp, dtype):
    y = cp.asarray(_with_edge_values(dtype, (33, 17)))
    b = cp.asarray(np.random.default_rng(1).normal(size=17).astype(dtype))
    z = y + b
    ref_mask = xp.astype(z > 0, z.dtype)
    out, mask = ck.bias_relu_forward(xp, y, b)
    assert out is y
    same_bits(mask, ref_mask)
    same_bits(out, z * ref_mask)
    yt = cp.asarray(_with_edge_values(dtype, (17, 33))).T  # non-contiguous: a new array, y untouched
    before = yt.copy()
    out, mask = ck.bias_relu_forward(xp, yt, b)
    same_bits(yt, before)
    same_bits(out, (before + b) * xp.astype(before + b > 0, before.dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_tanh_backward_equal_the_formulas(cp, xp, dtype):
    rng = np.random.default_rng(2)
    x = cp.asarray(rng.normal(size=(40, 9)).astype(dtype))
    dy = cp.asarray(rng.normal(size=(40, 9)).astype(dtype))
    s, t = 1.0 / (1.0 + xp.exp(-x)), xp.tanh(x)
    close(ck.sigmoid_backward(xp, dy, s), dy * s * (1.0 - s), dtype)
    close(ck.tanh_backward(xp, dy, t), dy * (1.0 - t * t), dtype)


# -- Philox ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 37), 1, 0, 1_000_003])
def test_philox_uniform_equals_the_numpy_mirror_and_advances(cp, dtype, shape):
    seed = 0x0123456789ABCDEF
    counter = cp.zeros((), dtype=cp.uint64)
    first = ph.philox_uniform(shape, dtype, seed, counter)
    assert int(counter) == 1
    second = ph.philox_uniform(shape, dtype, seed, counter)
    assert int(counter) == 2
    np.testing.assert_array_equal(first.get(), ph.philox_uniform_numpy(shape, dtype, seed, 0))
    np.testing.assert_array_equal(second.get(), ph.philox_uniform_numpy(shape, dtype, seed, 1))
    assert first.dtype == np.dtype(dtype)
    if first.size > 1:
        assert not bool((first == second).all())
        assert 0.0 <= float(first.min()) and float(first.max()) < 1.0


def test_philox_two_word_counter_carries_into_the_high_word(cp):
    counter = cp.asarray(np.array([0xFFFFFFFF, 6], dtype=np.uint32))
    value = (6 << 32) + 0xFFFFFFFF
    u = ph.philox_uniform(50, "float32", 9, counter)
    np.testing.assert_array_equal(u.get(), ph.philox_uniform_numpy(50, "float32", 9, value))
    assert counter.get().tolist() == [0, 7]
    as_u64 = cp.asarray(np.uint64(value + 1))
    np.testing.assert_array_equal(ph.philox_uniform(50, "float32", 9, as_u64).get(),
                                  ph.philox_uniform(50, "float32", 9, counter).get())


def test_philox_rejects_a_host_counter_and_fills_out(cp):
    with pytest.raises(TypeError, match="counter"):
        ph.philox_uniform(4, "float32", 0, np.zeros((), np.uint64))
    counter = cp.zeros((), dtype=cp.uint64)
    out = cp.empty((2, 5), dtype=cp.float64)
    assert ph.philox_uniform((2, 5), "float64", 3, counter, out=out) is out
    np.testing.assert_array_equal(out.get(), ph.philox_uniform_numpy((2, 5), "float64", 3, 0))
