"""A fake libcublas for xpnet/backends/cupy/cublas.py: a small C library exporting the cuBLAS functions that
cublas.py binds, each forwarding to Python, so cublas.py's own `_bind` (the ctypes signatures) and its
C-level calls are what run.

Each GEMM is checked the way cuBLAS needs it for a CUDA graph (cublas.py's docstring has the rules): a live
handle whose stream is the current stream, a workspace set again after every cublasSetStream, host pointer
mode, sane sizes and leading dimensions. A failed check returns CUBLAS_STATUS_INVALID_VALUE with the reason
as the status string, so cublas.py raises it. Inside a capture the GEMM is recorded on the fake CuPy's tape
(alpha and beta baked in, as host-mode scalars are) and replayed with the graph.
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cupy
import host_cuda
import numpy as np
from cupy import _capture as cap

STATUS_INVALID_VALUE, STATUS_INTERNAL_ERROR = 7, 14

_VP, _INT, _SIZE = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
_PROTOTYPES: dict[str, Any] = {
    "create": ctypes.CFUNCTYPE(_INT, ctypes.POINTER(_VP)),
    "destroy": ctypes.CFUNCTYPE(_INT, _VP),
    "set_stream": ctypes.CFUNCTYPE(_INT, _VP, _VP),
    "set_workspace": ctypes.CFUNCTYPE(_INT, _VP, _VP, _SIZE),
    "set_pointer_mode": ctypes.CFUNCTYPE(_INT, _VP, _INT),
    "sgemm": ctypes.CFUNCTYPE(_INT, _VP, _INT, _INT, _INT, _INT, _INT, ctypes.POINTER(ctypes.c_float), _VP, _INT,
                              _VP, _INT, ctypes.POINTER(ctypes.c_float), _VP, _INT),
    "dgemm": ctypes.CFUNCTYPE(_INT, _VP, _INT, _INT, _INT, _INT, _INT, ctypes.POINTER(ctypes.c_double), _VP, _INT,
                              _VP, _INT, ctypes.POINTER(ctypes.c_double), _VP, _INT),
}

SHIM = r"""
#include <cstddef>
#include <cstring>
#define GEMM(T) void* h, int ta, int tb, int m, int n, int k, const T* alpha, const void* A, int lda, \
                const void* B, int ldb, const T* beta, void* C, int ldc
