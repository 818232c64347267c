"""Steps of tools/gpu_verify.sh: what the GPU machine has, a smoke test of the CuPy path, one NCCL rank.

    python tools/gpu_checks.py env     # GPU, driver, CUDA, versions, the cuBLAS/NVRTC actually loaded, a C compiler
    python tools/gpu_checks.py smoke   # ctypes GEMM == CuPy matmul; a captured GEMM replays; graph fit == eager fit
    python tools/gpu_checks.py nccl    # a 1-rank NCCL allreduce, eager and captured; data-parallel fit through it

Each prints `key: value` lines (gpu_verify.sh copies them into summary.txt) and exits non-zero on a failed
check; `env` exits 3 when there is no CUDA device, so the run stops there.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NO_DEVICE = 3


def say(key: str, value: Any) -> None:
    print(f"{key}: {value}", flush=True)


def loaded_libraries(*names: str) -> list[str]:
    """Paths of the shared libraries of this process whose file name contains one of `names`."""
    found = set()
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if any(n in Path(path).name for n in names):
            found.add(path)
    return sorted(found)


def env() -> int:
    from xpnet.backends.cupy import cuda_device_present

    say("python", sys.version.split()[0])
    say("numpy", np.__version__)
    say("c compiler (torch.compile needs one)", ", ".join(filter(None, map(shutil.which, ("cc", "gcc", "g++"))))
        or "none")
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20, check=False)
        say("nvidia-smi", q.stdout.strip() or q.stderr.strip())
    if not cuda_device_present():
        say("cupy", "no CUDA device (or CuPy missing): nothing to verify on this machine")
        return NO_DEVICE
    import cupy

    from xpnet.backends import get_backend
    from xpnet.backends.cupy import cublas as cuda_blas

    props = cupy.cuda.runtime.getDeviceProperties(0)
    say("gpu", f"{props['name'].decode()} (compute capability {props['major']}.{props['minor']}, "
               f"{props['totalGlobalMem'] / 2**30:.0f} GiB)")
    say("cuda driver / runtime", f"{cupy.cuda.runtime.driverGetVersion()} / {cupy.cuda.runtime.runtimeGetVersion()}")
    say("cupy", cupy.__version__)
    try:
        import torch

        say("torch", f"{torch.__version__} (CUDA {torch.version.cuda}, GPU seen: {torch.cuda.is_available()}, "
                     f"float32 matmul precision {torch.get_float32_matmul_precision()})")
    except ImportError:
        say("torch", "not installed")
    backend = get_backend("cupy")
    x = backend.asarray(np.ones((64, 64), np.float32))
    cuda_blas.gemm(x, x)
    backend.uniform((8,), "float32")  # one NVRTC compile
    backend.synchronize()
    say("libcublas loaded", " ".join(loaded_libraries("libcublas.so")) or "none")
    say("libnvrtc loaded", " ".join(loaded_libraries("libnvrtc")) or "none")
    say("xpnet device", backend.describe_device())
    return 0


def check(name: str, ok: bool, detail: str) -> bool:
    say(name, f"{'ok' if ok else 'FAILED'} ({detail})")
    return ok


def smoke() -> int:
    import cupy

    from xpnet.backends.cupy import cublas as cuda_blas

    rng = np.random.default_rng(0)
    ok = True
    for dtype, tol in (("float32", 1e-5), ("float64", 1e-12)):
        a, b = rng.normal(size=(257, 129)).astype(dtype), rng.normal(size=(65, 129)).astype(dtype)
        da, db = cupy.asarray(a), cupy.asarray(b)
        got, want = cuda_blas.gemm(da, db.T), da @ db.T  # a transposed operand: the op-T path
        err = float(cupy.max(cupy.abs(got - want)) / cupy.max(cupy.abs(want)))
        ok &= check(f"ctypes gemm == cupy matmul, {dtype}", err < tol, f"max relative difference {err:.2e}")

    a, b, out = (cupy.asarray(rng.normal(size=(128, 128)).astype(np.float32)) for _ in range(3))
    cuda_blas.prepare()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            cuda_blas.gemm(a, b, out=out)
        finally:
            graph = stream.end_capture()
        errs = []
        for k in range(3):
            a[...] = cupy.asarray(rng.normal(size=(128, 128)).astype(np.float32))
            graph.launch(stream=stream)
            stream.synchronize()
            errs.append(float(cupy.max(cupy.abs(out - cuda_blas.gemm(a, b)))))
    ok &= check("captured gemm replays with new inputs", max(errs) == 0.0, f"max differences {errs}")

    runs = {}
    for graph in (True, False):
        model, losses = _toy_fit(graph, dropout=True)
        runs[graph] = (_weights(model), losses)
        if graph:
            sizes, failure = _graphs(model)
            ok &= check("graph mode captured", bool(sizes) and not failure,
                        f"graphs for batch sizes {sizes}; capture failure: {failure or 'none'}")
    diff = max(float(np.max(np.abs(g - e))) for g, e in zip(runs[True][0], runs[False][0]))
    ok &= check("graph fit == eager fit (3 epochs, 30 steps, dropout)", diff <= 1e-6,
                f"max weight difference {diff:.3e}; train losses {runs[True][1]} vs {runs[False][1]}")
    return 0 if ok else 1


def nccl() -> int:
    """One NCCL rank (one GPU allows one): the allreduce eager and inside a captured graph, and fit through it,
    graph and eager, against the same fit without a communicator (one rank's sum changes no bit)."""
    import cupy
    from cupy.cuda import nccl as cuda_nccl

    from xpnet.distributed import Communicator, NcclCommunicator

    say("nccl version", cuda_nccl.get_version())
    host = Communicator()
    try:  # MPI bootstraps NCCL where mpi4py is installed; one process needs no bootstrap
        from xpnet.distributed import mpi

        host = mpi()
    except Exception as exc:
        say("mpi4py", f"not used ({type(exc).__name__}: {exc})")
    comm = NcclCommunicator(host)
    say("communicator", comm.describe())
    buf = cupy.arange(8, dtype=cupy.float32)
    comm.allreduce(buf)
    ok = check("allreduce, eager", bool((buf == cupy.arange(8, dtype=cupy.float32)).all()), "1 rank: unchanged")
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            comm.allreduce(buf)
            buf *= 2
        finally:
            graph = stream.end_capture()
        graph.launch(stream=stream)
        graph.launch(stream=stream)
        stream.synchronize()
    ok &= check("allreduce captured, replayed twice", float(buf[3]) == 12.0, f"buf[3] = {float(buf[3])} (want 12)")
    for graph_mode in (True, False):
        alone, through, detail = _fit_pair(comm, graph_mode)
        ok &= check(f"data-parallel fit through NCCL == fit alone ({'graph' if graph_mode else 'eager'})",
                    alone == 0.0 and through, detail)
    return 0 if ok else 1


def _toy_fit(graph: bool, dropout: bool = False, communicator: Any = None) -> tuple[Any, list[float]]:
    """A small classifier fit on CuPy for 3 epochs (30 steps), the same each call; (model, training losses)."""
    import xpnet as xn
    from xpnet.backends import get_backend

    backend, rng = get_backend("cupy"), np.random.default_rng(0)
    x = rng.normal(size=(600, 20)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    model = xn.Sequential([xn.Dense(20, 64, rng=np.random.default_rng(1)), xn.ReLU(),
                           *([xn.Dropout(0.2)] if dropout else []), xn.Dense(64, 3, rng=np.random.default_rng(2))])
    hist = xn.fit(model, xn.SoftmaxCrossEntropy(), xn.Adam(model.parameters(), lr=0.01),
                  (backend.asarray(x), backend.asarray(y)), epochs=3, batch_size=64, seed=1, graph=graph,
                  communicator=communicator)
    return model, hist["train_loss"]


def _weights(model: Any) -> list[np.ndarray]:
    from xpnet.backends import get_backend, transfer

    return [transfer(p.value, get_backend("numpy")) for p in model.parameters()]


def _graphs(model: Any) -> tuple[list[int], str]:
    """(the batch sizes graph mode holds a captured step for, why a capture failed or '') of `model`."""
    from xpnet.training import captured

    cached = captured._cache.get(model)
    if cached is None:
        return [], "no graph buffers"
    buf = cached[1]
    return sorted(r for r, g in buf.graphs.items() if g.replay is not None), buf.capture_failed


def _fit_pair(comm: Any, graph: bool) -> tuple[float, bool, str]:
    """Max weight difference of fit with and without `comm`, and whether graph mode captured with it."""
    alone, through = (_toy_fit(graph, communicator=c)[0] for c in (None, comm))
    sizes, failure = _graphs(through)
    captured = not graph or (bool(sizes) and not failure)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(_weights(alone), _weights(through)))
    return diff, captured, f"max weight difference {diff:.3e}, 30 steps" + (f"; captured: {captured}" if graph else "")


if __name__ == "__main__":
    sys.exit({"env": env, "smoke": smoke, "nccl": nccl}[sys.argv[1]]())
