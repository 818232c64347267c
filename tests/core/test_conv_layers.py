"""Conv2D, MaxPool2D, AvgPool2D, Flatten, Reshape: finite differences on every backend, equality with torch,
max-pool ties, the NumPy kernels against the reference, and the errors bad input gets."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
import xpnet.core.conv as conv_module
from xpnet.backends.host import host_namespace
from xpnet.backends.ops import lookup, registered, set_fast_paths
from xpnet.core.gradcheck import gradcheck_module
from xpnet.core.module import module_config, module_from_config
from xpnet.core.pool import max_pool2d, max_pool2d_backward
from xpnet.errors import DTypeError, ShapeError

XP = host_namespace()
TOL = 1e-6


def _host(shape, seed=0):
    return np.random.default_rng(seed).uniform(-2.0, 2.0, size=shape)


def _conv(*args, **kw):
    return xn.Conv2D(*args, dtype="float64", rng=np.random.default_rng(1), **kw)


# (layer factory, input shape): tiny, odd and non-square, so array-api-strict stays quick
LAYERS = {
    "conv-k3-nonsquare": (lambda: _conv(1, 2, 3), (2, 1, 5, 4)),
    "conv-k3-stride2-pad1-3ch": (lambda: _conv(3, 2, 3, stride=2, padding=1), (2, 3, 5, 6)),
    "conv-k5-pad2": (lambda: _conv(1, 2, 5, padding=2), (1, 1, 6, 5)),
    "conv-k2-stride2-no-bias": (lambda: _conv(2, 3, 2, stride=2, bias=False), (1, 2, 5, 7)),
    "maxpool-2": (lambda: xn.MaxPool2D(2), (2, 3, 4, 6)),
    "maxpool-2-odd": (lambda: xn.MaxPool2D(2), (1, 2, 5, 7)),
    "maxpool-3-stride2-overlap": (lambda: xn.MaxPool2D(3, stride=2), (1, 2, 7, 6)),
    "maxpool-2-stride1-overlap": (lambda: xn.MaxPool2D(2, stride=1), (1, 1, 4, 5)),
    "avgpool-2": (lambda: xn.AvgPool2D(2), (2, 3, 4, 6)),
    "avgpool-3-stride2-overlap": (lambda: xn.AvgPool2D(3, stride=2), (1, 2, 7, 6)),
    "avgpool-2-odd": (lambda: xn.AvgPool2D(2), (1, 2, 5, 5)),
    "flatten": (xn.Flatten, (2, 3, 2, 2)),
    "reshape": (lambda: xn.Reshape((3, 2, 2)), (2, 12)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gradients_match_finite_differences(backend, name):
    make, shape = LAYERS[name]
    module = make()
    if module.parameters():
        module.to(backend, dtype="float64")
    # Continuous random values: no two in a pooling window are within eps, so max-pool has no ties here.
    results = gradcheck_module(module, backend.asarray(_host(shape), "float64"))
    assert len(results) == 1 + len(module.parameters())
    for r in results:
        # abs 1e-8: central differences of a loss summing dozens of outputs carry ~1e-9 of rounding
        assert r.max_rel_error < TOL or r.max_abs_error < 1e-8, (name, r)


def test_col2im_without_setitem_equals_the_in_place_one(monkeypatch):
    """Immutable arrays (JAX) take the functional col2im: zero-dilate, pad by concatenation, sum."""
    for c, h, w, n, k, s, p in [(2, 7, 9, 3, 3, 2, 1), (1, 8, 8, 2, 5, 1, 2), (3, 9, 7, 1, 3, 3, 0),
                                (2, 10, 11, 2, 4, 3, 1)]:
        ho, wo = conv_module.out_size(h, k, s, p), conv_module.out_size(w, k, s, p)
        cols = _host((c * k * k, ho * wo * n), seed=k)
        in_place = conv_module.col2im(XP, cols, (c, h, w, n), k, s, p)
        monkeypatch.setattr(conv_module, "is_writeable", lambda a: False)
        functional = conv_module.col2im(XP, cols, (c, h, w, n), k, s, p)
        monkeypatch.undo()
        np.testing.assert_allclose(functional, in_place, rtol=1e-14, atol=1e-14)


# -- equal to torch, forward and backward, float64 ------------------------------------------------------
CONVS = [(1, 6, 5, 1, 2, (3, 1, 12, 10)), (3, 4, 3, 2, 1, (2, 3, 7, 9)), (2, 3, 5, 1, 0, (2, 2, 8, 11)),
         (4, 2, 1, 1, 0, (1, 4, 3, 5))]


@pytest.mark.parametrize("cin,cout,k,stride,padding,shape", CONVS)
def test_conv2d_equals_torch(backend, cin, cout, k, stride, padding, shape):
    torch = pytest.importorskip("torch")
    layer = _conv(cin, cout, k, stride=stride, padding=padding).to(backend)
    layer.bias.value = backend.asarray(_host((cout,), seed=3), "float64")
    x, w, b = _host(shape), backend.to_numpy(layer.weight.value), backend.to_numpy(layer.bias.value)
    y = layer.forward(backend.asarray(x, "float64"))
    dy = _host(tuple(y.shape), seed=2)
    dx = layer.backward(backend.asarray(dy, "float64"))
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(backend.to_numpy(y), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(dx), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(layer.weight.grad), wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(layer.bias.grad), bt.grad.numpy(), rtol=1e-12, atol=1e-12)


POOLS = [(2, 2, (2, 3, 8, 6)), (3, 2, (2, 2, 9, 7)), (2, 1, (1, 3, 5, 6)), (3, 3, (2, 1, 10, 8)), (2, 2, (1, 2, 7, 5))]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("k,stride,shape", POOLS)
def test_pooling_equals_torch(backend, kind, k, stride, shape):
    torch = pytest.importorskip("torch")
    layer = (xn.MaxPool2D if kind == "max" else xn.AvgPool2D)(k, stride)
    reference = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    x = _host(shape)
    x[0, 0, :3, :3] = np.maximum(x[0, 0, :3, :3], 0.0) * 0.0  # a corner of ties (zeros, as after a ReLU)
    y = layer.forward(backend.asarray(x, "float64"))
    dy = _host(tuple(y.shape), seed=2)
    dx = layer.backward(backend.asarray(dy, "float64"))
    xt = torch.tensor(x, requires_grad=True)
    yt = reference(xt, k, stride)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(backend.to_numpy(y), yt.detach().numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(dx), xt.grad.numpy(), rtol=1e-14, atol=1e-15)


def test_max_pool_ties_send_the_gradient_to_exactly_one_element(backend):
    """Each 2x2 window: all equal; zeros after a ReLU; two equal maxima; distinct values."""
    x = np.array([[3.0, 3.0, -1.0, -2.0],
                  [3.0, 3.0, -3.0, -0.5],
                  [1.0, 5.0, 0.1, 0.2],
                  [5.0, 2.0, 0.4, 0.3]])[None, None]
    relu = xn.ReLU()
    layer = xn.MaxPool2D(2)
    y = layer.forward(relu.forward(backend.asarray(x, "float64")))
    dy = np.array([[1.0, 2.0], [3.0, 4.0]])[None, None]
    dx = backend.to_numpy(relu.backward(layer.backward(backend.asarray(dy, "float64"))))
    pooled_dx = backend.to_numpy(layer.backward(backend.asarray(dy, "float64")))
    np.testing.assert_array_equal(backend.to_numpy(y)[0, 0], [[3.0, 0.0], [5.0, 0.4]])
    windows = pooled_dx[0, 0].reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(4, 4)
    assert [(w != 0).sum() for w in windows] == [1, 1, 1, 1]
    np.testing.assert_array_equal(windows.sum(axis=1), [1.0, 2.0, 3.0, 4.0])
    # The first maximum in row-major order wins: (0, 0) of the equal window, (2, 1) over (3, 0).
    assert pooled_dx[0, 0, 0, 0] == 1.0 and pooled_dx[0, 0, 2, 1] == 3.0 and pooled_dx[0, 0, 0, 2] == 2.0
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(torch.relu(xt), 2).backward(torch.tensor(dy))
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    pooled_t = torch.tensor(np.maximum(x, 0.0), requires_grad=True)
    torch.nn.functional.max_pool2d(pooled_t, 2).backward(torch.tensor(dy))
    np.testing.assert_array_equal(pooled_dx, pooled_t.grad.numpy())


# -- the NumPy kernels equal the portable reference -----------------------------------------------------
def test_numpy_registers_the_pooling_kernels():
    assert {"max_pool2d", "max_pool2d_backward"} <= {op for ns, op in registered() if ns == XP.__name__}


def _images(shape, layout, dtype, seed=0):
    """Post-ReLU values (many ties at zero, some equal maxima), C-ordered NCHW or an NCHW view of CHWN memory."""
    a = np.round(np.random.default_rng(seed).normal(size=shape) * 2) / 2
    a = np.maximum(a, 0.0).astype(dtype)
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2) if layout == "chwn" else a


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["nchw", "chwn"])
@pytest.mark.parametrize("k,stride,shape", [(2, 2, (4, 3, 8, 6)), (2, 2, (2, 2, 7, 5)), (3, 2, (2, 2, 9, 7)),
                                            (2, 1, (2, 3, 5, 6))])
def test_max_pool_kernels_equal_the_reference(dtype, layout, k, stride, shape):
    x = _images(shape, layout, dtype)
    dy = np.random.default_rng(1).normal(size=(shape[0], shape[1], (shape[2] - k) // stride + 1,
                                               (shape[3] - k) // stride + 1)).astype(dtype)
    fast_y, fast_saved = lookup(XP, "max_pool2d")(XP, x, k, stride)
    fast_dx = lookup(XP, "max_pool2d_backward")(XP, dy, fast_saved, k, stride)
    ref_y, ref_saved = max_pool2d(XP, x, k, stride)
    ref_dx = max_pool2d_backward(XP, dy, ref_saved, k, stride)
    np.testing.assert_array_equal(fast_y, ref_y)
    np.testing.assert_array_equal(fast_dx, ref_dx)
    assert fast_y.dtype == ref_y.dtype and fast_dx.dtype == ref_dx.dtype
    # dx keeps the input's memory layout, so the ReLU before the pool multiplies like-ordered arrays.
    assert np.argsort(fast_dx.strides).tolist() == np.argsort(x.strides).tolist()


def test_lenet_gradients_are_the_same_with_and_without_fast_paths():
    from xpnet.models import lenet

    rng = np.random.default_rng(0)
    x, y = rng.random((16, 784)).astype(np.float32), rng.integers(0, 10, 16)

    def grads():
        model, loss = lenet(seed=0), xn.SoftmaxCrossEntropy()
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        return [p.grad for p in model.parameters()]

    fast = grads()
    set_fast_paths(False)
    try:
        reference = grads()
    finally:
        set_fast_paths(True)
    for a, b in zip(fast, reference):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# -- configuration and errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [xn.Conv2D(3, 8, 5, stride=2, padding=1, bias=False, init="glorot"),
                                   xn.MaxPool2D(3, stride=2), xn.AvgPool2D(2), xn.Flatten(), xn.Reshape((1, 28, 28))],
                         ids=repr)
def test_config_rebuilds_the_layer(layer):
    rebuilt = module_from_config(module_config(layer))
    assert type(rebuilt) is type(layer) and rebuilt.config() == layer.config()
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in layer.parameters()]


def test_bad_input_names_the_layer_and_the_shapes():
    conv = xn.Conv2D(1, 6, 5)
    with pytest.raises(ShapeError, match=r"Conv2D\(1, 6, 5\).*\(batch, 1, height, width\).*\(4, 784\).*Reshape"):
        conv.forward(np.zeros((4, 784), np.float32))
    with pytest.raises(ShapeError, match=r"Conv2D\(1, 6, 5\) expects 1 input channel\(s\), got 3"):
        conv.forward(np.zeros((4, 3, 28, 28), np.float32))
    with pytest.raises(ShapeError, match=r"at least 5x5, got 4x9"):
        conv.forward(np.zeros((4, 1, 4, 9), np.float32))
    with pytest.raises(DTypeError, match="float32 weights but got float64"):
        conv.forward(np.zeros((4, 1, 28, 28)))
    with pytest.raises(ShapeError, match=r"MaxPool2D\(2\) expects input of shape \(batch, channels"):
        xn.MaxPool2D(2).forward(np.zeros((6, 28, 28), np.float32))
    with pytest.raises(ShapeError, match=r"AvgPool2D\(3\) needs images of at least 3x3"):
        xn.AvgPool2D(3).forward(np.zeros((1, 1, 2, 8), np.float32))
    with pytest.raises(ShapeError, match=r"Reshape\(\(1, 28, 28\)\) expects .*784 values per sample, got \(4, 780\)"):
        xn.Reshape((1, 28, 28)).forward(np.zeros((4, 780), np.float32))
    with pytest.raises(ShapeError, match=r"Flatten\(\) expects input of shape \(batch, \.\.\.\)"):
        xn.Flatten().forward(np.zeros((4,), np.float32))
    conv.eval()
    conv.forward(np.zeros((2, 1, 28, 28), np.float32))  # eval mode keeps no columns for a backward
    with pytest.raises(RuntimeError, match="training mode"):
        conv.backward(np.zeros((2, 6, 24, 24), np.float32))


@pytest.mark.parametrize("make", [lambda: xn.Conv2D(1, 6, 0), lambda: xn.Conv2D(0, 6, 3),
                                  lambda: xn.Conv2D(1, 6, 3, padding=-1), lambda: xn.Conv2D(1, 6, 3, stride=0),
                                  lambda: xn.MaxPool2D(0), lambda: xn.AvgPool2D(2, stride=0),
                                  lambda: xn.Reshape((0, 4))])
def test_bad_sizes_are_refused_at_construction(make):
    with pytest.raises(ValueError):
        make()
