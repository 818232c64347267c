"""Real MNIST through the command line: train one epoch, save, evaluate the file on another backend."""
from __future__ import annotations

import json

import pytest

from xpnet.cli import main


def test_one_epoch_of_real_mnist_learns_and_the_model_loads_elsewhere(mnist_dir, tmp_path, capsys):
    model_file, report = tmp_path / "m.safetensors", tmp_path / "run.json"
    code = main(["train", "mnist", "--epochs", "1", "--no-progress", "--data-dir", str(mnist_dir),
                 "--save", str(model_file), "--json", str(report)])
    assert code == 0
    run = json.loads(report.read_text())
    (epoch,) = run["epochs"]
    assert epoch["test_accuracy"] > 0.95
    assert epoch["samples_per_second"] > 0 and epoch["seconds"] > 0 and epoch["train_loss"] < 0.5
    assert run["backend"] == "numpy" and run["dtype"] == "float32" and run["seed"] == 0
    assert "numpy" in run["versions"] and run["device"] == "cpu"
    assert "epoch 1/1" in capsys.readouterr().out

    for backend in ("numpy", "strict", "torch"):
        if backend == "torch":
            pytest.importorskip("torch")
        eval_json = tmp_path / f"eval-{backend}.json"
        assert main(["eval", "--model", str(model_file), "--backend", backend, "--data-dir", str(mnist_dir),
                     "--json", str(eval_json)]) == 0
        metrics = json.loads(eval_json.read_text())["metrics"]
        assert metrics["test_accuracy"] == pytest.approx(epoch["test_accuracy"], abs=1e-4), backend
