"""Regression tests for problems found in review: each would have passed silently before its fix."""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

import xpnet as xn
from xpnet.cli import main
from xpnet.core.module import Module, Parameter
from xpnet.errors import CheckpointError, DivergedError
from xpnet.io import latest_checkpoint
from xpnet.io.safetensors_file import write_safetensors


def test_load_state_dict_copies_instead_of_aliasing(backend):
    a = xn.Sequential([xn.Dense(3, 2)]).to(backend)
    b = xn.Sequential([xn.Dense(3, 2, rng=np.random.default_rng(9))]).to(backend)
    b.load_state_dict(a.state_dict())
    before = backend.to_numpy(a.layers[0].weight.value).copy()
    b.layers[0].weight.value -= 1.0  # training b must not move a
    np.testing.assert_array_equal(backend.to_numpy(a.layers[0].weight.value), before)
    host = {k: backend.to_numpy(v).copy() for k, v in a.state_dict().items()}
    b.load_state_dict(host)
    b.layers[0].weight.value -= 1.0
    np.testing.assert_array_equal(host["0.weight"], before)


def test_adam_counts_steps_per_parameter_like_torch():
    torch = pytest.importorskip("torch")
    ours = [Parameter(np.ones(3)), Parameter(np.ones(3))]
    theirs = [torch.ones(3, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    opt, ref = xn.Adam(ours, lr=0.1), torch.optim.Adam(theirs, lr=0.1)
    for step in range(4):
        g = np.array([1.0, -2.0, 0.5]) * (step + 1)
        ours[0].grad, theirs[0].grad = g, torch.tensor(g)
        ours[1].grad = g if step >= 2 else None  # the second parameter joins late
        theirs[1].grad = torch.tensor(g) if step >= 2 else None
        opt.step()
        ref.step()
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-12)


class Wrapper(Module):
    """A user's module whose child is called `model` (parameter names start with 'model.')."""

    def __init__(self) -> None:
        self.model = xn.Dense(2, 2)

    def forward(self, x):
        return self.model.forward(x)


def test_a_model_whose_names_start_with_model_loads(tmp_path):
    loaded = xn.load_model(xn.save_model(tmp_path / "w.safetensors", Wrapper()))
    assert [n for n, _ in loaded.named_parameters()] == ["model.weight", "model.bias"]


class ReLU(Module):  # a user's class that happens to share a built-in name
    def forward(self, x):
        return x


def test_a_user_class_named_like_a_builtin_does_not_replace_it(tmp_path):
    model = xn.Sequential([xn.Dense(2, 2), xn.ReLU()])
    loaded = xn.load_model(xn.save_model(tmp_path / "m.safetensors", model))
    assert type(loaded.layers[1]) is xn.ReLU
    mine = xn.load_model(xn.save_model(tmp_path / "u.safetensors", xn.Sequential([xn.Dense(2, 2), ReLU()])))
    assert type(mine.layers[1]) is ReLU


def test_latest_checkpoint_orders_epochs_numerically(tmp_path):
    for name in ("ckpt-e9999-b000001.safetensors", "ckpt-e10000-b000000.safetensors", "ckpt-e0002-b000005.safetensors",
                 "ckpt-e10000-b000012.safetensors", "ckpt-ex-b1.safetensors"):
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "ckpt-e10000-b000012.safetensors"


def test_a_broken_config_is_a_clear_error(tmp_path, capsys):
    path = write_safetensors(tmp_path / "bad.safetensors", {}, {"format": "xpnet-1", "config": {"type": "Sequential"}})
    with pytest.raises(CheckpointError, match="bad model config for Sequential"):
        xn.load_model(path)
    assert main(["eval", "--model", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_saved_files_are_readable_by_others(tmp_path):
    path = xn.save_model(tmp_path / "m.safetensors", xn.Sequential([xn.Dense(2, 2)]))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_divergence_stops_with_a_message_and_saves_nothing(tmp_path, capsys):
    out = tmp_path / "lin.safetensors"
    assert main(["train", "linear", "--lr", "1", "--epochs", "200", "--no-progress", "--save", str(out)]) == 2
    err = capsys.readouterr().err
    assert "lower the learning rate" in err and "Traceback" not in err and not out.exists()
    x = np.linspace(0, 10, 20)[:, None]
    model = xn.Sequential([xn.Dense(1, 1)])
    with pytest.raises(DivergedError, match="lower the learning rate"):
        xn.fit(model, xn.MSE(), xn.SGD(model.parameters(), lr=5.0), (x, 3 * x), epochs=100, batch_size=20)


def test_adamw_weight_decay_zero_means_zero(tmp_path):
    report = tmp_path / "r.json"
    assert main(["train", "linear", "--optimizer", "adamw", "--weight-decay", "0e0", "--epochs", "3",
                 "--no-progress", "--no-save", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["weight_decay"] == 0.0


def test_fit_checks_labels_once_not_per_batch(monkeypatch):
    import xpnet.core.losses as losses
    import xpnet.training.fit as train

    calls = []
    real = losses.check_label_range

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(losses, "check_label_range", counting)
    monkeypatch.setattr(train, "check_label_range", counting)
    x = np.random.default_rng(0).random((100, 4), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    model = xn.Sequential([xn.Dense(4, 2)])
    loss = xn.SoftmaxCrossEntropy()
    xn.fit(model, loss, xn.SGD(model.parameters()), (x, y), epochs=2, batch_size=10)
    assert len(calls) == 1 and loss.check_labels  # once for the whole set; the user's setting restored
