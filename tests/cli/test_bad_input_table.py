"""Bad input, table-driven: every public entry point x each kind of mistake gives one clear error naming the
problem (CLI: one line, exit code 2, no traceback), and nothing already saved is damaged."""
from __future__ import annotations

import errno
import gzip
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.cli import main
from xpnet.data.mnist import load_mnist
from xpnet.errors import BackendUnavailable, CheckpointError, DataError, DTypeError, ShapeError
from xpnet.io import Checkpoints
from xpnet.models import mnist_mlp

RNG = np.random.default_rng(0)
X = RNG.random((32, 784), dtype=np.float32)
Y = RNG.integers(0, 10, 32)


def _fit(x=X, y=Y, **kw):
    model = mnist_mlp()
    return xn.fit(model, xn.SoftmaxCrossEntropy(), xn.Adam(model.parameters()), (x, y), **kw)


def _fit_regression(y):
    model = xn.Sequential([xn.Dense(784, 1)])
    return xn.fit(model, xn.MSE(), xn.SGD(model.parameters()), (X, y))


def _with(a, index, value):
    a = a.copy()
    a[index] = value
    return a


PYTHON_CASES = {
    # fit(): shapes, dtypes, values, sizes
    "fit: wrong width": (lambda: _fit(X[:, :780]), ShapeError, "expects input width 784, got 780"),
    "fit: 3-D images": (lambda: _fit(X.reshape(32, 28, 28)), ShapeError, "flatten"),
    "fit: integer pixels": (lambda: _fit((X * 255).astype(np.uint8)), DTypeError, "inputs are uint8"),
    "fit: NaN input": (lambda: _fit(_with(X, (3, 5), np.nan)), DataError, "NaN or inf.*row 3"),
    "fit: inf input": (lambda: _fit(_with(X, (9, 0), np.inf)), DataError, "row 9"),
    "fit: label 10 of 10": (lambda: _fit(y=_with(Y, 0, 10)), DataError, r"0..9"),
    "fit: negative label": (lambda: _fit(y=_with(Y, 0, -1)), DataError, r"0..9"),
    "fit: fewer labels": (lambda: _fit(y=Y[:31]), ShapeError, "32 inputs but 31 targets"),
    "fit: empty batch": (lambda: _fit(X[:0], Y[:0]), DataError, "empty"),
    "fit: batch size 0": (lambda: _fit(batch_size=0), ValueError, "batch_size must be a positive integer"),
    "fit: batch size -1": (lambda: _fit(batch_size=-1), ValueError, "batch_size must be a positive integer"),
    "fit: epochs 0": (lambda: _fit(epochs=0), ValueError, "epochs must be a positive integer"),
    "fit: NaN target": (lambda: _fit_regression(_with(RNG.random(32), 2, np.nan)), DataError, "targets contain NaN"),
    # layers and losses called directly
    "Dense: integers": (lambda: xn.Dense(3, 2).forward(np.ones((2, 3), np.int64)), DTypeError, "floating-point"),
    "Dense: not an array": (lambda: xn.Dense(3, 2).forward([[1.0, 2.0, 3.0]]), DTypeError, "expects an array"),
    "Dense: bad sizes": (lambda: xn.Dense(0, 2), ValueError, "sizes must be positive"),
    "Dropout: p = 1": (lambda: xn.Dropout(1.0), ValueError, r"\[0, 1\)"),
    "SoftmaxCE: 1-D logits": (lambda: xn.SoftmaxCrossEntropy()(np.zeros(10, np.float32), Y[:1]), ShapeError, "logits"),
    "SoftmaxCE: label shape": (lambda: xn.SoftmaxCrossEntropy()(np.zeros((4, 3), np.float32), np.zeros((4, 1), np.int64)),
                               ShapeError, r"shape \(4,\)"),
    "SoftmaxCE: bool labels": (lambda: xn.SoftmaxCrossEntropy()(np.zeros((2, 3)), np.zeros(2, bool)), DTypeError,
                               "integers or probabilities"),
    "MSE: shapes differ": (lambda: xn.MSE()(np.zeros((4, 2)), np.zeros((5, 2))), ShapeError, "differ"),
    # optimizers and settings
    "Adam: lr 0": (lambda: xn.Adam(mnist_mlp().parameters(), lr=0), ValueError, "learning rate"),
    "SGD: momentum 1": (lambda: xn.SGD(mnist_mlp().parameters(), momentum=1.0), ValueError, "momentum"),
    "Checkpoints: keep 0": (lambda: Checkpoints("d", keep=0), ValueError, "keep must be a positive integer"),
    "backend: unknown": (lambda: xn.get_backend("tpu"), BackendUnavailable, "unknown backend 'tpu'"),
    "backend: a list": (lambda: xn.backend_for([1, 2]), BackendUnavailable, "expected an array"),
    # API misuse that would train nothing or fail late, refused at the call
    "fit: another model's optimizer": (lambda: xn.fit(mnist_mlp(), xn.SoftmaxCrossEntropy(),
                                                      xn.Adam(mnist_mlp().parameters()), (X, Y)),
                                       ValueError, r"not this model's.*Adam\(model.parameters\(\)\)"),
    "fit: half another model's": (lambda: _fit_half_foreign(), ValueError, "2 of the optimizer's 4 parameters"),
    "Dense: int32 dtype": (lambda: xn.Dense(784, 10, dtype="int32"), DTypeError, "floating-point dtype"),
    "Dense: a numpy type as dtype": (lambda: xn.Dense(3, 2, dtype=np.float32), DTypeError, "floating-point"),
    "Conv2D: uint8 dtype": (lambda: xn.Conv2D(1, 2, 3, dtype="uint8"), DTypeError, "floating-point dtype"),
    "mlp: bool dtype": (lambda: mnist_mlp(dtype="bool"), DTypeError, "floating-point dtype"),
    "Module.to: int64": (lambda: mnist_mlp().to("numpy", dtype="int64"), DTypeError, "floating-point dtype"),
}


