"""Divergence that stays finite: Adam at lr 1e6 drives the MNIST loss from 2.3 to 8e19 without ever
overflowing, so no NaN check fires and the run would end "successfully" at chance accuracy.

Each reading of the loss (the mean over the steps since the previous reading: a progress window, a
checkpoint, the epoch's end) is compared with the lowest reading so far. The run has diverged when a reading
is EXPLODED times that lowest one and also above the run's first reading (the untrained model's loss).
- 1e4: healthy runs never come near it. Measured window to best-window ratios: MNIST MLP with Adam 1e-3,
  at most 1.4; housing, 1.2; Adam at lr 1e6, 1e13. Four orders of magnitude leave room for noisy,
  spiky-but-recovering runs and still stop an explosion within a window or two.
- above the first reading: a loss that has converged to almost nothing (y = 3x fitted to 1e-10) may wander
  by any factor; while it is still below what the untrained model scored, it has not diverged.
- only when the lowest reading is positive: a ratio means nothing for losses that can be negative.
"""
from __future__ import annotations

import math
from typing import Any

from xpnet.errors import DivergedError

EXPLODED = 1e4


class LossWatch:
    """Tracks the readings of one run's loss; `reading` raises DivergedError when one has exploded."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.lowest = math.inf
        self._last = (0.0, 0)

    def start(self, total: float, seen: int) -> None:
        """Where the loss sums stand as an epoch (or a resumed part of one) begins."""
        self._last = (total, seen)

    def read(self, state: Any, epoch: int, first_batch: int, where: str) -> tuple[float, int]:
        """Read the step state's sums (the one host read of a window) and check them: (loss sum, rows)."""
        total, seen = state.totals(epoch, first_batch)
        self.reading(total, seen, where)
        return total, seen

    def reading(self, total: float, seen: int, where: str) -> None:
        """The sums now: the steps since the previous reading give one mean, checked against the lowest."""
        last_total, last_seen = self._last
        self._last = (total, seen)
        if seen <= last_seen:
            return
        mean = (total - last_total) / (seen - last_seen)
        if not math.isfinite(mean):
            return  # NaN and inf have their own checks, which name the step and the layer
        if self.first is None:
            self.first = mean
        elif self.lowest > 0 and mean > EXPLODED * self.lowest and mean > self.first:
            raise DivergedError(f"training diverged: the mean loss rose to {mean:.4g} by {where}, over "
                                f"{EXPLODED:g} times its lowest reading ({self.lowest:.4g}) and above its first "
                                f"({self.first:.4g}); lower the learning rate")
        self.lowest = min(self.lowest, mean)
