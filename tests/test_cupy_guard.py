"""The CuPy guard kernel (backends/cupy_guard.py) keeps the same books as DeviceGuard's Array API path.
On the CPU its CUDA source is compiled as host C++ and run through ctypes; on a GPU the real kernel runs."""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends.cupy import cuda_device_present
from xpnet.backends.cupy.guard import _GUARD
from xpnet.backends.ops import set_fast_paths
from xpnet.training.state import DeviceGuard

CXX = shutil.which("g++") or shutil.which("clang++")
LOSSES = [0.5, 0.25, float("nan"), 1.0, float("inf"), 2.0, 0.125]


def _reference(on_nan: str, dtype) -> tuple[np.ndarray, list[bool]]:
    set_fast_paths(False)
    try:
        guard = DeviceGuard(xn.get_backend("numpy"), on_nan, loss_sum=1.5, seen=3)
        gates = [bool(guard.watch(np.asarray(v, dtype=dtype), 16)) for v in LOSSES]
    finally:
        set_fast_paths(True)
    return guard.sums.copy(), gates


@pytest.fixture(scope="module")
def host_guard(tmp_path_factory):
    if CXX is None:
        pytest.fail("a C++ compiler is needed to run the guard kernel on the CPU")
    d = tmp_path_factory.mktemp("guard")
    src = "#include <cmath>\nusing std::isfinite;\n#define __global__\n#define __device__\n" + _GUARD
    (d / "guard.cpp").write_text(src)
    subprocess.run([CXX, "-O1", "-shared", "-fPIC", "-o", str(d / "guard.so"), str(d / "guard.cpp")], check=True)
    return ctypes.CDLL(str(d / "guard.so"))


@pytest.mark.parametrize("on_nan", ["stop", "skip"])
@pytest.mark.parametrize("dtype,suffix", [(np.float32, "f32"), (np.float64, "f64")])
def test_host_build_keeps_the_reference_books(host_guard, on_nan, dtype, suffix):
    ref_sums, ref_gates = _reference(on_nan, dtype)
    sums = np.array([1.5, 3, 0, 0, 0], dtype=np.float64)
    alive, gate = np.ones(1, dtype=np.bool_), np.zeros(1, dtype=np.bool_)
    fn = getattr(host_guard, f"xpnet_guard_watch_{suffix}")
    gates = []
    for v in LOSSES:
        value = np.asarray([v], dtype=dtype)
        fn(value.ctypes.data_as(ctypes.c_void_p), sums.ctypes.data_as(ctypes.c_void_p),
           alive.ctypes.data_as(ctypes.c_void_p), gate.ctypes.data_as(ctypes.c_void_p),
           ctypes.c_double(16.0), ctypes.c_int(on_nan == "stop"))
        gates.append(bool(gate[0]))
    assert gates == ref_gates
    np.testing.assert_array_equal(sums, ref_sums)
    assert (sums[3] == 3) if on_nan == "stop" else (sums[2] == 2)  # died at the NaN; or two steps skipped


@pytest.mark.skipif(not cuda_device_present(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("on_nan", ["stop", "skip"])
def test_gpu_kernel_keeps_the_reference_books(on_nan):
    b = xn.get_backend("cupy")
    ref_sums, ref_gates = _reference(on_nan, np.float32)
    guard = DeviceGuard(b, on_nan, loss_sum=1.5, seen=3)
    assert guard._kernel is not None
    gates = [bool(guard.watch(b.asarray(np.asarray(v, dtype=np.float32)), 16)) for v in LOSSES]
    assert gates == ref_gates
    np.testing.assert_array_equal(b.to_numpy(guard.sums), ref_sums)
