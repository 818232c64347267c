"""Runs the contenders side by side: one worker process each, warm-up excluded, repeats interleaved
(the order rotates every round, so drift on a shared machine spreads evenly), medians with min-max.

The CPU floor's GEMM rate is a participant in those rounds too: measured once per round, in its rotating
place among the contenders' epochs, and the floor is the median over all rounds: a single measurement would
catch one moment of a busy machine, and every "% of GEMM floor" would move with it."""
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


class Unavailable(BenchError):
    """A contender cannot run here (no CUDA device, compilation failed): skipped, with this reason."""


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
    compile_mode: str | None = None  # torch-cuda-compile's torch.compile mode; None: torch_cuda.COMPILE_MODE


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
    epoch_ms_60k: float = 0.0  # milliseconds a whole 60,000-sample MNIST epoch takes at the median rate


class Worker:
    """A contender's process and the pipe to it."""

    def __init__(self, name: str, config: BenchConfig) -> None:
        ctx = mp.get_context("spawn")
        self.name = name
        self.conn, child = ctx.Pipe()
        from xpnet.bench.worker import serve

        self.process = ctx.Process(target=serve, args=(child, name, config.threads, config.data_dir, config.samples,
                                                       config.compile_mode), daemon=True)
        self.process.start()
        child.close()  # only the worker holds that end now: its death reads as EOF here, not as a hang
        try:
            self.info = self._answer("start")
        except BenchError:
            self.close()
            raise

    def _answer(self, what: str) -> Any:
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            raise self._died(what) from None
        if status == "unavailable":
            raise Unavailable(value)
        if status == "error":
            raise BenchError(f"{self.name}: {what} failed: {value.strip().splitlines()[-1] if value else ''}")
        return value

    def _died(self, what: str) -> BenchError:
        self.process.join(timeout=10)
        return BenchError(f"{self.name}: the worker process died during {what} (exit code {self.process.exitcode})")

    def call(self, *msg: Any) -> Any:
        try:
            self.conn.send(msg)
        except OSError:  # BrokenPipeError: the worker is gone
            raise self._died(msg[0]) from None
        return self._answer(msg[0])

    def close(self) -> None:
        try:
            self.conn.send(("quit",))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def run_throughput(config: BenchConfig, progress: Progress = lambda s: None,
                   gemm_timer: Callable[[], float] | None = None) -> dict[str, Any]:
    """Every contender x batch size x optimizer: samples/s over whole epochs. Returns a JSON-able dict.

    gemm_timer: one float32 GEMM rate measurement in GFLOP/s (default: round_gemm_gflops), taken once per
    repeat round; "gemm_gflops" is their median, "gemm_gflops_rounds" every one in the order taken.
    A contender that cannot run here (a CUDA one without a GPU; torch.compile failing at set-up) is left out
    and named under "skipped" with the reason; if none can run, BenchError says why for each."""
    from xpnet.backends.threads import set_threads

    set_threads(config.threads)  # the GEMM runs in this process, on as many threads as each contender
    flops = training_flops(config.model)
    skipped: dict[str, str] = {}
    times: dict[tuple[str, int, str], list[float]] = {}
    gemm_rounds: list[float] = []
    timer = gemm_timer or round_gemm_gflops
    workers = _start_workers(config, progress, skipped)
    try:
        info = {label(w.name): w.info for w in workers}
        # GPU contenders measure their GPU's GEMM rate; the best of those is every GPU contender's floor
        gpu_gemm = max((w.info.get("gemm_gflops") or 0.0 for w in workers), default=0.0) or None
        on_gpu = {w.name for w in workers if w.info.get("gemm_gflops")}
        for batch in config.batch_sizes:
            for optimizer in config.optimizers:
                measured = _measure(workers, config, batch, optimizer, progress, skipped, timer, gemm_rounds)
                times.update({(name, batch, optimizer): t for name, t in measured.items()})
    finally:
        for w in workers:
            w.close()
    gemm = statistics.median(gemm_rounds)
    rows = [_row(name, batch, optimizer, t, config.samples, flops, gpu_gemm if name in on_gpu else gemm)
            for (name, batch, optimizer), t in times.items()]
    return {"config": asdict(config), "gemm_gflops": gemm, "gemm_gflops_rounds": gemm_rounds,
            "gpu_gemm_gflops": gpu_gemm, "flops_per_sample": flops, "contenders": info,
            "rows": [asdict(r) for r in rows], "skipped": skipped}


