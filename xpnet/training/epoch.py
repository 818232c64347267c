"""One pass over the data from a position: progress, step checkpoints, interrupts, and the epoch's mean loss.
How each step runs is the runner's business (step.py, captured.py); this loop only counts and reports."""
from __future__ import annotations

import math
import time
from typing import Any, Callable

from tqdm.auto import tqdm

from xpnet.backends import Backend
from xpnet.data.batches import num_batches
from xpnet.errors import DivergedError
from xpnet.training.checkpointing import Position

PROGRESS_EVERY = 20  # steps between progress-bar loss updates: each one reads a value back from the device


def run_epoch(runner: Any, backend: Backend, start: Position, order: Any, batch_size: int, desc: str,
              progress: bool = False, checkpoint: Callable[[Position], Any] | None = None,
              every: int | None = None, interrupted: Callable[[], bool] = lambda: False) -> Position:
    """Train from `start` to the epoch's end, or to the first step after an interrupt; returns where it ended."""
    n, epoch, state = runner.x.shape[0], start.epoch, runner.state
    state.reset(start.loss_sum, start.seen)
    bar = tqdm(total=n, initial=start.seen, unit="sample", unit_scale=True, desc=desc, disable=not progress,
               dynamic_ncols=True, leave=False)
    batch, clock, last = start.batch, time.perf_counter(), num_batches(n, batch_size)
    for step, rows in enumerate(runner.steps(epoch, order, start.batch)):
        batch += 1
        if progress:
            bar.update(rows)
            if step % PROGRESS_EVERY == 0:  # the one read-back per window
                total, seen = state.totals(epoch, start.batch)
                if seen:
                    bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
        if interrupted() or (every and batch % every == 0):
            total, seen = state.totals(epoch, start.batch)
            now = Position(epoch, batch, total, seen, start.seconds + time.perf_counter() - clock)
            if interrupted():
                bar.close()
                return now
            if batch < last and checkpoint is not None:  # the epoch-end checkpoint covers the last
                checkpoint(now)
    total, seen = state.totals(epoch, start.batch)  # waits for the device, so the clock below is honest
    backend.synchronize()
    seconds = start.seconds + time.perf_counter() - clock
    bar.close()
    mean = total / max(seen, 1)
    if not math.isfinite(mean) or seen == 0:
        raise DivergedError(f"training diverged: the mean loss of {desc} is {mean}; lower the learning rate")
    return Position(epoch, batch, total, seen, seconds)
