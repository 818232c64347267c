"""Which rows of each global batch a process trains on, and with what weight, so that N processes follow the
trajectory of one.

Every process draws the same seeded order and walks the same global batches (`batch_size` rows, the last
one possibly fewer). Of a global batch of b rows, process r of N takes rows [r*b//N, (r+1)*b//N): the parts
differ by at most one row, whether or not N divides b. Its loss is the mean over its own rows, so its
gradient is scaled by its share of the batch, (rows it took) / b: the sum over processes is then exactly the
gradient of the mean loss over the whole batch, as one process computes it. A global batch of fewer rows
than processes (only a partial last batch can be: fit refuses batch_size < N) leaves some processes without
a row; each of those runs the batch's last row with weight 0, so it contributes nothing yet still joins the
step's collective.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from xpnet.backends import Backend
from xpnet.core.integers import default_int_name


@dataclass(frozen=True)
class Part:
    """This process's rows [start, stop) of a global batch of `rows` rows, and the weight of its mean loss."""

    start: int
    stop: int
    rows: int
    weight: float


def part_of(rows: int, rank: int, size: int) -> Part:
    """Process `rank` of `size`'s part of a global batch of `rows` rows."""
    start, stop = rows * rank // size, rows * (rank + 1) // size
    if start == stop:  # more processes than rows: a stand-in row that weighs nothing
        return Part(rows - 1, rows, rows, 0.0)
    return Part(start, stop, rows, (stop - start) / rows)


def shard(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows [start, stop) of n that process `rank` of `size` holds (evaluation splits a set this way)."""
    return n * rank // size, n * (rank + 1) // size


def local_batches(backend: Backend, x: Any, y: Any, batch_size: int, order: Any, first_batch: int, rank: int,
                  size: int) -> Iterator[tuple[Any, Any, Part]]:
    """(x rows, y rows, part) of this process for every global batch from `first_batch` on, in `order` (a
    host permutation) or storage order if None."""
    xp, n = backend.xp, x.shape[0]
    index = None if order is None else backend.asarray(order, default_int_name(xp, backend.device))
    for begin in range(first_batch * batch_size, n, batch_size):
        part = part_of(min(batch_size, n - begin), rank, size)
        lo, hi = begin + part.start, begin + part.stop
        if index is None:
            yield x[lo:hi, ...], y[lo:hi, ...], part
        else:
            rows = index[lo:hi]
            yield xp.take(x, rows, axis=0), xp.take(y, rows, axis=0), part
