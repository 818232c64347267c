"""fit(): the training loop, read top to bottom as the data flow.

    data (host, once) -> device arrays -> model.forward -> loss.forward
                                              ^                  |
                   optimizer.step  <-  model.backward  <-  loss.backward
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

from xpnet.backends import Backend, backend_for
from xpnet.core.arrays import namespace
from xpnet.core.losses import MAE, MSE, Loss, SoftmaxCrossEntropy, check_label_range
from xpnet.core.metrics import accuracy, mae, mse, r2
from xpnet.core.module import Module
from xpnet.core.optim import Optimizer
from xpnet.data.batches import epoch_order, iterate_batches, num_batches
from xpnet.data.validate import check_inputs, check_targets
from xpnet.errors import DivergedError
from xpnet.io.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

PROGRESS_EVERY = 20  # steps between progress-bar loss updates: each one reads a value back from the device


@dataclass
class History:
    """One dict of metrics per finished epoch."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False

    def __getitem__(self, key: str) -> list[Any]:
        return [e[key] for e in self.epochs if key in e]

    @property
    def last(self) -> dict[str, Any]:
        return self.epochs[-1] if self.epochs else {}


def train_step(model: Module, loss: Loss, optimizer: Optimizer, x: Any, y: Any) -> Any:
    """One forward, backward and update on a batch; returns the batch loss as a 0-d device array."""
    optimizer.zero_grad()
    value = loss.forward(model.forward(x), y)
    grad = loss.backward()
    model.backward(grad, need_dx=False) if model.skips_dx else model.backward(grad)
    optimizer.step()
    return value


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
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def fit(model: Module, loss: Loss, optimizer: Optimizer, train_data: tuple[Any, Any], *, epochs: int = 1,
        batch_size: int = 32, validation: tuple[Any, Any] | None = None, seed: int = 0, shuffle: bool = True,
        callbacks: Iterable[Any] = (), progress: bool = False, checkpoint_dir: str | Path | None = None,
        resume: bool = False, validation_prefix: str = "val", eval_batch_size: int = 1000) -> History:
    """Train `model` on (x, y) arrays of any backend; the model moves to the arrays' backend.

    x: (n, features) floating (cast to the model's dtype); y: (n,) integer labels, (n, classes)
    probabilities, or (n, outputs) regression targets. Returns the per-epoch History.
    """
    _positive("epochs", epochs)
    _positive("batch_size", batch_size)
    backend = backend_for(train_data[0])
    model.to(backend)
    x, y = _prepare(backend, model, loss, train_data, "training data")
    val = _prepare(backend, model, loss, validation, "validation data") if validation is not None else None
    callbacks = list(callbacks)

    history, start = History(), 1
    if resume and checkpoint_dir is not None:
        history, start = _resume(Path(checkpoint_dir), model, optimizer, callbacks)

    model.train()
    with _labels_checked(loss):  # every label was checked once above; no device read per batch
        for epoch in range(start, epochs + 1):
            backend.seed(seed * 1_000_003 + epoch)  # dropout stream per epoch, so a resumed run repeats it
            train_loss, seconds = train_epoch(backend, model, loss, optimizer, x, y, batch_size,
                                              epoch_order(x.shape[0], seed, epoch, shuffle), progress,
                                              f"epoch {epoch}/{epochs}")
            logs: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss,
                                    "samples_per_second": x.shape[0] / seconds, "seconds": seconds}
            if val is not None:
                metrics = evaluate(model, loss, val[0], val[1], eval_batch_size)
                logs.update({f"{validation_prefix}_{k}": v for k, v in metrics.items()})
            history.epochs.append(logs)
            stop = [bool(cb.on_epoch_end(epoch, logs)) for cb in callbacks]
            if checkpoint_dir is not None:
                state = {"history": history.epochs, "callbacks": [_cb_state(cb) for cb in callbacks]}
                save_checkpoint(checkpoint_dir, model, optimizer, epoch, state)
            if any(stop):
                history.stopped_early = True
                break
    return history


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


def train_epoch(backend: Backend, model: Module, loss: Loss, optimizer: Optimizer, x: Any, y: Any,
                 batch_size: int, order: Any, progress: bool, desc: str) -> tuple[float, float]:
    """One pass over the data; returns (mean training loss, seconds spent training)."""
    n = x.shape[0]
    bar = tqdm(total=n, unit="sample", unit_scale=True, desc=desc, disable=not progress, dynamic_ncols=True,
               leave=False)
    total, seen = None, 0
    start = time.perf_counter()
    for step, (xb, yb) in enumerate(iterate_batches(backend, x, y, batch_size, order)):
        batch_loss = train_step(model, loss, optimizer, xb, yb)
        rows = xb.shape[0]
        # Summed on the device; read back only for the progress bar, never once per step.
        total = batch_loss * rows if total is None else total + batch_loss * rows
        seen += rows
        if progress:
            bar.update(rows)
            if step % PROGRESS_EVERY == 0:
                bar.set_postfix(loss=f"{float(total) / seen:.4f}", refresh=False)
    backend.synchronize()
    seconds = time.perf_counter() - start
    mean_loss = float(total) / seen
    bar.set_postfix(loss=f"{mean_loss:.4f}")
    bar.close()
    if not math.isfinite(mean_loss):
        raise DivergedError(f"training diverged: the mean loss of {desc or 'the epoch'} is {mean_loss}; "
                            f"lower the learning rate (the weights are not saved)")
    return mean_loss, seconds


def _cb_state(cb: Any) -> dict[str, Any]:
    return cb.state() if hasattr(cb, "state") else {}


def _resume(directory: Path, model: Module, optimizer: Optimizer, callbacks: list[Any]) -> tuple[History, int]:
    path = latest_checkpoint(directory)
    if path is None:
        return History(), 1
    meta = load_checkpoint(path, model, optimizer)
    state = meta.get("state", {})
    for cb, cb_state in zip(callbacks, state.get("callbacks", [])):
        if cb_state and hasattr(cb, "load_state"):
            cb.load_state(cb_state)
    return History(list(state.get("history", []))), int(meta["epoch"]) + 1


__all__ = ["History", "evaluate", "fit", "num_batches", "predict", "train_epoch", "train_step"]
