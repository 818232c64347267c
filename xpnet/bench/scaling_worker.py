"""One job of `xpnet bench --processes`: every process of an MPI job (or one plain process) trains the
benchmark's model for a warm-up epoch and timed epochs; process 0 prints one `RESULT {json}` line.

    mpiexec -n 2 python -m xpnet.bench.scaling_worker --threads 1 --batch-size 128 ...
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m xpnet.bench.scaling_worker")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--model", choices=["mlp", "lenet"], default="mlp")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1, help="timed epochs after the warm-up one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--distributed", choices=["auto", "mpi", "none"], default="auto")
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, Any] | None:
    """Epoch seconds and the allreduce's seconds per epoch (each process's); None on processes other than 0."""
    from xpnet.backends import get_backend
    from xpnet.backends.threads import set_threads
    from xpnet.bench.base import LR
    from xpnet.bench.worker import load_mnist_host
    from xpnet.core.losses import SoftmaxCrossEntropy
    from xpnet.core.optim import make_optimizer
    from xpnet.data.batches import epoch_order
    from xpnet.distributed.launch import communicator_for
    from xpnet.recipes import MNIST_MODELS
    from xpnet.training.fit import train_epoch

    set_threads(args.threads)
    backend = get_backend(args.backend)
    comm = communicator_for(args.distributed, backend)
    x_host, y_host = load_mnist_host(args.data_dir, args.samples)
    x, y = backend.asarray(x_host, "float32"), backend.asarray(y_host, "int64")
    model = MNIST_MODELS[args.model]("float32", args.seed).to(backend)
    optimizer = make_optimizer(args.optimizer, model.parameters(), LR[args.optimizer])
    loss = SoftmaxCrossEntropy(check_labels=False)
    seconds, reduce_seconds = [], []
    for epoch in range(args.epochs + 1):  # epoch 0: the warm-up
        before = 0.0 if comm is None else comm.allreduce_seconds
        _, took = train_epoch(backend, model, loss, optimizer, x, y, args.batch_size,
                              epoch_order(x.shape[0], args.seed, epoch), communicator=comm)
        if epoch:
            seconds.append(took)
            reduce_seconds.append(0.0 if comm is None else comm.allreduce_seconds - before)
    shares = [r / s for r, s in zip(reduce_seconds, seconds)]
    every = [shares] if comm is None else comm.gather(shares)
    if comm is not None and not comm.is_root:
        return None
    return {"processes": 1 if comm is None else comm.size, "threads": args.threads, "epoch_seconds": seconds,
            "samples": int(x.shape[0]), "allreduce_share": [sum(s) / len(s) for s in zip(*every)],
            "allreduces_per_epoch": 0 if comm is None else comm.allreduces // (args.epochs + 1)}


def main(argv: Sequence[str] | None = None) -> int:
    result = measure(parse(argv))
    if result is not None:
        print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
