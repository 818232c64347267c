"""`xpnet train TASK`: build the problem, train it with a progress bar, report, save."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from xpnet.backends import Backend, get_backend
from xpnet.backends.threads import set_threads
from xpnet.cli.output import versions, write_json
from xpnet.core.optim import Optimizer, make_optimizer
from xpnet.data.batches import num_batches
from xpnet.distributed.communicator import Communicator
from xpnet.distributed.launch import host_communicator
from xpnet.io.checkpoint import Checkpoints, save_model
from xpnet.io.outputs import check_output_dir, check_output_path
from xpnet.recipes import DEFAULTS, Problem, build_problem, make_schedule
from xpnet.training.callbacks import EarlyStopping
from xpnet.training.fit import History, fit


class EpochPrinter:
    """Prints a line per finished epoch (above the progress bar); about 20 lines in all for long runs."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.every = max(1, epochs // 20)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if epoch % self.every and epoch not in (1, self.epochs):
            return
        parts = [f"epoch {epoch}/{self.epochs}", f"train_loss {logs['train_loss']:.4f}"]
        for key in ("test_loss", "test_accuracy", "test_mse", "test_mae", "test_r2"):
            if key in logs and not (key == "test_loss" and "test_mse" in logs):
                value = logs[key]
                parts.append(f"{key} {value:.2%}" if key.endswith("accuracy") else f"{key} {value:.4g}")
        parts.append(f"{logs['samples_per_second']:,.0f} samples/s")
        parts.append(f"{logs['seconds']:.2f} s")
        tqdm.write("  ".join(parts), file=sys.stdout)


@dataclass(frozen=True)
class Settings:
    """A run's choices: what the command line gave, else the task's defaults."""

    model: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float | None  # None: the optimizer's own default
    weight_decay: float
    schedule: str

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        d = DEFAULTS[args.task]
        optimizer = args.optimizer or d.optimizer
        # the task's rate is tuned for its optimizer; another optimizer starts from its own default
        lr = args.lr if args.lr is not None else (d.lr if optimizer == d.optimizer else None)
        weight_decay = args.weight_decay if args.weight_decay is not None else (0.01 if optimizer == "adamw" else 0.0)
        return cls(args.model or d.models[0], args.epochs or d.epochs, args.batch_size or d.batch_size, optimizer,
                   lr, weight_decay, args.schedule or d.schedule)


def run_train(args: argparse.Namespace) -> int:
    """`xpnet train`: returns the exit code. Started by an MPI launcher with more than one process (or with
    --distributed mpi), every process runs it data-parallel and rank 0 alone prints and writes files."""
    # MPI first: from then on, a failure on one process alone ends them all instead of leaving them waiting.
    host = host_communicator(args.distributed)
    if host is None:
        if args.threads:
            set_threads(args.threads)
        return _train(args, get_backend(args.backend), None)
    from xpnet.cli.processes import run_on_processes
    from xpnet.data.mnist import load_mnist

    fetch = (lambda: load_mnist(args.data_dir, progress=not args.no_progress)) if args.task == "mnist" else None
    return run_on_processes(host, args.backend, args.threads, lambda b, comm: _train(args, b, comm), fetch)


