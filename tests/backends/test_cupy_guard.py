"""The CuPy guard kernel (backends/cupy/guard.py) keeps the same books as DeviceState's Array API path.
On the CPU its CUDA source is built for the host by the fake CuPy's builder (tests/fake_cupy/host_cuda.py)
and run as one thread; on a GPU the real kernel runs."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends.cupy import cuda_device_present
from xpnet.backends.cupy.guard import CUDA_SOURCES
from xpnet.backends import Backend
from xpnet.backends.ops import set_fast_paths
from xpnet.core.module import Parameter
from xpnet.training.history import History
from xpnet.training.state import DeviceState

HOST_CUDA = Path(__file__).resolve().parents[1] / "fake_cupy" / "host_cuda.py"
LOSSES = [0.5, 0.25, float("nan"), 1.0, float("inf"), 2.0, 0.125]


def _state(backend: Backend, on_nan: str) -> DeviceState:
    """The device-side bookkeeping after loss_sum 1.5 over 3 rows."""
    state = DeviceState(backend, xn.SGD([Parameter(backend.asarray(np.zeros(1), "float32"))]), on_nan, History())
    state.reset(loss_sum=1.5, seen=3)
    return state


def _reference(on_nan: str, dtype) -> tuple[np.ndarray, list[bool]]:
    set_fast_paths(False)
    try:
        guard = _state(xn.get_backend("numpy"), on_nan)
        gates = [bool(guard.watch(np.asarray(v, dtype=dtype), 16)) for v in LOSSES]
    finally:
        set_fast_paths(True)
    return guard.sums.copy(), gates


@pytest.fixture(scope="module")
def host_cuda():
    """host_cuda loaded by its path, never through tests/fake_cupy on sys.path: that would make the fake
    importable as `cupy` in this process, where the GPU skips ask whether cupy imports."""
    if shutil.which("g++") is None:
        pytest.fail("g++ is needed to run the guard kernel on the CPU")
    if "host_cuda" not in sys.modules:
        spec = importlib.util.spec_from_file_location("host_cuda", HOST_CUDA)
        module = importlib.util.module_from_spec(spec)
        sys.modules["host_cuda"] = module
        spec.loader.exec_module(module)
    return sys.modules["host_cuda"]


@pytest.mark.parametrize("on_nan", ["stop", "skip"])
@pytest.mark.parametrize("dtype,suffix", [(np.float32, "f32"), (np.float64, "f64")])
def test_host_build_keeps_the_reference_books(host_cuda, on_nan, dtype, suffix):
    ref_sums, ref_gates = _reference(on_nan, dtype)
    lib, signatures = host_cuda.build(CUDA_SOURCES["guard"])
    name = f"xpnet_guard_watch_{suffix}"
    sums = np.array([1.5, 3, 0, 0, 0], dtype=np.float64)
    alive, gate = np.ones((), dtype=np.bool_), np.zeros((), dtype=np.bool_)
    gates = []
    for v in LOSSES:
        args = [np.asarray(v, dtype=dtype), sums, alive, gate, np.float64(16.0), np.int32(on_nan == "stop")]
        host_cuda.run(lib, name, signatures[name], 1, 1, args)
        gates.append(bool(gate))
    assert gates == ref_gates
    np.testing.assert_array_equal(sums, ref_sums)
    assert (sums[3] == 3) if on_nan == "stop" else (sums[2] == 2)  # died at the NaN; or two steps skipped


@pytest.mark.skipif(not cuda_device_present(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("on_nan", ["stop", "skip"])
def test_gpu_kernel_keeps_the_reference_books(on_nan):
    b = xn.get_backend("cupy")
    ref_sums, ref_gates = _reference(on_nan, np.float32)
    guard = _state(b, on_nan)
    assert guard._kernel is not None
    gates = [bool(guard.watch(b.asarray(np.asarray(v, dtype=np.float32)), 16)) for v in LOSSES]
    assert gates == ref_gates
    np.testing.assert_array_equal(b.to_numpy(guard.sums), ref_sums)
