"""CuPy on an NVIDIA GPU. Imported only when asked for: `import xpnet` never loads CuPy."""
from __future__ import annotations

from typing import Any

import numpy as np

from xpnet.backends.base import Backend
from xpnet.errors import BackendUnavailable


def cuda_device_present() -> bool:
    """True when CuPy is installed and sees a CUDA device (without raising, for test skips and `auto`)."""
    import importlib.util

    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        return _import_cupy() is not None
    except BackendUnavailable:
        return False


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError:
        raise BackendUnavailable('cupy: CuPy is not installed (pip install -e ".[cuda12]" or ".[cuda13]")') from None
    except Exception as exc:  # a broken CUDA install raises all sorts at import
        raise BackendUnavailable(f"cupy: CuPy failed to import ({exc})") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BackendUnavailable(f"cupy: no CUDA device ({type(exc).__name__}: {exc})") from None
    if count == 0:
        raise BackendUnavailable("cupy: no CUDA device")
    return cupy


class CupyBackend(Backend):
    """CuPy on one GPU: fused kernels registered, dropout from a capture-safe Philox stream, graph capture."""

    name = "cupy"
    sync_costly = True  # a read-back waits for the GPU: the training loop keeps its checks on the device
    supports_capture = True

    def __init__(self, device_id: Any = 0) -> None:
        device_id = int(getattr(device_id, "id", device_id))
        cupy = _import_cupy()
        import array_api_compat.cupy as xp_cupy

        self._cupy = cupy
        dev = cupy.cuda.Device(device_id)
        dev.use()
        versions = {"cupy": cupy.__version__, "cuda_runtime": str(cupy.cuda.runtime.runtimeGetVersion()),
                    "cuda_driver": str(cupy.cuda.runtime.driverGetVersion())}
        super().__init__(xp_cupy, dev, versions)
        _register_kernels()
        # Dropout masks come from Philox keyed by the seed at a device call counter (philox.py), not
        # from cuRAND: the counter advances on the device, so a captured graph draws new masks per replay.
        # The key and the counter live on the device: reseeding writes into them, so a captured graph sees it.
        self._seed = 0
        with dev:
            self._counter = cupy.zeros((), dtype=cupy.uint64)
            self._key = cupy.zeros((2,), dtype=cupy.uint32)
        self._graph_pool: Any = None

    def asarray(self, host: Any, dtype: str | None = None) -> Any:
        a = np.asarray(host, order="C")
        with self.device:
            return self._cupy.asarray(a if dtype is None else a.astype(dtype, copy=False))

    def to_numpy(self, x: Any) -> np.ndarray:
        return self._cupy.asnumpy(x)

    def synchronize(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()

    def seed(self, seed: int) -> None:
        from xpnet.backends.cupy.philox import philox_key

        self._seed = int(seed)
        self._key.set(philox_key(self._seed))  # eager, between epochs: a small host-to-device copy
        self._counter[...] = 0

    def rng_state(self) -> Any:
        return {"seed": self._seed, "counter": int(self._counter)}  # one read, at checkpoints only

    def set_rng_state(self, state: Any) -> None:
        self.seed(int(state["seed"]))
        self._counter[...] = int(state["counter"])

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Any:
        from xpnet.backends.cupy.philox import philox_uniform

        with self.device:
            return philox_uniform(shape, dtype, self._key, self._counter)

    def capture(self, step: Any) -> Any:
        """Record `step` once as a CUDA graph on a side stream; return a function that replays it on the
        current stream. Its temporaries come from a pool of their own that nothing else allocates from,
        so a replay never writes into memory that eager code has been handed since."""
        cupy = self._cupy
        from xpnet.backends.cupy import cublas

        cublas.prepare(self.device.id)  # a cuBLAS handle cannot be created inside a capture
        if self._graph_pool is None:
            self._graph_pool = cupy.cuda.MemoryPool()
        stream = cupy.cuda.Stream(non_blocking=True)
        with self.device, cupy.cuda.using_allocator(self._graph_pool.malloc), stream:
            stream.begin_capture()
            try:
                step()
            finally:
                graph = stream.end_capture()  # also ends a capture that the step broke off
        def replay() -> None:  # the closure keeps the graph alive exactly as long as its owner keeps this
            graph.launch(stream=cupy.cuda.get_current_stream())

        return replay

    def describe_device(self) -> str:
        props = self._cupy.cuda.runtime.getDeviceProperties(self.device.id)
        return f"cuda:{self.device.id} ({props['name'].decode()})"


_registered = False


def _register_kernels() -> None:
    """CuPy's fused kernels, conv/pool kernels and the capture-safe matmul, into the kernel table once."""
    global _registered
    if not _registered:
        from xpnet.backends.cupy import conv, cublas, guard, kernels

        kernels.register_all()
        conv.register_all()
        guard.register_all()
        cublas.register_all()
        _registered = True


def make(device_id: Any = 0) -> CupyBackend:
    return CupyBackend(device_id)
