"""Where a run is, what a checkpoint records of it, and resuming from the newest intact checkpoint.

The shuffle order is a function of (seed, epoch) and the dropout stream's state is saved, so a resumed run
ends with the weights of one that never stopped.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from xpnet.backends import Backend
from xpnet.core.module import Module
from xpnet.core.optim import Optimizer
from xpnet.distributed.communicator import Communicator
from xpnet.errors import CheckpointError
from xpnet.io.checkpoint import Checkpoints, delete_damaged, load_checkpoint, load_latest_checkpoint, save_checkpoint
from xpnet.training.history import History
from xpnet.training.parallel import dropout_seed
from xpnet.training.saved_state import check_position, check_saved_state, field_of


@dataclass
class Position:
    """Where a run is: `batch` batches of `epoch` done, with that epoch's partial loss sum and time."""

    epoch: int = 1
    batch: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    seconds: float = 0.0


def _cb_state(cb: Any) -> dict[str, Any]:
    return cb.state() if hasattr(cb, "state") else {}


def save_position(checkpoints: Checkpoints, model: Module, optimizer: Optimizer, backend: Backend, at: Position,
                  history: History, callbacks: list[Any], settings: dict[str, Any],
                  ranks_rng: list[Any] | None = None) -> str:
    """Write a checkpoint at `at`; returns its path. `settings` (seed, batch size, clipping) must match on resume.
    ranks_rng: every process's random state, in rank order, for a data-parallel run."""
    rng = {"backend": backend.name, "state": backend.rng_state()}
    if ranks_rng is not None:
        rng["ranks"] = ranks_rng
    state = {"history": history.epochs, "callbacks": [_cb_state(cb) for cb in callbacks], **settings, "rng": rng,
             "loss_sum": at.loss_sum, "seen": at.seen, "seconds": at.seconds,
             "skipped_steps": history.skipped_steps, "stopped_early": history.stopped_early}
    return str(save_checkpoint(checkpoints.directory, model, optimizer, at.epoch, at.batch, state,
                               checkpoints.metadata, checkpoints.keep))


def resume(checkpoints: Checkpoints, model: Module, optimizer: Optimizer, callbacks: list[Any], backend: Backend,
           batches: int, settings: dict[str, Any], epochs: int, communicator: Communicator | None = None
           ) -> tuple[History, Position]:
    """Load the newest intact checkpoint into model, optimizer and callbacks; the history and position it saved.
    With a communicator, process 0 picks the checkpoint and every process loads that one file."""
    rank = 0 if communicator is None else communicator.rank

    def warn(message: str) -> None:
        if rank == 0:
            print(f"xpnet: {message}", file=sys.stderr)

    meta = _load_agreed(checkpoints, model, optimizer, warn, communicator)
    if rank == 0:
        delete_damaged(checkpoints, meta)
    if meta is None:
        return History(), Position()
    state = meta.get("state", {})
    check_saved_state(meta)
    _check_processes(state, communicator, warn)
    for name, value in settings.items():
        saved = state.get(name, None if name == "clip_norm" else value)  # files from before clipping: none
        if saved != value:  # the shuffle order, the steps: resuming would not be exact
            raise CheckpointError(f"{meta['path']}: the run was started with {name} {saved}, not {value}")
    check_position(meta, batches, settings["batch_size"])  # after: another batch size moves the batch range
    _restore_callbacks(meta, callbacks)
    history = History(list(state.get("history", [])), bool(state.get("stopped_early", False)),
                      int(state.get("skipped_steps", 0)))
    epoch, batch = int(meta["epoch"]), int(meta.get("batch", batches))
    mid_epoch = not history.stopped_early and batch < batches
    if mid_epoch:
        with field_of(meta["path"], "state.rng"):
            _restore_rng(backend, _rank_rng(state.get("rng") or {}, rank),
                         dropout_seed(settings["seed"], epoch, rank), warn)
    warn(f"resuming from {meta['path']}")  # said once every field has passed: a refusal is then one line
    if history.stopped_early:
        return history, Position(epochs + 1)  # early stopping had ended the run: nothing left to train
    if not mid_epoch:
        return history, Position(epoch + 1)
    return history, Position(epoch, batch, float(state.get("loss_sum", 0.0)), int(state.get("seen", 0)),
                             float(state.get("seconds", 0.0)))


def _restore_callbacks(meta: dict[str, Any], callbacks: list[Any]) -> None:
    for cb, cb_state in zip(callbacks, meta.get("state", {}).get("callbacks", [])):
        if cb_state and hasattr(cb, "load_state"):
            with field_of(meta["path"], "state.callbacks"):
                cb.load_state(cb_state)


def _restore_rng(backend: Backend, rng: dict[str, Any], reseed: int, warn: Any) -> None:
    if rng.get("backend") == backend.name and rng.get("state") is not None:
        backend.set_rng_state(rng["state"])
    else:  # another backend's generator: dropout masks from here on differ from the original run's
        warn(f"the checkpoint's random state is from backend {rng.get('backend')}; dropout will be reseeded")
        backend.seed(reseed)


def _load_agreed(checkpoints: Checkpoints, model: Module, optimizer: Optimizer, warn: Any,
                 communicator: Communicator | None) -> dict[str, Any] | None:
    """Process 0 finds the newest intact checkpoint and tells the others its path: all resume from one file."""
    if communicator is None:
        return load_latest_checkpoint(checkpoints.directory, model, optimizer, warn)
    meta = load_latest_checkpoint(checkpoints.directory, model, optimizer, warn) if communicator.rank == 0 else None
    path = communicator.broadcast(None if meta is None else meta["path"])
    if communicator.rank == 0 or path is None:
        return meta
    return {**load_checkpoint(path, model, optimizer), "path": path}


def _check_processes(state: dict[str, Any], communicator: Communicator | None, warn: Any) -> None:
    saved, now = int(state.get("processes", 1)), 1 if communicator is None else communicator.size
    if saved != now:  # the same batches and updates, summed in another order: not bit for bit
        warn(f"the checkpoint was written by a run on {saved} process{'es' * (saved != 1)}, this one has {now}: "
             f"it continues the same trajectory to float rounding, not bit for bit")


def _rank_rng(rng: dict[str, Any], rank: int) -> dict[str, Any]:
    """The random state process `rank` saved: its own entry of a data-parallel checkpoint, else the one state
    (process 0's); a process the file has no state for reseeds."""
    ranks = rng.get("ranks")
    if ranks is None:
        return rng if rank == 0 else {}
    return {**rng, "state": ranks[rank]} if rank < len(ranks) else {}
