"""The CuPy window kernels (xpnet/backends/cupy/conv.py) equal the portable references of core/conv.py and
core/pool.py, on two devices:

- "cupy": the real kernels on a CUDA GPU; skipped without one.
- "cpu-emulated": the same CUDA C source built for the host by the fake CuPy's builder
  (tests/fake_cupy/host_cuda.py), behind the module's own Python wrappers and launch.py's compile cache and
  launch, with a stand-in for CuPy over NumPy arrays. It checks the index arithmetic, the gather bounds, the
  summation order, the grid-stride loops, the kernel names, the compile options and the argument types the
  wrappers pick, and that no thread writes outside its output. Skipped only where g++ is not installed.
  What it cannot check: anything CUDA-specific (compilation by NVRTC, which tools/check_cuda_sources.py
  covers; streams, devices, -ftz).

So the usual `pytestmark = skipif(no GPU)` is a mark on the "cupy" parameter instead of the whole file.
Results are compared exactly: im2col and max-pool forward copy values, and the gathers add the same terms
in the same order as the references' K*K slice additions, so even float32 sums agree to the last bit.
"""
from __future__ import annotations

import contextlib
import importlib.util
import math
import shutil
import subprocess
import sys
import types
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
from xpnet.backends.cupy import cuda_device_present, launch
from xpnet.backends.host import host_namespace
from xpnet.core import conv, pool

XP = host_namespace()
ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "fake_cupy"
needs_gpu = pytest.mark.skipif(not cuda_device_present(), reason="needs a CUDA GPU")
needs_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the kernels for the host")

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
def _host_cuda() -> types.ModuleType:
    """tests/fake_cupy/host_cuda.py, loaded by its path: tests/fake_cupy on sys.path would make the fake
    importable as `cupy` in this process, where the GPU skips ask whether cupy imports."""
    if "host_cuda" not in sys.modules:
        spec = importlib.util.spec_from_file_location("host_cuda", FAKE / "host_cuda.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["host_cuda"] = module
        spec.loader.exec_module(module)
    return sys.modules["host_cuda"]


@dataclass
class HostCupy:
    """The part of CuPy that conv.py and launch.py call, over NumPy arrays. A RawModule is the source built
    by host_cuda; a launch checks its arguments against the kernel's C signature as CuPy passes them (NumPy
    scalars by their exact type, arrays C-contiguous of the pointer's dtype), then runs every thread of the
    grid. Outputs of `empty` are guarded, so a stray write shows."""

    buffers: list[tuple[np.ndarray, int]] = field(default_factory=list)
    launched: list[str] = field(default_factory=list)
    cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0))  # one device, id 0

    GUARD = 64  # bytes of 0xA5 on each side of every output, and in it, so unwritten elements show too

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    def empty(self, shape: Any, dtype: Any) -> np.ndarray:
        shape = tuple(shape) if isinstance(shape, tuple) else (shape,)
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        raw = np.full(nbytes + 2 * self.GUARD, 0xA5, dtype=np.uint8)
        self.buffers.append((raw, self.GUARD))
        return raw[self.GUARD:self.GUARD + nbytes].view(dtype).reshape(shape)

    def check_guards(self) -> None:
        for raw, guard in self.buffers:
            assert (raw[:guard] == 0xA5).all() and (raw[-guard:] == 0xA5).all(), "a thread wrote out of bounds"

    def RawModule(self, code: str, options: tuple[str, ...]) -> Any:  # noqa: N802 (CuPy's name)
        assert options == launch.OPTIONS, options  # the window kernels compile as every other kernel
        host = _host_cuda()
        lib, signatures = host.build(code)

        def get_function(name: str) -> Callable[..., None]:
            params = signatures[name]

            def run(grid: tuple[int], block: tuple[int], args: tuple[Any, ...]) -> None:
                assert len(args) == len(params), (name, len(args), params)
                for p, a in zip(params, args):
                    if p.pointer:
                        assert isinstance(a, np.ndarray) and a.dtype == p.dtype and a.flags.c_contiguous, (name, p)
                    else:
                        assert isinstance(a, np.generic) and a.dtype == p.dtype, (name, p, type(a))
                host.run(lib, name, params, grid[0], block[0], list(args))
                self.launched.append(name)
            return run
        return types.SimpleNamespace(get_function=get_function)


# -- the devices the tests run on -------------------------------------------------------------------------
@dataclass
class Device:
    name: str
    xp: Any  # the namespace the module's ops and the references are called with
    to_device: Callable[[np.ndarray], Any]
    to_host: Callable[[Any], np.ndarray]
    backend: str  # for the layer tests
    emulator: HostCupy | None = None


@pytest.fixture(params=[pytest.param("cpu-emulated", marks=needs_cxx), pytest.param("cupy", marks=needs_gpu)])
def device(request, monkeypatch):
    if request.param == "cupy":
        import array_api_compat.cupy as xpc
        import cupy

        yield Device("cupy", xpc, cupy.asarray, cupy.asnumpy, "cupy")
        return
    host = HostCupy()
    monkeypatch.setattr(launch, "import_cupy", lambda: host)
    monkeypatch.setattr(launch, "_modules", {})  # compiled for the host: kept out of the process's cache
    monkeypatch.setattr(launch, "_kernels", {})
    monkeypatch.setattr(cupy_conv, "_cupy", lambda: host)
    monkeypatch.setattr(cupy_conv, "_device", lambda a: contextlib.nullcontext())
    yield Device("cpu-emulated", XP, np.asarray, np.asarray, "numpy", host)
    host.check_guards()


def _registered_on(monkeypatch, device: Device) -> None:
    """register_all()'s kernels looked up for `device`'s arrays, in a copy of the kernel table."""
    get_backend(device.backend)  # a first CupyBackend registers its kernels once: into the real table, not the copy
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
        assert device.emulator.launched and all(name.endswith("_i64") for name in device.emulator.launched)


def test_a_capped_grid_still_covers_every_element(device, monkeypatch):
    """launch.py caps the grid; the kernels' grid-stride loops cover the rest (here: one block of threads)."""
    monkeypatch.setattr(launch, "MAX_BLOCKS", 1)
    c, h, w, n, k, s, p = 3, 7, 9, 7, 3, 2, 1
    x = _uniform((c, h, w, n), "float32")
    cols = cupy_conv.im2col(device.xp, device.to_device(x), k, s, p)
    assert cols.size > 4 * launch.BLOCK
    np.testing.assert_array_equal(device.to_host(cols), conv.im2col(XP, x, k, s, p))
    dcols = _uniform(tuple(cols.shape), "float32", seed=1)
    dx = cupy_conv.col2im(device.xp, device.to_device(dcols), (c, h, w, n), k, s, p)
    np.testing.assert_array_equal(device.to_host(dx), conv.col2im(XP, dcols, (c, h, w, n), k, s, p))
    _check_pool(device, _post_relu((7, 3, 9, 7), "float32"), 3, 2)


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
    assert kernels.lookup(device.xp, kernels.COL2IM) is cupy_conv.col2im

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
