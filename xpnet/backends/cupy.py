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
    name = "cupy"

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
        with dev:
            self._gen = cupy.random.default_rng(0)

    def asarray(self, host: Any, dtype: str | None = None) -> Any:
        a = np.ascontiguousarray(host)
        with self.device:
            return self._cupy.asarray(a if dtype is None else a.astype(dtype, copy=False))

    def to_numpy(self, x: Any) -> np.ndarray:
        return self._cupy.asnumpy(x)

    def synchronize(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()

    def seed(self, seed: int) -> None:
        with self.device:
            self._gen = self._cupy.random.default_rng(seed)

    def rng_state(self) -> Any:
        return None  # CuPy's generators expose no state to save: a mid-epoch resume redraws dropout masks

    def set_rng_state(self, state: Any) -> None:
        pass

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Any:
        with self.device:
            return self._gen.random(shape, dtype=dtype)

    def describe_device(self) -> str:
        props = self._cupy.cuda.runtime.getDeviceProperties(self.device.id)
        return f"cuda:{self.device.id} ({props['name'].decode()})"


def make(device_id: Any = 0) -> CupyBackend:
    return CupyBackend(device_id)
