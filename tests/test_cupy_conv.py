"""The CuPy window kernels (xpnet/backends/cupy_conv.py) equal the portable references of core/conv.py and
core/pool.py, on two devices:

- "cupy": the real kernels on a CUDA GPU; skipped without one.
- "cpu-emulated": the same CUDA C source compiled by the host's C++ compiler, with blockIdx/threadIdx as
  globals and every thread of every block of the launch run in turn, behind the module's own Python
  wrappers (CuPy swapped for NumPy). It checks the index arithmetic, the gather bounds, the summation
  order, the kernel names and argument types the wrappers pick, and that no thread writes outside its
  output. Skipped only where no C++ compiler is installed. What it cannot check: anything CUDA-specific
  (compilation by NVRTC, which tools/check_cuda_sources.py covers; launches, streams, devices, -ftz).

So the usual `pytestmark = skipif(no GPU)` is a mark on the "cupy" parameter instead of the whole file.
Results are compared exactly: im2col and max-pool forward copy values, and the gathers add the same terms
in the same order as the references' K*K slice additions, so even float32 sums agree to the last bit.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends import get_backend
from xpnet.backends import ops as kernels
from xpnet.backends.cupy import conv as cupy_conv
from xpnet.backends.cupy import cuda_device_present
from xpnet.backends.host import host_namespace
from xpnet.core import conv, pool

XP = host_namespace()
ROOT = Path(__file__).resolve().parents[1]
CXX = shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")
needs_gpu = pytest.mark.skipif(not cuda_device_present(), reason="needs a CUDA GPU")
needs_cxx = pytest.mark.skipif(CXX is None, reason="needs a C++ compiler to emulate the kernels")

# (C, H, W, N, k, stride, padding): odd and non-square; channels 1 and 3; batch 1 and 7; k 2, 3, 5;
# stride 1, 2 and 3 (> k: gaps between windows); padding 0 and 1; rows/columns no window reaches.
CONV_CASES = [(1, 5, 4, 1, 2, 1, 0), (3, 7, 9, 7, 3, 2, 1), (1, 8, 6, 7, 5, 1, 1), (3, 6, 11, 1, 5, 2, 0),
              (3, 9, 7, 7, 3, 1, 0), (1, 10, 7, 1, 3, 2, 1), (3, 5, 6, 7, 2, 2, 1), (1, 6, 5, 7, 5, 2, 1),
              (3, 4, 5, 1, 3, 1, 1), (1, 13, 10, 1, 3, 2, 0), (2, 7, 8, 3, 2, 3, 1)]
# (N, C, H, W, k, stride): non-overlapping, overlapping (k=3 stride 2, k=2 stride 1), gaps (stride > k).
POOL_CASES = [(1, 1, 5, 7, 2, 2), (7, 3, 8, 6, 2, 2), (7, 3, 9, 7, 3, 2), (1, 3, 6, 5, 2, 1),
              (7, 1, 10, 8, 3, 3), (1, 3, 11, 9, 5, 2), (2, 3, 7, 9, 3, 1), (1, 1, 6, 7, 2, 3)]
DTYPES = ["float32", "float64"]


def _uniform(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2.0, 2.0, size=shape).astype(dtype)


def _post_relu(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Halves, negatives zeroed: most pooling windows hold ties, at zero and at equal maxima."""
    a = np.round(np.random.default_rng(seed).normal(size=shape) * 2) / 2
    return np.maximum(a, 0.0).astype(dtype)


# -- the CPU emulation of the kernels ---------------------------------------------------------------------
PRELUDE = r"""
// Host stand-ins for the CUDA built-ins the kernels use, so the C++ compiler builds the same source.
struct XpnetDim3 { unsigned int x, y, z; };
static XpnetDim3 blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, threadIdx = {0, 0, 0};
extern "C" void xpnet_set_thread(unsigned int block, unsigned int thread, unsigned int block_dim) {
    blockIdx.x = block; threadIdx.x = thread; blockDim.x = block_dim;
}
#define __global__
#define __device__
#define __forceinline__ inline
"""


def _signatures(src: str) -> dict[str, list[str]]:
    """Each entry point's parameter kinds ('T*', 'short*', 'I'), read from the XPNET_KERNELS macro."""
    found = {}
    for name, params in re.findall(r'extern "C" __global__ void (\w+)_##SUFFIX\(([^)]*)\)', src):
        kinds = []
        for param in params.replace("\\", " ").split(","):
            words = param.replace("*", " * ").split()
            words = [w for w in words if w != "const"][:-1]  # drop the name
            kinds.append("".join(words))
        found[name] = kinds
    return found


