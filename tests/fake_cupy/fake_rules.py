"""Checks of the fake itself, so that it cannot silently become permissive: every capture rule it claims is
broken once on purpose here and must be refused, a captured graph must replay what it recorded against the
current contents of its buffers, and the kernel argument checks and barrier fibers must work.
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

import numpy as np

KERNELS = r"""
extern "C" __global__ void scale(const float* x, float* y, int n, float a) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}
// One block: per-warp shuffles, then the warps' partial sums through shared memory.
extern "C" __global__ void block_sum(const double* x, double* out, long long n) {
    __shared__ double partial[32];
    double acc = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) acc += x[i];
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (unsigned w = 0; w < blockDim.x / 32; ++w) t += partial[w];
        *out = t;
    }
}
"""


def _refused(fn: Callable[[], Any], exc_type: type[BaseException]) -> bool:
    try:
        fn()
    except exc_type:
        return True
    return False


def capture_rules(cupy: Any) -> dict[str, Any]:
    """Each forbidden operation inside a capture raises; recorded work replays on the buffers' new contents."""
    x = cupy.arange(4, dtype=cupy.float32)
    out = cupy.zeros(4, dtype=cupy.float32)
    side = cupy.cuda.Stream(non_blocking=True)
    s = cupy.cuda.Stream(non_blocking=True)
    refused: dict[str, bool] = {}
    with s, cupy.cuda.using_allocator(cupy.cuda.MemoryPool().malloc):  # as xpnet captures
        s.begin_capture()
        refused["float()"] = _refused(lambda: float(x[0]), cupy.CaptureError)
        refused["get()"] = _refused(lambda: x.get(), cupy.CaptureError)
        refused["asnumpy"] = _refused(lambda: cupy.asnumpy(x), cupy.CaptureError)
        refused["host-to-device"] = _refused(lambda: cupy.asarray(np.ones(3, np.float32)), cupy.CaptureError)
        refused["cupy matmul"] = _refused(lambda: x[None, :] @ x[:, None], NotImplementedError)
        refused["synchronize"] = _refused(lambda: cupy.cuda.Device().synchronize(), cupy.CaptureError)

        def on_side_stream() -> None:
            with side:
                x + 1
        refused["other stream"] = _refused(on_side_stream, cupy.CaptureError)
        y = x * 2  # a fresh buffer: computed now too
        out[...] = y + 1  # a buffer from before the capture: only recorded
        graph = s.end_capture()
    after_capture = out.get().tolist()
    graph.launch()
    after_launch = out.get().tolist()
    x[...] = 10.0  # eager
    graph.launch()
    return {"refused": refused, "after_capture": after_capture, "after_launch": after_launch,
            "after_relaunch": out.get().tolist()}


def cublas_rules(cupy: Any) -> dict[str, Any]:
    """xpnet's gemm against NumPy, captured and replayed; the fake cuBLAS refuses a broken call sequence."""
    from xpnet.backends.cupy import cublas as cuda_blas

    rng = np.random.default_rng(0)
    a_host, b_host = rng.random((3, 5), dtype=np.float32), rng.random((4, 5), dtype=np.float32)
    a, b = cupy.asarray(a_host), cupy.asarray(b_host).T  # b: a transposed view (op T)
    eager = float(np.max(np.abs(cuda_blas.gemm(a, b).get() - a_host @ b_host.T)))
    out = cupy.zeros((3, 4), dtype=cupy.float32)
    s = cupy.cuda.Stream(non_blocking=True)
    with s, cupy.cuda.using_allocator(cupy.cuda.MemoryPool().malloc):
        s.begin_capture()
        cuda_blas.gemm(a, b, out=out)
        graph = s.end_capture()
    untouched = not bool((out != 0).any())
    graph.launch()
    replayed = float(np.max(np.abs(out.get() - a_host @ b_host.T)))
    a[...] = 2 * a
    graph.launch()
    relaunched = float(np.max(np.abs(out.get() - 2 * a_host @ b_host.T)))

    ctx, lib = cuda_blas._contexts[(os.getpid(), 0)], cuda_blas.library()
    plan = cuda_blas.gemm_plan(a.shape, a.strides, b.shape, b.strides, 4)
    one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)

    def raw_gemm() -> int:
        return lib.cublasSgemm_v2(ctx.handle, plan.transa, plan.transb, plan.m, plan.n, plan.k, ctypes.byref(one),
                                  b.data.ptr, plan.lda, a.data.ptr, plan.ldb, ctypes.byref(zero), out.data.ptr,
                                  plan.ldc)

    lib.cublasSetStream_v2(ctx.handle, s.ptr)  # resets the workspace, as in cuBLAS
    with s:
        no_workspace = raw_gemm()
    lib.cublasSetWorkspace_v2(ctx.handle, ctx.workspace.data.ptr, cuda_blas.WORKSPACE_BYTES)
    wrong_stream = raw_gemm()  # the null stream is current, the handle is on s
    with s:
        right = raw_gemm()
    return {"eager_maxdiff": eager, "untouched_by_capture": untouched, "replayed_maxdiff": replayed,
            "relaunched_maxdiff": relaunched, "status_no_workspace": no_workspace,
            "status_wrong_stream": wrong_stream, "status_right": right}


def kernel_rules(cupy: Any) -> dict[str, Any]:
    """Arguments checked against the C signature; a fiber-run block reduction; first fetch in a capture."""
    module = cupy.RawModule(code=KERNELS, options=("-std=c++17", "--fmad=false"))
    scale = module.get_function("scale")
    x = cupy.asarray(np.arange(300, dtype=np.float32))
    y = cupy.zeros(300, dtype=cupy.float32)
    before = len(cupy.PROBLEMS)
    scale((2,), (256,), (x, y, np.int32(300), np.float32(2.0)))
    typed_ok = len(cupy.PROBLEMS) == before and bool((y == 2 * x).all())
    scale((2,), (256,), (x, y, 300, 2.0))  # CuPy would pass 8-byte values for int and float: two problems
    untyped = sorted(set(cupy.PROBLEMS[before:]))
    host_refused = _refused(lambda: scale((2,), (256,), (np.zeros(300, np.float32), y, np.int32(300),
                                                          np.float32(1.0))), TypeError)
    values = np.random.default_rng(1).random(1000)
    total = cupy.zeros((), dtype=cupy.float64)
    module.get_function("block_sum")((1,), (256,), (cupy.asarray(values), total, np.int64(values.size)))
    fresh = cupy.RawModule(code=KERNELS, options=("-std=c++17", "--fmad=false"))
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        fresh.get_function("scale")
        s.end_capture()
    return {"typed_ok": typed_ok, "untyped_problems": untyped, "host_array_refused": host_refused,
            "block_sum_error": abs(float(total) - float(values.sum())),
            "fetched_in_capture_flagged": any("scale first fetched during capture" in p for p in cupy.PROBLEMS)}


def run(cupy: Any, fake_blas: Any) -> dict[str, Any]:
    return {"capture": capture_rules(cupy), "cublas": cublas_rules(cupy), "kernels": kernel_rules(cupy),
            "cublas_errors": list(fake_blas.errors)}
