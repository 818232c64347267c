"""fit(): the training loop, read top to bottom as the data flow.

    data (host, once) -> device arrays -> model.forward -> loss.forward
                                              ^                  |
                   optimizer.step  <-  model.backward  <-  loss.backward

One turn of it is the step body in step.py. Around it: validation each epoch, callbacks, checkpoints (each
epoch and, optionally, every N steps) from which a killed run resumes bit-identically (at a fixed CPU thread
count), a clean stop on Ctrl-C or SIGTERM, and a guard against NaN. Given a communicator, the same loop runs data-parallel across
processes (xpnet/distributed/): one allreduce per step, rank 0 alone writes files.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from xpnet.backends import Backend
from xpnet.core.clip import check_max_norm
from xpnet.core.losses import Loss, SoftmaxCrossEntropy, check_label_range
from xpnet.core.module import Module
from xpnet.core.optim import Optimizer
from xpnet.data.batches import epoch_order, num_batches
from xpnet.data.validate import check_inputs, check_targets, data_pair
from xpnet.distributed.communicator import Communicator
from xpnet.distributed.failures import one_fails_all_end
from xpnet.errors import CheckpointError, TrainingInterrupted
from xpnet.io.checkpoint import Checkpoints, checkpoint_files
from xpnet.io.dirlock import directory_lock
from xpnet.training.checkpointing import Position, resume, save_position
from xpnet.training.divergence import LossWatch
from xpnet.training.epoch import PROGRESS_EVERY, run_epoch
from xpnet.training.evaluation import evaluate, follow_inputs, metrics, outputs, positive, predict
from xpnet.training.history import History
from xpnet.training.interrupts import interrupt_requests
from xpnet.training.parallel import dropout_seed, reducer_for
from xpnet.training.step import EagerRunner, Step, make_state, train_step

ON_NAN = ("stop", "skip")


@dataclass(frozen=True)
class FitOptions:
    """fit's settings besides the model, loss, optimizer, data and callbacks (its keywords, checked)."""

    epochs: int = 1
    batch_size: int = 32
    seed: int = 0
    shuffle: bool = True
    progress: bool = False
    checkpoints: Checkpoints | None = None
    on_nan: str = "stop"
    validation_prefix: str = "val"
    eval_batch_size: int = 1000
    graph: bool | None = None
    clip_norm: float | None = None
    communicator: Communicator | None = None

    def __post_init__(self) -> None:
        positive("epochs", self.epochs)
        positive("batch_size", self.batch_size)
        if self.communicator is not None and self.batch_size < self.communicator.size:
            raise ValueError(f"batch_size {self.batch_size} is smaller than the {self.communicator.size} processes "
                             f"sharing each batch (batch_size is the global batch)")
        if self.on_nan not in ON_NAN:
            raise ValueError(f"on_nan must be one of {ON_NAN}, got {self.on_nan!r}")
        if self.clip_norm is not None:
            check_max_norm(self.clip_norm)


def fit(model: Module, loss: Loss, optimizer: Optimizer, train_data: tuple[Any, Any], *, epochs: int = 1,
        batch_size: int = 32, validation: tuple[Any, Any] | None = None, seed: int = 0, shuffle: bool = True,
        callbacks: Iterable[Any] = (), progress: bool = False, checkpoints: Checkpoints | None = None,
        on_nan: str = "stop", validation_prefix: str = "val", eval_batch_size: int = 1000,
        graph: bool | None = None, clip_norm: float | None = None,
        communicator: Communicator | None = None) -> History:
    """Train `model` on (x, y) arrays of any backend; the model and optimizer move to x's backend and device
    (y and the validation pair follow x).

    x: (n, features) floating, cast to the model's dtype as in evaluate and predict (integer or bool inputs
    are refused); y: (n,) integer labels, (n, classes) probabilities, or (n, outputs) regression targets.
    Returns the per-epoch History.
    graph: run each step as a captured device graph (None: wherever the backend supports capture, i.e.
    CuPy; False: eager). On a GPU the loss and NaN checks stay on the device and are read once per
    progress window; with on_nan='skip' a dropped step still counts in the schedule there.
    clip_norm: scale the gradients to at most this global L2 norm before each update.
    communicator: train data-parallel across its processes (xpnet.distributed.mpi() under mpiexec): each
    holds the same data and model and trains on its part of every global batch of `batch_size` rows, and one
    allreduce per step sums the gradients, so the run follows one process's to float rounding. Rank 0 alone
    writes checkpoints; an error on one process ends them all.
    """
    options = FitOptions(epochs, batch_size, seed, shuffle, progress, checkpoints, on_nan, validation_prefix,
                         eval_batch_size, graph, clip_norm, communicator)
    train_data = data_pair(train_data, "fit")
    validation = None if validation is None else data_pair(validation, "fit's validation")
    _check_optimizer(model, optimizer)
    # One run at a time in a checkpoint directory (process 0 of a data-parallel run writes for all of them).
    writer = checkpoints is not None and (communicator is None or communicator.rank == 0)
    with one_fails_all_end(communicator), directory_lock(checkpoints.directory if writer else None):
        return _Fit(model, loss, optimizer, train_data, validation, list(callbacks), options).run()


