"""Nothing lost: a run killed at random points (mid-epoch, mid-checkpoint-write) or stopped with Ctrl-C
resumes from its last intact checkpoint and ends bit-identical to a run that was never interrupted."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

import xpnet as xn
from xpnet.io import Checkpoints, checkpoint_files
from xpnet.io.safetensors_file import read_safetensors

SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "resumable_run.py"


def _start(directory: Path, result: Path, mode: str = "normal") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), str(directory), str(result), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _weights(path: Path) -> dict[str, np.ndarray]:
    return read_safetensors(path)[0]


def _reference(tmp_path: Path) -> dict[str, np.ndarray]:
    result = tmp_path / "reference.safetensors"
    proc = _start(tmp_path / "ref-ckpt", result)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip().endswith("done")
    return _weights(result)


def _run_until(proc: subprocess.Popen, stop_after: int | None, marker: str = "step") -> tuple[str, int]:
    """Read the child's lines; once `stop_after` lines start with `marker`, return ('kill', n)."""
    seen = 0
    for line in proc.stdout:
        if line.startswith(marker):
            seen += 1
            if stop_after is not None and seen >= stop_after:
                return "kill", seen
        if line.startswith("done"):
            break
    proc.wait(timeout=60)
    return "finished", seen


def test_random_sigkills_then_resume_give_bit_identical_weights(tmp_path):
    reference = _reference(tmp_path)
    directory, result = tmp_path / "ckpt", tmp_path / "result.safetensors"
    rng = random.Random(1234)
    kills = mid_write = 0
    for attempt in range(40):
        mode = "block-mid-write" if attempt % 3 == 2 else "normal"
        proc = _start(directory, result, mode)
        marker = "half-written" if mode == "block-mid-write" else "step"
        outcome, _ = _run_until(proc, 1 if mode == "block-mid-write" else rng.randint(5, 80), marker)
        if outcome == "finished":
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
        mid_write += mode == "block-mid-write"
    else:
        raise AssertionError("the run never finished")
    assert proc.returncode == 0
    print(f"{kills} SIGKILLs, {mid_write} of them inside a checkpoint write")
    assert kills >= 4 and mid_write >= 1, (kills, mid_write)
    final = _weights(result)
    assert final.keys() == reference.keys()
    for name in reference:
        np.testing.assert_array_equal(final[name], reference[name], err_msg=name)
    assert len(checkpoint_files(directory)) <= 2  # --keep 2


def test_ctrl_c_saves_a_checkpoint_and_the_resumed_run_matches(tmp_path):
    reference = _reference(tmp_path)
    directory, result = tmp_path / "ckpt", tmp_path / "result.safetensors"
    proc = _start(directory, result)
    assert _run_until(proc, 37)[0] == "kill"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "checkpoint saved to" in out
    newest = checkpoint_files(directory)[-1]
    assert read_safetensors(newest)[1]["batch"] >= 37  # saved where it stopped, not at the last periodic one
    proc = _start(directory, result)
    assert _run_until(proc, None)[0] == "finished" and proc.returncode == 0
    for name, value in reference.items():
        np.testing.assert_array_equal(_weights(result)[name], value, err_msg=name)


def test_a_corrupt_newest_checkpoint_is_reported_and_the_previous_one_used(tmp_path, capsys):
    x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)

    def run(epochs, resume, directory=tmp_path):
        model = xn.Sequential([xn.Dense(4, 2, rng=np.random.default_rng(0))])
        opt = xn.SGD(model.parameters(), lr=0.1)
        h = xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (x, y), epochs=epochs, batch_size=16,
                   checkpoints=Checkpoints(directory, keep=None, resume=resume))
        return model, h

    run(3, False)
    newest = checkpoint_files(tmp_path)[-1]
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in the weights
    newest.write_bytes(bytes(data))
    _, history = run(3, True)
    err = capsys.readouterr().err
    assert "skipping damaged checkpoint" in err and "checksum mismatch" in err and newest.name in err
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3]  # epoch 3 was redone from epoch 2's checkpoint
    resumed, _ = run(3, True)  # all three epochs done: nothing left to train, the weights are the checkpoint's
    straight, _ = run(3, False, tmp_path / "straight")
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a.value, b.value)


def test_a_checkpoint_evaluates_like_a_model_file(mnist_dir, tmp_path, capsys):
    from xpnet.cli import main

    assert main(["train", "linear", "--epochs", "300", "--no-progress", "--no-save",
                 "--checkpoint-dir", str(tmp_path)]) == 0
    newest = checkpoint_files(tmp_path)[-1]
    assert main(["eval", "--model", str(newest)]) == 0
    assert "(linear)" in capsys.readouterr().out
