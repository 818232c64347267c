"""Backend: which array library computes, on which device, and how data crosses to and from the host."""
from __future__ import annotations

from typing import Any

import numpy as np


class Backend:
    """One array library on one device. Subclasses override only what differs for their library.

    The maths in `xpnet.core` never sees this class: it works through `xp`, the library's Array API
    namespace. Only the edges (moving data in and out, timing, device-side random numbers) use it.
    """

    name: str = "generic"
    # True where reading a value back waits for the device (a GPU): the training loop then keeps its loss
    # sums and NaN checks on the device and reads them once per progress window instead of every step.
    sync_costly: bool = False
    # True where `capture` records a real graph; elsewhere it returns the step to run eagerly each time.
    supports_capture: bool = False

    def __init__(self, xp: Any, device: Any, versions: dict[str, str] | None = None) -> None:
        self.xp = xp
        self.device = device
        self.versions = dict(versions or {})
        # Per-step randomness (dropout). Seeded from the host so a run is reproducible per backend.
        self._host_rng = np.random.default_rng(0)

    # -- data across the host boundary -------------------------------------------------------
    def dtype(self, name: str) -> Any:
        """The library's dtype object for a name such as 'float32'."""
        try:
            return getattr(self.xp, name)
        except AttributeError:
            raise TypeError(f"backend {self.name!r} has no dtype {name!r}") from None

    def asarray(self, host: Any, dtype: str | None = None) -> Any:
        """A copy of a host (NumPy) array on this backend's device; never shares memory with `host`."""
        dt = None if dtype is None else self.dtype(dtype)
        return self.xp.asarray(np.asarray(host, order="C"), dtype=dt, device=self.device, copy=True)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy an array of this backend to a NumPy array on the host."""
        return np.from_dlpack(x)

    # -- timing and randomness ----------------------------------------------------------------
    def synchronize(self) -> None:
        """Block until queued device work is done (a no-op on the CPU); call before reading a clock."""

    def seed(self, seed: int) -> None:
        """Seed the generator behind `uniform` (dropout masks)."""
        self._host_rng = np.random.default_rng(seed)

    def rng_state(self) -> Any:
        """The generator's state as JSON-able data (for checkpoints); None if this backend cannot say."""
        return self._host_rng.bit_generator.state

    def set_rng_state(self, state: Any) -> None:
        """Restore a state from `rng_state`."""
        self._host_rng.bit_generator.state = state

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """U[0, 1) samples of `shape` on the device. Default: drawn on the host and copied over."""
        return self.xp.asarray(self._host_rng.random(shape, dtype=np.float64), dtype=dtype, device=self.device)

    # -- graphs -------------------------------------------------------------------------------
    def capture(self, step: Any) -> Any:
        """A callable replaying `step` (a function of no arguments over fixed buffers). Here: `step`
        itself, run eagerly each time; a GPU backend records it once as a graph and replays that."""
        return step

    # -- identity -----------------------------------------------------------------------------
    def same_as(self, other: "Backend") -> bool:
        return self.name == other.name and str(self.device) == str(other.device)

    def describe_device(self) -> str:
        return str(self.device)

    def __repr__(self) -> str:
        return f"<Backend {self.name} on {self.describe_device()}>"

