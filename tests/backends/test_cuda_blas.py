"""The capturable cuBLAS GEMM (xpnet.backends.cupy.cublas).

On CPU: every GemmPlan, fed to a NumPy emulation of column-major BLAS gemm reading flat buffers exactly as
cuBLAS would, gives numpy's a @ b, and reads only the operands' own elements. On a GPU: gemm equals CuPy's
@, and a captured CUDA graph of matmul tracks inputs changed in place after the capture.
"""
from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys

import numpy as np
import pytest

from xpnet.backends import ops as kernels
from xpnet.backends.cupy import cublas as cuda_blas
from xpnet.backends.cupy.gemm_plan import OP_N, OP_T, GemmPlan, gemm_plan
from xpnet.backends.cupy import cuda_device_present

SIZES = (1, 3, 7, 128)
needs_gpu = pytest.mark.skipif(not cuda_device_present(), reason="needs a CUDA GPU")


# --------------------------------------------------------------------------------------------------------
# CPU: the layout plan


def colmajor_gemm(transa: int, transb: int, m: int, n: int, k: int, alpha: float, A: np.ndarray, lda: int,
                  B: np.ndarray, ldb: int, beta: float, C: np.ndarray, ldc: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference BLAS ?gemm on flat buffers, column-major: C = alpha op(A) op(B) + beta C, with element
    (i, j) of a stored matrix X at X[i + j * ldX]. Returns the flat indices read from A and from B."""
    assert min(m, n, k) >= 0 and transa in (OP_N, OP_T) and transb in (OP_N, OP_T)
    assert lda >= max(1, m if transa == OP_N else k)  # BLAS's own argument checks
    assert ldb >= max(1, k if transb == OP_N else n)
    assert ldc >= max(1, m)
    i, p = np.arange(m)[:, None], np.arange(k)[None, :]
    idx_a = i + p * lda if transa == OP_N else p + i * lda  # op(A)[i, p]
    p, j = np.arange(k)[:, None], np.arange(n)[None, :]
    idx_b = p + j * ldb if transb == OP_N else j + p * ldb  # op(B)[p, j]
    idx_c = np.arange(m)[:, None] + np.arange(n)[None, :] * ldc
    product = alpha * (A[idx_a] @ B[idx_b])
    C[idx_c] = product if beta == 0 else product + beta * C[idx_c]  # BLAS: beta = 0 never reads C
    return idx_a, idx_b


def flat_buffer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the memory from x's [0, 0] element on, as a flat array; the flat offsets of x's own elements)."""
    root = x
    while root.base is not None:
        root = root.base
    assert root.flags.c_contiguous
    flat = root.reshape(-1)
    start = (x.__array_interface__["data"][0] - root.__array_interface__["data"][0]) // x.itemsize
    own = np.add.outer(np.arange(x.shape[0]) * (x.strides[0] // x.itemsize),
                       np.arange(x.shape[1]) * (x.strides[1] // x.itemsize))
    return flat[start:], own


def operand(rng: np.random.Generator, rows: int, cols: int, layout: str, dtype: type) -> np.ndarray:
    """A (rows, cols) operand laid out in memory as named."""
    def draw(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(dtype)

    if layout == "C":  # C-contiguous
        return draw(rows, cols)
    if layout == "T":  # F-contiguous: a transposed view, like x.mT in Dense's backward
        return draw(cols, rows).T
    if layout == "rows_padded":  # a column slice: unit column stride, row stride > cols
        return draw(rows, cols + 3)[:, 2:cols + 2]
    if layout == "T_padded":  # a transposed column slice
        return draw(cols, rows + 5)[:, 1:rows + 1].T
    if layout == "strided":  # no unit stride at all: needs a copy
        return draw(2 * rows, 2 * cols)[::2, ::2]
    if layout == "reversed":  # negative stride: needs a copy
        return draw(rows, cols)[::-1]
    if layout == "broadcast":  # zero stride: needs a copy
        return np.broadcast_to(draw(cols), (rows, cols))
    raise ValueError(layout)


def run_plan(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """C = a @ b through gemm_plan and the column-major emulation, or None when the plan says copy first."""
    plan = gemm_plan(a.shape, a.strides, b.shape, b.strides, a.itemsize)
    if plan is None:
        return None
    (m, k), n = a.shape, b.shape[1]
    c = np.full(m * n, np.nan, dtype=a.dtype)  # C-contiguous (m, n), poisoned: beta = 0 must not read it
    buf_b, own_b = flat_buffer(b)
    buf_a, own_a = flat_buffer(a)
    read_b, read_a = colmajor_gemm(plan.transa, plan.transb, plan.m, plan.n, plan.k, 1.0, buf_b, plan.lda,
                                   buf_a, plan.ldb, 0.0, c, plan.ldc)
    if k:  # the plan reads exactly the operands' elements, never padding or a neighbour's memory
        assert np.isin(read_a, own_a).all() and np.isin(read_b, own_b).all()
    return c.reshape(m, n)


def tolerance(dtype: type) -> dict[str, float]:
    return {"rtol": 1e-5, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-11}


CONTIGUOUS = ("C", "T", "rows_padded", "T_padded")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout_a", CONTIGUOUS)
@pytest.mark.parametrize("layout_b", CONTIGUOUS)
def test_plan_computes_a_at_b_without_copies(dtype, layout_a, layout_b):
    rng = np.random.default_rng(0)
    for m, k, n in itertools.product(SIZES, repeat=3):
        a, b = operand(rng, m, k, layout_a, dtype), operand(rng, k, n, layout_b, dtype)
        c = run_plan(a, b)
        assert c is not None, (layout_a, layout_b, m, k, n, a.strides, b.strides)
        np.testing.assert_allclose(c, a @ b, **tolerance(dtype), err_msg=f"{layout_a}@{layout_b} {m},{k},{n}")


def test_plan_of_two_c_contiguous_operands_is_the_textbook_swap():
    # C^T = B^T A^T: no transposes, cuBLAS's first operand is b with ld n, its second is a with ld k
    a, b = np.zeros((5, 3), np.float32), np.zeros((3, 7), np.float32)
    assert gemm_plan(a.shape, a.strides, b.shape, b.strides, 4) == GemmPlan(OP_N, OP_N, 7, 5, 3, 7, 3, 7)
    assert gemm_plan(b.T.shape, b.T.strides, a.T.shape, a.T.strides, 4) == GemmPlan(OP_T, OP_T, 5, 7, 3, 3, 7, 5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plan_handles_size_one_dimensions_with_any_stride(dtype):
    rng = np.random.default_rng(1)
    v, w = rng.normal(size=7).astype(dtype), rng.normal(size=5).astype(dtype)
    big = rng.normal(size=(7, 9)).astype(dtype)
    cases = [
        (v[:, None], w[None, :]),  # outer product: (7,1) @ (1,5), the size-1 dims have stride 0
        (w[None, :], rng.normal(size=(5, 3)).astype(dtype)),  # row vector @ matrix, stride 0 on the row dim
        (big[2:3, :], big.T[:, 4:5]),  # (1,9) @ (9,1): slices keep the parent's large strides
        (big[:, 3:4], big[1:2, :]),  # column slice (7,1) @ row slice (1,9)
        (big.T[:, :1], big[:1, 2:6]),  # (9,1) F-ordered view @ (1,4)
        (big[:, ::2][:, 1:2], big[1:2, ::2]),  # (7,1) @ (1,5), neither has a unit stride anywhere
        (v[None, :1], w[None, :1]),  # (1,1) @ (1,1)
        (v[::-2][:, None], w[None, :]),  # negative stride along a dimension of size 4: copy needed
    ]
    for a, b in cases:
        c = run_plan(a, b)
        if c is None:
            assert a.strides[0] < 0  # only the genuinely reversed operand asks for a copy
            c = run_plan(np.ascontiguousarray(a), b)
        np.testing.assert_allclose(c, a @ b, **tolerance(dtype), err_msg=f"{a.strides} {b.strides}")


@pytest.mark.parametrize("bad", ["strided", "reversed", "broadcast"])
@pytest.mark.parametrize("which", ["a", "b"])
def test_plan_asks_for_a_copy_when_no_dimension_is_unit_stride(bad, which):
    rng = np.random.default_rng(2)
    for m, k, n in [(3, 7, 5), (128, 7, 3)]:
        a = operand(rng, m, k, bad if which == "a" else "C", np.float64)
        b = operand(rng, k, n, bad if which == "b" else "T", np.float64)
        assert run_plan(a, b) is None
        fixed_a, fixed_b = (np.ascontiguousarray(a), b) if which == "a" else (a, np.ascontiguousarray(b))
        np.testing.assert_allclose(run_plan(fixed_a, fixed_b), a @ b, rtol=1e-12, atol=1e-12)


def test_plan_rejects_strides_not_a_multiple_of_the_item_size():
    assert gemm_plan((3, 4), (16, 2), (4, 2), (8, 4), 4) is None  # a byte-offset view cuBLAS cannot index


def test_plan_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        gemm_plan((3, 4), (16, 4), (5, 2), (8, 4), 4)


def test_empty_dimensions_plan_without_reading():
    a, b = np.zeros((3, 0)), np.zeros((0, 4))
    plan = gemm_plan(a.shape, a.strides, b.shape, b.strides, 8)
    assert plan is not None and plan.k == 0
    np.testing.assert_array_equal(run_plan(a, b), np.zeros((3, 4)))


def test_module_imports_without_cupy_and_registers_matmul(monkeypatch):
    code = "import sys, xpnet.backends.cupy.cublas as m; m.register_all(); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    monkeypatch.setattr(kernels, "_table", {})  # register into a scratch table, not the process's
    cuda_blas.register_all()
    assert kernels.registered() == [("array_api_compat.cupy", "matmul")]
    # array_namespace(cupy array) is this module of array-api-compat (found without importing CuPy)
    assert importlib.util.find_spec(cuda_blas.NAMESPACE) is not None


def test_missing_cublas_is_a_clear_error():
    try:
        cuda_blas._open_cublas()
    except OSError as exc:
        assert "cuBLAS not found" in str(exc) and "libcublas.so.1" in str(exc) and "Searched" in str(exc)


# --------------------------------------------------------------------------------------------------------
# GPU


def to_gpu(x: np.ndarray):
    """The same layout on the device: copy the root buffer, then take the same view of it."""
    import cupy

    root = x
    while root.base is not None:
        root = root.base
    dev_root = cupy.asarray(np.ascontiguousarray(root))
    start = x.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    mem = dev_root.data + start
    return cupy.ndarray(x.shape, x.dtype, mem, strides=x.strides)


@needs_gpu
@pytest.mark.not_on_fake("it has no views at raw device addresses (cupy.ndarray(memptr=...))")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_equals_cupy_matmul(dtype):
    import array_api_compat
    import cupy

    rng = np.random.default_rng(3)
    assert array_api_compat.array_namespace(cupy.zeros(1)).__name__ == cuda_blas.NAMESPACE
    for layout_a, layout_b in itertools.product(CONTIGUOUS + ("strided", "reversed"), CONTIGUOUS + ("broadcast",)):
        for m, k, n in [(1, 1, 1), (3, 7, 1), (1, 7, 3), (7, 3, 128), (128, 128, 7), (257, 129, 65)]:
            a_host, b_host = operand(rng, m, k, layout_a, dtype), operand(rng, k, n, layout_b, dtype)
            a, b = to_gpu(a_host), to_gpu(b_host)
            assert a.strides == a_host.strides and b.strides == b_host.strides
            c = cuda_blas.gemm(a, b)
            assert c.flags.c_contiguous and c.shape == (m, n) and c.dtype == dtype
            err = f"{layout_a}@{layout_b} {m},{k},{n}"
            np.testing.assert_allclose(cupy.asnumpy(c), cupy.asnumpy(a @ b), **tolerance(dtype), err_msg=err)
            out = cupy.full((m, n), cupy.nan, dtype=dtype)
            assert cuda_blas.gemm(a, b, out=out) is out
            np.testing.assert_allclose(cupy.asnumpy(out), a_host @ b_host, **tolerance(dtype), err_msg=err)


@needs_gpu
def test_gemm_refuses_what_cublas_cannot_do():
    import cupy

    a = cupy.ones((4, 3), dtype=cupy.float32)
    with pytest.raises(TypeError):
        cuda_blas.gemm(a, cupy.ones((3, 2), dtype=cupy.float64))
    with pytest.raises(ValueError, match="do not match"):
        cuda_blas.gemm(a, cupy.ones((4, 2), dtype=cupy.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        cuda_blas.gemm(a, a.T, out=cupy.empty((4, 4), dtype=cupy.float32).T)
    with pytest.raises(ValueError, match="overlaps"):
        buf = cupy.ones((4, 4), dtype=cupy.float32)
        cuda_blas.gemm(buf, buf, out=buf)
    np.testing.assert_array_equal(cupy.asnumpy(cuda_blas.gemm(cupy.ones((2, 0), cupy.float32),
                                                             cupy.ones((0, 3), cupy.float32))), np.zeros((2, 3)))


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_captured_matmul_tracks_inputs_changed_after_capture(dtype):
    import cupy

    rng = np.random.default_rng(4)
    m, k, n = 64, 33, 17
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        x = cupy.asarray(rng.normal(size=(m, k)).astype(dtype))
        w = cupy.asarray(rng.normal(size=(k, n)).astype(dtype))
        dy = cupy.asarray(rng.normal(size=(m, n)).astype(dtype))
        y_out, dw_out = cupy.empty((m, n), dtype), cupy.empty((k, n), dtype)
        cuda_blas.matmul(x, w)  # eager: the same gemm, which also prepares the handle for the capture
        stream.synchronize()
        stream.begin_capture()
        try:
            y = cuda_blas.matmul(x, w)  # allocated during capture: kept alive below as long as the graph
            y_out[...] = y
            cuda_blas.gemm(x.T, dy, out=dw_out)  # a transposed view, as in Dense's backward
            dx = cuda_blas.matmul(dy, w.T)
        finally:
            graph = stream.end_capture()
        for trial in range(2):
            xs, ws, dys = (rng.normal(size=s).astype(dtype) for s in ((m, k), (k, n), (m, n)))
            x[...], w[...], dy[...] = cupy.asarray(xs), cupy.asarray(ws), cupy.asarray(dys)
            graph.launch()
            stream.synchronize()
            tol = tolerance(dtype)
            np.testing.assert_allclose(cupy.asnumpy(y_out), xs @ ws, **tol)
            np.testing.assert_allclose(cupy.asnumpy(y), xs @ ws, **tol)
            np.testing.assert_allclose(cupy.asnumpy(dw_out), xs.T @ dys, **tol)
            np.testing.assert_allclose(cupy.asnumpy(dx), dys @ ws.T, **tol)


@needs_gpu
def test_handle_creation_during_capture_is_refused_clearly():
    import cupy

    cuda_blas.release_all()
    stream = cupy.cuda.Stream(non_blocking=True)
    a = cupy.ones((4, 4), dtype=cupy.float32)
    with stream:
        stream.begin_capture()
        try:
            doubled = a * 2  # something to record, so the graph is not empty  # noqa: F841
            with pytest.raises(RuntimeError, match="before begin_capture"):
                cuda_blas.gemm(a, a)
        finally:
            stream.end_capture()
    cuda_blas.prepare()
    np.testing.assert_array_equal(cupy.asnumpy(cuda_blas.gemm(a, a)), np.full((4, 4), 4.0))