def round_gemm_gflops() -> float:
    """One round's float32 1024^3 GEMM rate: best of 3 back-to-back products (a short burst, so the round's
    own moment is what it measures; the median over rounds smooths the moments)."""
    return gemm_gflops(repeats=3)


def _start_workers(config: BenchConfig, progress: Progress, skipped: dict[str, str]) -> list[Worker]:
    """A started worker per contender that can run here; the others go into `skipped` with the reason."""
    workers: list[Worker] = []
    try:
        for name in config.contenders:
            progress(f"starting {name}")
            try:
                workers.append(Worker(name, config))
            except Unavailable as exc:
                skipped[label(name)] = str(exc)
    except BaseException:  # a failing start must not leave the workers already started running
        for w in workers:
            w.close()
        raise
    if not workers:
        raise BenchError("no contender can run here: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return workers


def label(name: str) -> str:
    """'xpnet-numpy' for xpnet on a backend (xpnet-cupy-graph, xpnet-numpy-portable); references keep theirs."""
    from xpnet.bench.contenders import REFERENCE_NAMES

    return name if name in REFERENCE_NAMES else f"xpnet-{name}"


def _measure(workers: list[Worker], config: BenchConfig, batch: int, optimizer: str, progress: Progress,
             skipped: dict[str, str], gemm_timer: Callable[[], float],
             gemm_rounds: list[float]) -> dict[str, list[float]]:
    """One (batch size, optimizer): set-up and a warm-up epoch each, then interleaved repeats, each round also
    appending one GEMM measurement to `gemm_rounds`. Returns each contender's epoch seconds. A contender that
    becomes unavailable at set-up leaves `workers` (closed) for the rest of the run, into `skipped`."""
    for w in list(workers):
        try:
            w.call("setup", batch, optimizer, config.seed, config.model)
        except Unavailable as exc:
            skipped[label(w.name)] = f"{exc} (at batch {batch}, {optimizer})"
            workers.remove(w)
            w.close()
            continue
        progress(f"{w.name} batch {batch} {optimizer}: warm-up")
        w.call("epoch", 0)
    times: dict[str, list[float]] = {w.name: [] for w in workers}
    for r in range(config.repeats):
        for w in rotated([*workers, None], r):  # None: the GEMM, rotating with the contenders
            if w is None:
                progress(f"float32 GEMM rate: round {r + 1}/{config.repeats}")
                gemm_rounds.append(gemm_timer())
            else:
                progress(f"{w.name} batch {batch} {optimizer}: repeat {r + 1}/{config.repeats}")
                times[w.name].append(w.call("epoch", r + 1))
    return times


def rotated(items: list[Any], r: int) -> list[Any]:
    """`items` in round `r`'s order: started r places further on each round, so that every item takes every
    place in turn and a machine's drift over the run falls on all of them alike."""
    k = r % len(items)
    return items[k:] + items[:k]


def _row(name: str, batch: int, optimizer: str, seconds: list[float], samples: int, flops: int,
         floor_gflops: float) -> Row:
    rates = [samples / t for t in seconds]
    median = statistics.median(rates)
    return Row(label(name), batch, optimizer, median, min(rates), max(rates), seconds,
               median * flops / (floor_gflops * 1e9), 60000 / median * 1e3)


def run_to_accuracy(config: BenchConfig, target: float, progress: Progress = lambda s: None) -> list[dict[str, Any]]:
    """For each xpnet backend among the contenders: training seconds to first reach `target` test accuracy.
    One that cannot run here gives {"contender", "skipped": reason}."""
    from xpnet.bench.contenders import REFERENCE_NAMES

    out = []
    for name in [c for c in config.contenders if c not in REFERENCE_NAMES]:
        progress(f"{name}: training to {target:.1%} test accuracy")
        try:
            worker = Worker(name, BenchConfig([name], [], [], samples=1, threads=config.threads,
                                              data_dir=config.data_dir))
        except Unavailable as exc:
            out.append({"contender": label(name), "skipped": str(exc)})
            continue
        try:
            out.append({**worker.call("to_accuracy", target, config.data_dir), "contender": label(name)})
        finally:
            worker.close()
    if out and all("skipped" in r for r in out):
        raise BenchError("no contender can run here: " + "; ".join(f"{r['contender']}: {r['skipped']}" for r in out))
    return out
