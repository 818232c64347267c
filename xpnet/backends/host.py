"""The host: the one seeded generator that initial weights and shuffles are drawn from.

The Array API has no random numbers, so every random draw that must be identical across backends is
made here, in NumPy on the host, and copied to the device.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def host_rng(seed: int | Sequence[int] | None = None) -> np.random.Generator:
    """A NumPy generator; `seed` may be a sequence such as (seed, epoch) for independent streams."""
    return np.random.default_rng(seed)


def host_namespace() -> Any:
    """The Array API namespace of host arrays (NumPy through array-api-compat)."""
    import array_api_compat.numpy as xp

    return xp
