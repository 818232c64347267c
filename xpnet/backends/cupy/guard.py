"""The device guard's per-step bookkeeping (DeviceState.watch, xpnet/training/state.py) as one CUDA thread
(guard.cu) instead of the reference path's 17 tiny array operations (counted on tests/fake_cupy): in eager
GPU training each of those is a launch paid from Python.

Same contract as DeviceState.watch's Array API path: sums = [loss_sum, seen, skipped, died_at, steps]
(float64), alive a 0-d bool; returns the step's 0-d bool gate. Importable without CuPy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from xpnet.backends.cupy.launch import NAMESPACE, cuda_source, import_cupy, kernel, suffix
from xpnet.backends.ops import GUARD_WATCH, register

CUDA_SOURCES: dict[str, str] = {"guard": cuda_source("guard.cu")}


def guard_watch(sums: Any, alive: Any, value: Any, rows: int, stop: bool) -> Any:
    """Record one step's 0-d loss in `sums`/`alive` on the device; returns the 0-d boolean gate."""
    cupy = import_cupy()
    if sums.dtype != np.float64 or sums.shape != (5,) or alive.dtype != np.bool_ or value.shape != ():
        raise TypeError("guard_watch: sums must be float64 (5,), alive a 0-d bool and value a 0-d loss")
    with sums.device:
        gate = cupy.empty((), dtype=cupy.bool_)
        kernel(CUDA_SOURCES["guard"], f"xpnet_guard_watch_{suffix(value.dtype)}")(
            (1,), (1,), (value, sums, alive, gate, np.float64(rows), np.int32(bool(stop))))
    return gate


def register_all() -> None:
    register(NAMESPACE, GUARD_WATCH, guard_watch)
