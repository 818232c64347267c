"""Hot paths of LeNet-5 (models/lenet.py, float32) per backend and batch size: its two convolutions forward
and backward, the first max-pool, and a whole training step.

conv1 is Conv2D(1, 6, 5, padding=2) on (batch, 1, 28, 28); conv2 is Conv2D(6, 16, 5) on (batch, 6, 14, 14).
Backward is timed as training runs it: conv1 without dx (its input is data), conv2 with dx. Each body is
timed by pytest-benchmark; under `--benchmark-disable` it runs once and its assertion makes it a smoke test.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from xpnet.core.conv import Conv2D
from xpnet.core.losses import SoftmaxCrossEntropy
from xpnet.core.optim import Adam
from xpnet.core.pool import MaxPool2D
from xpnet.models import lenet
from xpnet.training.fit import train_step


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(a.shape)


def device_normal(backend, *shape: int) -> Any:
    """Standard normal float32 array of `shape` on the backend's device (host default_rng(0)), made untimed."""
    return backend.asarray(np.random.default_rng(0).standard_normal(shape, dtype=np.float32), "float32")


@pytest.fixture
def conv1(backend):
    return Conv2D(1, 6, 5, padding=2, rng=np.random.default_rng(0)).to(backend)


@pytest.fixture
def conv2(backend):
    return Conv2D(6, 16, 5, rng=np.random.default_rng(0)).to(backend)


def _backward(layer, dy, need_dx):
    layer.zero_grad()  # as train_step does: time the gradients, not an accumulation into old ones
    return layer.backward(dy, need_dx=need_dx)


# -- conv1: 1 -> 6 channels, 5x5, padding 2, 28x28 -> 28x28 -------------------------------------------
def test_conv1_forward(benchmark, backend, timed, conv1, batch_size):
    out = timed(benchmark, backend, conv1.forward, device_normal(backend, batch_size, 1, 28, 28))
    assert _shape(out) == (batch_size, 6, 28, 28)


def test_conv1_backward_no_dx(benchmark, backend, timed, conv1, batch_size):
    conv1.forward(device_normal(backend, batch_size, 1, 28, 28))
    dx = timed(benchmark, backend, _backward, conv1, device_normal(backend, batch_size, 6, 28, 28), False)
    assert dx is None and _shape(conv1.weight.grad) == (6, 1, 5, 5)


# -- conv2: 6 -> 16 channels, 5x5, 14x14 -> 10x10 -----------------------------------------------------
def test_conv2_forward(benchmark, backend, timed, conv2, batch_size):
    out = timed(benchmark, backend, conv2.forward, device_normal(backend, batch_size, 6, 14, 14))
    assert _shape(out) == (batch_size, 16, 10, 10)


def test_conv2_backward_dx(benchmark, backend, timed, conv2, batch_size):
    conv2.forward(device_normal(backend, batch_size, 6, 14, 14))
    dx = timed(benchmark, backend, _backward, conv2, device_normal(backend, batch_size, 16, 10, 10), True)
    assert _shape(dx) == (batch_size, 6, 14, 14) and _shape(conv2.weight.grad) == (16, 6, 5, 5)


# -- MaxPool2D(2) on conv1's (batch, 6, 28, 28) output -----------------------------------------------
def test_max_pool_forward(benchmark, backend, timed, batch_size):
    out = timed(benchmark, backend, MaxPool2D(2).forward, device_normal(backend, batch_size, 6, 28, 28))
    assert _shape(out) == (batch_size, 6, 14, 14)


def test_max_pool_backward(benchmark, backend, timed, batch_size):
    pool = MaxPool2D(2)
    pool.forward(device_normal(backend, batch_size, 6, 28, 28))
    dx = timed(benchmark, backend, pool.backward, device_normal(backend, batch_size, 6, 14, 14))
    assert _shape(dx) == (batch_size, 6, 28, 28)


# -- one whole LeNet training step: forward, loss, backward (need_dx=False), Adam -------------------------
def test_lenet_train_step(benchmark, backend, timed, images, labels, batch_size):
    model = lenet().to(backend)
    loss, opt = SoftmaxCrossEntropy(check_labels=False), Adam(model.parameters(), lr=1e-3)
    value = timed(benchmark, backend, train_step, model, loss, opt, images, labels)
    assert math.isfinite(float(backend.to_numpy(value))) and opt.steps >= 1
