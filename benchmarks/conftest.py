"""Benchmark fixtures: every backend that can run here, side by side, at each batch size.

Test ids read `test_dense_forward[numpy-128]`; each benchmark's group is "<op> batch=<n>" (or "<op>" for
the per-model optimizer steps), so `--benchmark-group-by=group` puts the backends of one (op, batch) in one
table. array-api-strict runs only the smallest batch: it is a correctness tool and very slow.
With `--benchmark-disable` every body runs once, so each benchmark doubles as a smoke test.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Callable

import numpy as np
import pytest

from xpnet.backends import Backend, get_backend
from xpnet.backends.cupy import cuda_device_present
from xpnet.core.dense import Dense
from xpnet.models import mnist_mlp

BATCH_SIZES = (32, 128, 512, 2048)
STRICT_BATCH_SIZES = BATCH_SIZES[:1]


# (name, skip marks, batch sizes it runs at)
BACKENDS = [
    ("numpy", [], BATCH_SIZES),
    ("torch", [pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")],
     BATCH_SIZES),
    ("cupy", [pytest.mark.skipif(not cuda_device_present(), reason="needs a CUDA GPU")], BATCH_SIZES),
    ("strict", [], STRICT_BATCH_SIZES),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`backend` alone: one case per backend; with `batch_size`: backend x batch (strict: smallest only)."""
    if "backend" not in metafunc.fixturenames:
        return
    if "batch_size" in metafunc.fixturenames:
        cases = [pytest.param(name, batch, marks=marks, id=f"{name}-{batch}")
                 for name, marks, batches in BACKENDS for batch in batches]
        metafunc.parametrize(("backend", "batch_size"), cases, indirect=["backend"])
    else:
        cases = [pytest.param(name, marks=marks, id=name) for name, marks, _ in BACKENDS]
        metafunc.parametrize("backend", cases, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    return get_backend(request.param)


@pytest.fixture(autouse=True)
def _label_benchmark(request: pytest.FixtureRequest) -> None:
    """Group "<op> batch=<n>" from the test's name and parameters; backend and batch go to extra_info."""
    if "benchmark" not in request.fixturenames or not hasattr(request.node, "callspec"):
        return
    bench = request.getfixturevalue("benchmark")
    params = request.node.callspec.params
    op = request.node.originalname.removeprefix("test_")
    batch = params.get("batch_size")
    bench.group = op if batch is None else f"{op} batch={batch}"
    bench.extra_info["backend"] = params["backend"]
    if batch is not None:
        bench.extra_info["batch_size"] = batch


def timed(benchmark: Any, backend: Backend, fn: Callable[..., Any], *args: Any) -> Any:
    """benchmark(fn, *args), synchronising the device before the clock is read; returns fn's result."""
    def run() -> Any:
        out = fn(*args)
        backend.synchronize()
        return out

    return benchmark(run)


@pytest.fixture(name="timed")
def _timed() -> Callable[..., Any]:
    return timed


# -- inputs: drawn on the host once, moved to the device outside the timed region ------------------
def device_normal(backend: Backend, *shape: int) -> Any:
    """Standard normal float32 array of `shape` on the backend's device (host default_rng(0))."""
    return backend.asarray(np.random.default_rng(0).standard_normal(shape, dtype=np.float32), "float32")


def device_labels(backend: Backend, batch: int, classes: int = 10) -> Any:
    """int64 labels in 0..classes-1 of shape (batch,) on the backend's device."""
    return backend.asarray(np.random.default_rng(0).integers(0, classes, size=batch), "int64")


@pytest.fixture
def images(backend: Backend, batch_size: int) -> Any:
    """(batch, 784) float32: a batch of flattened MNIST-sized inputs."""
    return device_normal(backend, batch_size, 784)


@pytest.fixture
def hidden(backend: Backend, batch_size: int) -> Any:
    """(batch, 128) float32: the first hidden layer's width (ReLU input, Dense(784, 128) output gradient)."""
    return device_normal(backend, batch_size, 128)


@pytest.fixture
def logits(backend: Backend, batch_size: int) -> Any:
    """(batch, 10) float32 class scores."""
    return device_normal(backend, batch_size, 10)


@pytest.fixture
def labels(backend: Backend, batch_size: int) -> Any:
    """(batch,) int64 labels in 0..9."""
    return device_labels(backend, batch_size)


@pytest.fixture
def dense(backend: Backend) -> Dense:
    """The MLP's first layer, Dense(784, 128), on the backend."""
    return Dense(784, 128, init="he", rng=np.random.default_rng(0)).to(backend)


@pytest.fixture
def model(backend: Backend) -> Any:
    """The MNIST MLP 784-128-64-10 (ReLU), float32, on the backend."""
    return mnist_mlp().to(backend)
