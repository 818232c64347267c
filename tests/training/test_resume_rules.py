"""What resuming refuses and what it carries over (regressions from the second review)."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import xpnet as xn
from xpnet.cli import main
from xpnet.errors import CheckpointError, TrainingInterrupted
from xpnet.io import Checkpoints, checkpoint_files


def _data():
    x = np.random.default_rng(0).random((96, 4), dtype=np.float32)
    return x, (x[:, 0] > 0.5).astype(np.int64)


def _model():
    return xn.Sequential([xn.Dense(4, 8, rng=np.random.default_rng(0)), xn.ReLU(), xn.Dropout(0.2),
                          xn.Dense(8, 2, rng=np.random.default_rng(1))])


def _fit(directory, epochs=2, resume=False, opt=None, seed=0, batch_size=16, data=None, cb=(), **ckpt):
    model = _model()
    opt = opt(model) if opt else xn.Adam(model.parameters(), lr=1e-2)
    h = xn.fit(model, xn.SoftmaxCrossEntropy(), opt, data or _data(), epochs=epochs, batch_size=batch_size,
               seed=seed, callbacks=cb, checkpoints=Checkpoints(directory, resume=resume, **ckpt))
    return model, opt, h


def test_a_fresh_run_will_not_overwrite_another_runs_checkpoints(tmp_path):
    _fit(tmp_path, epochs=5)
    before = checkpoint_files(tmp_path)
    with pytest.raises(CheckpointError, match="already holds checkpoints of another run"):
        _fit(tmp_path, epochs=2, keep=2)
    assert checkpoint_files(tmp_path) == before


def test_another_optimizer_is_an_error_not_damage_and_deletes_nothing(tmp_path, capsys):
    _fit(tmp_path, epochs=2)
    before = checkpoint_files(tmp_path)
    with pytest.raises(CheckpointError, match="optimizer Adam.*uses SGD"):
        _fit(tmp_path, epochs=4, resume=True, opt=lambda m: xn.SGD(m.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match="betas"):
        _fit(tmp_path, epochs=4, resume=True, opt=lambda m: xn.Adam(m.parameters(), lr=1e-2, betas=(0.8, 0.99)))
    assert "damaged" not in capsys.readouterr().err and checkpoint_files(tmp_path) == before


def test_resume_refuses_another_seed_or_batch_size(tmp_path):
    _fit(tmp_path, epochs=1)
    with pytest.raises(CheckpointError, match="seed 0, not 1"):
        _fit(tmp_path, epochs=2, resume=True, seed=1)
    with pytest.raises(CheckpointError, match="batch_size 16, not 32"):
        _fit(tmp_path, epochs=2, resume=True, batch_size=32)


def test_an_early_stopped_run_stays_stopped_on_resume(tmp_path):
    model = _model()
    opt = xn.SGD(model.parameters(), lr=1e-9)
    x, y = _data()
    h = xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (x, y), epochs=20, batch_size=16, validation=(x, y),
               callbacks=[xn.EarlyStopping("val_loss", patience=1)], checkpoints=Checkpoints(tmp_path))
    assert h.stopped_early
    model2 = _model()
    h2 = xn.fit(model2, xn.SoftmaxCrossEntropy(), xn.SGD(model2.parameters(), lr=1e-9), (x, y), epochs=20,
                batch_size=16, validation=(x, y), callbacks=[xn.EarlyStopping("val_loss", patience=1)],
                checkpoints=Checkpoints(tmp_path, resume=True))
    assert h2.stopped_early and len(h2.epochs) == len(h.epochs)


class _SignalAfterEpoch:
    def on_epoch_end(self, epoch, logs):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)  # arrives during the epoch's end: checkpointing, callbacks


def test_ctrl_c_at_an_epoch_boundary_stops_after_the_epoch_checkpoint(tmp_path):
    with pytest.raises(TrainingInterrupted, match="interrupted after epoch 1; checkpoint saved"):
        _fit(tmp_path, epochs=3, cb=[_SignalAfterEpoch()])
    assert checkpoint_files(tmp_path)[-1].name == "ckpt-e0001-b000006.safetensors"


def _interrupt_at_step(n):
    def make(model):
        opt = xn.Adam(model.parameters(), lr=1e-2)
        step = opt.step

        def step_then_signal():
            step()
            if opt.steps == n:
                os.kill(os.getpid(), signal.SIGINT)

        opt.step = step_then_signal
        return opt
    return make


def test_resume_mid_epoch_on_another_backend_reseeds_dropout_with_a_warning(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    x, y = _data()
    with pytest.raises(TrainingInterrupted, match="epoch 1, batch 3/6"):
        _fit(tmp_path, epochs=2, opt=_interrupt_at_step(3))
    model, _, h = _fit(tmp_path, epochs=2, resume=True, data=(torch.from_numpy(x), torch.from_numpy(y)))
    assert model.backend.name == "torch" and [e["epoch"] for e in h.epochs] == [1, 2]
    err = capsys.readouterr().err
    assert "resuming from" in err and "random state is from backend numpy; dropout will be reseeded" in err


def test_the_optimizer_state_follows_the_model_to_another_backend():
    torch = pytest.importorskip("torch")
    x, y = _data()
    model = _model()
    opt = xn.Adam(model.parameters(), lr=1e-2)
    xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (x, y), epochs=1, batch_size=16)
    xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (torch.from_numpy(x), torch.from_numpy(y)), epochs=1, batch_size=16)
    assert all(type(st["m"]).__module__.startswith("torch") for st in opt.state)


def test_bench_refuses_more_samples_than_mnist_has(mnist_dir, capsys):
    assert main(["bench", "--samples", "240000", "--data-dir", str(mnist_dir), "--no-progress"]) == 2
    assert "at most 60,000" in capsys.readouterr().err
