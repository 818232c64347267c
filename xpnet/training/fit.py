"""fit(): the training loop, read top to bottom as the data flow.

    data (host, once) -> device arrays -> model.forward -> loss.forward
                                              ^                  |
                   optimizer.step  <-  model.backward  <-  loss.backward

Around it: validation each epoch, callbacks, checkpoints (each epoch and, optionally, every N steps) from
which a killed run resumes bit-identically, a clean stop on Ctrl-C or SIGTERM, and a guard against NaN.
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

from xpnet.backends import Backend, backend_for
from xpnet.core.arrays import namespace
from xpnet.core.losses import MAE, MSE, Loss, SoftmaxCrossEntropy, check_label_range
from xpnet.core.metrics import accuracy, mae, mse, r2
from xpnet.core.module import Module
from xpnet.core.optim import Optimizer
from xpnet.data.batches import epoch_order, num_batches
from xpnet.data.validate import check_inputs, check_targets
from xpnet.errors import CheckpointError, DivergedError, TrainingInterrupted
from xpnet.training.interrupts import interrupt_requests
from xpnet.training.step import make_stepper, train_step
from xpnet.io.checkpoint import Checkpoints, checkpoint_files, load_latest_checkpoint, save_checkpoint

PROGRESS_EVERY = 20  # steps between progress-bar loss updates: each one reads a value back from the device
ON_NAN = ("stop", "skip")


@dataclass
class History:
    """One dict of metrics per finished epoch."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    skipped_steps: int = 0  # batches dropped by on_nan="skip"

    def __getitem__(self, key: str) -> list[Any]:
        return [e[key] for e in self.epochs if key in e]

    @property
    def last(self) -> dict[str, Any]:
        return self.epochs[-1] if self.epochs else {}


def predict(model: Module, x: Any, batch_size: int = 1000) -> Any:
    """The model's outputs for every row of x, in eval mode (no dropout), in batches."""
    was_training = model.training
    model.eval()
    try:
        n = x.shape[0]
        parts = [model.forward(x[i:min(i + batch_size, n), ...]) for i in range(0, n, batch_size)]
    finally:
        model.train(was_training)
    return parts[0] if len(parts) == 1 else namespace(parts[0]).concat(parts, axis=0)


def evaluate(model: Module, loss: Loss, x: Any, y: Any, batch_size: int = 1000) -> dict[str, float]:
    """Loss plus accuracy (classification) or MSE/MAE/R^2 (regression) over the whole set."""
    out = predict(model, x, batch_size)
    result = {"loss": float(loss.forward(out, y))}
    if isinstance(loss, SoftmaxCrossEntropy):
        result["accuracy"] = accuracy(out, y)
    elif isinstance(loss, (MSE, MAE)):
        result.update(mse=mse(out, y), mae=mae(out, y), r2=r2(out, y))
    return result


def _prepare(backend: Backend, model: Module, loss: Loss, data: tuple[Any, Any], what: str) -> tuple[Any, Any]:
    x, y = data
    x = check_inputs(backend, x, model.dtype or "float32", what)
    y = check_targets(backend, y, x.shape[0], what)
    if isinstance(loss, SoftmaxCrossEntropy) and backend.xp.isdtype(y.dtype, "integral"):
        classes = predict(model, x[:1, ...]).shape[1]  # also checks the input width, with the layer's message
        check_label_range(backend.xp, y, classes)
    return x, y


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class _Position:
    """Where a run is: `batch` batches of `epoch` done, with that epoch's partial loss sum and time."""

    epoch: int = 1
    batch: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    seconds: float = 0.0


