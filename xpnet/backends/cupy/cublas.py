"""cuBLAS GEMM that can be recorded in a CUDA graph (CuPy stream capture), called through ctypes.

Why this exists: CuPy refuses every cuBLAS call while a stream is capturing (its cuBLAS wrapper's setStream
raises NotImplementedError, cupy issue 6290), so `a @ b` cannot go into a captured training step. cuBLAS
itself can be captured (cuBLAS guide, "CUDA Graphs Support") when:
  * the handle's stream is the capturing stream: cublasSetStream is host-side state, legal during capture
    (PyTorch sets the stream on its handle before every GEMM, captured ones included);
  * a user workspace is set (cublasSetWorkspace), so cuBLAS allocates nothing during capture: without one it
    makes stream-ordered memory nodes, which child graphs do not support. cublasSetStream resets the
    workspace to cuBLAS's own pool, so the workspace is set again after every cublasSetStream;
  * alpha and beta are host values (CUBLAS_POINTER_MODE_HOST): their values are baked into the graph.
The handle must be created outside capture (cublasCreate is not capturable): `prepare()` does it, and so
does the first eager `gemm` on a device (one handle and a 32 MiB workspace per device), which is why an
eager warm-up step before capture is enough.

Rules for captured code:
  * A result allocated during capture (gemm without `out=`) comes from CuPy's memory pool, which is legal in
    CuPy's default relaxed capture mode; the graph keeps writing to that address at every launch, so keep
    the array alive (and unused by anything else) as long as the graph; preallocated `out=` is simplest.
  * The same holds for the copy gemm makes of an operand with no unit stride (e.g. x[::2, ::2]): it is
    freed back to CuPy's pool when gemm returns, like any temporary of captured CuPy code, so the capture's
    owner must keep the pool's blocks from other use while the graph lives (e.g. a dedicated pool).
  * One handle and one workspace per device: graphs holding these GEMMs must not be launched concurrently
    on different streams (they would share the workspace). Launching them one after another is fine.

`matmul` (the kernel-table entry) calls `gemm` in eager and captured code alike: one route, so both modes
compute the same bits. Importing this module loads neither CuPy nor cuBLAS.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

from xpnet.backends.cupy.gemm_plan import GemmPlan, _operand, gemm_plan
from xpnet.backends.cupy.launch import NAMESPACE
from xpnet.backends.ops import MATMUL, register

WORKSPACE_BYTES = 32 << 20  # cuBLAS guide's recommended workspace for Hopper; smaller GPUs need less
POINTER_MODE_HOST = 0  # cublasPointerMode_t


# --------------------------------------------------------------------------------------------------------
# Loading cuBLAS: the copy CuPy already loaded, so this module and CuPy share one library in the process.

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def _sonames() -> list[str]:
    """libcublas sonames, the major of CuPy's CUDA runtime first (cupy-cuda12x loads .so.12, 13x .so.13)."""
    if sys.platform == "win32":
        names = ["cublas64_13.dll", "cublas64_12.dll"]
    else:
        names = ["libcublas.so.13", "libcublas.so.12"]
    try:
        import cupy

        major = cupy.cuda.runtime.runtimeGetVersion() // 1000
        names.sort(key=lambda name: str(major) not in name)
    except Exception:  # no CuPy, or a runtime that cannot answer: try both majors anyway
        pass
    return names


def _wheel_dirs() -> list[str]:
    """Where pip's nvidia-cublas wheels put the library: nvidia/cu13/lib (CUDA 13), nvidia/cublas/lib (12)."""
    import site

    roots = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    try:
        roots += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # some embedded interpreters lack these
        pass
    sub = "bin" if sys.platform == "win32" else "lib"
    dirs = [os.path.join(root, "nvidia", pkg, sub) for root in roots for pkg in ("cu13", "cu12", "cublas")]
    return list(dict.fromkeys(d for d in dirs if os.path.isdir(d)))


