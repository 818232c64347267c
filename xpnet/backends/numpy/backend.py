"""NumPy: the CPU reference backend, always available."""
from __future__ import annotations

import array_api_compat
import array_api_compat.numpy as xp_numpy
import numpy as np

from xpnet.backends.base import Backend


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self) -> None:
        versions = {"numpy": np.__version__, "array_api_compat": array_api_compat.__version__}
        super().__init__(xp_numpy, "cpu", versions)

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)


def make() -> NumpyBackend:
    return NumpyBackend()