def fit(model: Module, loss: Loss, optimizer: Optimizer, train_data: tuple[Any, Any], *, epochs: int = 1,
        batch_size: int = 32, validation: tuple[Any, Any] | None = None, seed: int = 0, shuffle: bool = True,
        callbacks: Iterable[Any] = (), progress: bool = False, checkpoints: Checkpoints | None = None,
        on_nan: str = "stop", validation_prefix: str = "val", eval_batch_size: int = 1000,
        graph: bool | None = None) -> History:
    """Train `model` on (x, y) arrays of any backend; the model moves to the arrays' backend.

    x: (n, features) floating (cast to the model's dtype); y: (n,) integer labels, (n, classes)
    probabilities, or (n, outputs) regression targets. Returns the per-epoch History.
    graph: run each step as a captured device graph (None: wherever the backend supports capture, i.e.
    CuPy; False: eager). On a GPU the loss and NaN checks stay on the device and are read once per
    progress window; with on_nan='skip' a dropped step still counts in the schedule there.
    """
    _positive("epochs", epochs)
    _positive("batch_size", batch_size)
    if on_nan not in ON_NAN:
        raise ValueError(f"on_nan must be one of {ON_NAN}, got {on_nan!r}")
    backend = backend_for(train_data[0])
    model.to(backend)
    optimizer.to(backend, model.dtype)
    x, y = _prepare(backend, model, loss, train_data, "training data")
    val = _prepare(backend, model, loss, validation, "validation data") if validation is not None else None
    callbacks = list(callbacks)
    batches = num_batches(x.shape[0], batch_size)

    history, pos = History(), _Position()
    if checkpoints is not None and checkpoints.resume:
        history, pos = _resume(checkpoints, model, optimizer, callbacks, backend, batches, seed, batch_size, epochs)
    elif checkpoints is not None and checkpoint_files(checkpoints.directory):
        raise CheckpointError(f"{checkpoints.directory} already holds checkpoints of another run: resume it, or "
                              f"choose an empty directory (keep would otherwise delete them)")

    def checkpoint(at: _Position) -> str | None:
        if checkpoints is None:
            return None
        state = {"history": history.epochs, "callbacks": [_cb_state(cb) for cb in callbacks], "seed": seed,
                 "batch_size": batch_size, "rng": {"backend": backend.name, "state": backend.rng_state()},
                 "loss_sum": at.loss_sum, "seen": at.seen, "seconds": at.seconds,
                 "skipped_steps": history.skipped_steps, "stopped_early": history.stopped_early}
        return str(save_checkpoint(checkpoints.directory, model, optimizer, at.epoch, at.batch, state,
                                   checkpoints.metadata, checkpoints.keep))

    model.train()
    mode = step_mode(backend, graph)
    with _labels_checked(loss), interrupt_requests() as interrupted:
        for epoch in range(pos.epoch, epochs + 1):
            start = pos if epoch == pos.epoch else _Position(epoch)
            if start.batch == 0:
                backend.seed(seed * 1_000_003 + epoch)  # dropout stream per epoch; mid-epoch resumes restore it
            run = _EpochRun(backend, model, loss, optimizer, x, y, batch_size, start, on_nan, history,
                            checkpoint if checkpoints is not None and checkpoints.every_steps else None,
                            checkpoints.every_steps if checkpoints is not None else None, interrupted, mode)
            end = run.run(epoch_order(x.shape[0], seed, epoch, shuffle), progress, f"epoch {epoch}/{epochs}")
            if end.batch < batches:  # stopped by Ctrl-C / SIGTERM after a whole step
                saved = checkpoint(end)
                where = f"epoch {epoch}, batch {end.batch}/{batches}"
                raise TrainingInterrupted(f"interrupted at {where}; " + (
                    f"checkpoint saved to {saved} (continue with --resume, or Checkpoints(resume=True))" if saved
                    else "nothing saved: no checkpoint directory was set"))
            logs: dict[str, Any] = {"epoch": epoch, "train_loss": end.loss_sum / end.seen,
                                    "samples_per_second": x.shape[0] / end.seconds, "seconds": end.seconds}
            if val is not None:
                metrics = evaluate(model, loss, val[0], val[1], eval_batch_size)
                logs.update({f"{validation_prefix}_{k}": v for k, v in metrics.items()})
            history.epochs.append(logs)
            stop = [bool(cb.on_epoch_end(epoch, logs)) for cb in callbacks]
            history.stopped_early = any(stop)
            saved = checkpoint(_Position(epoch, batches))
            if history.stopped_early:
                break
            if interrupted() and epoch < epochs:  # asked during the last batch or the evaluation
                raise TrainingInterrupted(f"interrupted after epoch {epoch}; " + (
                    f"checkpoint saved to {saved} (continue with --resume, or Checkpoints(resume=True))" if saved
                    else "nothing saved: no checkpoint directory was set"))
    return history


