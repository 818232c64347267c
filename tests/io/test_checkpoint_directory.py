"""One run at a time in a checkpoint directory (a second is refused at once, naming the holder; a killed holder
frees it), and rotation that never keeps a damaged checkpoint in place of an intact one."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.errors import CheckpointError
from xpnet.io import Checkpoints, checkpoint_files, load_checkpoint
from xpnet.io.dirlock import LOCK_NAME, directory_lock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
import hostile  # noqa: E402

X = np.random.default_rng(0).random((64, 4), dtype=np.float32)
Y = (X[:, 0] > 0.5).astype(np.int64)


class Crash(Exception):
    """A run killed after a given number of optimizer steps."""


def _fit(directory: Path, epochs: int, every: int, keep: int | None, resume: bool, crash_after: int | None = None):
    model = xn.Sequential([xn.Dense(4, 2, rng=np.random.default_rng(0))])
    opt = xn.SGD(model.parameters(), lr=0.1)
    if crash_after is not None:
        step = opt.step

        def crashing(*args, **kwargs):
            if opt.steps >= crash_after:
                raise Crash
            step(*args, **kwargs)

        opt.step = crashing
    xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (X, Y), epochs=epochs, batch_size=16,
           checkpoints=Checkpoints(directory, every_steps=every, keep=keep, resume=resume))


def _damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x40
    path.write_bytes(bytes(data))


def test_rotation_deletes_a_skipped_damaged_checkpoint_not_the_intact_one(tmp_path):
    _fit(tmp_path, epochs=2, every=3, keep=None, resume=False)  # e1-b3, e1-b4, e2-b3, e2-b4
    (tmp_path / "ckpt-e0002-b000004.safetensors").unlink()  # killed after e2-b3 ...
    _damage(tmp_path / "ckpt-e0002-b000003.safetensors")  # ... which is damaged
    with pytest.raises(Crash):  # resumes from e1-b4, checkpoints at e2-b2, is killed at its next step
        _fit(tmp_path, epochs=2, every=2, keep=1, resume=True, crash_after=4 + 3)
    assert [p.name for p in checkpoint_files(tmp_path)] == ["ckpt-e0002-b000002.safetensors"]
    model = xn.Sequential([xn.Dense(4, 2)])
    load_checkpoint(checkpoint_files(tmp_path)[0], model, xn.SGD(model.parameters(), lr=0.1))  # intact


def test_when_every_checkpoint_is_damaged_the_new_ones_are_kept(tmp_path):
    _fit(tmp_path, epochs=1, every=3, keep=None, resume=False)  # e1-b3, e1-b4
    for path in checkpoint_files(tmp_path):
        _damage(path)
    with pytest.raises(Crash):  # starts over, checkpoints at e1-b2, is killed at its next step
        _fit(tmp_path, epochs=1, every=2, keep=1, resume=True, crash_after=3)
    assert [p.name for p in checkpoint_files(tmp_path)] == ["ckpt-e0001-b000002.safetensors"]


def test_keep_none_keeps_even_damaged_files(tmp_path):
    _fit(tmp_path, epochs=1, every=3, keep=None, resume=False)
    _damage(tmp_path / "ckpt-e0001-b000004.safetensors")
    _fit(tmp_path, epochs=1, every=3, keep=None, resume=True)
    assert len(checkpoint_files(tmp_path)) == 2


def test_a_second_run_in_the_same_process_is_refused_naming_the_holder(tmp_path):
    with directory_lock(tmp_path):
        with pytest.raises(CheckpointError, match=rf"in use by another run \(pid {os.getpid()} on "
                                                  rf"{socket.gethostname()}, started "):
            _fit(tmp_path, epochs=1, every=2, keep=3, resume=True)
        assert checkpoint_files(tmp_path) == []  # refused before anything was written
    _fit(tmp_path, epochs=1, every=2, keep=3, resume=True)  # released: now it runs
    assert not (tmp_path / LOCK_NAME).exists()  # and leaves no lock file behind


HOLDER = ("import sys, time; from xpnet.io.dirlock import directory_lock\n"
          "with directory_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(120)")


def test_another_process_is_refused_at_once_and_a_killed_holder_frees_the_directory(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        argv = ["train", "linear", "--epochs", "3", "--no-progress", "--no-save", "--checkpoint-dir", str(tmp_path),
                "--resume"]
        refused = hostile.run_case("cli", *argv)
        assert refused.code == 2 and refused.one_line, refused.stderr
        assert f"pid {holder.pid} on {socket.gethostname()}" in refused.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert hostile.run_case("cli", *argv).code == 0  # the kernel dropped the dead holder's lock


def test_a_lock_file_that_is_a_symlink_is_refused(tmp_path):
    (tmp_path / LOCK_NAME).symlink_to("/dev/null")
    with pytest.raises(CheckpointError, match="lock file"):
        with directory_lock(tmp_path):
            pass
