"""`xpnet bench --under-load [N]`: its option checks and its run (the measuring is xpnet/bench/under_load.py)."""
from __future__ import annotations

import argparse

from xpnet.bench.machine import machine
from xpnet.cli.output import status_line, write_json


def check_under_load(args: argparse.Namespace) -> None:
    """Refuse, before any work, what --under-load cannot honour: it times the user's default command as it is."""
    if args.under_load < 1:
        raise ValueError(f"--under-load expects a positive number of busy processes, got {args.under_load}")
    if args.processes or args.to_accuracy is not None:
        raise ValueError("--under-load, --processes and --to-accuracy are different runs; choose one")
    ignored = [f"--{name.replace('_', '-')}" for name in ("backends", "batch_sizes", "optimizers", "samples",
                                                          "threads", "compile_mode") if getattr(args, name) is not None]
    if ignored or args.model != "mlp":
        raise ValueError(f"--under-load times the default `xpnet train mnist` (the MLP on numpy, every thread "
                         f"setting); it takes --repeats, --data-dir and --json, not {', '.join(ignored) or '--model'}")


def run_under_load_command(args: argparse.Namespace, show: bool) -> int:
    """`xpnet bench --under-load [N]`: training speed by thread setting, on the idle machine and beside N busy
    processes (and JSON)."""
    from xpnet.bench.under_load import run_under_load, under_load_table
    from xpnet.data.mnist import load_mnist

    load_mnist(args.data_dir, progress=show, verbose=True)  # fetch once here, not in every job
    with status_line(show) as bar:
        rounds = args.repeats if args.repeats is not None else (1 if args.quick else 3)
        result = run_under_load(epochs=1 if args.quick else 2, rounds=rounds, load=args.under_load,
                                data_dir=args.data_dir, progress=bar.set_postfix_str)
    print(under_load_table(result))
    if args.json:
        write_json(args.json, {"machine": machine(), **result})
    return 0
