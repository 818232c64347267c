"""Output paths: nothing but a regular file is ever replaced (not /dev/null, not a FIFO, not a directory), and
the command line refuses a bad --save, --json, --plot or --checkpoint-dir before any work, in one line."""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from xpnet.cli import main
from xpnet.errors import OutputPathError
from xpnet.io.atomic import atomic_write_bytes
from xpnet.io.outputs import check_output_dir, check_output_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
import hostile  # noqa: E402


def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"out-{kind.strip('/').replace('/', '-')}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(kind)  # a link to a device is judged by the device
    return path


KINDS = ["fifo", "directory", "/dev/null", "/dev/zero"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_atomic_writer_replaces_only_regular_files(tmp_path, kind):
    path = _special(tmp_path, kind)
    with pytest.raises(OutputPathError, match="not a regular file"):
        atomic_write_bytes(path, b"x")
    with pytest.raises(OutputPathError, match="not a regular file"):
        check_output_path(path, "--json")
    assert not path.is_file()  # still what it was
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # and no temp file left


def test_regular_and_new_paths_pass(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    check_output_path(tmp_path / "old.json", "--json")
    check_output_path(tmp_path / "new" / "deeper" / "m.safetensors", "--save")  # directories it would create
    check_output_dir(tmp_path / "ckpt", "--checkpoint-dir")
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "old.json")
    atomic_write_bytes(link, b"[]")
    assert link.read_text() == "[]"


def test_a_file_where_a_directory_must_be(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match="is not a directory"):
        check_output_path(blocker / "m.safetensors", "--save")
    with pytest.raises(OutputPathError, match="is not a directory"):
        check_output_dir(blocker, "--checkpoint-dir")


def test_an_unwritable_directory(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere (CI runs as root): stand in the answer a user would get
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == ro else real(p, mode, *a, **k))
    with pytest.raises(OutputPathError, match="not writable"):
        check_output_path(ro / "m.safetensors", "--save")


TRAIN = ["train", "linear", "--epochs", "2", "--no-progress"]
COMMANDS = {
    "train --save": lambda p: [*TRAIN, "--save", str(p)],
    "train --json": lambda p: [*TRAIN, "--no-save", "--json", str(p)],
    "eval --json": lambda p: ["eval", "--model", "never-read.safetensors", "--json", str(p)],
    "bench --json": lambda p: ["bench", "--quick", "--json", str(p)],
    "bench --plot": lambda p: ["bench", "--quick", "--plot", str(p)],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", ["fifo", "/dev/null"])
def test_the_cli_refuses_an_output_path_before_any_work(tmp_path, command, kind):
    path = _special(tmp_path, kind)
    argv = COMMANDS[command](path)
    # bench checks its outputs after choosing its contenders (importing torch): its baseline stops there too
    like = ("bench", "--quick", "--model", "lenet", "--to-accuracy", "0.9") if argv[0] == "bench" else ()
    outcome = hostile.run_case("cli", *argv, cwd=tmp_path, like=like)
    assert outcome.code == 2 and outcome.one_line, outcome.stderr
    assert "not a regular file" in outcome.stderr and str(path) in outcome.stderr
    assert outcome.stdout == ""  # nothing trained, loaded or measured first


def test_the_cli_refuses_a_checkpoint_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main([*TRAIN, "--no-save", "--checkpoint-dir", str(tmp_path / "f")]) == 2
    out, err = capsys.readouterr()
    assert "--checkpoint-dir" in err and "is not a directory" in err and out == ""


def test_a_full_disk_names_the_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "lin.safetensors"

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("xpnet.io.atomic.os.fsync", no_space)
    assert main([*TRAIN, "--save", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"{target}: No space left on device" in err and len(err.strip().splitlines()) == 1
