"""Shared fixtures: `backend` runs a test on every backend that can run here.

numpy and array-api-strict always; strict also on its non-default 'device1', which catches any array
created without `device=`; torch when installed (CI installs it); cupy only with a CUDA device.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

FAKE_CUPY = os.environ.get("XPNET_TEST_FAKE_CUPY") == "1"
if FAKE_CUPY:
    # tests/backends/test_cupy_on_fake.py runs the GPU-only test files in a subprocess with the CuPy test double
    # installed here, before anything imports cupy or decides a skip by whether a CUDA device is present.
    sys.path.insert(0, str(Path(__file__).resolve().parent / "fake_cupy"))
    from install import install

    _FAKE = install()  # held for the session: the fake cuBLAS's C callbacks must outlive every call

from xpnet.backends import get_backend
from xpnet.backends.cupy import cuda_device_present

# The real MNIST files beside the checkout; $XPNET_TEST_MNIST names another folder (the GPU machine gets the
# checkout only, so tools/gpu_session.sh points this at the copy it carries).
SHARED_MNIST = Path(os.environ.get("XPNET_TEST_MNIST")
                    or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")


def _make(name: str):
    if name == "strict-device1":
        import array_api_strict as xs

        from xpnet.backends.strict import StrictBackend

        return StrictBackend(xs.Device("device1"))
    return get_backend(name)


BACKEND_PARAMS = [
    pytest.param("numpy"),
    pytest.param("strict"),
    pytest.param("strict-device1"),
    pytest.param("torch", marks=pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                                   reason="torch not installed")),
    pytest.param("cupy", marks=pytest.mark.skipif(not cuda_device_present(), reason="needs a CUDA GPU")),
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    return _make(request.param)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST files beside the checkout; a missing copy fails the test rather than skipping it."""
    assert (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists(), f"real MNIST is missing at {SHARED_MNIST}"
    return SHARED_MNIST


@pytest.fixture(scope="session")
def mpiexec() -> Path:
    """The mpiexec beside this Python (the [mpi] extra: mpi4py and MPICH's wheel). Missing: the test skips,
    except in CI, which installs the extra, where it fails."""
    path = Path(sys.executable).with_name("mpiexec")
    missing = "" if path.exists() else f"no mpiexec beside {sys.executable}"
    if importlib.util.find_spec("mpi4py") is None:
        missing = "mpi4py is not installed"
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI installs the [mpi] extra, yet {missing}", pytrace=False)
    if missing:
        pytest.skip(f'{missing}: pip install -e ".[mpi]"')
    return path


@pytest.fixture(autouse=True)
def _pinned_backend(monkeypatch):
    # A command-line test that names no --backend runs on numpy on every machine: on a GPU machine `auto`
    # would be CuPy in graph mode, and the test would mean something else. Tests of `auto` clear this.
    monkeypatch.setenv("XPNET_BACKEND", "numpy")
    os.environ.setdefault("TQDM_DISABLE", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the fake CuPy, skip the few GPU tests it cannot stand in for, with their reason."""
    if not FAKE_CUPY:
        return
    for item in items:
        mark = item.get_closest_marker("not_on_fake")
        if mark is not None:
            item.add_marker(pytest.mark.skip(reason=f"not on the fake CuPy: {mark.args[0]}"))
