"""Where `xpnet train` writes its model: the default name is never overwritten (the next free NAME-2, -3, ...
is used and said), an existing --save FILE is refused before training unless --overwrite, and the last line
always names the file. Rank 0 decides for a data-parallel run."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from xpnet.cli import main, model_file

LINEAR = ["train", "linear", "--epochs", "2", "--no-progress"]
SAVED = "xpnet: saved model to {0}  (xpnet eval --model {0})"


@pytest.fixture
def cwd(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_default_name_is_never_overwritten(cwd, capsys):
    assert main(LINEAR) == 0
    first = (cwd / "linear-linear.safetensors").read_bytes()
    assert capsys.readouterr().out.strip().splitlines()[-1] == SAVED.format("linear-linear.safetensors")
    for n in (2, 3):
        assert main([*LINEAR, "--seed", str(n)]) == 0
        out = capsys.readouterr().out
        assert f"linear-linear.safetensors exists, so this run's model goes to linear-linear-{n}.safetensors" in out
        assert out.strip().splitlines()[-1] == SAVED.format(f"linear-linear-{n}.safetensors")
    assert (cwd / "linear-linear.safetensors").read_bytes() == first
    assert sorted(p.name for p in cwd.iterdir()) == ["linear-linear-2.safetensors", "linear-linear-3.safetensors",
                                                      "linear-linear.safetensors"]


def test_an_existing_save_file_is_refused_before_training(cwd, capsys):
    target = cwd / "m.safetensors"
    target.write_bytes(b"an earlier model")
    assert main([*LINEAR, "--save", str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"xpnet: error: {target} exists; pass --overwrite to replace it or choose another --save\n"
    assert captured.out == ""  # not even the training line: nothing was loaded or trained
    assert target.read_bytes() == b"an earlier model"


def test_overwrite_replaces_a_save_file_and_the_default_name(cwd, capsys):
    target = cwd / "m.safetensors"
    target.write_bytes(b"an earlier model")
    assert main([*LINEAR, "--save", str(target), "--overwrite"]) == 0
    assert target.read_bytes() != b"an earlier model"
    (cwd / "linear-linear.safetensors").write_bytes(b"old")
    assert main([*LINEAR, "--overwrite"]) == 0
    assert (cwd / "linear-linear.safetensors").read_bytes() != b"old"
    assert not (cwd / "linear-linear-2.safetensors").exists()
    assert capsys.readouterr().out.strip().splitlines()[-1] == SAVED.format("linear-linear.safetensors")


def test_a_dangling_symlink_counts_as_taken(tmp_path):
    (tmp_path / "a.safetensors").symlink_to(tmp_path / "nowhere")
    (tmp_path / "a-2.safetensors").write_bytes(b"")
    assert model_file.next_free(tmp_path / "a.safetensors") == tmp_path / "a-3.safetensors"


def test_a_file_that_appears_during_training_is_not_replaced(tmp_path):
    chosen = tmp_path / "linear-linear-2.safetensors"
    assert model_file.at_save_time(str(chosen), overwrite=False) == (str(chosen), None)
    chosen.write_bytes(b"another run finished first")
    path, note = model_file.at_save_time(str(chosen), overwrite=False)
    assert path == str(tmp_path / "linear-linear-2-2.safetensors") and "appeared while this run trained" in note
    assert model_file.at_save_time(str(chosen), overwrite=True) == (str(chosen), None)


@pytest.mark.parametrize("task", ["housing", "mnist"])
def test_every_task_follows_the_rule(cwd, task, capsys):
    name = f"{task}-mlp.safetensors"
    (cwd / name).write_bytes(b"earlier")
    # refused before the data is even loaded, so mnist needs no data here
    assert main(["train", task, "--no-progress", "--save", name]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    if task == "housing":
        assert main(["train", task, "--no-progress", "--epochs", "1"]) == 0
        assert (cwd / "housing-mlp-2.safetensors").exists() and (cwd / name).read_bytes() == b"earlier"


def _two_ranks(monkeypatch, argv: list[str]) -> tuple[list[object], object]:
    """`xpnet ARGV` as 2 data-parallel ranks (threads, the test double of MPI); (each rank's result, group)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "distributed"))
    from thread_ranks import ThreadGroup

    local = threading.local()
    monkeypatch.setattr("xpnet.cli.train.host_communicator", lambda mode: local.comm)
    group = ThreadGroup(2)

    def rank(comm):
        local.comm = comm
        return main(argv)

    return group.run(rank), group


def test_rank_0_alone_decides_the_name(cwd, monkeypatch):
    import xpnet.cli.train as train_cmd

    (cwd / "linear-linear.safetensors").write_bytes(b"earlier")
    planned = []
    real_plan = train_cmd.plan_run

    def counting_plan(args):
        planned.append(threading.get_ident())
        return real_plan(args)

    monkeypatch.setattr(train_cmd, "plan_run", counting_plan)
    results, _ = _two_ranks(monkeypatch, [*LINEAR, "--distributed", "mpi"])
    assert results == [0, 0] and len(planned) == 1
    assert sorted(p.name for p in cwd.iterdir()) == ["linear-linear-2.safetensors", "linear-linear.safetensors"]
    assert (cwd / "linear-linear.safetensors").read_bytes() == b"earlier"


def test_rank_0_refuses_an_existing_save_for_the_job(cwd, monkeypatch):
    (cwd / "m.safetensors").write_bytes(b"earlier")
    results, group = _two_ranks(monkeypatch, [*LINEAR, "--distributed", "mpi", "--save", "m.safetensors"])
    # rank 0 ends the job with code 2; the double's rank 1 then finds its collective broken (MPI_Abort ends it)
    assert isinstance(results[0], SystemExit) and results[0].code == 2 and isinstance(results[1], SystemExit)
    rank, message, code = group.aborted[0]
    assert (rank, code) == (0, 2) and "m.safetensors exists; pass --overwrite" in message
    assert os.listdir(cwd) == ["m.safetensors"] and (cwd / "m.safetensors").read_bytes() == b"earlier"
