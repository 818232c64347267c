"""`xpnet train --clip-norm MAX`: parsed as a positive finite number, refused otherwise in one line, handed to
fit as clip_norm (None without the flag), and a clipped run trains to the end."""
from __future__ import annotations

import pytest

from xpnet.cli import build_parser, main


def test_clip_norm_parses_and_defaults_to_none():
    assert build_parser().parse_args(["train", "linear", "--clip-norm", "1.5"]).clip_norm == 1.5
    assert build_parser().parse_args(["train", "linear"]).clip_norm is None


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "big"])
def test_clip_norm_that_is_not_a_positive_number_is_a_one_line_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "linear", "--clip-norm", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(errors) == 1, err
    assert "--clip-norm" in errors[0] and value in errors[0]


def test_train_help_documents_clip_norm(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--clip-norm MAX clip the gradients to this global L2 norm before each update (default: no clipping)" in out


@pytest.mark.parametrize(("flags", "expected"), [([], None), (["--clip-norm", "0.25"], 0.25)])
def test_train_hands_clip_norm_to_fit(flags, expected, fit_calls, capsys):
    assert main(["train", "linear", "--epochs", "2", "--no-progress", "--no-save", *flags]) == 0
    assert [call["clip_norm"] for call in fit_calls] == [expected]


def test_a_clipped_run_trains_to_the_end(capsys):
    assert main(["train", "linear", "--epochs", "2", "--no-progress", "--no-save", "--clip-norm", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "xpnet: learned y =" in out
