"""`xpnet bench --processes 1,2`: data-parallel scaling on this machine. Each layout (processes x threads per
process) trains the same global batches; one job per layout and round (an MPI job of that many processes,
or one plain process), the layouts' order rotating every round; medians over rounds, and the allreduce's
share of a step as the processes themselves timed it (waiting for the slowest process included).

Layouts for `--processes 1,2` on a 2-core machine: 1 x 2 threads, 1 x 1 thread, 2 x 1 thread: every
process count with the machine's cores shared among its processes, plus one process on one thread, the
baseline of the speed-ups and efficiencies (speed-up / cores used).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from xpnet.backends.threads import cores
from xpnet.bench.report import aligned
from xpnet.bench.runner import BenchError, rotated

JOB_TIMEOUT = 600  # seconds a job may take before it is killed (a hung collective fails the bench, not hangs it)


@dataclass(frozen=True)
class Layout:
    processes: int
    threads: int

    @property
    def label(self) -> str:
        return f"{self.processes} x {self.threads}"


def layouts(processes: list[int], cores: int) -> list[Layout]:
    """Each process count with the cores shared among its processes, then 1 x 1 (the baseline), once each."""
    found = {Layout(p, max(1, cores // p)) for p in processes} | {Layout(1, 1)}
    return sorted(found, key=lambda lay: (lay.processes, -lay.threads))


def mpiexec() -> str:
    """The mpiexec beside this Python (the venv's, from the mpich wheel), else the one on PATH."""
    beside = Path(sys.executable).with_name("mpiexec")
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        raise BenchError('--processes needs mpiexec: pip install -e ".[mpi]" (mpi4py and MPICH), or an MPI on PATH')
    return found


def job_command(layout: Layout, worker_args: list[str]) -> list[str]:
    worker = [sys.executable, "-m", "xpnet.bench.scaling_worker", "--threads", str(layout.threads), *worker_args]
    if layout.processes == 1:
        return [*worker, "--distributed", "none"]
    return [mpiexec(), "-n", str(layout.processes), *worker, "--distributed", "mpi"]


def run_job(command: list[str]) -> dict[str, Any]:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=JOB_TIMEOUT, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(command[:4])} ...: no result in {JOB_TIMEOUT} s") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{' '.join(command[:4])} ... failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1][len("RESULT "):])


def run_scaling(config: Any, processes: list[int], progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """config: the bench's BenchConfig (model, first batch size and optimizer, samples, repeats = rounds)."""
    if min(processes) < 1:
        raise ValueError(f"--processes must be positive, got {processes}")
    batch, optimizer = config.batch_sizes[0], config.optimizers[0]
    worker_args = ["--model", config.model, "--batch-size", str(batch), "--optimizer", optimizer,
                   "--samples", str(config.samples), "--seed", str(config.seed)]
    worker_args += ["--data-dir", config.data_dir] if config.data_dir else []
    todo = layouts(processes, cores())
    results: dict[Layout, list[dict[str, Any]]] = {lay: [] for lay in todo}
    for r in range(config.repeats):
        for lay in rotated(todo, r):
            progress(f"{lay.label} round {r + 1}/{config.repeats}")
            results[lay].append(run_job(job_command(lay, worker_args)))
    rows = [_row(lay, runs) for lay, runs in results.items()]
    base = next(row for row in rows if row["processes"] == 1 and row["threads"] == 1)["samples_per_second"]
    alone = max((row for row in rows if row["processes"] == 1), key=lambda row: row["threads"])
    for row in rows:
        row["speedup"] = row["samples_per_second"] / base
        row["efficiency"] = row["speedup"] / (row["processes"] * row["threads"])
        row["vs_one_process"] = row["samples_per_second"] / alone["samples_per_second"]  # on as many threads as cores
    return {"scaling": {"model": config.model, "batch_size": batch, "optimizer": optimizer, "samples": config.samples,
                        "rounds": config.repeats, "cores": cores(), "rows": rows}}


def _row(lay: Layout, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [run["samples"] / s for run in runs for s in run["epoch_seconds"]]
    shares = [share for run in runs for share in run["allreduce_share"]]
    return {"processes": lay.processes, "threads": lay.threads, "samples_per_second": statistics.median(rates),
            "min_samples_per_second": min(rates), "max_samples_per_second": max(rates),
            "allreduce_share": statistics.median(shares) if lay.processes > 1 else None,
            "allreduces_per_epoch": runs[0]["allreduces_per_epoch"]}


def scaling_table(result: dict[str, Any]) -> str:
    s = result["scaling"]
    alone = max(r["threads"] for r in s["rows"] if r["processes"] == 1)
    head = ["processes x threads", "samples/s (median)", "min-max", "speed-up", "efficiency", f"x (1 x {alone})",
            "allreduce share"]
    lines = [head]
    for r in s["rows"]:
        share = "-" if r["allreduce_share"] is None else f"{100 * r['allreduce_share']:.1f}% of a step"
        lines.append([f"{r['processes']} x {r['threads']}", f"{r['samples_per_second']:,.0f}",
                      f"{r['min_samples_per_second']:,.0f}-{r['max_samples_per_second']:,.0f}",
                      f"{r['speedup']:.2f}x", f"{100 * r['efficiency']:.0f}%", f"{r['vs_one_process']:.2f}", share])
    text = aligned(lines)
    text.append(f"\n{s['model']}, global batch {s['batch_size']}, {s['optimizer']}, {s['samples']:,} samples per "
                f"epoch; median of {s['rounds']} rounds (one job per layout and round, warm-up epoch excluded), "
                f"{s['cores']} cores. Speed-up over 1 x 1; efficiency = speed-up / cores used.")
    return "\n".join(text)
