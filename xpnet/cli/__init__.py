"""The `xpnet` command line: argument parsing and dispatch. Each command's work is in its own module here
(train.py, eval.py, bench.py, info.py), what it prints or writes in output.py, the problems in recipes.py."""
from __future__ import annotations

import argparse
import os
from typing import NoReturn, Sequence

from xpnet.cli.output import interrupt_message, one_line, print_error
from xpnet.errors import TrainingInterrupted, XpnetError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_float(text: str) -> float:
    value = _number(text)
    if not 0.0 < value < float("inf"):  # the chained comparison also refuses NaN
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a mistake prints one line and where the help is, not the whole usage block first.
    Subcommand parsers are of this class too (add_subparsers makes them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every `xpnet` command."""
    from xpnet.backends import NAMES

    parser = _Parser(
        prog="xpnet", description="Train neural networks written once against the Python Array API, "
        "on NumPy, CuPy, PyTorch or array-api-strict.",
        epilog="Examples:  xpnet train mnist   |   xpnet train mnist --backend torch --epochs 3   |   "
               "xpnet eval --model mnist-mlp.safetensors   |   xpnet bench --quick   |   xpnet info")
    parser.add_argument("--version", action="version", version=f"xpnet {_version()}",
                        help="print xpnet's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,eval,bench,info}")
    backends = ["auto", *NAMES]
    _add_train_command(sub, backends)
    _add_eval_command(sub, backends)
    _add_bench_command(sub)
    sub.add_parser("info", help="list the backends: available or not and why, versions, devices",
                   description="Show which array backends can run here, their library versions and devices; for a "
                   "GPU its name, compute capability, memory and CUDA versions.")
    return parser


def _version() -> str:
    from xpnet import __version__

    return __version__


def _add_train_command(sub: argparse._SubParsersAction, backends: list[str]) -> None:
    from xpnet.recipes import DEFAULTS

    train = sub.add_parser("train", help="train a built-in problem and save the model",
                           description="Train a built-in problem: mnist (784-128-64-10 MLP, or LeNet-5 with "
                           "--model lenet; softmax cross-entropy), housing (synthetic house prices, MSE) or linear "
                           "(y = 3x).")
    train.add_argument("task", choices=sorted(DEFAULTS), help="which problem to train")
    train.add_argument("--model", help="network for the task (mnist: mlp or lenet; housing: mlp; linear: linear)")
    train.add_argument("--backend", choices=backends, default=None,
                       help="array library (default: $XPNET_BACKEND or auto = cupy with a CUDA GPU, else numpy)")
    _add_recipe_arguments(train)
    _add_file_arguments(train)
    _add_run_arguments(train)


def _add_recipe_arguments(train: argparse.ArgumentParser) -> None:
    """What is trained and how: the options that change the numbers a run computes."""
    from xpnet.core.optim import DEFAULT_LR
    from xpnet.recipes import SCHEDULES

    train.add_argument("--epochs", type=_positive_int, help="passes over the training data (mnist: 5)")
    train.add_argument("--batch-size", type=_positive_int, help="samples per step (mnist: 128)")
    train.add_argument("--optimizer", choices=list(DEFAULT_LR), help="update rule (mnist: adam)")
    train.add_argument("--lr", type=_positive_float, help="learning rate (default depends on task and optimizer)")
    train.add_argument("--weight-decay", type=_nonnegative_float, default=None,
                       help="L2 penalty (decoupled for adamw; default 0, adamw 0.01)")
    train.add_argument("--schedule", choices=list(SCHEDULES),
                       help="learning-rate schedule over the run (mnist: cosine; step: x0.1 after each third)")
    train.add_argument("--clip-norm", type=_positive_float, default=None, metavar="MAX",
                       help="clip the gradients to this global L2 norm before each update (default: no clipping)")
    # seed and dtype default to None so that a resume can tell an option given from one left out
    train.add_argument("--seed", type=int, default=None, help="seed for initial weights, shuffling and dropout "
                       "(default 0)")
    train.add_argument("--dtype", choices=["float32", "float64"], default=None,
                       help="floating-point precision (default float32)")
    train.add_argument("--data-dir", help="where MNIST is cached (default: $XPNET_DATA_DIR or the user cache dir)")


def _add_file_arguments(train: argparse.ArgumentParser) -> None:
    """Where a run's model and checkpoints go, and what a resume may change."""
    from xpnet.cli.resume import override_option

    train.add_argument("--save", metavar="FILE",
                       help="model file to write (default: TASK-MODEL.safetensors; if that exists, the next free "
                            "TASK-MODEL-2.safetensors, -3, ...: a default name is never overwritten). A FILE that "
                            "exists is refused before training unless --overwrite")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the model file if it exists (--save FILE or the default name)")
    train.add_argument("--no-save", action="store_true", help="do not write a model file")
    train.add_argument("--checkpoint-dir", metavar="DIR", help="write a checkpoint there after every epoch")
    train.add_argument("--resume", action="store_true",
                       help="continue from the newest intact checkpoint in --checkpoint-dir (bit-identical to an "
                            "uninterrupted run on the same machine with the same --threads). Options left out take the checkpoint's "
                            "values; one given that differs from them is refused (see --override), except "
                            "--epochs and --early-stopping (to train longer or stop differently) and the options "
                            "about files, output and hardware (--save, --json, --no-progress, --backend, --threads, "
                            "--graph, --distributed, --keep, --checkpoint-every, --on-nan, --data-dir)")
    train.add_argument("--override", type=override_option, action="append", metavar="OPTION",
                       help="with --resume: let OPTION (lr or schedule; comma-separated or repeated for both) "
                            "differ from the checkpoint, e.g. --resume --override lr --lr 0.001. The model, "
                            "optimizer, weight decay, clipping, seed, batch size and dtype cannot change within a run")
    train.add_argument("--checkpoint-every", type=_positive_int, metavar="STEPS",
                       help="also checkpoint every STEPS batches within an epoch")
    train.add_argument("--keep", type=_positive_int, default=3, metavar="N",
                       help="keep the newest N checkpoints (default 3)")


def _add_run_arguments(train: argparse.ArgumentParser) -> None:
    """How the run behaves and reports: failures, stopping, metrics, progress, threads and the CUDA graph."""
    train.add_argument("--on-nan", choices=["stop", "skip"], default="stop",
                       help="a NaN/inf batch loss stops training naming the step and layer (stop, default) or "
                            "skips that batch's update (skip)")
    train.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE",
                       help="stop when the test loss has not improved for PATIENCE epochs")
    train.add_argument("--json", metavar="FILE", help="write per-epoch metrics and run details as JSON")
    train.add_argument("--no-progress", action="store_true",
                       help="no progress bar (epoch lines still print); bars are drawn only when stderr is a "
                            "terminal, never into a log file or a pipe")
    train.add_argument("--threads", type=_positive_int, help="CPU threads for BLAS and torch, fixed for the run "
                       "(default: training times its own steps and takes the fastest count, from 1 to one per core, "
                       "choosing again when the machine's load changes; with several processes on a machine, its "
                       "cores shared among them). A fixed count makes runs repeat bit for bit")
    train.add_argument("--distributed", choices=["auto", "mpi", "none"], default="auto",
                       help="data-parallel training across the processes an MPI launcher started (mpiexec -n 4 xpnet "
                            "train ...): auto (default) when it started more than one, mpi always (NCCL for cupy), "
                            "none never; --batch-size stays the global batch")
    graph = train.add_mutually_exclusive_group()
    graph.add_argument("--graph", dest="graph", action="store_true", default=None,
                       help="capture the training step once as a CUDA graph and replay it for every batch (default: "
                            "on where the backend supports it, i.e. cupy on a CUDA GPU; off elsewhere)")
    graph.add_argument("--no-graph", dest="graph", action="store_false",
                       help="run every step eagerly, launching each kernel from Python (for debugging, or to "
                            "compare with the graph)")


