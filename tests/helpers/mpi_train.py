"""Trains on a slice of real MNIST with fit(), alone or as one process of an MPI job, for
tests/distributed/test_mpi.py:

    mpiexec -n 2 python tests/helpers/mpi_train.py '{"model": "mlp", "samples": 12800, ...}'

Every process writes its final weights to OUT-rank{R}.npz; rank 0 prints `RESULT {json}` (steps, history).
A DivergedError is printed by rank 0 only, and every process exits 2, as `xpnet train` does.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import xpnet as xn  # noqa: E402
from xpnet.backends import get_backend  # noqa: E402
from xpnet.backends.threads import set_threads  # noqa: E402
from xpnet.core.optim import make_optimizer  # noqa: E402
from xpnet.data.mnist import load_mnist  # noqa: E402
from xpnet.distributed import communicator_for  # noqa: E402
from xpnet.errors import DivergedError  # noqa: E402
from xpnet.models import lenet, mnist_mlp  # noqa: E402
from xpnet.recipes import pixels  # noqa: E402


def main(cfg: dict) -> int:
    set_threads(1)
    backend = get_backend("numpy")
    comm = communicator_for(cfg.get("distributed", "auto"), backend)
    rank = 0 if comm is None else comm.rank
    x, y, _, _ = load_mnist(os.environ["XPNET_TEST_MNIST"])
    n = cfg["samples"]
    x, y = pixels(x[:n]), y[:n].astype(np.int64)
    lo, hi = cfg.get("poison_rows", (0, 0))
    x[lo:hi] = 3e38  # overflows the first layer: a non-finite loss on whichever process holds these rows
    model = {"mlp": mnist_mlp, "lenet": lenet}[cfg["model"]]("float32", 0)
    opt = make_optimizer(cfg.get("optimizer", "adam"), model.parameters(), cfg.get("lr"))
    try:
        with np.errstate(all="ignore"):
            history = xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (x, y), epochs=cfg.get("epochs", 2),
                             batch_size=cfg["batch_size"], seed=3, shuffle=cfg.get("shuffle", True),
                             on_nan=cfg.get("on_nan", "stop"), communicator=comm)
    except DivergedError as exc:
        if rank == 0:
            print(f"xpnet: {exc}", file=sys.stderr, flush=True)
        return 2
    np.savez(f"{cfg['out']}-rank{rank}.npz", *[np.asarray(p.value) for p in model.parameters()])
    if rank == 0:
        print("RESULT " + json.dumps({"steps": opt.steps, "train_loss": history["train_loss"],
                                      "skipped": history.skipped_steps,
                                      "size": 1 if comm is None else comm.size}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
