"""Runs the contenders side by side: one worker process each, warm-up excluded, repeats interleaved
(the order rotates every round, so drift on a shared machine spreads evenly), medians with min-max."""
from __future__ import annotations

import multiprocessing as mp
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from xpnet.bench.flops import gemm_gflops, training_flops
from xpnet.errors import XpnetError

Progress = Callable[[str], None]


class BenchError(XpnetError, RuntimeError):
    """A contender failed to start or to run."""


@dataclass
class BenchConfig:
    contenders: list[str]
    batch_sizes: list[int]
    optimizers: list[str]
    repeats: int = 5
    samples: int = 60000
    threads: int = 1
    seed: int = 0
    data_dir: str | None = None
    model: str = "mlp"  # or "lenet"


@dataclass
class Row:
    contender: str
    batch_size: int
    optimizer: str
    samples_per_second: float  # median over repeats
    min_samples_per_second: float
    max_samples_per_second: float
    epoch_seconds: list[float] = field(default_factory=list)
    fraction_of_floor: float = 0.0  # achieved FLOP/s over the GEMM rate: 1.0 would be pure matmul speed


class Worker:
    """A contender's process and the pipe to it."""

    def __init__(self, name: str, config: BenchConfig) -> None:
        ctx = mp.get_context("spawn")
        self.name = name
        self.conn, child = ctx.Pipe()
        from xpnet.bench.worker import serve

        self.process = ctx.Process(target=serve, args=(child, name, config.threads, config.data_dir, config.samples),
                                   daemon=True)
        self.process.start()
        self.info = self._answer("start")

    def _answer(self, what: str) -> Any:
        status, value = self.conn.recv()
        if status == "error":
            raise BenchError(f"{self.name}: {what} failed: {value.strip().splitlines()[-1] if value else ''}")
        return value

    def call(self, *msg: Any) -> Any:
        self.conn.send(msg)
        return self._answer(msg[0])

    def close(self) -> None:
        try:
            self.conn.send(("quit",))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def run_throughput(config: BenchConfig, progress: Progress = lambda s: None) -> dict[str, Any]:
    """Every contender x batch size x optimizer: samples/s over whole epochs. Returns a JSON-able dict."""
    from xpnet.backends.threads import set_threads

    set_threads(config.threads)
    progress("measuring float32 GEMM rate")
    gemm = gemm_gflops()
    flops = training_flops(config.model)
    workers: list[Worker] = []
    try:
        for name in config.contenders:
            progress(f"starting {name}")
            workers.append(Worker(name, config))
        rows = []
        for batch in config.batch_sizes:
            for optimizer in config.optimizers:
                rows += _measure(workers, config, batch, optimizer, gemm, flops, progress)
    finally:
        for w in workers:
            w.close()
    return {"config": asdict(config), "gemm_gflops": gemm, "flops_per_sample": flops,
            "contenders": {label(w.name): w.info for w in workers}, "rows": [asdict(r) for r in rows]}


def label(name: str) -> str:
    """'xpnet-numpy' for xpnet on a backend; references keep their own names."""
    from xpnet.bench.contenders import REFERENCE_NAMES

    return name if name in REFERENCE_NAMES else f"xpnet-{name}"  # numpy-portable: xpnet-numpy-portable


def _measure(workers: list[Worker], config: BenchConfig, batch: int, optimizer: str, gemm: float, flops: int,
             progress: Progress) -> list[Row]:
    times: dict[str, list[float]] = {w.name: [] for w in workers}
    for w in workers:
        w.call("setup", batch, optimizer, config.seed, config.model)
        progress(f"{w.name} batch {batch} {optimizer}: warm-up")
        w.call("epoch", 0)
    for r in range(config.repeats):
        k = r % len(workers)
        for w in workers[k:] + workers[:k]:
            progress(f"{w.name} batch {batch} {optimizer}: repeat {r + 1}/{config.repeats}")
            times[w.name].append(w.call("epoch", r + 1))
    rows = []
    for w in workers:
        rates = [config.samples / t for t in times[w.name]]
        median = statistics.median(rates)
        rows.append(Row(label(w.name), batch, optimizer, median, min(rates), max(rates), times[w.name],
                        median * flops / (gemm * 1e9)))
    return rows


def run_to_accuracy(config: BenchConfig, target: float, progress: Progress = lambda s: None) -> list[dict[str, Any]]:
    """For each xpnet backend among the contenders: training seconds to first reach `target` test accuracy."""
    from xpnet.bench.contenders import REFERENCE_NAMES

    out = []
    for name in [c for c in config.contenders if c not in REFERENCE_NAMES]:
        progress(f"{name}: training to {target:.1%} test accuracy")
        worker = Worker(name, BenchConfig([name], [], [], samples=1, threads=config.threads, data_dir=config.data_dir))
        try:
            out.append({**worker.call("to_accuracy", target, config.data_dir), "contender": label(name)})
        finally:
            worker.close()
    return out
