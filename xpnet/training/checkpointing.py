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
from xpnet.errors import CheckpointError
from xpnet.io.checkpoint import Checkpoints, load_latest_checkpoint, save_checkpoint
from xpnet.training.history import History


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
                  history: History, callbacks: list[Any], settings: dict[str, Any]) -> str:
    """Write a checkpoint at `at`; returns its path. `settings` (seed, batch size, clipping) must match on resume."""
    state = {"history": history.epochs, "callbacks": [_cb_state(cb) for cb in callbacks], **settings,
             "rng": {"backend": backend.name, "state": backend.rng_state()},
             "loss_sum": at.loss_sum, "seen": at.seen, "seconds": at.seconds,
             "skipped_steps": history.skipped_steps, "stopped_early": history.stopped_early}
    return str(save_checkpoint(checkpoints.directory, model, optimizer, at.epoch, at.batch, state,
                               checkpoints.metadata, checkpoints.keep))


def resume(checkpoints: Checkpoints, model: Module, optimizer: Optimizer, callbacks: list[Any], backend: Backend,
           batches: int, settings: dict[str, Any], epochs: int) -> tuple[History, Position]:
    """Load the newest intact checkpoint into model, optimizer and callbacks; the history and position it saved."""
    def warn(message: str) -> None:
        print(f"xpnet: {message}", file=sys.stderr)

    meta = load_latest_checkpoint(checkpoints.directory, model, optimizer, warn)
    if meta is None:
        return History(), Position()
    warn(f"resuming from {meta['path']}")
    state = meta.get("state", {})
    for name, value in settings.items():
        saved = state.get(name, None if name == "clip_norm" else value)  # files from before clipping: none
        if saved != value:  # the shuffle order, the steps: resuming would not be exact
            raise CheckpointError(f"{meta['path']}: the run was started with {name} {saved}, not {value}")
    for cb, cb_state in zip(callbacks, state.get("callbacks", [])):
        if cb_state and hasattr(cb, "load_state"):
            cb.load_state(cb_state)
    history = History(list(state.get("history", [])), bool(state.get("stopped_early", False)),
                      int(state.get("skipped_steps", 0)))
    epoch, batch = int(meta["epoch"]), int(meta.get("batch", batches))
    if history.stopped_early:
        return history, Position(epochs + 1)  # early stopping had ended the run: nothing left to train
    if batch >= batches:
        return history, Position(epoch + 1)
    _restore_rng(backend, state.get("rng") or {}, settings["seed"], epoch, warn)
    return history, Position(epoch, batch, float(state.get("loss_sum", 0.0)), int(state.get("seen", 0)),
                             float(state.get("seconds", 0.0)))


def _restore_rng(backend: Backend, rng: dict[str, Any], seed: int, epoch: int, warn: Any) -> None:
    if rng.get("backend") == backend.name and rng.get("state") is not None:
        backend.set_rng_state(rng["state"])
    else:  # another backend's generator: dropout masks from here on differ from the original run's
        warn(f"the checkpoint's random state is from backend {rng.get('backend')}; dropout will be reseeded")
        backend.seed(seed * 1_000_003 + epoch)
