"""What fit does differently on a communicator of several processes, besides the step's one allreduce:
the gradient reducer a run shares, evaluation split across the processes, and per-process dropout seeds."""
from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np

from xpnet.backends import Backend
from xpnet.core.module import Module
from xpnet.core.optim import Optimizer
from xpnet.distributed.communicator import Communicator
from xpnet.distributed.reducer import GradientReducer
from xpnet.distributed.shard import shard

# Dropout seeds of process r are offset by r times this, so no two processes draw the same masks; process 0
# keeps the single-process seed.
RANK_SEED_STRIDE = 1_000_000_007

# One reducer per optimizer and communicator, so repeated train_epoch calls reuse the buffer (and the graphs
# captured over its address).
_reducers: "weakref.WeakKeyDictionary[Optimizer, tuple[Communicator, GradientReducer]]" = weakref.WeakKeyDictionary()


def reducer_for(communicator: Communicator | None, optimizer: Optimizer, backend: Backend,
                read_every: int) -> GradientReducer | None:
    """The reducer of `optimizer`'s gradients over `communicator` (None without one)."""
    if communicator is None:
        return None
    read_every = read_every if backend.sync_costly else 1  # a read is free on a CPU: agree after every step
    cached = _reducers.get(optimizer)
    if cached is not None and cached[0] is communicator and cached[1].read_every == read_every:
        return cached[1]
    reducer = GradientReducer(communicator, optimizer.params, read_every)
    _reducers[optimizer] = (communicator, reducer)
    return reducer


def dropout_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of the dropout stream for `epoch` on process `rank`."""
    return seed * 1_000_003 + epoch + rank * RANK_SEED_STRIDE


def predict_split(predict: Callable[[Module, Any, int], Any], model: Module, x: Any, batch_size: int,
                  communicator: Communicator) -> Any:
    """The model's outputs for every row of x, each process computing its share of the rows and all of them
    gathering the rest: every process ends with the same outputs, hence the same metrics."""
    n, size = x.shape[0], communicator.size
    if n < size:  # too few rows to share
        return predict(model, x, batch_size)
    lo, hi = shard(n, communicator.rank, size)
    backend = model.backend
    mine = backend.to_numpy(predict(model, x[lo:hi, ...], batch_size))
    return backend.asarray(np.concatenate(communicator.allgather(mine), axis=0))
