"""Mini-batches: the shuffle order is drawn on the host (same on every backend), the rows are taken on
the device, so the dataset crosses to the device once per run and one index array once per epoch."""
from __future__ import annotations

from typing import Any

from xpnet.backends import host_rng


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> Any:
    """The host permutation of 0..n-1 for `epoch`; a pure function of (seed, epoch), so resuming is exact."""
    rng = host_rng((seed, epoch))
    return rng.permutation(n) if shuffle else None


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)
