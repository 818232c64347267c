"""Mini-batches: the shuffle order is drawn on the host (same on every backend), the rows are taken on
the device, so the dataset crosses to the device once per run and one index array once per epoch."""
from __future__ import annotations

from typing import Any, Iterator

from xpnet.backends import Backend, host_rng
from xpnet.core.integers import default_int_name


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> Any:
    """The host permutation of 0..n-1 for `epoch`; a pure function of (seed, epoch), so resuming is exact."""
    rng = host_rng((seed, epoch))
    return rng.permutation(n) if shuffle else None


def iterate_batches(backend: Backend, x: Any, y: Any, batch_size: int, order: Any = None, first_batch: int = 0
                    ) -> Iterator[tuple[Any, Any]]:
    """(x_batch, y_batch) on the device, in `order` (host permutation) or in storage order if None,
    starting at batch `first_batch` (a resumed epoch skips the batches it already trained on)."""
    xp, n = backend.xp, x.shape[0]
    index = None if order is None else backend.asarray(order, default_int_name(xp, backend.device))
    for start in range(first_batch * batch_size, n, batch_size):
        stop = min(start + batch_size, n)
        if index is None:
            yield x[start:stop, ...], y[start:stop, ...]
        else:
            rows = index[start:stop]
            yield xp.take(x, rows, axis=0), xp.take(y, rows, axis=0)


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)