def _fit_half_foreign():
    model, other = xn.Sequential([xn.Dense(784, 10)]), xn.Sequential([xn.Dense(784, 10)])
    return xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters() + other.parameters()), (X, Y))


@pytest.mark.parametrize("case", sorted(PYTHON_CASES))
def test_python_entry_points(case):
    call, error, message = PYTHON_CASES[case]
    with pytest.raises(error, match=message):
        call()


def _mnist_copy(src: Path, dst: Path) -> Path:
    for f in src.glob("*.gz"):
        shutil.copy(f, dst / f.name)
    return dst


def _truncate(path: Path) -> None:
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))


def test_data_loader_rows(mnist_dir, tmp_path):
    with pytest.raises(DataError, match="missing"):
        load_mnist(tmp_path / "empty", download=False)
    (tmp_path / "trunc").mkdir()
    d = _mnist_copy(mnist_dir, tmp_path / "trunc")
    _truncate(d / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_mnist(d, download=False)
    (tmp_path / "junk").mkdir()
    d = _mnist_copy(mnist_dir, tmp_path / "junk")
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_mnist(d, download=False)


def _npz_with_object_array() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # what np.savez writes for an object array: a pickle inside
        z.writestr("payload.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
                   + b" " * 50 + b"\n" + b"\x80\x04K\x01.")
    return buf.getvalue()


@pytest.mark.parametrize("content,message", [
    (b"", "only 0 bytes"),
    (b"\x00" * 7, "only 7 bytes"),
    (b"\xff" * 64, "not a safetensors file"),
    (_npz_with_object_array(), "not a safetensors file"),
])
def test_model_files_that_are_not_models(tmp_path, content, message):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        xn.load_model(path)


def _cli(argv, capsys) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_cli_rows(mnist_dir, tmp_path, capsys):
    assert "no such file" in _cli(["eval", "--model", str(tmp_path / "nope.safetensors")], capsys)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x01" * 100)
    assert "not a safetensors file" in _cli(["eval", "--model", str(garbage)], capsys)
    unknown_task = xn.save_model(tmp_path / "m.safetensors", mnist_mlp(), {"task": "chess"})
    assert "names no known task" in _cli(["eval", "--model", str(unknown_task)], capsys)
    assert "--checkpoint-dir" in _cli(["train", "linear", "--checkpoint-every", "5", "--no-progress"], capsys)
    for argv in (["train", "mnist", "--batch-size", "0"], ["train", "mnist", "--batch-size", "-4"],
                 ["train", "mnist", "--epochs", "-1"], ["train", "mnist", "--lr", "nan"],
                 ["train", "mnist", "--weight-decay", "-1"], ["train", "mnist", "--backend", "tpu"],
                 ["train", "mnist", "--dtype", "int8"], ["train", "mnist", "--on-nan", "ignore"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv


def test_full_disk_fails_cleanly_and_keeps_the_old_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "lin.safetensors"
    assert main(["train", "linear", "--epochs", "50", "--no-progress", "--save", str(target)]) == 0
    before = target.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("xpnet.io.atomic.os.fsync", no_space)
    assert "No space left on device" in _cli(["train", "linear", "--epochs", "50", "--no-progress", "--save",
                                              str(target), "--overwrite"], capsys)
    assert target.read_bytes() == before  # the old model is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lin.safetensors"]  # and no temp file is left


def test_unwritable_output_directory(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro"))

    monkeypatch.setattr("xpnet.io.atomic.tempfile.mkstemp", refuse)
    err = _cli(["train", "linear", "--epochs", "5", "--no-progress", "--save", str(tmp_path / "ro" / "m.safetensors")],
               capsys)
    assert "Permission denied" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.undo()
    assert "file" in _cli(["train", "linear", "--epochs", "5", "--no-progress", "--save",
                           str(blocker / "m.safetensors")], capsys)


@pytest.mark.parametrize("argv", [["train", "mnist", "--batch-size", "0"], ["train", "mnist", "--lr", "nan"],
                                  ["train", "chess"], ["eval"], ["frobnicate"], ["bench", "--repeats", "x"]])
def test_a_usage_error_is_one_line_and_a_pointer_to_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "error:" in err and "--help" in err and "usage:" not in err