static int (*py_create)(void**);
static int (*py_destroy)(void*);
static int (*py_set_stream)(void*, void*);
static int (*py_set_workspace)(void*, void*, size_t);
static int (*py_set_pointer_mode)(void*, int);
static int (*py_sgemm)(GEMM(float));
static int (*py_dgemm)(GEMM(double));
static char message[1024] = "";
extern "C" {
void xl_fake_cublas_register(void** f) {
    py_create = (int (*)(void**))f[0]; py_destroy = (int (*)(void*))f[1];
    py_set_stream = (int (*)(void*, void*))f[2]; py_set_workspace = (int (*)(void*, void*, size_t))f[3];
    py_set_pointer_mode = (int (*)(void*, int))f[4];
    py_sgemm = (int (*)(GEMM(float)))f[5]; py_dgemm = (int (*)(GEMM(double)))f[6];
}
void xl_fake_cublas_set_message(const char* m) { std::strncpy(message, m, sizeof message - 1); }
int cublasCreate_v2(void** handle) { return py_create(handle); }
int cublasDestroy_v2(void* handle) { return py_destroy(handle); }
int cublasSetStream_v2(void* handle, void* stream) { return py_set_stream(handle, stream); }
int cublasSetWorkspace_v2(void* handle, void* ws, size_t size) { return py_set_workspace(handle, ws, size); }
int cublasSetPointerMode_v2(void* handle, int mode) { return py_set_pointer_mode(handle, mode); }
int cublasSgemm_v2(GEMM(float)) { return py_sgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); }
int cublasDgemm_v2(GEMM(double)) { return py_dgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); }
const char* cublasGetStatusString(int status) { return message; }
}
"""


@dataclass
class _Handle:
    stream: int = 0
    workspace: tuple[int, int] | None = None  # (address, bytes); cleared by every cublasSetStream
    pointer_mode: int = 0


@dataclass
class Gemm:
    """One GEMM call as the tests read them back."""

    captured: bool
    m: int
    n: int
    k: int


class FakeCublas:
    """The Python side of the shim: cuBLAS state per handle, the checks, and the GEMM itself in NumPy."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.handles: dict[int, _Handle] = {}
        self.gemms: list[Gemm] = []
        self.errors: list[str] = []  # every failed call, also when the caller swallowed its status
        self.callbacks: list[Any] = []  # the C function pointers the shim holds (ctypes keeps none alive)
        self._next_handle = 0x7000

    def _fail(self, status: int, why: str) -> int:
        self.errors.append(why)
        self.lib.xl_fake_cublas_set_message(why.encode()[:1000])
        return status

    def _guarded(self, fn: Callable[..., int]) -> Callable[..., int]:
        """Exceptions must not cross the C boundary (ctypes would print and return 0): turn them into a status."""
        def call(*args: Any) -> int:
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 (reported through the status string and self.errors)
                return self._fail(STATUS_INTERNAL_ERROR, f"fake cuBLAS: {type(exc).__name__}: {exc}")
        return call

    def _handle(self, handle: int | None) -> _Handle:
        if handle not in self.handles:
            raise ValueError(f"unknown or destroyed handle {handle!r}")
        return self.handles[handle]

    def create(self, out: Any) -> int:
        if cap.capturing():  # cublasCreate allocates device memory: not capturable
            cap.violation("cublasCreate during stream capture")
            return self._fail(STATUS_INTERNAL_ERROR, "cublasCreate during stream capture")
        h, self._next_handle = self._next_handle, self._next_handle + 0x10
        self.handles[h] = _Handle()
        out[0] = h
        return 0

    def destroy(self, handle: int | None) -> int:
        self._handle(handle)
        del self.handles[handle]  # type: ignore[arg-type]
        return 0

    def set_stream(self, handle: int | None, stream: int | None) -> int:
        st = self._handle(handle)
        st.stream, st.workspace = stream or 0, None  # as cuBLAS: back to its own workspace pool
        return 0

    def set_workspace(self, handle: int | None, ptr: int | None, size: int) -> int:
        if not ptr or size <= 0:
            return self._fail(STATUS_INVALID_VALUE, f"cublasSetWorkspace({ptr}, {size})")
        self._handle(handle).workspace = (ptr, size)
        return 0

    def set_pointer_mode(self, handle: int | None, mode: int) -> int:
        self._handle(handle).pointer_mode = mode
        return 0

    def gemm(self, dtype: type, handle: int | None, transa: int, transb: int, m: int, n: int, k: int, alpha: Any,
             a: int | None, lda: int, b: int | None, ldb: int, beta: Any, c: int | None, ldc: int) -> int:
        st = self._handle(handle)
        stream = cupy.get_current_stream().ptr
        problems = []
        if st.stream != stream:
            problems.append(f"handle stream {st.stream:#x} is not the current stream {stream:#x}")
        if st.workspace is None:
            problems.append("no workspace set since the last cublasSetStream (cuBLAS would allocate)")
        if st.pointer_mode != 0:
            problems.append("pointer mode is not host")
        if transa not in (0, 1) or transb not in (0, 1):
            problems.append(f"transa/transb {transa}/{transb}")
        if min(m, n, k) < 0:
            problems.append(f"negative size m={m} n={n} k={k}")
        rows_a, rows_b = (m if transa == 0 else k), (k if transb == 0 else n)
        for name, ld, rows in (("lda", lda, rows_a), ("ldb", ldb, rows_b), ("ldc", ldc, m)):
            if ld < max(1, rows):
                problems.append(f"{name} {ld} < {max(1, rows)}")
        if not (a and b and c):
            problems.append("a null operand")
        capturing = cap.capturing()
        self.gemms.append(Gemm(capturing, m, n, k))
        if problems:
            return self._fail(STATUS_INVALID_VALUE, "fake cuBLAS: " + "; ".join(problems))
        alpha_v, beta_v, it = alpha[0], beta[0], np.dtype(dtype).itemsize

        def matrix(ptr: int, rows: int, cols: int, ld: int) -> np.ndarray:  # column-major, leading dim ld
            count = ld * (cols - 1) + rows
            buf = np.ctypeslib.as_array((ctypes.c_char * (count * it)).from_address(ptr)).view(dtype)
            return np.lib.stride_tricks.as_strided(buf, (rows, cols), (it, ld * it))

        def run() -> None:  # C = alpha op(A) op(B) + beta C, reading the operands' memory when it runs
            op_a = matrix(a, m, k, lda) if transa == 0 else matrix(a, k, m, lda).T
            op_b = matrix(b, k, n, ldb) if transb == 0 else matrix(b, n, k, ldb).T
            out = matrix(c, m, n, ldc)
            r = alpha_v * (op_a @ op_b)
            out[...] = (r + beta_v * out if beta_v != 0 else r).astype(dtype)

        if m == 0 or n == 0:
            return 0
        if not capturing:
            run()
            return 0
        cap.record(run, "cublasGemm")
        cap.STATS["gemm_captured"] += 1
        if any(r.ctypes.data <= c < r.ctypes.data + r.nbytes for r in cap.S.fresh.values()):
            run()  # the output was allocated in this capture: safe to fill now (see _capture.run_or_record)
        return 0


def load() -> tuple[ctypes.CDLL, FakeCublas]:
    """Build the shim, connect it to a FakeCublas; returns the library (unbound: cublas._bind binds it)."""
    lib = ctypes.CDLL(host_cuda.compile_shared(SHIM))
    lib.xl_fake_cublas_set_message.argtypes = [ctypes.c_char_p]
    fake = FakeCublas(lib)
    g = fake._guarded
    fake.callbacks = [
        _PROTOTYPES["create"](g(fake.create)), _PROTOTYPES["destroy"](g(fake.destroy)),
        _PROTOTYPES["set_stream"](g(fake.set_stream)), _PROTOTYPES["set_workspace"](g(fake.set_workspace)),
        _PROTOTYPES["set_pointer_mode"](g(fake.set_pointer_mode)),
        _PROTOTYPES["sgemm"](g(lambda *a: fake.gemm(np.float32, *a))),
        _PROTOTYPES["dgemm"](g(lambda *a: fake.gemm(np.float64, *a))),
    ]
    table = (ctypes.c_void_p * 7)(*[ctypes.cast(f, ctypes.c_void_p) for f in fake.callbacks])
    lib.xl_fake_cublas_register(table)
    return lib, fake
