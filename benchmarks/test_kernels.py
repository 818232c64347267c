"""Hot paths of the MNIST MLP (784-128-64-10, float32) per backend and batch size.

Each body is timed by pytest-benchmark; under `--benchmark-disable` it runs once and its assertion makes
it a smoke test. Setup (inputs on the device, a forward pass before a backward) stays outside the timing.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from xpnet.core.activations import ReLU
from xpnet.core.losses import SoftmaxCrossEntropy
from xpnet.core.optim import SGD, Adam
from xpnet.training.fit import train_step


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(a.shape)


def _is_finite(backend, value: Any) -> bool:
    return math.isfinite(float(backend.to_numpy(value)))


# -- Dense(784, 128) -----------------------------------------------------------------------------------
def test_dense_forward(benchmark, backend, timed, dense, images, batch_size):
    out = timed(benchmark, backend, dense.forward, images)
    assert _shape(out) == (batch_size, 128)


def _dense_backward(dense, dy, need_dx):
    dense.zero_grad()  # as train_step does: time the gradients, not an accumulation into old ones
    return dense.backward(dy, need_dx=need_dx)


def test_dense_backward_dx(benchmark, backend, timed, dense, images, hidden, batch_size):
    dense.forward(images)
    dx = timed(benchmark, backend, _dense_backward, dense, hidden, True)
    assert _shape(dx) == (batch_size, 784) and _shape(dense.weight.grad) == (784, 128)


def test_dense_backward_no_dx(benchmark, backend, timed, dense, images, hidden, batch_size):
    dense.forward(images)
    dx = timed(benchmark, backend, _dense_backward, dense, hidden, False)
    assert dx is None and _shape(dense.bias.grad) == (128,)


# -- ReLU on (batch, 128) ------------------------------------------------------------------------------
def test_relu_forward(benchmark, backend, timed, hidden, batch_size):
    out = timed(benchmark, backend, ReLU().forward, hidden)
    assert _shape(out) == (batch_size, 128)


def test_relu_backward(benchmark, backend, timed, hidden, batch_size):
    relu = ReLU()
    relu.forward(hidden)
    dx = timed(benchmark, backend, relu.backward, hidden)
    assert _shape(dx) == (batch_size, 128)


# -- SoftmaxCrossEntropy on (batch, 10) logits, int64 labels --------------------------------------------
def _loss_forward_backward(loss, logits, labels):
    return loss.forward(logits, labels), loss.backward()


def test_softmax_cross_entropy(benchmark, backend, timed, logits, labels, batch_size):
    loss = SoftmaxCrossEntropy(check_labels=False)  # time the maths, not the label-range read-back
    value, grad = timed(benchmark, backend, _loss_forward_backward, loss, logits, labels)
    assert _is_finite(backend, value) and _shape(grad) == (batch_size, 10)


# -- optimizer step over the whole MLP (per model, not per batch) --------------------------------------
def _with_fixed_grads(backend, model):
    rng = np.random.default_rng(0)
    for p in model.parameters():
        p.grad = backend.asarray(rng.standard_normal(p.shape, dtype=np.float32) * 0.01, "float32")
    return model.parameters()


def _time_step(benchmark, backend, timed, opt):
    before = [backend.to_numpy(p.value).copy() for p in opt.params]
    timed(benchmark, backend, opt.step)
    after = [backend.to_numpy(p.value) for p in opt.params]
    assert opt.steps >= 1 and all(not np.array_equal(a, b) for a, b in zip(before, after))


def test_sgd_momentum_step(benchmark, backend, timed, model):
    _time_step(benchmark, backend, timed, SGD(_with_fixed_grads(backend, model), lr=0.01, momentum=0.9))


def test_adam_step(benchmark, backend, timed, model):
    _time_step(benchmark, backend, timed, Adam(_with_fixed_grads(backend, model), lr=1e-3))


# -- one whole training step: forward, loss, backward (need_dx=False), Adam ----------------------------
def test_train_step(benchmark, backend, timed, model, images, labels, batch_size):
    loss, opt = SoftmaxCrossEntropy(check_labels=False), Adam(model.parameters(), lr=1e-3)
    value = timed(benchmark, backend, train_step, model, loss, opt, images, labels)
    assert _is_finite(backend, value) and opt.steps >= 1