def _open_cublas() -> ctypes.CDLL:
    searched: list[str] = []
    try:  # let CuPy load its cuBLAS first (CuPy 14 locates it with cuda-pathfinder on this attribute access)
        from cupy_backends.cuda.libs import cublas as _cupy_cublas  # noqa: F401
    except Exception as exc:
        searched.append(f"CuPy's cuBLAS module did not load ({type(exc).__name__}: {exc})")
    names = _sonames()
    noload = getattr(os, "RTLD_NOLOAD", None)
    if noload is not None:  # the copy already in the process, i.e. CuPy's
        for name in names:
            try:
                return ctypes.CDLL(name, mode=noload | os.RTLD_GLOBAL)
            except OSError:
                searched.append(f"{name} (not loaded in this process)")
    for name in names:  # the loader's search path (LD_LIBRARY_PATH, ldconfig)
        try:
            return ctypes.CDLL(name)
        except OSError:
            searched.append(f"{name} (dynamic loader search path)")
    for folder in _wheel_dirs():
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                searched.append(path)
                continue
            lt = os.path.join(folder, name.replace("cublas", "cublasLt"))
            if os.path.exists(lt):  # its dependency, in case the wheel's $ORIGIN rpath is missing
                ctypes.CDLL(lt, mode=getattr(os, "RTLD_GLOBAL", 0))
            return ctypes.CDLL(path)
    if not _wheel_dirs():
        searched.append("no nvidia/{cu13,cu12,cublas}/lib folder in site-packages")
    raise OSError("cuBLAS not found; install cupy-cuda13x with nvidia-cublas (or cupy-cuda12x with "
                  "nvidia-cublas-cu12). Searched: " + "; ".join(searched))


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the C signatures (cublas_api.h) so ctypes passes 64-bit pointers and sizes correctly."""
    vp, i, size = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    signatures: dict[str, list[Any]] = {
        "cublasCreate_v2": [ctypes.POINTER(vp)],
        "cublasDestroy_v2": [vp],
        "cublasSetStream_v2": [vp, vp],
        "cublasSetWorkspace_v2": [vp, vp, size],
        "cublasSetPointerMode_v2": [vp, i],
    }
    for name, scalar in (("cublasSgemm_v2", ctypes.c_float), ("cublasDgemm_v2", ctypes.c_double)):
        ptr = ctypes.POINTER(scalar)
        # handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc
        signatures[name] = [vp, i, i, i, i, i, ptr, vp, i, vp, i, ptr, vp, i]
    for name, argtypes in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, ctypes.c_int  # cublasStatus_t
    if hasattr(lib, "cublasGetStatusString"):
        lib.cublasGetStatusString.argtypes, lib.cublasGetStatusString.restype = [ctypes.c_int], ctypes.c_char_p
    return lib


def library() -> ctypes.CDLL:
    """The bound libcublas (loaded on first use)."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _bind(_open_cublas())
    return _lib


def _check(status: int, call: str) -> None:
    if status != 0:
        lib = _lib
        text = lib.cublasGetStatusString(status).decode() if lib and hasattr(lib, "cublasGetStatusString") else ""
        raise RuntimeError(f"{call} failed: cuBLAS status {status} {text}".rstrip())


# --------------------------------------------------------------------------------------------------------
# One handle and workspace per (process, device), created outside capture and kept for the process: the
# captured graphs hold the workspace's address, and destroying handles at exit can race CUDA's own teardown.


@dataclass
class _Context:
    handle: ctypes.c_void_p
    workspace: Any  # a cupy uint8 array, referenced here so the pool never reuses it


_contexts: dict[tuple[int, int], _Context] = {}


def prepare(device_id: int | None = None) -> None:
    """Create the handle and workspace for a device (default: the current one). Call it before
    begin_capture(); an eager `matmul` on the device does it too. Safe to call repeatedly."""
    import cupy

    device = cupy.cuda.Device(device_id) if device_id is not None else cupy.cuda.Device()
    key = (os.getpid(), device.id)  # a forked child cannot use its parent's handle
    if key in _contexts:
        return
    lib = library()
    with _lock, device:
        if key in _contexts:
            return
        if cupy.cuda.get_current_stream().is_capturing():
            raise RuntimeError(f"cuBLAS handle for cuda:{device.id} requested during stream capture; call "
                               "xpnet.backends.cupy.cublas.prepare() or run one eager step before begin_capture()")
        handle = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        _check(lib.cublasSetPointerMode_v2(handle, POINTER_MODE_HOST), "cublasSetPointerMode")
        workspace = cupy.empty(WORKSPACE_BYTES, dtype=cupy.uint8)
        _check(lib.cublasSetWorkspace_v2(handle, workspace.data.ptr, WORKSPACE_BYTES), "cublasSetWorkspace")
        _contexts[key] = _Context(handle, workspace)


def release_all() -> None:
    """Destroy every handle of this process (tests, or a program done with the GPU). No graph holding
    these GEMMs may be launched afterwards."""
    import cupy

    with _lock:
        for (pid, dev), ctx in list(_contexts.items()):
            if pid == os.getpid() and _lib is not None:
                device = cupy.cuda.Device(dev)
                with device:
                    device.synchronize()  # no GEMM may still be using the workspace
                    _check(_lib.cublasDestroy_v2(ctx.handle), "cublasDestroy")
            del _contexts[(pid, dev)]


# --------------------------------------------------------------------------------------------------------
# GEMM on the current CuPy stream.

_ONE = {4: ctypes.c_float(1.0), 8: ctypes.c_double(1.0)}
_ZERO = {4: ctypes.c_float(0.0), 8: ctypes.c_double(0.0)}


def _span(x: Any) -> tuple[int, int]:
    """[first, last) byte addresses a non-empty array touches (negative strides included)."""
    steps = [(d - 1) * s for d, s in zip(x.shape, x.strides)]
    return (x.data.ptr + sum(min(0, t) for t in steps),
            x.data.ptr + sum(max(0, t) for t in steps) + x.itemsize)


