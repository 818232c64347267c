"""Hostile cases run the way an attacker's file would be: in a fresh process whose address space is capped at
what a normal run of the same command needs plus HEADROOM, with a timeout that only guards against a hang.
A case passes when it ends in one clean error line (exit 2) under that cap; a MemoryError would surface as a
traceback and fail it. Test files load this module by path: tests/ is not a package.

    hostile = load_helper()        # in a test file
    outcome = hostile.run_case("cli", "eval", "--model", str(path))
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("limited_run.py")
HEADROOM = 500 * 1024 * 1024
TIMEOUT_S = 60  # a hang guard: every case ends in well under a few seconds
# One BLAS thread: fewer per-thread arenas, so the baseline and the hostile run map alike on any machine.
ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XPNET_BACKEND": "numpy",
       "TQDM_DISABLE": "1"}


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    peak: int  # VmPeak in bytes

    @property
    def one_line(self) -> bool:
        """The error is one line, with no traceback (and so no MemoryError either)."""
        lines = self.stderr.strip().splitlines()
        return len(lines) == 1 and "Traceback" not in self.stderr


def run_case(kind: str, *args: str, limit: int | None = None, cwd: str | Path | None = None,
             like: tuple[str, ...] = ()) -> Outcome:
    """Run `limited_run.py` with `limit` bytes of address space (None: the baseline + HEADROOM, the baseline
    being baseline() or, given `like`, what `xpnet LIKE...` maps, e.g. a command's --help for its imports;
    0: no limit)."""
    if limit is None:
        limit = (command_baseline(like) if like else baseline()) + HEADROOM
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        proc = subprocess.run([sys.executable, str(SCRIPT), str(limit), str(peak_file), kind, *args],
                              capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd,
                              env={**os.environ, **ENV})
        peak = int(peak_file.read_text()) if peak_file.exists() else 0
    return Outcome(proc.returncode, proc.stdout, proc.stderr, peak)


@functools.lru_cache(maxsize=None)
def command_baseline(argv: tuple[str, ...]) -> int:
    """The peak address space of `xpnet ARGV...`: a benign run of a command that stops where the hostile case
    stops (a usage error after the same imports is fine), so only what the hostile input adds is measured."""
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_case("cli", *argv, limit=0, cwd=tmp)
    assert outcome.peak > 0, outcome.stderr
    return outcome.peak


@functools.lru_cache(maxsize=1)
def baseline() -> int:
    """The largest address space the normal runs of the commands the cases use need: training with
    checkpoints, evaluating a model, resuming."""
    with tempfile.TemporaryDirectory() as tmp:
        model, ckpt = Path(tmp) / "m.safetensors", Path(tmp) / "ckpt"
        runs = [("train", "linear", "--epochs", "2", "--no-progress", "--save", str(model),
                 "--checkpoint-dir", str(ckpt)),
                ("eval", "--model", str(model)),
                ("train", "linear", "--epochs", "3", "--no-progress", "--no-save", "--checkpoint-dir", str(ckpt),
                 "--resume")]
        peaks = []
        for argv in runs:
            outcome = run_case("cli", *argv, limit=0)
            assert outcome.code == 0, outcome.stderr
            peaks.append(outcome.peak)
    return max(peaks)