class _Fit:
    """One fit call: the data on the device, the runner, the position, and the loop over epochs."""

    def __init__(self, model: Module, loss: Loss, optimizer: Optimizer, train_data: tuple[Any, Any],
                 validation: tuple[Any, Any] | None, callbacks: list[Any], options: FitOptions) -> None:
        self.backend = backend = follow_inputs(model, train_data[0])
        optimizer.to(backend, model.dtype)
        self.model, self.loss, self.optimizer, self.callbacks, self.o = model, loss, optimizer, callbacks, options
        self.comm = options.communicator
        self.rank = 0 if self.comm is None else self.comm.rank
        self.x, self.y = _prepare(backend, model, loss, train_data, "training data")
        self.val = _prepare(backend, model, loss, validation, "validation data") if validation is not None else None
        self.batches = num_batches(self.x.shape[0], options.batch_size)
        self.history, self.start = History(), Position()
        # What a resumed run must share with the one it continues.
        self.settings = {"seed": options.seed, "batch_size": options.batch_size, "clip_norm": options.clip_norm}
        ck = options.checkpoints
        if ck is not None and ck.resume:
            self.history, self.start = resume(ck, model, optimizer, callbacks, backend, self.batches, self.settings,
                                              options.epochs, self.comm)
        elif ck is not None and checkpoint_files(ck.directory):
            raise CheckpointError(f"{ck.directory} already holds checkpoints of another run: resume it, or "
                                  f"choose an empty directory (keep would otherwise delete them)")

    def checkpoint(self, at: Position) -> str | None:
        if self.o.checkpoints is None:
            return None
        if self.comm is None:
            return save_position(self.o.checkpoints, self.model, self.optimizer, self.backend, at, self.history,
                                 self.callbacks, self.settings)
        # Every process's dropout stream goes into the one file process 0 writes; all learn its name.
        rng = self.comm.gather(self.backend.rng_state())
        path = None if self.rank != 0 else save_position(self.o.checkpoints, self.model, self.optimizer,
                                                         self.backend, at, self.history, self.callbacks,
                                                         {**self.settings, "processes": self.comm.size}, rng)
        return self.comm.broadcast(path)

    def run(self) -> History:
        o, model = self.o, self.model
        model.train()
        runner = make_runner(step_mode(self.backend, o.graph), self.backend, model, self.loss, self.optimizer,
                             self.x, self.y, o.batch_size, o.on_nan, self.history, o.clip_norm, self.comm)
        every = o.checkpoints.every_steps if o.checkpoints is not None else None
        watch = LossWatch()  # one per run: an explosion is measured against every epoch so far
        with _labels_checked(self.loss), interrupt_requests() as asked, _released(runner):
            reducer = runner.step.reducer
            if reducer is not None:  # every process stops after the same step, whenever its signal came
                reducer.listen(asked)
            stop = asked if reducer is None else reducer.stop_agreed
            interrupted = asked if self.comm is None else (lambda: self.comm.any(asked()))
            for epoch in range(self.start.epoch, o.epochs + 1):
                start = self.start if epoch == self.start.epoch else Position(epoch)
                if start.batch == 0:  # dropout per epoch (and process); a resume restores it
                    self.backend.seed(dropout_seed(o.seed, epoch, self.rank))
                end = run_epoch(runner, self.backend, start, epoch_order(self.x.shape[0], o.seed, epoch, o.shuffle),
                                o.batch_size, f"epoch {epoch}/{o.epochs}", o.progress,
                                self.checkpoint if every else None, every, stop, watch)
                if end.batch < self.batches:  # stopped by Ctrl-C / SIGTERM after a whole step
                    raise _interrupted(f"at epoch {epoch}, batch {end.batch}/{self.batches}", self.checkpoint(end))
                saved = self.end_epoch(end)
                if self.history.stopped_early:
                    break
                if interrupted() and epoch < o.epochs:  # asked during the last batch or the evaluation
                    raise _interrupted(f"after epoch {epoch}", saved)
        return self.history

    def end_epoch(self, end: Position) -> str | None:
        """Validation, the epoch's log, the callbacks' verdict and the epoch-end checkpoint."""
        o = self.o
        logs: dict[str, Any] = {"epoch": end.epoch, "train_loss": end.loss_sum / end.seen,
                                "samples_per_second": self.x.shape[0] / end.seconds, "seconds": end.seconds}
        if self.val is not None:
            measured = metrics(self.model, self.loss, self.val[0], self.val[1], o.eval_batch_size, self.comm)
            logs.update({f"{o.validation_prefix}_{k}": v for k, v in measured.items()})
        self.history.epochs.append(logs)
        self.history.stopped_early = any([bool(cb.on_epoch_end(end.epoch, logs)) for cb in self.callbacks])
        return self.checkpoint(Position(end.epoch, self.batches))


