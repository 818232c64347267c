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
from xpnet.backends.threads import cores, set_threads, threads_fixed

# Results depend on the CPU thread count in their last bits, and training chooses that count from timings
# unless it is fixed; the suite fixes it (also for the commands it starts) so that runs compare bit for bit.
# The choosing has its own tests (tests/training/test_thread_tuning.py), which free it again.
set_threads(threads_fixed() or cores())

# Real MNIST for the tests: $XPNET_TEST_MNIST if set, else a copy two levels up (the development machines and
# CI keep one there), else xpnet's own cache, which `xpnet train mnist` fills on first use.
BESIDE_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def mnist_folder() -> Path:
    """The folder holding the four MNIST files, fetching them into the cache (as a user's first run would)
    when no copy is at hand. A failed fetch fails the test that needs them; it never skips."""
    from xpnet.data.mnist import FILES, default_data_dir, load_mnist

    for folder in (os.environ.get("XPNET_TEST_MNIST"), BESIDE_MNIST):
        if folder and all((Path(folder) / spec.gz_name).is_file() for spec in FILES):
            return Path(folder)
    load_mnist()
    return default_data_dir()


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
    """The real MNIST files (see mnist_folder)."""
    return mnist_folder()


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
