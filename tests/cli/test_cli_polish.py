"""What a new user sees: `xpnet --version`, counts in the right number, progress bars only on a terminal, a
Ctrl-C message in the command line's terms, the strict backend's device as 'cpu', the torch install hint."""
from __future__ import annotations

import io
import os
import signal
import sys

import pytest

import xpnet
import xpnet.cli.train as train_cmd
from xpnet.cli import main
from xpnet.cli.output import interrupt_message, plural, show_progress
from xpnet.errors import BackendUnavailable, TrainingInterrupted

LINEAR = ["train", "linear", "--no-save"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"xpnet {xpnet.__version__}\n"


def test_counts_take_the_right_number():
    assert [plural(1, "epoch"), plural(5, "epoch"), plural(60000, "sample"), plural(2, "process", "processes")] == \
        ["1 epoch", "5 epochs", "60,000 samples", "2 processes"]


@pytest.mark.parametrize(("epochs", "shown"), [("1", ", 1 epoch, "), ("2", ", 2 epochs, ")])
def test_the_training_line_counts_epochs_and_samples(capsys, epochs, shown):
    assert main([*LINEAR, "--no-progress", "--epochs", epochs]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert shown in header and "5 samples" in header and "1 epochs" not in header


def test_early_stopping_counts_its_patience(capsys):
    assert main([*LINEAR, "--no-progress", "--epochs", "50", "--lr", "1e-9", "--early-stopping", "1"]) == 0
    out = capsys.readouterr().out
    assert "no test-loss improvement for 1 epoch)" in out


def test_show_progress_needs_a_terminal_and_no_flag():
    assert show_progress(False, _Terminal()) is True
    assert show_progress(True, _Terminal()) is False
    assert show_progress(False, io.StringIO()) is False


def test_no_bars_reach_stderr_that_is_not_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr("xpnet.training.epoch.BAR_DELAY_S", 0)  # any bar would be drawn at once
    assert main([*LINEAR, "--epochs", "20"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "sample" not in err, err[:300]


@pytest.mark.parametrize(("flags", "shown"), [([], True), (["--no-progress"], False)])
def test_a_terminal_gets_bars_unless_no_progress(fit_calls, monkeypatch, capsys, flags, shown):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert main([*LINEAR, "--epochs", "2", *flags]) == 0
    assert [call["progress"] for call in fit_calls] == [shown]


class _InterruptAfterEpoch1(train_cmd.EpochPrinter):
    def on_epoch_end(self, epoch, logs):
        super().on_epoch_end(epoch, logs)
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would, between the epoch and the next


def test_ctrl_c_says_how_to_go_on_in_command_line_terms(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_cmd, "EpochPrinter", _InterruptAfterEpoch1)
    argv = [*LINEAR, "--no-progress", "--epochs", "3", "--checkpoint-dir", str(tmp_path / "ck")]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    saved = tmp_path / "ck" / "ckpt-e0001-b000001.safetensors"
    assert err == (f"xpnet: interrupted after epoch 1; checkpoint saved to {saved} "
                   f"(to continue, run the same command plus --resume)")
    assert saved.exists() and "Checkpoints(" not in err
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0  # what the message says works


def test_ctrl_c_without_checkpoints_says_what_would_have_saved_it(monkeypatch, capsys):
    monkeypatch.setattr(train_cmd, "EpochPrinter", _InterruptAfterEpoch1)
    assert main([*LINEAR, "--no-progress", "--epochs", "3"]) == 130
    assert capsys.readouterr().err.strip() == ("xpnet: interrupted after epoch 1; nothing saved: pass "
                                               "--checkpoint-dir DIR to be able to resume")


def test_ctrl_c_on_a_resumed_run_says_run_it_again():
    exc = TrainingInterrupted("interrupted at epoch 2, batch 3/6; checkpoint saved to ck/x (continue with --resume, "
                              "or Checkpoints(resume=True))", checkpoint="ck/x")
    assert interrupt_message(exc, resuming=True) == ("interrupted at epoch 2, batch 3/6; checkpoint saved to ck/x "
                                                     "(to continue, run the same command again)")


def test_the_strict_backend_names_its_device_cpu(capsys):
    pytest.importorskip("array_api_strict")
    from xpnet.backends.strict import StrictBackend

    assert StrictBackend().describe_device() == "cpu"
    assert main([*LINEAR, "--no-progress", "--epochs", "1", "--backend", "strict"]) == 0
    assert " on strict [cpu], " in capsys.readouterr().out
    assert main(["info"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("strict"))
    assert "device cpu " in line and "CPU_DEVICE" not in line


def test_the_torch_hint_names_the_tested_version(monkeypatch):
    from xpnet.backends.torch import TorchBackend

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as where it is not installed
    monkeypatch.setitem(sys.modules, "array_api_compat.torch", None)
    with pytest.raises(BackendUnavailable, match=r"pip install torch==2\.13\.0"):
        TorchBackend()
