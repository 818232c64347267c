"""`xpnet bench --under-load`: `xpnet train` as a user runs it, on an idle machine and beside busy processes.

Each job is the real command (`xpnet train mnist --no-save --json FILE`, in a fresh process with no thread
count in its environment) with the default thread choice, with `--threads 1` and with `--threads N` (one per
core). "Loaded" jobs run while LOAD processes spin a pure-Python loop each, the way a browser tab or a
compile takes a core on a laptop; the load starts before the job and is stopped after it, so quiet jobs are
quiet. Jobs are interleaved round by round and each setting's figure is the median over rounds of its run's
training throughput (every epoch's samples over every epoch's training seconds: the default's thread trials
included).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from xpnet.backends.threads import THREAD_VARS, cores
from xpnet.bench.report import aligned
from xpnet.bench.runner import BenchError, rotated

JOB_TIMEOUT = 600  # seconds: a collapsed run on a loaded 2-core machine takes a few times the quiet one
SPIN = "while True: pass"


@dataclass(frozen=True)
class Job:
    threads: int | None  # None: xpnet's default choice
    loaded: bool

    @property
    def label(self) -> str:
        return ("default" if self.threads is None else f"{self.threads} thread{'s' * (self.threads != 1)}") + \
            (", loaded" if self.loaded else ", quiet")


def jobs(n_cores: int) -> list[Job]:
    settings: list[int | None] = [None, 1] + ([n_cores] if n_cores > 1 else [])
    return [Job(t, loaded) for loaded in (False, True) for t in settings]


def train_command(job: Job, epochs: int, backend: str, data_dir: str | None, json_path: str) -> list[str]:
    cmd = [sys.executable, "-m", "xpnet", "train", "mnist", "--backend", backend, "--epochs", str(epochs),
           "--no-save", "--no-progress", "--json", json_path]
    cmd += ["--threads", str(job.threads)] if job.threads is not None else []
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def job_env() -> dict[str, str]:
    """The environment of a user's shell: no thread count (else the default would be the user's), no bars."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["TQDM_DISABLE"] = "1"
    return env


def start_load(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL) for _ in range(n)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def run_job(job: Job, epochs: int, backend: str, data_dir: str | None, load: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xpnet-load-") as tmp:
        out = str(Path(tmp) / "run.json")
        spinners = start_load(load) if job.loaded else []
        try:
            began = time.perf_counter()
            proc = subprocess.run(train_command(job, epochs, backend, data_dir, out), capture_output=True, text=True,
                                  timeout=JOB_TIMEOUT, env=job_env(), check=False)
            wall = time.perf_counter() - began
        except subprocess.TimeoutExpired:
            raise BenchError(f"xpnet train ({job.label}): no result in {JOB_TIMEOUT} s") from None
        finally:
            stop_load(spinners)
        if proc.returncode != 0 or not Path(out).exists():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise BenchError(f"xpnet train ({job.label}) failed (exit {proc.returncode}): {tail}")
        epochs_run = json.loads(Path(out).read_text())["epochs"]
    seconds = sum(e["seconds"] for e in epochs_run)
    samples = sum(e["samples_per_second"] * e["seconds"] for e in epochs_run)
    return {"samples_per_second": samples / seconds, "train_seconds": seconds, "wall_seconds": wall}


def run_under_load(epochs: int = 2, rounds: int = 3, load: int = 1, backend: str = "numpy",
                   data_dir: str | None = None, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Every job of `jobs()` once per round, in an order rotated each round; the medians and the two ratios."""
    if min(epochs, rounds, load) < 1:
        raise ValueError(f"epochs, rounds and load must be positive, got {epochs}, {rounds}, {load}")
    todo = jobs(cores())
    runs: dict[Job, list[dict[str, Any]]] = {j: [] for j in todo}
    for r in range(rounds):
        for job in rotated(todo, r):
            progress(f"{job.label}, round {r + 1}/{rounds}")
            runs[job].append(run_job(job, epochs, backend, data_dir, load))
    rows = [_row(job, found) for job, found in runs.items()]
    return {"under_load": {"backend": backend, "epochs": epochs, "rounds": rounds, "load_processes": load,
                           "cores": cores(), "rows": rows, **_ratios(rows)}}


def _row(job: Job, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["samples_per_second"] for r in runs]
    return {"threads": "default" if job.threads is None else job.threads, "loaded": job.loaded,
            "samples_per_second": statistics.median(rates), "min_samples_per_second": min(rates),
            "max_samples_per_second": max(rates), "wall_seconds": statistics.median(r["wall_seconds"] for r in runs),
            "runs": runs}


def _ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    def rate(threads: Any, loaded: bool) -> float:
        return next(r["samples_per_second"] for r in rows if r["threads"] == threads and r["loaded"] == loaded)

    best_fixed = max(r["samples_per_second"] for r in rows if not r["loaded"] and r["threads"] != "default")
    quiet = rate("default", False)
    return {"loaded_over_quiet_default": rate("default", True) / quiet, "quiet_default_over_best_fixed": quiet / best_fixed}


def under_load_table(result: dict[str, Any]) -> str:
    u = result["under_load"]
    head = ["threads", "quiet samples/s", "min-max", "wall", "loaded samples/s", "min-max", "wall", "loaded/quiet"]
    lines = [head]
    for threads in dict.fromkeys(r["threads"] for r in u["rows"]):
        q, ld = (next(r for r in u["rows"] if r["threads"] == threads and r["loaded"] == x) for x in (False, True))
        lines.append([str(threads)] + _cells(q) + _cells(ld) + [f"{ld['samples_per_second'] / q['samples_per_second']:.2f}x"])
    text = aligned(lines)
    spin = f"{u['load_processes']} busy process{'es' * (u['load_processes'] != 1)}"
    text.append(f"\n`xpnet train mnist --backend {u['backend']} --epochs {u['epochs']}` per job, {u['cores']} cores; "
                f"loaded: beside {spin} (a pure-Python loop each); median of {u['rounds']} interleaved rounds of the "
                f"run's training throughput; wall: the whole command.\n"
                f"default loaded / default quiet: {u['loaded_over_quiet_default']:.2f}x; "
                f"default quiet / best fixed count quiet: {u['quiet_default_over_best_fixed']:.2f}x")
    return "\n".join(text)


def _cells(row: dict[str, Any]) -> list[str]:
    return [f"{row['samples_per_second']:,.0f}",
            f"{row['min_samples_per_second']:,.0f}-{row['max_samples_per_second']:,.0f}", f"{row['wall_seconds']:.1f} s"]