def _train(args: argparse.Namespace, backend: Backend, comm: Communicator | None) -> int:
    """The run itself, alone or (comm) as one of several processes, of which rank 0 alone writes files."""
    if (args.resume or args.checkpoint_every) and not args.checkpoint_dir:
        raise ValueError("--resume and --checkpoint-every need --checkpoint-dir DIR (where the checkpoints are)")
    _check_outputs(args)
    s = Settings.from_args(args)
    root = comm is None or comm.is_root
    problem = build_problem(args.task, backend, s.model, args.dtype, args.seed, args.data_dir,
                            not args.no_progress and root)
    steps = s.epochs * num_batches(problem.train[0].shape[0], s.batch_size)
    optimizer = make_optimizer(s.optimizer, problem.model.parameters(), s.lr, s.weight_decay,
                               make_schedule(s.schedule, steps))
    print(f"xpnet: training {args.task} ({s.model}) on {backend.name} [{backend.describe_device()}], "
          f"{args.dtype}, {problem.train[0].shape[0]:,} samples, batch {s.batch_size}, {s.epochs} epochs, "
          f"{s.optimizer} lr {optimizer.lr:g} ({s.schedule})" + ("" if comm is None else f", on {comm.describe()}"))
    history = _fit(args, s, problem, optimizer, comm)
    if history.stopped_early:
        print(f"xpnet: stopped early after epoch {history.last['epoch']} (no test-loss improvement "
              f"for {args.early_stopping} epochs)")
    _report_task(args.task, problem)
    if not root:
        return 0
    saved = None if args.no_save else _save(args, s, problem, history)
    if args.json:
        write_json(args.json, _summary(args, s, backend, optimizer, history, saved))
    return 0


def _fit(args: argparse.Namespace, s: Settings, problem: Problem, optimizer: Optimizer,
         comm: Communicator | None = None) -> History:
    callbacks: list[Any] = [EpochPrinter(s.epochs)]
    if args.early_stopping:
        callbacks.insert(0, EarlyStopping("test_loss", args.early_stopping))
    checkpoints = None
    if args.checkpoint_dir:
        checkpoints = Checkpoints(args.checkpoint_dir, every_steps=args.checkpoint_every, keep=args.keep,
                                  resume=args.resume, metadata={**problem.metadata, "model": s.model})
    graph = {} if args.graph is None else {"graph": args.graph}  # --graph / --no-graph; else fit's default
    return fit(problem.model, problem.loss, optimizer, problem.train, epochs=s.epochs, batch_size=s.batch_size,
               validation=problem.test, seed=args.seed, callbacks=callbacks,
               progress=not args.no_progress and (comm is None or comm.is_root), checkpoints=checkpoints,
               on_nan=args.on_nan, validation_prefix="test", clip_norm=args.clip_norm, communicator=comm, **graph)


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse now, not after training, an output path the run could not write or must not replace."""
    if not args.no_save:
        check_output_path(_save_path(args, Settings.from_args(args)), "--save")
    if args.json:
        check_output_path(args.json, "--json")
    if args.checkpoint_dir:
        check_output_dir(args.checkpoint_dir, "--checkpoint-dir")


def _save_path(args: argparse.Namespace, s: Settings) -> str:
    return args.save or f"{args.task}-{s.model}.safetensors"


def _save(args: argparse.Namespace, s: Settings, problem: Problem, history: History) -> str:
    saved = str(save_model(_save_path(args, s), problem.model,
                           {**problem.metadata, "model": s.model, "seed": args.seed, "final": history.last}))
    print(f"xpnet: saved model to {saved}  (xpnet eval --model {saved})")
    return saved


def _summary(args: argparse.Namespace, s: Settings, backend: Backend, optimizer: Optimizer, history: History,
             saved: str | None) -> dict[str, Any]:
    """What --json writes: the run's settings, versions and every epoch's metrics."""
    return {"task": args.task, "model": s.model, "backend": backend.name, "device": backend.describe_device(),
            "dtype": args.dtype, "seed": args.seed, "batch_size": s.batch_size, "optimizer": s.optimizer,
            "lr": optimizer.lr, "weight_decay": optimizer.weight_decay, "schedule": s.schedule,
            "versions": versions(backend.versions), "stopped_early": history.stopped_early,
            "saved_model": saved, "skipped_steps": history.skipped_steps, "epochs": history.epochs}


def _report_task(task: str, problem: Problem) -> None:
    if task == "linear":
        dense = problem.model.layers[0]
        backend = problem.model.backend
        w = float(backend.to_numpy(dense.weight.value).ravel()[0])
        b = float(backend.to_numpy(dense.bias.value).ravel()[0])
        print(f"xpnet: learned y = {w:.4f} x + {b:.4f}  (target y = 3x: weight {w:.2f}, bias {b:.2f})")
