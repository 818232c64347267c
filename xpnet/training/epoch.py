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
from xpnet.training.divergence import LossWatch

PROGRESS_EVERY = 20  # steps between progress-bar loss updates: each one reads a value back from the device
# An epoch shorter than this draws no bar: thousands of tiny epochs (train linear: 2,000 of 5 samples) would
# otherwise flash a bar each, which says nothing the epoch lines do not.
BAR_DELAY_S = 0.3


def run_epoch(runner: Any, backend: Backend, start: Position, order: Any, batch_size: int, desc: str,
              progress: bool = False, checkpoint: Callable[[Position], Any] | None = None,
              every: int | None = None, interrupted: Callable[[], bool] = lambda: False,
              watch: LossWatch | None = None) -> Position:
    """Train from `start` to the epoch's end, or to the first step after an interrupt; returns where it ended.
    `watch` (one per run) sees every reading of the loss and raises DivergedError when one has exploded."""
    n, epoch, state = runner.x.shape[0], start.epoch, runner.state
    watch = watch or LossWatch()
    watch.start(start.loss_sum, start.seen)
    every_window = progress or _reads_every_window(runner, backend)
    state.reset(start.loss_sum, start.seen)
    bar = tqdm(total=n, initial=start.seen, unit="sample", unit_scale=True, desc=desc, disable=not progress,
               dynamic_ncols=True, leave=False, delay=BAR_DELAY_S)
    batch, clock, last = start.batch, time.perf_counter(), num_batches(n, batch_size)
    for step, rows in enumerate(runner.steps(epoch, order, start.batch)):
        batch += 1
        if progress:
            bar.update(rows)
        reading = None
        # The one read-back per window; after the first step also on a GPU, as the watch's baseline.
        if step == 0 or (step % PROGRESS_EVERY == 0 and every_window):
            reading = total, seen = watch.read(state, epoch, start.batch, f"{desc}, batch {batch}")
            if progress and seen:
                bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
        stop = interrupted()
        if stop or (every and batch % every == 0):
            # before a checkpoint (once per step: each read waits for the device)
            total, seen = reading or watch.read(state, epoch, start.batch, f"{desc}, batch {batch}")
            now = Position(epoch, batch, total, seen, start.seconds + time.perf_counter() - clock)
            if stop:
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
    watch.reading(total, seen, f"the end of {desc}")
    return Position(epoch, batch, total, seen, seconds)


def _reads_every_window(runner: Any, backend: Backend) -> bool:
    """Whether the loss is read every window even without a progress bar: on a CPU, where a read is free (the
    divergence watch then acts within a window), and when processes train together, which must read at the same
    steps whether or not they show a bar (a reading may raise)."""
    return not backend.sync_costly or getattr(runner.step, "reducer", None) is not None