def make_runner(mode: str, backend: Backend, model: Module, loss: Loss, optimizer: Optimizer, x: Any, y: Any,
                batch_size: int, on_nan: str, history: History, clip_norm: float | None = None,
                communicator: Communicator | None = None) -> Any:
    """The step body with its state, run eagerly per batch or ('graph') captured and replayed; with a
    communicator, on this process's part of each batch, its gradients summed across processes."""
    step = Step(model, loss, optimizer, make_state(mode, backend, optimizer, on_nan, history), clip_norm,
                reducer_for(communicator, optimizer, backend, PROGRESS_EVERY))
    where = (0, 1) if communicator is None else (communicator.rank, communicator.size)
    if mode == "graph":
        from xpnet.training.captured import GraphRunner

        return GraphRunner(step, backend, x, y, batch_size, *where)
    return EagerRunner(step, backend, x, y, batch_size, *where)


def train_epoch(backend: Backend, model: Module, loss: Loss, optimizer: Optimizer, x: Any, y: Any,
                batch_size: int, order: Any, progress: bool = False, desc: str = "", graph: bool = False,
                communicator: Communicator | None = None) -> tuple[float, float]:
    """One plain pass over the data (what fit runs each epoch, without checkpoints): (mean loss, seconds).
    graph=True runs the step as a captured graph (see fit); its graphs are kept for the next call.
    communicator: data-parallel, as fit's."""
    with _labels_checked(loss):
        runner = make_runner(step_mode(backend, graph), backend, model, loss, optimizer, x, y, batch_size, "stop",
                             History(), communicator=communicator)
        with _released(runner):
            end = run_epoch(runner, backend, Position(), order, batch_size, desc or "epoch", progress)
    return end.loss_sum / end.seen, end.seconds


def step_mode(backend: Backend, graph: bool | None) -> str:
    """Which runner and state: a captured graph where asked (None: wherever the backend can capture), else the
    eager step with its books on the device where reading a value waits for the device, else per-step reads."""
    if graph is None:
        graph = backend.supports_capture
    if graph:
        return "graph"
    return "windowed" if backend.sync_costly else "checked"


def _interrupted(where: str, saved: str | None) -> TrainingInterrupted:
    return TrainingInterrupted(f"interrupted {where}; " + (
        f"checkpoint saved to {saved} (continue with --resume, or Checkpoints(resume=True))" if saved
        else "nothing saved: no checkpoint directory was set"), checkpoint=saved)


def _prepare(backend: Backend, model: Module, loss: Loss, data: tuple[Any, Any], what: str) -> tuple[Any, Any]:
    x, y = data
    x = check_inputs(backend, x, model.dtype or "float32", what)
    y = check_targets(backend, y, x.shape[0], what)
    if isinstance(loss, SoftmaxCrossEntropy) and backend.xp.isdtype(y.dtype, "integral"):
        classes = outputs(model, x[:1, ...], 1).shape[1]  # also checks the input width, with the layer's message
        check_label_range(backend.xp, y, classes)
    return x, y


def _check_optimizer(model: Module, optimizer: Optimizer) -> None:
    """The optimizer must update this model's parameters: one built over another model's trains nothing here."""
    own = {id(p) for p in model.parameters()}
    foreign = sum(id(p) not in own for p in optimizer.params)
    if foreign:
        raise ValueError(f"{foreign} of the optimizer's {len(optimizer.params)} parameters are not this model's, "
                         f"so fit would not train it; build the optimizer from the model you fit, e.g. "
                         f"{type(optimizer).__name__}(model.parameters())")


@contextmanager
def _released(runner: Any) -> Iterator[None]:
    """On the way out, however it is left, the runner hands back what it took for the run (the CPU thread
    count it chose: the user's later work runs on the count it had before)."""
    try:
        yield
    finally:
        tuner = getattr(runner, "tuner", None)
        if tuner is not None:
            tuner.restore()


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


__all__ = ["FitOptions", "History", "evaluate", "fit", "predict", "train_epoch", "train_step"]