def _overlap(x: tuple[int, int], y: tuple[int, int]) -> bool:
    return x[0] < y[1] and y[0] < x[1]


def gemm(a: Any, b: Any, out: Any | None = None) -> Any:
    """a @ b for 2-D float32/float64 CuPy arrays with one cuBLAS call on the current stream, capturable.

    Returns a new C-contiguous (m, n) array, or writes into `out` (C-contiguous, same dtype, not overlapping
    a or b) and returns it. An operand neither row- nor column-contiguous is copied first (a capturable
    CuPy kernel)."""
    import cupy

    _check_operands(a, b)
    (m, k), n, device = a.shape, b.shape[1], a.device
    with device:
        key = (os.getpid(), device.id)
        if key not in _contexts:  # first: during capture this raises before anything is recorded
            prepare(device.id)
        out = cupy.empty((m, n), dtype=a.dtype) if out is None else _checked_out(out, a, b, (m, n))
        if out.size == 0:
            return out
        if k == 0:  # an empty sum; cuBLAS would be handed zero-size operands, so fill directly
            out.fill(0)
            return out
        plan = gemm_plan(a.shape, a.strides, b.shape, b.strides, a.itemsize)
        if plan is None:
            # An operand cuBLAS cannot read as it is (no unit stride, negative or broadcast strides) is copied
            # C-contiguous first: CuPy's copy is an ordinary kernel, capturable.
            if _operand(m, k, a.strides[0], a.strides[1], a.itemsize) is None:
                a = cupy.ascontiguousarray(a)
            if _operand(k, n, b.strides[0], b.strides[1], b.itemsize) is None:
                b = cupy.ascontiguousarray(b)
            plan = gemm_plan(a.shape, a.strides, b.shape, b.strides, a.itemsize)
        _call(_contexts[key], plan, a, b, out, cupy.cuda.get_current_stream().ptr)
    return out


def _check_operands(a: Any, b: Any) -> None:
    import cupy

    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"gemm takes 2-D arrays, got {a.ndim}-D and {b.ndim}-D")
    if a.dtype != b.dtype or a.dtype not in (cupy.float32, cupy.float64):
        raise TypeError(f"gemm takes two float32 or two float64 arrays, got {a.dtype} and {b.dtype}")
    if b.shape[0] != a.shape[1]:
        raise ValueError(f"matmul shapes {a.shape} and {b.shape} do not match")
    if b.device != a.device:
        raise ValueError(f"gemm operands on different devices: {a.device} and {b.device}")


def _checked_out(out: Any, a: Any, b: Any, shape: tuple[int, int]) -> Any:
    if out.shape != shape or out.dtype != a.dtype or not out.flags.c_contiguous or out.device != a.device:
        raise ValueError(f"out must be a C-contiguous {a.dtype} array of shape {shape} on {a.device}")
    if out.size and any(x.size and _overlap(_span(x), _span(out)) for x in (a, b)):
        raise ValueError("gemm's out overlaps an input; cuBLAS needs C apart from A and B")
    return out


def _call(ctx: _Context, plan: GemmPlan, a: Any, b: Any, out: Any, stream: int) -> None:
    """The cuBLAS GEMM of `plan` (a's and b's layout) itself, on `stream`, with this module's workspace."""
    lib = library()
    call = lib.cublasSgemm_v2 if a.itemsize == 4 else lib.cublasDgemm_v2
    one, zero = ctypes.byref(_ONE[a.itemsize]), ctypes.byref(_ZERO[a.itemsize])
    with _lock:  # the three calls share the handle's state: keep other threads' calls out of between
        _check(lib.cublasSetStream_v2(ctx.handle, stream), "cublasSetStream")
        # cublasSetStream just reset the workspace to cuBLAS's pool: give ours back before the GEMM.
        _check(lib.cublasSetWorkspace_v2(ctx.handle, ctx.workspace.data.ptr, WORKSPACE_BYTES), "cublasSetWorkspace")
        _check(call(ctx.handle, plan.transa, plan.transb, plan.m, plan.n, plan.k, one, b.data.ptr,
                    plan.lda, a.data.ptr, plan.ldb, zero, out.data.ptr, plan.ldc),
               "cublasSgemm" if a.itemsize == 4 else "cublasDgemm")


# --------------------------------------------------------------------------------------------------------
# The "matmul" fast kernel: the same cuBLAS call eagerly and inside a capture.


def matmul(a: Any, b: Any) -> Any:
    """a @ b through `gemm` for 2-D float32/float64 operands, eagerly and while a stream captures alike, so
    a captured step computes the same bits as the eager one (CuPy's own `@` is cublasGemmEx on CuPy's
    handle, which may choose another kernel). Anything else (batched, mixed or integer dtypes) goes to
    CuPy's `@`, which CuPy itself refuses inside a capture."""
    import cupy

    if a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype and a.dtype in (cupy.float32, cupy.float64):
        return gemm(a, b)
    return a @ b


def register_all() -> None:
    register(NAMESPACE, MATMUL, matmul)