@dataclass
class Emulator:
    lib: ctypes.CDLL
    signatures: dict[str, list[str]]
    buffers: list[tuple[np.ndarray, int]] = field(default_factory=list)
    launched: list[str] = field(default_factory=list)

    GUARD = 64  # bytes of 0xA5 on each side of every output: a stray write changes them

    def launch(self, name: str, total: int, args: tuple[Any, ...]) -> None:
        """What CuPy would do with the module's launch: check the arguments against the kernel's C
        signature (CuPy passes numpy scalars by their exact type), then run every thread of the grid."""
        op, tname, iname = name.rsplit("_", 2)
        t_dtype, i_type = {"f32": np.float32, "f64": np.float64}[tname], {"i32": np.int32, "i64": np.int64}[iname]
        kinds = self.signatures[op]
        assert len(args) == len(kinds), (name, len(args), kinds)
        cargs: list[Any] = []
        for kind, a in zip(kinds, args):
            if kind == "I":
                assert type(a) is i_type, (name, kind, type(a))
                cargs.append((ctypes.c_int32 if i_type is np.int32 else ctypes.c_int64)(int(a)))
            else:
                want = t_dtype if kind == "T*" else np.int16
                assert isinstance(a, np.ndarray) and a.dtype == want and a.flags.c_contiguous, (name, kind)
                cargs.append(ctypes.c_void_p(a.ctypes.data))
        assert total == int(args[[k for k in kinds].index("I")]), "total is the kernel's first integer"
        fn = getattr(self.lib, name)
        fn.restype = None
        blocks = (total + cupy_conv.BLOCK - 1) // cupy_conv.BLOCK
        for b in range(blocks):
            for t in range(cupy_conv.BLOCK):  # the last block's idle threads too: the guard must hold
                self.lib.xpnet_set_thread(b, t, cupy_conv.BLOCK)
                fn(*cargs)
        self.launched.append(name)

    def empty(self, shape: Any, dtype: Any) -> np.ndarray:
        """np.empty with guard bytes around it, and its own bytes set to 0xA5 too so unwritten
        elements show."""
        shape = tuple(shape) if isinstance(shape, tuple) else (shape,)
        itemsize = np.dtype(dtype).itemsize
        raw = np.full(math.prod(shape) * itemsize + 2 * self.GUARD, 0xA5, dtype=np.uint8)
        self.buffers.append((raw, self.GUARD))
        return raw[self.GUARD:self.GUARD + math.prod(shape) * itemsize].view(dtype).reshape(shape)

    def check_guards(self) -> None:
        for raw, guard in self.buffers:
            assert (raw[:guard] == 0xA5).all() and (raw[-guard:] == 0xA5).all(), "a thread wrote out of bounds"


@functools.cache
def _emulator_library(build_dir: str) -> ctypes.CDLL:
    src = PRELUDE + cupy_conv.CUDA_SOURCES["conv_pool"]
    path = f"{build_dir}/conv_pool_emulated.cpp"
    with open(path, "w") as f:
        f.write(src)
    # No -ffast-math: the comparisons with NaN and the order of the additions must stay as written.
    subprocess.run([CXX, "-x", "c++", "-std=c++17", "-O1", "-fPIC", "-shared",
                    "-o", f"{build_dir}/conv_pool_emulated.so", path], check=True)
    return ctypes.CDLL(f"{build_dir}/conv_pool_emulated.so")


# -- the devices the tests run on -------------------------------------------------------------------------
@dataclass
class Device:
    name: str
    xp: Any  # the namespace the module's ops and the references are called with
    to_device: Callable[[np.ndarray], Any]
    to_host: Callable[[Any], np.ndarray]
    backend: str  # for the layer tests
    emulator: Emulator | None = None


