"""`xpnet train TASK`: build the problem, train it with a progress bar, report, save."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from xpnet.backends import Backend, get_backend
from xpnet.backends.threads import current_threads, set_threads, threads_fixed
from xpnet.cli import model_file
from xpnet.cli.output import plural, show_progress, versions, write_json
from xpnet.cli.resume import resolve
from xpnet.cli.settings import Settings
from xpnet.core.optim import Optimizer, make_optimizer
from xpnet.data.batches import num_batches
from xpnet.distributed.communicator import Communicator
from xpnet.distributed.launch import host_communicator
from xpnet.io.checkpoint import Checkpoints, save_model
from xpnet.io.outputs import check_output_dir, check_output_path
from xpnet.recipes import Problem, build_problem, make_schedule
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
class Plan:
    """What is decided before any data is loaded: the settings (checked against the checkpoint on a resume),
    where the model goes (None: --no-save) and the notes to print about it."""

    settings: Settings
    save: str | None
    notes: tuple[str, ...] = ()


def plan_run(args: argparse.Namespace) -> Plan:
    """Everything that can refuse the command before any work: option combinations, a resume whose options
    differ from its checkpoint, output paths the run could not write or must not replace."""
    if (args.resume or args.checkpoint_every) and not args.checkpoint_dir:
        raise ValueError("--resume and --checkpoint-every need --checkpoint-dir DIR (where the checkpoints are)")
    s = resolve(args)
    save, note = None, None
    if not args.no_save:
        save, note = model_file.choose(args.save, model_file.default_name(args.task, s.model), args.overwrite)
    if args.json:
        check_output_path(args.json, "--json")
    if args.checkpoint_dir:
        check_output_dir(args.checkpoint_dir, "--checkpoint-dir")
    return Plan(s, save, (note,) if note else ())


def run_train(args: argparse.Namespace) -> int:
    """`xpnet train`: returns the exit code. Started by an MPI launcher with more than one process (or with
    --distributed mpi), every process runs it data-parallel and rank 0 alone decides, prints and writes files."""
    # MPI first: from then on, a failure on one process alone ends them all instead of leaving them waiting.
    host = host_communicator(args.distributed)
    if host is None:
        if args.threads:
            set_threads(args.threads)
        plan = plan_run(args)
        return _train(args, plan, get_backend(args.backend), None)
    from xpnet.cli.processes import run_on_processes
    from xpnet.data.mnist import load_mnist

    def fetch() -> None:
        load_mnist(args.data_dir, progress=show_progress(args.no_progress), verbose=True)

    return run_on_processes(host, args.backend, args.threads, lambda b, comm, plan: _train(args, plan, b, comm),
                            fetch if args.task == "mnist" else None, lambda: plan_run(args))


def _train(args: argparse.Namespace, plan: Plan, backend: Backend, comm: Communicator | None) -> int:
    """The run itself, alone or (comm) as one of several processes, of which rank 0 alone writes files."""
    s = plan.settings
    root = comm is None or comm.is_root
    progress = root and show_progress(args.no_progress)
    problem = build_problem(args.task, backend, s.model, s.dtype, s.seed, args.data_dir, progress)
    samples = problem.train[0].shape[0]
    steps = s.epochs * num_batches(samples, s.batch_size)
    optimizer = make_optimizer(s.optimizer, problem.model.parameters(), s.lr, s.weight_decay,
                               make_schedule(s.schedule, steps))
    print(f"xpnet: training {args.task} ({s.model}) on {backend.name} [{backend.describe_device()}], "
          f"{s.dtype}, {plural(samples, 'sample')}, batch {s.batch_size}, {plural(s.epochs, 'epoch')}, "
          f"{s.optimizer} lr {optimizer.lr:g} ({s.schedule})" + ("" if comm is None else f", on {comm.describe()}"))
    for note in plan.notes:
        print(f"xpnet: {note}")
    history = _fit(args, s, problem, optimizer, comm, progress)
    if history.stopped_early:
        print(f"xpnet: stopped early after epoch {history.last['epoch']} (no test-loss improvement "
              f"for {plural(s.early_stopping or 0, 'epoch')})")
    _report_task(args.task, problem)
    if not root:
        return 0
    saved = None if plan.save is None else _save(args, plan.save, s, problem, history)
    if args.json:
        write_json(args.json, _summary(args, s, backend, optimizer, history, saved))
    return 0


def _fit(args: argparse.Namespace, s: Settings, problem: Problem, optimizer: Optimizer,
         comm: Communicator | None, progress: bool) -> History:
    callbacks: list[Any] = [EpochPrinter(s.epochs)]
    if s.early_stopping:
        callbacks.insert(0, EarlyStopping("test_loss", s.early_stopping))
    checkpoints = None
    if args.checkpoint_dir:
        # the settings record is what a later --resume compares its options with
        checkpoints = Checkpoints(args.checkpoint_dir, every_steps=args.checkpoint_every, keep=args.keep,
                                  resume=args.resume,
                                  metadata={**problem.metadata, "model": s.model, "settings": s.record()})
    graph = {} if args.graph is None else {"graph": args.graph}  # --graph / --no-graph; else fit's default
    return fit(problem.model, problem.loss, optimizer, problem.train, epochs=s.epochs, batch_size=s.batch_size,
               validation=problem.test, seed=s.seed, callbacks=callbacks, progress=progress,
               checkpoints=checkpoints, on_nan=args.on_nan, validation_prefix="test", clip_norm=s.clip_norm,
               communicator=comm, **graph)


def _save(args: argparse.Namespace, chosen: str, s: Settings, problem: Problem, history: History) -> str:
    path, note = model_file.at_save_time(chosen, args.overwrite)
    if note:
        print(f"xpnet: {note}")
    saved = str(save_model(path, problem.model,
                           {**problem.metadata, "model": s.model, "seed": s.seed, "final": history.last}))
    print(f"xpnet: saved model to {saved}  (xpnet eval --model {saved})")
    return saved


def _summary(args: argparse.Namespace, s: Settings, backend: Backend, optimizer: Optimizer, history: History,
             saved: str | None) -> dict[str, Any]:
    """What --json writes: the run's settings, versions and every epoch's metrics."""
    return {"task": args.task, "model": s.model, "backend": backend.name, "device": backend.describe_device(),
            "dtype": s.dtype, "seed": s.seed, "batch_size": s.batch_size, "optimizer": s.optimizer,
            "lr": optimizer.lr, "weight_decay": optimizer.weight_decay, "schedule": s.schedule,
            "versions": versions(backend.versions), "stopped_early": history.stopped_early,
            # "auto": training chose the count from its step timings; threads_at_end: the count it ended on
            "threads": threads_fixed() or "auto", "threads_at_end": current_threads(),
            "saved_model": saved, "skipped_steps": history.skipped_steps, "epochs": history.epochs}


def _report_task(task: str, problem: Problem) -> None:
    if task == "linear":
        dense = problem.model.layers[0]
        backend = problem.model.backend
        w = float(backend.to_numpy(dense.weight.value).ravel()[0])
        b = float(backend.to_numpy(dense.bias.value).ravel()[0])
        print(f"xpnet: learned y = {w:.4f} x + {b:.4f}  (target y = 3x: weight {w:.2f}, bias {b:.2f})")
