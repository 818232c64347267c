"""Real MPI jobs (`mpiexec -n 2`, each under a timeout, so a deadlock fails fast): 2 processes train as 1
does (MLP, LeNet), a NaN on one process stops both, rank 0 alone writes files, and a run whose process was
stopped with SIGTERM or killed with -9 ends in bounded time and resumes bit-identically.

mpi4py and mpiexec come with the [mpi] extra (CI installs it); without them these tests skip, except in CI
(the `mpiexec` fixture, tests/conftest.py).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xpnet.io.checkpoint import checkpoint_files, load_model

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "tests" / "helpers" / "mpi_train.py"
MPIEXEC = Path(sys.executable).with_name("mpiexec")
TIMEOUT = 120  # seconds any one job may take: several times what it needs


@pytest.fixture(autouse=True, scope="module")
def _needs_mpi(mpiexec: Path) -> None:
    """Skips the module where the [mpi] extra is missing (fails in CI)."""


def run(args: list[str], mnist: Path, n: int | None = 2, tag: str = "", **kw: Any) -> subprocess.CompletedProcess:
    """`mpiexec -n N ARGS` (or ARGS alone when n is None), with a timeout; MPMD when ARGS holds ':'."""
    env = {**os.environ, "XPNET_TEST_MNIST": str(mnist), "XPNET_DATA_DIR": str(mnist), "TQDM_DISABLE": "1",
           "XPNET_TEST_TAG": tag}
    command = args if n is None else [str(MPIEXEC), "-n", str(n), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False, **kw)


def helper(cfg: dict[str, Any], mnist: Path, n: int | None = 2) -> subprocess.CompletedProcess:
    return run([sys.executable, str(HELPER), json.dumps(cfg)], mnist, n)


def weights(path: str) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.parametrize("model,samples,batch", [("mlp", 12800, 64), ("lenet", 1024, 32)])
def test_two_processes_train_as_one_does(model, samples, batch, tmp_path, mnist_dir):
    """400 Adam steps of the MLP (64 of LeNet on 1,024 images): the same weights to float32 rounding, and
    both processes hold the very same bits."""
    cfg = {"model": model, "samples": samples, "batch_size": batch}
    one = helper({**cfg, "out": str(tmp_path / "one")}, mnist_dir, n=None)
    two = helper({**cfg, "out": str(tmp_path / "two")}, mnist_dir)
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-2000:] + two.stderr[-2000:]
    r1, r2 = (json.loads(p.stdout.split("RESULT ")[-1]) for p in (one, two))
    assert (r1["size"], r2["size"], r1["steps"], r2["steps"]) == (1, 2, 2 * samples // batch, 2 * samples // batch)
    np.testing.assert_allclose(r2["train_loss"], r1["train_loss"], rtol=1e-5)
    w1, w2a, w2b = (weights(str(tmp_path / f"{n}.npz")) for n in ("one-rank0", "two-rank0", "two-rank1"))
    assert all(np.array_equal(a, b) for a, b in zip(w2a, w2b))
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2a))
    assert diff < 2e-5, diff


def test_a_nan_on_one_process_stops_both(tmp_path, mnist_dir):
    """Batch 18 (rows 1088-1151, no shuffle): rank 1's half overflows. Both processes stop at that step, exit 2,
    and the one message (rank 0's) names the step and the process whose loss went wrong."""
    cfg = {"model": "mlp", "samples": 4096, "batch_size": 64, "epochs": 1, "shuffle": False,
           "poison_rows": [1120, 1152], "out": str(tmp_path / "nan")}
    started = time.monotonic()
    proc = helper(cfg, mnist_dir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert time.monotonic() - started < 60
    lines = [line for line in proc.stderr.splitlines() if "loss became" in line]
    assert len(lines) == 1, proc.stderr
    assert "epoch 1, batch 18 (optimizer step 18)" in lines[0] and "process 1: the output of layer 0" in lines[0]
    assert not list(tmp_path.glob("nan-*"))  # neither process went on to the end


def cli(mnist: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "xpnet", "train", "mnist", "--epochs", "2", "--no-progress", "--backend", "numpy",
            "--data-dir", str(mnist), *extra]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mpiexec, mnist_dir) -> dict[str, Any]:
    """`xpnet train mnist` for 2 epochs on 2 processes, each given its own files to write (MPMD): rank 0's are
    written, rank 1's never; and what it printed, once."""
    d = tmp_path_factory.mktemp("whole")
    mine = [f"--save={d / 'a.safetensors'}", f"--json={d / 'a.json'}", f"--checkpoint-dir={d / 'A'}"]
    theirs = [f"--save={d / 'b.safetensors'}", f"--json={d / 'b.json'}", f"--checkpoint-dir={d / 'B'}"]
    proc = run([str(mpiexec), "-n", "1", *cli(mnist_dir, *mine), ":", "-n", "1", *cli(mnist_dir, *theirs)],
               mnist_dir, n=None, cwd=d)
    return {"dir": d, "proc": proc}


def test_rank_0_alone_prints_and_writes_files(uninterrupted):
    d, proc = uninterrupted["dir"], uninterrupted["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in d.iterdir()) == ["A", "a.json", "a.safetensors"]
    assert [p.name for p in checkpoint_files(d / "A")] == ["ckpt-e0001-b000469.safetensors",
                                                              "ckpt-e0002-b000469.safetensors"]
    out = proc.stdout.splitlines()
    assert sum("xpnet: training mnist" in line for line in out) == 1 and "on 2 processes (MPI" in out[0]
    assert sum(line.startswith("epoch ") for line in out) == 2 and sum("saved model" in line for line in out) == 1
    summary = json.loads((d / "a.json").read_text())
    assert summary["epochs"][-1]["test_accuracy"] > 0.96


def _rank_pid(tag: str, rank: int, deadline: float) -> int:
    """The pid of rank `rank` of the job whose environment carries XPNET_TEST_TAG=tag (Linux /proc)."""
    want = {f"XPNET_TEST_TAG={tag}".encode(), f"PMI_RANK={rank}".encode()}
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    env = set((entry / "environ").read_bytes().split(b"\0"))
                except OSError:
                    continue
                if want <= env:
                    return int(entry.name)
        time.sleep(0.01)
    raise AssertionError(f"no rank {rank} of job {tag} found")


def _signal_rank_after_first_checkpoint(mnist: Path, ckpt: Path, sig: int) -> subprocess.CompletedProcess:
    """Start the 2-process run, wait for its first step checkpoint, send `sig` to rank 1 alone."""
    tag = uuid.uuid4().hex
    env = {**os.environ, "XPNET_TEST_TAG": tag, "TQDM_DISABLE": "1"}
    args = [str(MPIEXEC), "-n", "2", *cli(mnist, "--no-save", f"--checkpoint-dir={ckpt}", "--checkpoint-every=50",
                                          "--keep=100")]
    job = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + TIMEOUT
        pid = _rank_pid(tag, 1, deadline)
        while not checkpoint_files(ckpt) and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.005)
        os.kill(pid, sig)
        started = time.monotonic()
        out, err = job.communicate(timeout=TIMEOUT)
        assert time.monotonic() - started < 30, "the job outlived the lost process by more than 30 s"
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    return subprocess.CompletedProcess(args, job.returncode, out, err)


def _resume_and_compare(mnist: Path, ckpt: Path, whole: Path) -> None:
    resumed = run(cli(mnist, f"--checkpoint-dir={ckpt}", "--resume", f"--save={ckpt / 'r.safetensors'}"), mnist)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    model = load_model(ckpt / "r.safetensors")
    reference = load_model(whole / "a.safetensors")
    for a, b in zip(model.parameters(), reference.parameters()):
        assert np.array_equal(np.asarray(a.value), np.asarray(b.value))


def test_sigterm_to_one_process_stops_both_after_one_step_and_resumes_exactly(tmp_path, mnist_dir, uninterrupted):
    """Only rank 1 gets SIGTERM: both stop after the same step, rank 0 writes one checkpoint there and says so
    once, every process exits 130; resuming ends with the uninterrupted run's weights, bit for bit."""
    ckpt = tmp_path / "ckpt"
    proc = _signal_rank_after_first_checkpoint(mnist_dir, ckpt, signal.SIGTERM)
    assert proc.returncode == 130, proc.stderr[-3000:]
    said = [line for line in proc.stderr.splitlines() if "interrupted at epoch" in line]
    assert len(said) == 1 and "checkpoint saved to" in said[0], proc.stderr
    saved = said[0].split("checkpoint saved to ")[1].split(" ")[0]
    assert Path(saved) == checkpoint_files(ckpt)[-1]
    _resume_and_compare(mnist_dir, ckpt, uninterrupted["dir"])


def test_kill_9_of_one_process_ends_the_job_and_resume_is_exact(tmp_path, mnist_dir, uninterrupted):
    """kill -9 of rank 1 mid-run: mpiexec (MPICH's hydra) ends rank 0 too, within seconds, saying which
    process died and how; resuming from the newest checkpoint ends bit-identical to the uninterrupted run."""
    ckpt = tmp_path / "ckpt"
    proc = _signal_rank_after_first_checkpoint(mnist_dir, ckpt, signal.SIGKILL)
    assert proc.returncode != 0
    assert "BAD TERMINATION" in proc.stdout + proc.stderr and "signal 9" in proc.stdout + proc.stderr
    assert checkpoint_files(ckpt), "the run was killed before its first checkpoint"
    _resume_and_compare(mnist_dir, ckpt, uninterrupted["dir"])


def test_distributed_mpi_on_one_process_without_mpiexec(tmp_path, mnist_dir):
    """--distributed mpi outside a launcher: MPI's one-process world, the same training through the reducer."""
    proc = run([sys.executable, "-m", "xpnet", "train", "linear", "--epochs", "5", "--no-progress", "--no-save",
                "--distributed", "mpi"], mnist_dir, n=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on 1 process (MPI" in proc.stdout and "learned y =" in proc.stdout


def test_an_error_on_one_process_ends_the_job_with_its_message(tmp_path, mnist_dir):
    """Rank 0 alone is given a file it cannot write: it says so, with its rank, and ends the job (MPI_Abort)
    at once, rather than leaving rank 1 waiting for it in a collective."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    args = ["xpnet", "train", "linear", "--epochs", "2", "--no-progress"]
    started = time.monotonic()
    proc = run([str(MPIEXEC), "-n", "1", sys.executable, "-m", *args, f"--save={blocked / 'model.safetensors'}",
                ":", "-n", "1", sys.executable, "-m", *args, "--no-save"], mnist_dir, n=None)
    assert time.monotonic() - started < 60
    assert proc.returncode == 2, proc.stdout + proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("xpnet: process 0 of 2: ")]
    assert len(said) == 1 and "--save" in said[0] and said[0].endswith("ending the job"), proc.stderr