def _add_eval_command(sub: argparse._SubParsersAction, backends: list[str]) -> None:
    ev = sub.add_parser("eval", help="evaluate a saved model on its task's test data",
                        description="Load a model file written by `xpnet train` and report its test metrics.")
    ev.add_argument("--model", required=True, metavar="FILE", help="a .safetensors file from `xpnet train`")
    ev.add_argument("--backend", choices=backends, default=None, help="array library to evaluate on")
    ev.add_argument("--data-dir", help="where MNIST is cached")
    ev.add_argument("--json", metavar="FILE", help="write the metrics as JSON")


def _add_bench_command(sub: argparse._SubParsersAction) -> None:
    from xpnet.cli.bench import add_arguments

    bench = sub.add_parser("bench", help="benchmark training throughput per backend against NumPy/PyTorch references",
                           description="MNIST training throughput of the MLP 784-128-64-10 (or LeNet-5, --model "
                           "lenet) (samples/s over whole epochs, "
                           "data resident, warm-up excluded, repeats interleaved, median and min-max) for each "
                           "backend x batch size x optimizer, beside a plain NumPy and a native PyTorch eager "
                           "implementation and, on a CUDA GPU, native PyTorch eager, with the whole step in one "
                           "CUDA graph, and torch.compile'd (torch-cuda-eager, torch-cuda-graph, "
                           "torch-cuda-compile), each also as a fraction of the float32 GEMM floor.")
    add_arguments(bench)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `xpnet ARGV...`; returns the exit code (0, 2 for a usage or input error, 130 when interrupted)."""
    import numpy as np

    args = build_parser().parse_args(argv)
    try:
        # xpnet reports NaN and overflow itself (naming the step and layer); numpy's warnings would only come first
        with np.errstate(all="ignore"):
            return _run(args)
    except TrainingInterrupted as exc:  # its message speaks of the Python API: say it in the command line's terms
        print_error(interrupt_message(exc, bool(getattr(args, "resume", False))))
        return EXIT_INTERRUPTED
    except (XpnetError, ValueError, OSError) as exc:
        if os.environ.get("XPNET_DEBUG"):
            raise
        print_error(f"error: {one_line(exc)}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    # Imported when run, so a command loads only its own machinery (training, model files, bench workers).
    if args.command == "train":
        from xpnet.cli.train import run_train

        return run_train(args)
    if args.command == "eval":
        from xpnet.cli.eval import run_eval

        return run_eval(args)
    if args.command == "bench":
        from xpnet.cli.bench import run_bench

        return run_bench(args)
    from xpnet.cli.info import run_info

    return run_info()
