"""`xpnet train --resume`: an option given that differs from the checkpointed run is refused in one line
naming the option and both values, before any training; `--override lr|schedule` changes one on purpose;
--epochs and --early-stopping may change; options left out take the checkpoint's values."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from xpnet.cli import build_parser, main
from xpnet.io.checkpoint import checkpoint_files

RUN = ["train", "linear", "--no-progress", "--no-save"]


def _first_run(ckpt: Path, *extra: str) -> list[Path]:
    assert main([*RUN, "--epochs", "2", "--checkpoint-dir", str(ckpt), *extra]) == 0
    return checkpoint_files(ckpt)


def _resume(ckpt: Path, *extra: str) -> int:
    return main([*RUN, "--checkpoint-dir", str(ckpt), "--resume", *extra])


def _refusal(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert "epoch " not in captured.out  # refused before any training
    return lines[0]


def test_a_different_lr_is_refused_naming_both_values(tmp_path, capsys):
    before = _first_run(tmp_path / "ck", "--lr", "0.01")
    capsys.readouterr()
    assert _resume(tmp_path / "ck", "--epochs", "4", "--lr", "0.05") == 2
    line = _refusal(capsys)
    assert "--lr 0.05 differs from 0.01" in line and "--override lr" in line and str(before[-1]) in line
    assert checkpoint_files(tmp_path / "ck") == before  # nothing trained, nothing written


@pytest.mark.parametrize(("flag", "value", "shown"), [("--seed", "3", "--seed 3 differs from 0"),
                                                      ("--batch-size", "2", "--batch-size 2 differs from 5"),
                                                      ("--optimizer", "adam", "--optimizer adam differs from sgd"),
                                                      ("--dtype", "float64", "--dtype float64 differs from float32"),
                                                      ("--clip-norm", "1", "--clip-norm 1 differs from none")])
def test_options_fixed_within_a_run_are_refused_with_the_reason(tmp_path, capsys, flag, value, shown):
    _first_run(tmp_path / "ck")
    capsys.readouterr()
    assert _resume(tmp_path / "ck", flag, value) == 2
    line = _refusal(capsys)
    assert shown in line and "cannot change within a run" in line


def test_override_lr_changes_it_on_purpose_and_says_so(tmp_path, capsys):
    _first_run(tmp_path / "ck", "--lr", "0.01")
    capsys.readouterr()
    report = tmp_path / "r.json"
    assert _resume(tmp_path / "ck", "--epochs", "3", "--override", "lr", "--lr", "0.005", "--json", str(report)) == 0
    assert "--lr 0.005 replaces the checkpoint's 0.01 (--override lr)" in capsys.readouterr().err
    summary = json.loads(report.read_text())
    assert summary["lr"] == 0.005 and [e["epoch"] for e in summary["epochs"]] == [1, 2, 3]


def test_left_out_options_take_the_checkpoints_values_and_epochs_may_grow(tmp_path, capsys):
    _first_run(tmp_path / "ck", "--lr", "0.01", "--seed", "7", "--schedule", "cosine")
    capsys.readouterr()
    report = tmp_path / "r.json"
    assert _resume(tmp_path / "ck", "--epochs", "4", "--json", str(report)) == 0
    summary = json.loads(report.read_text())
    assert (summary["lr"], summary["seed"], summary["schedule"]) == (0.01, 7, "cosine")
    assert len(summary["epochs"]) == 4
    # a longer run stretches the schedule: said, not hidden
    assert "the cosine learning-rate schedule now spans 4 epochs" in capsys.readouterr().err


def test_the_same_command_plus_resume_is_accepted(tmp_path, capsys):
    _first_run(tmp_path / "ck", "--lr", "0.01", "--weight-decay", "0.001")
    assert main([*RUN, "--epochs", "2", "--checkpoint-dir", str(tmp_path / "ck"), "--lr", "0.01",
                 "--weight-decay", "0.001", "--resume"]) == 0
    assert "resuming from" in capsys.readouterr().err


def test_a_checkpoint_of_another_task_is_refused(tmp_path, capsys):
    _first_run(tmp_path / "ck")
    capsys.readouterr()
    assert main(["train", "housing", "--no-progress", "--no-save", "--checkpoint-dir", str(tmp_path / "ck"),
                 "--resume"]) == 2
    assert "is a checkpoint of `xpnet train linear`, not of housing" in _refusal(capsys)


def _drop_settings_record(path: Path) -> None:
    """Rewrite a checkpoint's header without metadata.settings, as files written before the record were."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = json.loads(header["__metadata__"]["metadata"])
    del metadata["settings"]
    header["__metadata__"]["metadata"] = json.dumps(metadata)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def test_a_checkpoint_without_the_record_is_still_compared_through_its_optimizer(tmp_path, capsys):
    files = _first_run(tmp_path / "ck", "--lr", "0.01")
    for path in files:
        _drop_settings_record(path)
    capsys.readouterr()
    assert _resume(tmp_path / "ck", "--epochs", "3", "--lr", "0.05") == 2
    assert "--lr 0.05 differs from 0.01" in _refusal(capsys)


def test_a_settings_record_of_the_wrong_type_is_named(tmp_path, capsys):
    files = _first_run(tmp_path / "ck")
    raw = files[-1].read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = json.loads(header["__metadata__"]["metadata"])
    metadata["settings"]["lr"] = "fast"
    header["__metadata__"]["metadata"] = json.dumps(metadata)
    text = json.dumps(header).encode()
    files[-1].write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    capsys.readouterr()
    assert _resume(tmp_path / "ck", "--epochs", "3") == 2
    line = _refusal(capsys)
    assert str(files[-1]) in line and "metadata.settings.lr" in line


@pytest.mark.parametrize(("argv", "said"), [
    (["--override", "seed"], "--seed cannot be overridden on a resume"),
    (["--override", "epochs"], "--epochs may change on a resume without --override"),
    (["--override", "colour"], "unknown option 'colour'"),
])
def test_override_takes_only_lr_and_schedule(argv, said, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*RUN, "--resume", "--checkpoint-dir", "ck", *argv])
    assert exc.value.code == 2 and said in capsys.readouterr().err


def test_override_parses_comma_lists_and_dashes():
    args = build_parser().parse_args(["train", "linear", "--override", "lr,schedule", "--override=--lr"])
    assert args.override == [["lr", "schedule"], ["lr"]]


@pytest.mark.parametrize(("argv", "said"), [
    (["--override", "lr", "--lr", "0.1"], "--override applies to --resume only"),
    (["--resume", "--checkpoint-dir", "ck", "--override", "lr"], "--override lr: give the new value with --lr"),
])
def test_override_misuse_is_one_line(tmp_path, monkeypatch, capsys, argv, said):
    monkeypatch.chdir(tmp_path)
    assert main([*RUN, *argv]) == 2
    assert said in _refusal(capsys)


def test_help_says_what_may_change_on_resume(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--override OPTION with --resume: let OPTION (lr or schedule" in out
    assert "except --epochs and --early-stopping" in out