class _EpochRun:
    """One pass over the data from `start`, with progress, NaN handling, step checkpoints and interrupts.
    How each step runs and reports its loss is the stepper's business (steppers.py)."""

    def __init__(self, backend: Backend, model: Module, loss: Loss, optimizer: Optimizer, x: Any, y: Any,
                 batch_size: int, start: _Position, on_nan: str, history: History, checkpoint: Any,
                 every: int | None, interrupted: Any, mode: str = "checked") -> None:
        self.backend, self.x, self.batch_size, self.start = backend, x, batch_size, start
        self.checkpoint, self.every, self.interrupted = checkpoint, every, interrupted
        self.stepper = make_stepper(mode, backend, model, loss, optimizer, x, y, batch_size, on_nan, history,
                                    start.loss_sum, start.seen)

    def run(self, order: Any, progress: bool, desc: str) -> _Position:
        pos, stepper = self.start, self.stepper
        bar = tqdm(total=self.x.shape[0], initial=pos.seen, unit="sample", unit_scale=True, desc=desc,
                   disable=not progress, dynamic_ncols=True, leave=False)
        batch, clock = pos.batch, time.perf_counter()
        last = num_batches(self.x.shape[0], self.batch_size)
        for step, rows in enumerate(stepper.batches(order, pos.batch)):
            batch += 1
            stepper.step(pos.epoch, batch)
            if progress:
                bar.update(rows)
                if step % PROGRESS_EVERY == 0:  # the one read-back per window
                    total, seen = stepper.totals(pos.epoch)
                    if seen:
                        bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
            if self.interrupted() or (self.every and batch % self.every == 0):
                total, seen = stepper.totals(pos.epoch)
                now = _Position(pos.epoch, batch, total, seen, pos.seconds + time.perf_counter() - clock)
                if self.interrupted():
                    bar.close()
                    return now
                if batch < last:  # the epoch-end checkpoint covers the last
                    self.checkpoint(now)
        total, seen = stepper.totals(pos.epoch)  # waits for the device, so the clock below is honest
        self.backend.synchronize()
        seconds = pos.seconds + time.perf_counter() - clock
        bar.close()
        mean = total / max(seen, 1)
        if not math.isfinite(mean) or seen == 0:
            raise DivergedError(f"training diverged: the mean loss of {desc} is {mean}; lower the learning rate")
        return _Position(pos.epoch, batch, total, seen, seconds)


def train_epoch(backend: Backend, model: Module, loss: Loss, optimizer: Optimizer, x: Any, y: Any,
                batch_size: int, order: Any, progress: bool = False, desc: str = "", graph: bool = False
                ) -> tuple[float, float]:
    """One plain pass over the data (what fit runs each epoch, without checkpoints): (mean loss, seconds).
    graph=True runs the step as a captured graph (see fit); its graphs are kept for the next call."""
    with _labels_checked(loss):
        end = _EpochRun(backend, model, loss, optimizer, x, y, batch_size, _Position(), "stop", History(), None, None,
                        lambda: False, step_mode(backend, graph)).run(order, progress, desc or "epoch")
    return end.loss_sum / end.seen, end.seconds


def step_mode(backend: Backend, graph: bool | None) -> str:
    """Which stepper: a captured graph where asked (None: wherever the backend can capture), else the
    windowed device-side loop where reading a value waits for the device, else per-step checks."""
    if graph is None:
        graph = backend.supports_capture
    if graph:
        return "graph"
    return "windowed" if backend.sync_costly else "checked"


@contextmanager
def _labels_checked(loss: Loss) -> Iterator[None]:
    """Turn off a loss's per-batch label check for the duration (fit has checked the whole set)."""
    before = getattr(loss, "check_labels", None)
    if before is not None:
        loss.check_labels = False
    try:
        yield
    finally:
        if before is not None:
            loss.check_labels = before


def _cb_state(cb: Any) -> dict[str, Any]:
    return cb.state() if hasattr(cb, "state") else {}


def _resume(checkpoints: Checkpoints, model: Module, optimizer: Optimizer, callbacks: list[Any], backend: Backend,
            batches: int, seed: int, batch_size: int, epochs: int) -> tuple[History, _Position]:
    def warn(message: str) -> None:
        print(f"xpnet: {message}", file=sys.stderr)

    meta = load_latest_checkpoint(checkpoints.directory, model, optimizer, warn)
    if meta is None:
        return History(), _Position()
    warn(f"resuming from {meta['path']}")
    state = meta.get("state", {})
    for name, value in (("seed", seed), ("batch_size", batch_size)):
        if state.get(name, value) != value:  # the shuffle order depends on both: resuming would not be exact
            raise CheckpointError(f"{meta['path']}: the run was started with {name} {state[name]}, not {value}")
    for cb, cb_state in zip(callbacks, state.get("callbacks", [])):
        if cb_state and hasattr(cb, "load_state"):
            cb.load_state(cb_state)
    history = History(list(state.get("history", [])), bool(state.get("stopped_early", False)),
                      int(state.get("skipped_steps", 0)))
    epoch, batch = int(meta["epoch"]), int(meta.get("batch", batches))
    if history.stopped_early:
        return history, _Position(epochs + 1)  # early stopping had ended the run: nothing left to train
    if batch >= batches:
        return history, _Position(epoch + 1)
    rng = state.get("rng") or {}
    if rng.get("backend") == backend.name and rng.get("state") is not None:
        backend.set_rng_state(rng["state"])
    else:  # another backend's generator: dropout masks from here on differ from the original run's
        warn(f"the checkpoint's random state is from backend {rng.get('backend')}; dropout will be reseeded")
        backend.seed(seed * 1_000_003 + epoch)
    return history, _Position(epoch, batch, float(state.get("loss_sum", 0.0)), int(state.get("seen", 0)),
                              float(state.get("seconds", 0.0)))


__all__ = ["History", "evaluate", "fit", "predict", "train_epoch", "train_step"]
