"""PyTorch tensors through array-api-compat (CPU, or CUDA when a device is present)."""
from __future__ import annotations

import base64
from typing import Any

import numpy as np

from xpnet.backends.base import Backend
from xpnet.errors import BackendUnavailable


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, device: Any = None) -> None:
        try:
            import array_api_compat.torch as xp_torch
            import torch
        except ImportError:
            raise BackendUnavailable("torch: PyTorch is not installed (pip install torch==2.13.0, the version "
                                     "xpnet is tested with)") from None
        self._torch = torch
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:  # "cuda" names the current device: say which, so that
            dev = torch.device("cuda", torch.cuda.current_device())  # it equals the device of the user's tensors
        super().__init__(xp_torch, dev, {"torch": torch.__version__})
        self._gen = torch.Generator(device=dev)
        self.sync_costly = dev.type == "cuda"

    def asarray(self, host: Any, dtype: str | None = None) -> Any:
        dt = None if dtype is None else self.dtype(dtype)
        return self._torch.tensor(np.asarray(host, order="C"), dtype=dt, device=self.device)  # always a copy

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def seed(self, seed: int) -> None:
        self._gen.manual_seed(seed)

    def rng_state(self) -> Any:
        return base64.b64encode(self._gen.get_state().numpy().tobytes()).decode()

    def set_rng_state(self, state: Any) -> None:
        raw = np.frombuffer(base64.b64decode(state), dtype=np.uint8).copy()
        self._gen.set_state(self._torch.from_numpy(raw))

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._torch.rand(shape, generator=self._gen, dtype=dtype, device=self.device)

    def describe_device(self) -> str:
        if self.device.type == "cuda":
            return f"{self.device} ({self._torch.cuda.get_device_name(self.device)})"
        return str(self.device)


def make(device: Any = None) -> TorchBackend:
    return TorchBackend(device)
