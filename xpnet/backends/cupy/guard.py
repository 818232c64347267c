"""The device guard's per-step bookkeeping (xpnet/device_guard.py) as one CUDA thread instead of the
reference path's 17 tiny array operations (counted on tests/fake_cupy): in eager GPU training each of those is a launch paid from Python.

Same contract as DeviceGuard.watch's Array API path: sums = [loss_sum, seen, skipped, died_at, steps]
(float64), alive a 0-d bool; returns the step's 0-d bool gate. Importable without CuPy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from xpnet.backends.cupy.launch import kernel, suffix

_GUARD = r"""
template <typename T>
__device__ void watch(const T* value, double* sums, bool* alive, bool* gate, double rows, int stop) {
    double v = (double)value[0];
    bool ok = isfinite(v);
    bool g = stop ? (alive[0] && ok) : ok;
    double here = sums[4] + 1.0;
    if (stop && alive[0] && !ok) sums[3] = here;  // the first non-finite step, counted from the start
    sums[4] = here;
    if (g) { sums[0] += v * rows; sums[1] += rows; } else { sums[2] += 1.0; }
    if (stop) alive[0] = g;  // sticky: once dead, every later update in the window is dropped too
    gate[0] = g;
}
extern "C" __global__ void xpnet_guard_watch_f32(const float* value, double* sums, bool* alive, bool* gate,
                                                 double rows, int stop) { watch(value, sums, alive, gate, rows, stop); }
extern "C" __global__ void xpnet_guard_watch_f64(const double* value, double* sums, bool* alive, bool* gate,
                                                 double rows, int stop) { watch(value, sums, alive, gate, rows, stop); }
"""

CUDA_SOURCES: dict[str, str] = {"guard": _GUARD}


def guard_watch(sums: Any, alive: Any, value: Any, rows: int, stop: bool) -> Any:
    """Record one step's 0-d loss in `sums`/`alive` on the device; returns the 0-d boolean gate."""
    import cupy

    if sums.dtype != np.float64 or sums.shape != (5,) or alive.dtype != np.bool_ or value.shape != ():
        raise TypeError("guard_watch: sums must be float64 (5,), alive a 0-d bool and value a 0-d loss")
    with sums.device:
        gate = cupy.empty((), dtype=cupy.bool_)
        kernel(_GUARD, f"xpnet_guard_watch_{suffix(value.dtype)}")(
            (1,), (1,), (value, sums, alive, gate, np.float64(rows), np.int32(bool(stop))))
    return gate


def register_all() -> None:
    from xpnet.backends.ops import register

    register("array_api_compat.cupy", "guard_watch", guard_watch)
