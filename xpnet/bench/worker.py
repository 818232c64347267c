"""One benchmark contender in its own process, driven over a pipe.

A process per contender keeps thread pools and allocators apart (numpy's BLAS and torch spinning in one
process slow each other several times) and lets the parent interleave repeats across contenders.
"""
from __future__ import annotations

import traceback
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from xpnet.bench.base import Contender, ContenderUnavailable


def load_mnist_host(data_dir: str | None, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `samples` MNIST training images as (n, 784) float32 in [0, 1] and int64 labels."""
    from xpnet.data.mnist import load_mnist
    from xpnet.recipes import pixels

    x, y, _, _ = load_mnist(data_dir)
    return pixels(x[:samples]), y[:samples].astype(np.int64)


def serve(conn: Connection, name: str, threads: int, data_dir: str | None, samples: int,
          compile_mode: str | None = None) -> None:
    """Answer ('setup', batch, optimizer, seed, model), ('epoch', i), ('to_accuracy', target, data_dir) until
    ('quit',). Replies are ('ok', value), ('error', traceback) or ('unavailable', reason): the contender cannot
    run here (no CUDA device, a failed compilation), which the runner reports as a skip, not a failure."""
    started = _start(conn, name, threads, data_dir, samples, compile_mode)
    if started is None:
        return
    contender, x, y = started
    while True:
        msg: Any = conn.recv()
        if msg[0] == "quit":
            return
        try:
            conn.send(("ok", _answer(contender, x, y, msg)))
        except ContenderUnavailable as exc:
            conn.send(("unavailable", str(exc)))
        except Exception:
            conn.send(("error", traceback.format_exc()))


def _start(conn: Connection, name: str, threads: int, data_dir: str | None, samples: int,
           compile_mode: str | None) -> tuple[Contender, np.ndarray, np.ndarray] | None:
    """Make the contender and load its data; reply ('ready', info), or say why not and return None."""
    from xpnet.backends.threads import set_threads
    from xpnet.errors import BackendUnavailable

    try:
        set_threads(threads)
        if name.endswith("-portable"):  # xpnet with every fast path off: the pure Array API reference
            from xpnet.backends.ops import set_fast_paths

            set_fast_paths(False)
            name = name.removesuffix("-portable")
        from xpnet.bench.contenders import make_contender

        contender = make_contender(name, compile_mode)
        set_threads(threads)  # again: the contender may have just imported torch
        x, y = load_mnist_host(data_dir, samples)
        info = contender.info()
        gemm = contender.gemm_gflops()  # a GPU's own GEMM rate; None on the CPU
        if gemm is not None:
            info["gemm_gflops"] = gemm
        conn.send(("ready", info))
    except (ContenderUnavailable, BackendUnavailable) as exc:
        conn.send(("unavailable", str(exc)))
        return None
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return None
    return contender, x, y


def _answer(contender: Contender, x: np.ndarray, y: np.ndarray, msg: tuple[Any, ...]) -> Any:
    """The value the reply to one request carries."""
    if msg[0] == "setup":
        contender.setup(x, y, *msg[1:])
        return None
    if msg[0] == "epoch":
        return contender.epoch(msg[1])
    if msg[0] == "to_accuracy":
        from xpnet.bench.accuracy import time_to_accuracy

        return time_to_accuracy(contender.backend.name, *msg[1:], graph=getattr(contender, "graph", False))
    raise ValueError(f"unknown request {msg[0]!r}")
