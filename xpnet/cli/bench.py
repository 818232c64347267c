"""`xpnet bench`: MNIST MLP or LeNet training throughput per backend, batch size and optimizer, beside references
(plain NumPy, PyTorch eager on the CPU; on a CUDA GPU PyTorch eager, CUDA-graph and torch.compile)."""
from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from xpnet.backends.threads import cores
from xpnet.bench import runner
from xpnet.bench.contenders import GPU_REFERENCE_NAMES, LR, REFERENCE_NAMES, XPNET_BACKENDS, canonical, known, supports
from xpnet.bench.machine import machine
from xpnet.bench.runner import BenchConfig
from xpnet.cli.bench_under_load import check_under_load, run_under_load_command
from xpnet.cli.output import show_progress, status_line, write_json
from xpnet.io.outputs import check_output_path

ALL_BATCH_SIZES = [32, 128, 512, 2048]
MNIST_TRAIN_SIZE = 60000
MODEL_NAMES = {"mlp": "MNIST MLP 784-128-64-10 (ReLU)",
               "lenet": "LeNet-5 (conv5x5 6, max-pool, conv5x5 16, max-pool, 120-84-10; ReLU)"}


def default_contenders(model: str = "mlp") -> list[str]:
    """xpnet on every available backend except strict (a correctness tool), with cupy also as cupy-graph
    (each step replayed from a CUDA graph), then the references that implement `model` (the plain NumPy one
    is an MLP only): PyTorch eager on the CPU and, where torch sees a CUDA GPU, torch-cuda-eager,
    torch-cuda-graph and torch-cuda-compile."""
    from xpnet.backends import available_backends

    names = []
    for b in available_backends():
        if b != "strict":
            names += [b, "cupy-graph"] if b == "cupy" else [b]
    if model == "mlp":
        names.append("numpy-reference")
    if importlib.util.find_spec("torch") is not None:
        import torch

        names.append("torch-eager")
        if torch.cuda.is_available():
            names += list(GPU_REFERENCE_NAMES)
    return names


def _csv(text: str | None, cast: Any = str, what: str = "") -> list[Any] | None:
    if text is None:
        return None
    try:
        return [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"{what} expects comma-separated integers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backends", help="comma-separated contenders: xpnet backends (numpy, torch, cupy, strict; add "
                                      "-portable, e.g. numpy-portable, for xpnet with its fast paths off, and "
                                      "-graph, e.g. cupy-graph, for its CUDA-graph step; an xpnet- prefix is "
                                      "optional) and references (numpy-reference, torch-eager, and on a CUDA GPU "
                                      "torch-cuda-eager, torch-cuda-graph, torch-cuda-compile); default: all "
                                      "available but strict (cupy also as cupy-graph). One that cannot run here is "
                                      "skipped with the reason")
    p.add_argument("--model", choices=["mlp", "lenet"], default="mlp",
                   help="network to train: the 784-128-64-10 MLP (default) or LeNet-5 (two 5x5 convolutions)")
    p.add_argument("--batch-sizes", help="comma-separated (default 32,128,512,2048; --quick: 128)")
    p.add_argument("--optimizers", help="comma-separated from sgd, momentum, adam (default sgd,adam; --quick: adam)")
    p.add_argument("--repeats", type=int, help="timed epochs per contender, after one warm-up (default 5; --quick: 3)")
    p.add_argument("--samples", type=int, help="MNIST training samples per epoch (default 60000; --quick: 10000)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every contender (default: one per core)")
    p.add_argument("--compile-mode", metavar="MODE",
                   help="torch.compile mode of torch-cuda-compile (default max-autotune-no-cudagraphs: Inductor's "
                        "kernels with autotuned GEMMs, no CUDA graphs, which torch-cuda-graph measures; --quick: "
                        "default, which compiles quicker; reduce-overhead adds CUDA graphs)")
    p.add_argument("--quick", action="store_true", help="a smaller run that finishes in under a minute")
    p.add_argument("--processes", metavar="LIST",
                   help="instead: data-parallel scaling of xpnet on numpy over these process counts (e.g. 1,2; MPI "
                        "jobs through mpiexec): samples/s, speed-up and efficiency for each count with the cores "
                        "shared among its processes and for 1 process x 1 thread, with the allreduce's share of a "
                        "step; uses the first --batch-sizes and --optimizers (default 128, adam)")
    p.add_argument("--under-load", nargs="?", type=int, const=1, metavar="PROCESSES",
                   help="instead: `xpnet train mnist` (2 epochs a job, --repeats rounds, default 3; --quick: 1 epoch, "
                        "1 round) with the default "
                        "thread choice, 1 thread and one per core, each on the idle machine and beside PROCESSES "
                        "busy processes (default 1): what another program on the machine does to training speed")
    p.add_argument("--to-accuracy", type=float, metavar="ACC",
                   help="instead: training time each backend needs to first reach test accuracy ACC (e.g. 0.975)")
    p.add_argument("--data-dir", help="where MNIST is cached")
    p.add_argument("--json", metavar="FILE", help="write every measurement as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="PNG of samples/s against batch size, one colour per contender and one line style per "
                        "optimizer, min-max bands; grouped bars for a single batch size (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress line (there is none either when stderr is not a terminal)")


