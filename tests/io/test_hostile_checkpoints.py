"""Checkpoints made by an attacker (or another program): `xpnet train --resume` stops with one line naming the
file and the field, exit 2, under a normal run's address space + 500 MB and never hanging; damage (a flipped
bit, a cut file) is still skipped for the previous intact checkpoint."""
from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from pathlib import Path

import pytest

from xpnet.backends import get_backend
from xpnet.cli import main
from xpnet.core.optim import make_optimizer
from xpnet.errors import CheckpointError
from xpnet.io import Checkpoints, checkpoint_files, load_checkpoint
from xpnet.recipes import build_problem
from xpnet.training.fit import fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
import hostile  # noqa: E402

RUN = ["housing", "--no-progress", "--no-save", "--checkpoint-every", "20", "--keep", "10"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """`xpnet train housing` (Adam, 63 batches an epoch) checkpointed every 20 steps, as if killed in epoch 2
    after batch 40: the newest checkpoint is mid-epoch, so a resume reads every field, the random state too."""
    d = tmp_path_factory.mktemp("pristine")
    assert main(["train", *RUN, "--epochs", "2", "--checkpoint-dir", str(d)]) == 0
    for late in ("ckpt-e0002-b000060.safetensors", "ckpt-e0002-b000063.safetensors"):
        (d / late).unlink()
    return d


@pytest.fixture
def ckpt(pristine, tmp_path) -> Path:
    shutil.copytree(pristine, tmp_path / "ckpt")
    return tmp_path / "ckpt"


def patch(path: Path, meta: dict | None = None, tensors: dict | None = None, drop: tuple = ()) -> None:
    """Rewrite the header of `path` (metadata fields given as Python values, tensor entries replaced or renamed),
    keeping its data section, so the checksum of the data still holds."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    for key, value in (meta or {}).items():
        header["__metadata__"][key] = json.dumps(value)
    for key in drop:
        header["__metadata__"].pop(key)
    for key, value in (tensors or {}).items():
        header[value[0]] = header.pop(key) if value[1] is None else {**header.pop(key), **value[1]}
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def meta_of(path: Path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return {k: json.loads(v) for k, v in json.loads(raw[8:8 + n])["__metadata__"].items()}


def with_state(path: Path, **changes: object) -> dict:
    return {"state": {**meta_of(path)["state"], **changes}}


def with_optimizer(path: Path, **changes: object) -> dict:
    return {"optimizer": {**meta_of(path)["optimizer"], **changes}}


CASES = {  # name -> (what to change in the newest checkpoint, the field the message names)
    "optimizer state of parameter 99": (lambda p: patch(p, tensors={"optim.0.m": ("optim.99.m", None)}), "optim.99.m"),
    "optimizer state of parameter 'x'": (lambda p: patch(p, tensors={"optim.0.m": ("optim.x.m", None)}), "optim.x.m"),
    "optimizer state '00.m'": (lambda p: patch(p, tensors={"optim.0.m": ("optim.00.m", None)}), "optim.00.m"),
    "optimizer state of an unknown role": (lambda p: patch(p, tensors={"optim.0.m": ("optim.0.exec", None)}),
                                           "optim.0.exec"),
    "optimizer state of another shape": (lambda p: patch(p, tensors={"optim.0.m": ("optim.0.m", {"shape": [32, 5]})}),
                                         "optim.0.m"),
    "param_steps of 'a'": (lambda p: patch(p, with_optimizer(p, param_steps=["a"] * 6)), "param_steps"),
    "param_steps of -1": (lambda p: patch(p, with_optimizer(p, param_steps=[-1] * 6)), "param_steps"),
    "param_steps too few": (lambda p: patch(p, with_optimizer(p, param_steps=[1, 1, 1])), "param_steps"),
    "param_steps past steps": (lambda p: patch(p, with_optimizer(p, param_steps=[10 ** 30] * 6)), "param_steps"),
    "steps of -3": (lambda p: patch(p, with_optimizer(p, steps=-3)), "optimizer.steps"),
    "optimizer that is a list": (lambda p: patch(p, {"optimizer": [1]}), "optimizer"),
    "a negative batch": (lambda p: patch(p, {"batch": -5}), "batch"),
    "a batch past the epoch": (lambda p: patch(p, {"batch": 10 ** 9}), "batch"),
    "a batch that is a string": (lambda p: patch(p, {"batch": "2"}), "batch"),
    "epoch 0": (lambda p: patch(p, {"epoch": 0}), "epoch"),
    "epoch null": (lambda p: patch(p, {"epoch": None}), "epoch"),
    "no epoch": (lambda p: patch(p, drop=("epoch",)), "epoch"),
    "state that is a list": (lambda p: patch(p, {"state": [1, 2]}), "state"),
    "history of numbers": (lambda p: patch(p, with_state(p, history=[1, 2])), "state.history[0]"),
    "an epoch log of strings": (lambda p: patch(p, with_state(p, history=[{"epoch": 1, "train_loss": "low"}])),
                                "state.history[0].train_loss"),
    "callbacks that are a string": (lambda p: patch(p, with_state(p, callbacks="x")), "state.callbacks"),
    "a random state of garbage": (lambda p: patch(p, with_state(p, rng={"backend": "numpy", "state": "x"})),
                                  "state.rng"),
    "a random state that is a list": (lambda p: patch(p, with_state(p, rng=[1])), "state.rng"),
    "loss_sum that is a string": (lambda p: patch(p, with_state(p, loss_sum="NaN")), "state.loss_sum"),
    "seen of -1": (lambda p: patch(p, with_state(p, seen=-1)), "state.seen"),
    "seen past the rows": (lambda p: patch(p, with_state(p, seen=10 ** 9)), "state.seen"),
    "seconds of -1": (lambda p: patch(p, with_state(p, seconds=-1.0)), "state.seconds"),
    "skipped_steps of 'a'": (lambda p: patch(p, with_state(p, skipped_steps="a")), "state.skipped_steps"),
    "stopped_early of 'yes'": (lambda p: patch(p, with_state(p, stopped_early="yes")), "state.stopped_early"),
    "dtype as an int": (lambda p: patch(p, {"dtype": 32}), "dtype"),
    "dtype 'object'": (lambda p: patch(p, {"dtype": "object"}), "dtype"),
    "metadata that is a list": (lambda p: patch(p, {"metadata": [1]}), "metadata"),
    "deeply nested state": (lambda p: patch(p, {"state": json.loads("[" * 500 + "]" * 500)}), "state"),
}
# One per kind of field runs as the CLI in a capped process; every case runs in-process too.
CLI_CASES = ["optimizer state of parameter 99", "param_steps of 'a'", "a negative batch", "a batch past the epoch",
             "state that is a list", "an epoch log of strings", "a random state of garbage", "dtype 'object'",
             "deeply nested state"]


def _resume(ckpt: Path, epochs: int = 2) -> list[str]:
    return ["train", *RUN, "--epochs", str(epochs), "--checkpoint-dir", str(ckpt), "--resume"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_resume_stops_on_a_hostile_checkpoint_with_one_line(ckpt, case):
    change, field = CASES[case]
    newest = checkpoint_files(ckpt)[-1]
    change(newest)
    outcome = hostile.run_case("cli", *_resume(ckpt))
    assert outcome.code == 2 and outcome.one_line, outcome.stderr
    assert str(newest) in outcome.stderr and field in outcome.stderr, outcome.stderr


def _fit_resumed(ckpt: Path) -> None:
    backend = get_backend("numpy")
    problem = build_problem("housing", backend, "mlp", "float32", 0)
    optimizer = make_optimizer("adam", problem.model.parameters(), 3e-3)
    fit(problem.model, problem.loss, optimizer, problem.train, epochs=2, batch_size=32,
        checkpoints=Checkpoints(ckpt, every_steps=20, keep=10, resume=True))


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_checkpoint_field_is_typed_and_in_range(ckpt, case, capsys):
    change, field = CASES[case]
    newest = checkpoint_files(ckpt)[-1]
    change(newest)
    with pytest.raises(CheckpointError) as err:
        _fit_resumed(ckpt)
    assert str(newest) in str(err.value) and field in str(err.value)
    assert newest.exists()  # refused, not deleted: it is not damage


def test_load_checkpoint_checks_before_it_changes_anything(ckpt):
    backend = get_backend("numpy")
    problem = build_problem("housing", backend, "mlp", "float32", 0)
    optimizer = make_optimizer("adam", problem.model.parameters(), 3e-3)
    before = [p.value.copy() for p in problem.model.parameters()]
    newest = checkpoint_files(ckpt)[-1]
    patch(newest, with_optimizer(newest, param_steps=[-1] * len(optimizer.params)))
    with pytest.raises(CheckpointError, match="param_steps"):
        load_checkpoint(newest, problem.model, optimizer)
    assert all((a == p.value).all() for a, p in zip(before, problem.model.parameters()))


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "sparse"])
def test_a_special_file_named_like_the_newest_checkpoint_stops_resume(ckpt, kind):
    fake = ckpt / "ckpt-e0009-b000001.safetensors"
    if kind == "fifo":
        os.mkfifo(fake)
    elif kind == "sparse":
        with open(fake, "wb") as f:
            f.truncate(10 * 2 ** 30)
    else:
        fake.symlink_to(kind)
    outcome = hostile.run_case("cli", *_resume(ckpt))
    assert outcome.code == 2 and outcome.one_line and str(fake) in outcome.stderr, outcome.stderr


def test_damage_is_still_skipped_for_the_previous_checkpoint(ckpt):
    files = checkpoint_files(ckpt)
    data = bytearray(files[-1].read_bytes())
    data[-3] ^= 0x10
    files[-1].write_bytes(bytes(data))
    files[-2].write_bytes(files[-2].read_bytes()[:-7])  # and the one before is cut short
    outcome = hostile.run_case("cli", *_resume(ckpt))
    assert outcome.code == 0, outcome.stderr
    assert "checksum mismatch" in outcome.stderr and "skipping damaged checkpoint" in outcome.stderr
    assert f"resuming from {files[-3]}" in outcome.stderr
