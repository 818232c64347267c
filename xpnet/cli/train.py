"""`xpnet train TASK`: build the problem, train it with a progress bar, report, save."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm.auto import tqdm

from xpnet.backends import get_backend
from xpnet.backends.threads import set_threads
from xpnet.training.callbacks import EarlyStopping
from xpnet.cli import versions, write_json
from xpnet.core.optim import make_optimizer
from xpnet.core.schedules import Cosine, StepDecay
from xpnet.data.batches import num_batches
from xpnet.io.checkpoint import Checkpoints, save_model
from xpnet.recipes import DEFAULTS, build_problem
from xpnet.training.fit import fit


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


def _schedule(name: str, total_steps: int) -> Any:
    if name == "cosine":
        return Cosine(total_steps)
    if name == "step":
        return StepDecay(every=max(1, -(-total_steps // 3)), gamma=0.1)
    return None


def run_train(args: argparse.Namespace) -> int:
    d = DEFAULTS[args.task]
    model_name = args.model or d.models[0]
    epochs, batch_size = args.epochs or d.epochs, args.batch_size or d.batch_size
    optimizer_name = args.optimizer or d.optimizer
    if (args.resume or args.checkpoint_every) and not args.checkpoint_dir:
        raise ValueError("--resume and --checkpoint-every need --checkpoint-dir DIR (where the checkpoints are)")
    if args.threads:
        set_threads(args.threads)
    backend = get_backend(args.backend)
    progress = not args.no_progress
    problem = build_problem(args.task, backend, model_name, args.dtype, args.seed, args.data_dir, progress)
    steps = epochs * num_batches(problem.train[0].shape[0], batch_size)
    lr = args.lr if args.lr is not None else (d.lr if optimizer_name == d.optimizer else None)
    weight_decay = args.weight_decay if args.weight_decay is not None else (0.01 if optimizer_name == "adamw" else 0.0)
    optimizer = make_optimizer(optimizer_name, problem.model.parameters(), lr, weight_decay,
                               _schedule(args.schedule or d.schedule, steps))
    print(f"xpnet: training {args.task} ({model_name}) on {backend.name} [{backend.describe_device()}], "
          f"{args.dtype}, {problem.train[0].shape[0]:,} samples, batch {batch_size}, {epochs} epochs, "
          f"{optimizer_name} lr {optimizer.lr:g} ({args.schedule or d.schedule})")
    callbacks: list[Any] = [EpochPrinter(epochs)]
    if args.early_stopping:
        callbacks.insert(0, EarlyStopping("test_loss", args.early_stopping))
    checkpoints = None
    if args.checkpoint_dir:
        checkpoints = Checkpoints(args.checkpoint_dir, every_steps=args.checkpoint_every, keep=args.keep,
                                  resume=args.resume, metadata={**problem.metadata, "model": model_name})
    graph = {} if args.graph is None else {"graph": args.graph}  # --graph / --no-graph; else fit's default
    history = fit(problem.model, problem.loss, optimizer, problem.train, epochs=epochs, batch_size=batch_size,
                  validation=problem.test, seed=args.seed, callbacks=callbacks, progress=progress,
                  checkpoints=checkpoints, on_nan=args.on_nan, validation_prefix="test", **graph)
    if history.stopped_early:
        print(f"xpnet: stopped early after epoch {history.last['epoch']} (no test-loss improvement "
              f"for {args.early_stopping} epochs)")
    _report_task(args.task, problem)
    saved = None
    if not args.no_save:
        saved = str(save_model(args.save or f"{args.task}-{model_name}.safetensors", problem.model,
                               {**problem.metadata, "model": model_name, "seed": args.seed,
                                "final": history.last}))
        print(f"xpnet: saved model to {saved}  (xpnet eval --model {saved})")
    if args.json:
        write_json(args.json, {
            "task": args.task, "model": model_name, "backend": backend.name, "device": backend.describe_device(),
            "dtype": args.dtype, "seed": args.seed, "batch_size": batch_size, "optimizer": optimizer_name,
            "lr": optimizer.lr, "weight_decay": optimizer.weight_decay, "schedule": args.schedule or d.schedule,
            "versions": versions(backend.versions), "stopped_early": history.stopped_early,
            "saved_model": saved, "skipped_steps": history.skipped_steps, "epochs": history.epochs})
    return 0


def _report_task(task: str, problem: Any) -> None:
    if task == "linear":
        dense = problem.model.layers[0]
        backend = problem.model.backend
        w = float(backend.to_numpy(dense.weight.value).ravel()[0])
        b = float(backend.to_numpy(dense.bias.value).ravel()[0])
        print(f"xpnet: learned y = {w:.4f} x + {b:.4f}  (target y = 3x: weight {w:.2f}, bias {b:.2f})")