def run_bench(args: argparse.Namespace) -> int:
    """`xpnet bench`: returns the exit code."""
    from xpnet.data.mnist import load_mnist

    config = check_options(args)  # all of them, before anything is fetched, started or measured
    show = show_progress(args.no_progress)
    if args.processes:
        return _scaling(args, config, show)
    if args.under_load is not None:
        return run_under_load_command(args, show)
    load_mnist(args.data_dir, progress=show, verbose=True)  # fetch once here, not in every worker
    payload = {"machine": machine(), **_measure(args, config, show)}
    if args.json:
        write_json(args.json, payload)
    if args.plot:
        from xpnet.bench.plot import save_plot

        save_plot(payload, args.plot)
        print(f"xpnet: plot written to {args.plot}")
    return 0


def check_options(args: argparse.Namespace) -> BenchConfig:
    """The run's settings, or ValueError / XpnetError naming the first option that cannot work, so a mistake
    costs nothing: no download, no worker, no measurement before it."""
    config = _config(args)
    _validate(config)
    if args.processes and args.to_accuracy is not None:
        raise ValueError("--processes and --to-accuracy are different runs; choose one")
    if args.to_accuracy is not None:
        if not 0 < args.to_accuracy <= 1:
            raise ValueError(f"--to-accuracy is a test accuracy in (0, 1], e.g. 0.975; got {args.to_accuracy}")
        if config.model != "mlp":
            raise ValueError("--to-accuracy times the default `xpnet train mnist` recipe, which trains the MLP; "
                             "drop --model, or time LeNet with `xpnet train mnist --model lenet --json FILE`")
    if args.under_load is not None:  # before --processes is checked: a run it excludes needs no mpiexec
        check_under_load(args)
    if args.processes:
        _check_processes(args.processes)
    if args.plot and (args.processes or args.to_accuracy is not None or args.under_load is not None):
        raise ValueError("--plot draws the throughput run (samples/s per batch size); it has nothing to plot "
                         "with --processes, --to-accuracy or --under-load, whose results --json writes")
    for path, what in ((args.json, "--json"), (args.plot, "--plot")):
        if path:
            check_output_path(path, what)
    if args.plot:
        from xpnet.bench.plot import require_matplotlib

        require_matplotlib()
    return config


def _check_processes(text: str) -> None:
    from xpnet.bench.scaling import mpiexec

    counts = _csv(text, int, "--processes") or []
    if not counts or min(counts) < 1:
        raise ValueError(f"--processes expects positive process counts, e.g. 1,2; got {text!r}")
    if max(counts) > 1:
        mpiexec()  # several processes are an MPI job: say now if there is no mpiexec