@pytest.fixture(params=[pytest.param("cpu-emulated", marks=needs_cxx), pytest.param("cupy", marks=needs_gpu)])
def device(request, monkeypatch, tmp_path_factory):
    if request.param == "cupy":
        import array_api_compat.cupy as xpc
        import cupy

        yield Device("cupy", xpc, cupy.asarray, cupy.asnumpy, "cupy")
        return
    emulator = Emulator(_emulator_library(str(tmp_path_factory.getbasetemp())),
                        _signatures(cupy_conv.CUDA_SOURCES["conv_pool"]))

    class GuardedNumpy:  # NumPy standing in for CuPy, its outputs guarded
        def __getattr__(self, name: str) -> Any:
            return getattr(np, name)

        empty = staticmethod(emulator.empty)

    monkeypatch.setattr(cupy_conv, "_cupy", lambda: GuardedNumpy())
    monkeypatch.setattr(cupy_conv, "_device", lambda a: contextlib.nullcontext())
    monkeypatch.setattr(cupy_conv, "_launch", emulator.launch)
    yield Device("cpu-emulated", XP, np.asarray, np.asarray, "numpy", emulator)
    emulator.check_guards()


def _registered_on(monkeypatch, device: Device) -> None:
    """register_all()'s kernels looked up for `device`'s arrays, in a copy of the kernel table."""
    monkeypatch.setattr(kernels, "_table", dict(kernels._table))
    monkeypatch.setattr(kernels, "_enabled", True)
    monkeypatch.setattr(cupy_conv, "NAMESPACE", device.xp.__name__)
    cupy_conv.register_all()


# -- im2col / col2im --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_im2col_and_col2im_equal_the_reference(device, case, dtype):
    c, h, w, n, k, s, p = case
    x = _uniform((c, h, w, n), dtype)
    cols = cupy_conv.im2col(device.xp, device.to_device(x), k, s, p)
    want = conv.im2col(XP, x, k, s, p)
    assert cols.dtype == want.dtype and tuple(cols.shape) == want.shape
    np.testing.assert_array_equal(device.to_host(cols), want)

    dcols = _uniform(want.shape, dtype, seed=1)
    dx = cupy_conv.col2im(device.xp, device.to_device(dcols), (c, h, w, n), k, s, p)
    want_dx = conv.col2im(XP, dcols, (c, h, w, n), k, s, p)
    assert dx.dtype == want_dx.dtype and tuple(dx.shape) == want_dx.shape
    np.testing.assert_array_equal(device.to_host(dx), want_dx)  # same additions in the same order


def test_im2col_takes_the_conv_layers_strided_view(device):
    """Conv2D passes permute_dims of an NCHW array: not C-contiguous, made so before the kernel."""
    x = _uniform((7, 3, 9, 8), "float32")
    view = device.xp.permute_dims(device.to_device(x), (1, 2, 3, 0))
    cols = cupy_conv.im2col(device.xp, view, 3, 2, 1)
    np.testing.assert_array_equal(device.to_host(cols), conv.im2col(XP, x.transpose(1, 2, 3, 0), 3, 2, 1))
    dcols = _uniform(tuple(cols.shape), "float32", seed=1).T.copy().T  # Fortran order
    dx = cupy_conv.col2im(device.xp, device.to_device(dcols), (3, 9, 8, 7), 3, 2, 1)
    np.testing.assert_array_equal(device.to_host(dx), conv.col2im(XP, dcols, (3, 9, 8, 7), 3, 2, 1))


def test_64_bit_indexing_gives_the_same_results(device, monkeypatch):
    """The int64-indexed kernels (for arrays of 2**31 elements or more), forced on small arrays."""
    monkeypatch.setattr(cupy_conv, "_INT32_LIMIT", 0)
    c, h, w, n, k, s, p = 3, 7, 9, 7, 3, 2, 1
    x = _uniform((c, h, w, n), "float64")
    cols = cupy_conv.im2col(device.xp, device.to_device(x), k, s, p)
    np.testing.assert_array_equal(device.to_host(cols), conv.im2col(XP, x, k, s, p))
    dcols = _uniform(tuple(cols.shape), "float64", seed=1)
    dx = cupy_conv.col2im(device.xp, device.to_device(dcols), (c, h, w, n), k, s, p)
    np.testing.assert_array_equal(device.to_host(dx), conv.col2im(XP, dcols, (c, h, w, n), k, s, p))
    xp4 = _post_relu((7, 3, 9, 7), "float32")
    y, saved = cupy_conv.max_pool2d(device.xp, device.to_device(xp4), 3, 2)
    ref_y, ref_saved = pool.max_pool2d(XP, xp4, 3, 2)
    np.testing.assert_array_equal(device.to_host(y), ref_y)
    dy = _uniform(ref_y.shape, "float32", seed=2)
    dx = cupy_conv.max_pool2d_backward(device.xp, device.to_device(dy), saved, 3, 2)
    np.testing.assert_array_equal(device.to_host(dx), pool.max_pool2d_backward(XP, dy, ref_saved, 3, 2))
    if device.emulator is not None:
        assert all(name.endswith("_i64") for name in device.emulator.launched)


