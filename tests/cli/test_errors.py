"""Bad input gets one clear error that names what is wrong."""
from __future__ import annotations

import gzip
import pickle
import shutil

import numpy as np
import pytest

import xpnet as xn
from xpnet.cli import main
from xpnet.errors import CheckpointError, DataError, DTypeError, ShapeError
from xpnet.models import mnist_mlp


def _xy(n=64, width=784):
    rng = np.random.default_rng(0)
    return rng.random((n, width), dtype=np.float32), rng.integers(0, 10, n)


def _fit(x, y, **kw):
    model = mnist_mlp()
    return xn.fit(model, xn.SoftmaxCrossEntropy(), xn.Adam(model.parameters()), (x, y), **kw)


def test_wrong_input_width_names_the_layer_and_widths():
    x, y = _xy(width=780)
    with pytest.raises(ShapeError, match=r"Dense\(784, 128\) expects input width 784, got 780"):
        _fit(x, y)


def test_images_not_flattened_get_a_hint(backend):
    model = mnist_mlp().to(backend)
    with pytest.raises(ShapeError, match="flatten"):
        model.forward(backend.asarray(np.zeros((2, 28, 28), np.float32)))


def test_integer_inputs_into_dense_are_refused(backend):
    model = mnist_mlp().to(backend)
    with pytest.raises(DTypeError, match="floating-point input.*got uint8"):
        model.forward(backend.asarray(np.zeros((2, 784), np.uint8)))
    with pytest.raises(DTypeError, match="inputs are uint8"):
        xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters()),
               (backend.asarray(np.zeros((4, 784), np.uint8)), backend.asarray(np.zeros(4, np.int64))))


def test_float64_input_into_float32_layer_says_how_to_fix(backend):
    layer = xn.Dense(3, 2).to(backend)
    with pytest.raises(DTypeError, match="float32 weights but got float64 input"):
        layer.forward(backend.asarray(np.zeros((1, 3)), "float64"))


def test_labels_outside_the_classes_are_refused():
    x, y = _xy()
    y[5] = 10
    with pytest.raises(DataError, match=r"labels must be in 0..9.*from 0 to 10"):
        _fit(x, y)
    y[5] = -1
    with pytest.raises(DataError, match=r"0..9"):
        xn.SoftmaxCrossEntropy()(np.zeros((64, 10), np.float32), y)


def test_nan_in_inputs_is_refused_with_the_row():
    x, y = _xy()
    x[17, 3] = np.nan
    with pytest.raises(DataError, match="NaN or inf.*row 17"):
        _fit(x, y)


def test_mismatched_lengths_and_empty_data():
    x, y = _xy()
    with pytest.raises(ShapeError, match="64 inputs but 63 targets"):
        _fit(x, y[:63])
    with pytest.raises(DataError, match="empty"):
        _fit(x[:0], y[:0])


@pytest.mark.parametrize("kw", [{"epochs": 0}, {"batch_size": 0}, {"batch_size": -3}])
def test_non_positive_epochs_or_batch_size(kw):
    x, y = _xy()
    with pytest.raises(ValueError, match="must be a positive integer"):
        _fit(x, y, **kw)


def test_loss_shape_mismatch_names_both_shapes():
    with pytest.raises(ShapeError, match=r"\(4, 2\).*\(4, 3\)"):
        xn.MSE()(np.zeros((4, 2)), np.zeros((4, 3)))


def test_truncated_idx_file_is_reported_by_the_cli(mnist_dir, tmp_path, capsys):
    for f in mnist_dir.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    raw = gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    assert main(["train", "mnist", "--epochs", "1", "--no-progress", "--no-save", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "t10k-labels-idx1-ubyte" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_checkpoint_whose_shapes_do_not_match_the_model(tmp_path):
    path = xn.save_model(tmp_path / "small.safetensors", xn.Sequential([xn.Dense(4, 3)]))
    from xpnet.io.safetensors_file import read_safetensors

    arrays, _ = read_safetensors(path)
    model = xn.Sequential([xn.Dense(4, 5)])
    with pytest.raises(CheckpointError, match=r"'0.weight' has shape \(4, 3\) in the file but \(4, 5\)"):
        model.load_state_dict(arrays)


class _Payload:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_a_pickle_renamed_to_a_model_file_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        xn.load_model(evil)
    assert main(["eval", "--model", str(evil)]) == 2
    assert "not a safetensors file" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()


def test_cli_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "missing.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err
    assert main(["train", "linear", "--resume", "--no-progress"]) == 2
    assert "--checkpoint-dir" in capsys.readouterr().err
    for argv in (["train", "mnist", "--backend", "tpu"], ["train", "mnist", "--epochs", "0"],
                 ["train", "mnist", "--lr", "-1"], ["train", "chess"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv


def test_unknown_backend_name_from_python():
    from xpnet.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="unknown backend 'tpu'"):
        xn.get_backend("tpu")