def _config(args: argparse.Namespace) -> BenchConfig:
    """The run's settings: the flags given, else the defaults (--quick: smaller ones)."""
    quick = args.quick
    named = list(dict.fromkeys(canonical(c) for c in _csv(args.backends) or []))  # xpnet-cupy = cupy, once
    return BenchConfig(
        contenders=named or default_contenders(args.model),
        batch_sizes=_csv(args.batch_sizes, int, "--batch-sizes") or ([128] if quick else ALL_BATCH_SIZES),
        optimizers=_csv(args.optimizers) or (["adam"] if quick else ["sgd", "adam"]),
        repeats=_given(args.repeats, 3 if quick else 5), samples=_given(args.samples, 10000 if quick else MNIST_TRAIN_SIZE),
        threads=_given(args.threads, cores()), data_dir=args.data_dir, model=args.model,
        compile_mode=args.compile_mode or ("default" if quick else None))


def _given(value: int | None, default: int) -> int:
    return default if value is None else value  # not `or`: a 0 given is refused by _validate, not replaced


def _scaling(args: argparse.Namespace, config: BenchConfig, show: bool) -> int:
    """`xpnet bench --processes LIST`: the data-parallel scaling table (and JSON)."""
    from xpnet.bench.scaling import run_scaling, scaling_table
    from xpnet.data.mnist import load_mnist

    if args.batch_sizes is None:
        config.batch_sizes = [128]
    if args.optimizers is None:
        config.optimizers = ["adam"]
    load_mnist(args.data_dir, progress=show, verbose=True)  # fetch once here, not in every job
    with status_line(show) as bar:
        result = run_scaling(config, _csv(args.processes, int, "--processes") or [1], bar.set_postfix_str)
    print(f"model: {MODEL_NAMES[config.model]}")
    print(scaling_table(result))
    if args.json:
        write_json(args.json, {"machine": machine(), **result})
    return 0


def _measure(args: argparse.Namespace, config: BenchConfig, show: bool) -> dict[str, Any]:
    """Run the throughput or time-to-accuracy measurement under a progress line (if `show`), print its results
    and return them for the JSON file."""
    from xpnet.bench.report import throughput_table

    with status_line(show) as bar:
        if args.to_accuracy is None:
            measured = runner.run_throughput(config, bar.set_postfix_str)
        else:
            measured = {"to_accuracy": runner.run_to_accuracy(config, args.to_accuracy, bar.set_postfix_str)}
    if args.to_accuracy is None:
        print(f"model: {MODEL_NAMES[config.model]}")
        print(throughput_table(measured))
    else:
        _print_accuracy(measured["to_accuracy"], args.to_accuracy)
    return measured


def _validate(config: BenchConfig) -> None:
    if not config.contenders:
        raise ValueError("no contenders to run")
    for name in config.contenders:
        if not known(name):
            raise ValueError(f"unknown contender {name!r}; choose xpnet backends ({', '.join(XPNET_BACKENDS)}, "
                             f"optionally with -graph or -portable) or references ({', '.join(REFERENCE_NAMES)})")
        if not supports(name, config.model):
            raise ValueError(f"{name} implements the MLP only and cannot train {config.model}; "
                             f"drop it from --backends (torch-eager is the reference for {config.model})")
    for opt in config.optimizers:
        if opt not in LR:
            raise ValueError(f"unknown optimizer {opt!r} for bench; choose from {', '.join(LR)}")
    for name, value in (("batch size", min(config.batch_sizes)), ("repeats", config.repeats),
                        ("samples", config.samples), ("threads", config.threads)):
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}")
    if config.samples > MNIST_TRAIN_SIZE:  # rates are samples / seconds: more than there are would inflate them
        raise ValueError(f"--samples can be at most {MNIST_TRAIN_SIZE:,} (the MNIST training set), got {config.samples:,}")


def _print_accuracy(results: list[dict[str, Any]], target: float) -> None:
    print(f"time to {target:.1%} test accuracy (default mnist recipe, training time only, evaluation excluded):")
    for r in results:
        if "skipped" in r:
            print(f"  {r['contender']:<20} skipped: {r['skipped']}")
        elif r["reached"]:
            got = r["reached"]
            print(f"  {r['contender']:<20} {got['train_seconds']:7.2f} s  (epoch {got['epoch']}, "
                  f"test accuracy {got['test_accuracy']:.2%})")
        else:
            print(f"  {r['contender']:<20} not reached in {r['epochs_run']} epochs (best {r['best_accuracy']:.2%})")
