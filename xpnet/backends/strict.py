"""array-api-strict: the standard and nothing else. Slow; it exists to prove the code is portable."""
from __future__ import annotations

from typing import Any

from xpnet.backends.base import Backend
from xpnet.errors import BackendUnavailable


class StrictBackend(Backend):
    name = "strict"

    def __init__(self, device: Any = None) -> None:
        try:
            import array_api_strict as xs
        except ImportError:
            raise BackendUnavailable("strict: array-api-strict is not installed (pip install array-api-strict)") from None
        super().__init__(xs, device if device is not None else xs.Device("CPU_DEVICE"),
                         {"array_api_strict": xs.__version__})

    def describe_device(self) -> str:
        # Device('CPU_DEVICE') -> 'cpu', as the other backends name theirs; the test devices keep their names
        name = str(getattr(self.device, "_device", self.device))
        return "cpu" if name == "CPU_DEVICE" else name


def make(device: Any = None) -> StrictBackend:
    return StrictBackend(device)
