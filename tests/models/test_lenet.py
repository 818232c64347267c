"""LeNet-5: shapes, save/load, backends agree, it learns real MNIST, the CLI trains and evaluates it, and
`xpnet bench --model lenet` times it."""
from __future__ import annotations

import json

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends import get_backend
from xpnet.bench.flops import lenet_training_flops_per_sample
from xpnet.cli import main
from xpnet.core.module import module_config
from xpnet.data.mnist import load_mnist
from xpnet.models import lenet
from xpnet.recipes import DEFAULTS, build_problem


def _rows(images):
    return images.reshape(len(images), 784).astype(np.float32) / 255.0


def test_lenet_layers_shapes_and_parameter_count():
    model = lenet()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Reshape", "Conv2D", "ReLU", "MaxPool2D", "Conv2D", "ReLU", "MaxPool2D", "Flatten",
                     "Dense", "ReLU", "Dense", "ReLU", "Dense"]
    # 6*25+6 + 16*6*25+16 + 400*120+120 + 120*84+84 + 84*10+10
    assert sum(int(np.prod(p.shape)) for p in model.parameters()) == 61_706
    y = model.forward(np.random.default_rng(0).random((3, 784), dtype=np.float32))
    assert tuple(y.shape) == (3, 10) and y.dtype == np.float32


def test_lenet_gives_the_same_outputs_and_gradients_on_every_backend(backend):
    x = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    labels = np.array([0, 3, 9, 3])

    def run(b):
        model, loss = lenet(seed=1).to(b), xn.SoftmaxCrossEntropy()
        value = loss.forward(model.forward(b.asarray(x, "float32")), b.asarray(labels, "int64"))
        model.backward(loss.backward())
        return float(value), [b.to_numpy(p.grad) for p in model.parameters()]

    ref_loss, ref_grads = run(get_backend("numpy"))
    got_loss, got_grads = run(backend)
    assert got_loss == pytest.approx(ref_loss, rel=1e-5)
    for a, b in zip(got_grads, ref_grads):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_lenet_save_load_round_trip(tmp_path):
    model = lenet(seed=3)
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    path = xn.save_model(tmp_path / "lenet.safetensors", model, {"task": "mnist", "model": "lenet"})
    loaded, metadata = xn.load_model(path), xn.model_metadata(path)
    assert metadata["model"] == "lenet"
    assert module_config(loaded) == module_config(model)
    assert repr(loaded.layers[0]) == "Reshape((1, 28, 28))" and repr(loaded.layers[1]) == "Conv2D(1, 6, 5, padding=2)"
    assert repr(loaded.layers[3]) == "MaxPool2D(2)"
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


def test_lenet_learns_real_mnist(mnist_dir):
    x_train, y_train, x_test, y_test = load_mnist(mnist_dir)
    model = lenet(seed=0)
    optimizer = xn.Adam(model.parameters(), lr=2e-3)
    history = xn.fit(model, xn.SoftmaxCrossEntropy(), optimizer, (_rows(x_train[:6000]), y_train[:6000]),
                     epochs=1, batch_size=32, validation=(_rows(x_test[:2000]), y_test[:2000]))
    # Measured 0.932, 0.932, 0.935 for seeds 0-2 (chance is 0.1); about a second of training.
    assert history.last["val_accuracy"] > 0.9


def test_cli_builds_lenet_and_evaluates_a_saved_one(mnist_dir, tmp_path, capsys):
    assert DEFAULTS["mnist"].models == ("mlp", "lenet")
    problem = build_problem("mnist", get_backend("numpy"), "lenet", "float32", 0, str(mnist_dir))
    assert type(problem.model.layers[1]).__name__ == "Conv2D" and tuple(problem.train[0].shape) == (60000, 784)
    path = xn.save_model(tmp_path / "m.safetensors", lenet(seed=0), {**problem.metadata, "model": "lenet"})
    assert main(["eval", "--model", str(path), "--data-dir", str(mnist_dir), "--json", str(tmp_path / "e.json")]) == 0
    assert "10,000 test samples" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert 0.0 <= metrics["test_accuracy"] <= 0.3  # untrained: chance level, but it ran on 1x28x28 images


def test_lenet_flop_count():
    conv = 2 * 6 * 1 * 25 * 28 * 28 + 2 * 16 * 6 * 25 * 10 * 10
    dense = 2 * (400 * 120 + 120 * 84 + 84 * 10)
    # forward + weight gradients (the same again) + input gradients of every layer but the first
    assert lenet_training_flops_per_sample() == 2 * (conv + dense) + (conv - 2 * 6 * 25 * 28 * 28) + dense
    assert lenet_training_flops_per_sample() == 2_263_920


def test_bench_times_lenet_against_torch(mnist_dir, tmp_path, capsys):
    pytest.importorskip("torch")
    report = tmp_path / "b.json"
    assert main(["bench", "--model", "lenet", "--backends", "numpy,torch-eager", "--batch-sizes", "128",
                 "--optimizers", "adam", "--repeats", "1", "--samples", "512", "--threads", "1",
                 "--data-dir", str(mnist_dir), "--no-progress", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "LeNet-5" in out and "xpnet-numpy" in out and "x torch-eager" in out
    result = json.loads(report.read_text())
    assert result["config"]["model"] == "lenet" and result["flops_per_sample"] == 2_263_920
    assert {r["contender"] for r in result["rows"]} == {"xpnet-numpy", "torch-eager"}


def test_bench_says_what_lenet_cannot_run(mnist_dir, capsys):
    assert main(["bench", "--model", "lenet", "--backends", "numpy,numpy-reference", "--data-dir", str(mnist_dir),
                 "--no-progress"]) == 2
    assert "numpy-reference" in capsys.readouterr().err
    assert main(["bench", "--model", "lenet", "--to-accuracy", "0.99", "--data-dir", str(mnist_dir),
                 "--no-progress"]) == 2
    assert "--to-accuracy" in capsys.readouterr().err