# -- max-pool ---------------------------------------------------------------------------------------------
def _check_pool(device: Device, x: np.ndarray, k: int, s: int) -> None:
    y, saved = cupy_conv.max_pool2d(device.xp, device.to_device(x), k, s)
    ref_y, ref_saved = pool.max_pool2d(XP, x, k, s)
    assert y.dtype == ref_y.dtype and tuple(y.shape) == ref_y.shape
    np.testing.assert_array_equal(device.to_host(y), ref_y)
    np.testing.assert_array_equal(device.to_host(saved[0]), ref_saved[0])  # the same winners, ties included
    assert saved[0].dtype == ref_saved[0].dtype and tuple(saved[1]) == ref_saved[1]
    dy = _uniform(ref_y.shape, str(x.dtype), seed=2)
    dx = cupy_conv.max_pool2d_backward(device.xp, device.to_device(dy), saved, k, s)
    want = pool.max_pool2d_backward(XP, dy, ref_saved, k, s)
    assert dx.dtype == want.dtype and tuple(dx.shape) == want.shape
    np.testing.assert_array_equal(device.to_host(dx), want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_max_pool_equals_the_reference(device, case, dtype):
    n, c, h, w, k, s = case
    _check_pool(device, _post_relu((n, c, h, w), dtype), k, s)


@pytest.mark.parametrize("value", [0.0, 1.5, -3.0])
@pytest.mark.parametrize("k,s", [(2, 2), (3, 2), (2, 1), (3, 3)])
def test_max_pool_all_equal_input_sends_each_gradient_to_the_first_element(device, value, k, s):
    x = np.full((7, 3, 9, 7), value)
    _check_pool(device, x, k, s)
    dy = np.ones((7, 3, (9 - k) // s + 1, (7 - k) // s + 1))
    _, saved = cupy_conv.max_pool2d(device.xp, device.to_device(x), k, s)
    dx = device.to_host(cupy_conv.max_pool2d_backward(device.xp, device.to_device(dy), saved, k, s))
    assert dx.sum() == dy.size and (dx[:, :, ::s, ::s][:, :, :dy.shape[2], :dy.shape[3]] == 1).all()


def test_max_pool_nan_makes_y_nan_and_moves_no_index(device):
    """As the reference: xp.maximum propagates NaN, `part > best` is then never true."""
    x = _post_relu((2, 2, 6, 7), "float64")
    x[0, 0, 0, 0] = x[0, 1, 2, 3] = x[1, 0, 5, 6] = x[1, 1, 1, 1] = np.nan
    _check_pool(device, x, 3, 2)
    _check_pool(device, x, 2, 2)


def test_max_pool_takes_the_nchw_view_of_conv_memory(device):
    x = _post_relu((7, 3, 9, 7), "float32")
    view = device.xp.permute_dims(device.to_device(np.ascontiguousarray(x.transpose(1, 2, 3, 0))), (3, 0, 1, 2))
    y, saved = cupy_conv.max_pool2d(device.xp, view, 3, 2)
    ref_y, ref_saved = pool.max_pool2d(XP, x, 3, 2)
    np.testing.assert_array_equal(device.to_host(y), ref_y)
    dy = _uniform(ref_y.shape, "float32", seed=2)
    dx = cupy_conv.max_pool2d_backward(device.xp, device.to_device(dy), saved, 3, 2)
    np.testing.assert_array_equal(device.to_host(dx), pool.max_pool2d_backward(XP, dy, ref_saved, 3, 2))


def test_either_backward_takes_either_forwards_saved(device):
    """Fast paths may be switched off between a forward and its backward: `saved` is the reference's."""
    x, k, s = _post_relu((7, 3, 9, 7), "float64"), 3, 2
    xd = device.to_device(x)
    y, saved = cupy_conv.max_pool2d(device.xp, xd, k, s)
    _, ref_saved = pool.max_pool2d(device.xp, xd, k, s)
    dy = device.to_device(_uniform(tuple(y.shape), "float64", seed=2))
    want = device.to_host(pool.max_pool2d_backward(device.xp, dy, ref_saved, k, s))
    np.testing.assert_array_equal(device.to_host(cupy_conv.max_pool2d_backward(device.xp, dy, ref_saved, k, s)), want)
    np.testing.assert_array_equal(device.to_host(pool.max_pool2d_backward(device.xp, dy, saved, k, s)), want)


# -- the layers with the kernels registered ---------------------------------------------------------------
def test_layers_with_the_kernels_equal_the_layers_without(device, monkeypatch):
    """Conv2D -> ReLU -> MaxPool2D(3, stride 2), forward and backward, through register_all's table entries."""
    _registered_on(monkeypatch, device)
    assert kernels.lookup(device.xp, "col2im") is cupy_conv.col2im

    def run(fast: bool) -> list[np.ndarray]:
        monkeypatch.setattr(kernels, "_enabled", fast)
        backend = get_backend(device.backend)
        model = xn.Sequential([xn.Conv2D(3, 4, 3, padding=1, dtype="float64", rng=np.random.default_rng(1)),
                               xn.ReLU(), xn.MaxPool2D(3, stride=2)]).to(backend)
        x = backend.asarray(_uniform((2, 3, 9, 8), "float64"), "float64")
        y = model.forward(x)
        dx = model.backward(backend.asarray(_uniform(tuple(y.shape), "float64", seed=2), "float64"))
        return [backend.to_numpy(a) for a in (y, dx, *(p.grad for p in model.parameters()))]

    for got, want in zip(run(True), run(False)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)  # the GEMMs run in the same order


@needs_gpu
def test_lenet_sized_ops_on_the_gpu():
    """Many blocks: LeNet's first layer at batch 128."""
    import array_api_compat.cupy as xpc
    import cupy

    x = _uniform((1, 28, 28, 128), "float32")
    cols = cupy_conv.im2col(xpc, cupy.asarray(x), 5, 1, 2)
    np.testing.assert_array_equal(cupy.asnumpy(cols), conv.im2col(XP, x, 5, 1, 2))
    dcols = _uniform((25, 28 * 28 * 128), "float32", seed=1)
    dx = cupy_conv.col2im(xpc, cupy.asarray(dcols), (1, 28, 28, 128), 5, 1, 2)
    np.testing.assert_array_equal(cupy.asnumpy(dx), conv.col2im(XP, dcols, (1, 28, 28, 128), 5, 1, 2))
    gpu = Device("cupy", xpc, cupy.asarray, cupy.asnumpy, "cupy")
    _check_pool(gpu, _post_relu((128, 6, 28, 28), "float32"), 2, 2)


# -- errors and importing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "int32", "bool"])
def test_other_dtypes_are_a_type_error(device, dtype):
    x = device.to_device(np.zeros((2, 3, 6, 5), dtype=dtype))
    cols = device.to_device(np.zeros((9, 4), dtype=dtype))
    for call in (lambda: cupy_conv.im2col(device.xp, x, 3, 1, 0),
                 lambda: cupy_conv.col2im(device.xp, cols, (1, 4, 3, 1), 3, 1, 1),
                 lambda: cupy_conv.max_pool2d(device.xp, x, 2, 2),
                 lambda: cupy_conv.max_pool2d_backward(device.xp, x, (x, (2, 3, 12, 10)), 2, 2)):
        with pytest.raises(TypeError, match="float32 and float64"):
            call()


def test_bad_shapes_are_a_value_error(device):
    x = device.to_device(np.zeros((2, 3, 6, 5)))
    with pytest.raises(ValueError, match="4-d"):
        cupy_conv.im2col(device.xp, device.to_device(np.zeros((3, 6, 5))), 3, 1, 0)
    with pytest.raises(ValueError, match="do not fit"):
        cupy_conv.col2im(device.xp, device.to_device(np.zeros((27, 5))), (3, 6, 5, 2), 3, 1, 0)
    with pytest.raises(ValueError, match="must both be"):
        cupy_conv.max_pool2d_backward(device.xp, x, (x, (2, 3, 6, 5)), 2, 2)


def test_imports_without_cupy_and_registers_for_the_cupy_namespace():
    code = ("import sys, xpnet.backends.cupy.conv as m; assert 'cupy' not in sys.modules; "
            "from xpnet.backends import ops as kernels; m.register_all(); "
            "print(sorted(op for ns, op in kernels.registered() if ns == 'array_api_compat.cupy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    assert out.split("\n")[-2] == "['col2im', 'im2col', 'max_pool2d', 'max_pool2d_backward']"
    assert cupy_conv.NAMESPACE == "array_api_compat.cupy"
    assert set(cupy_conv.CUDA_SOURCES) == {"conv_pool"}
