"""Files written by an earlier xpnet (before the training loop was reorganised) still load, and a run resumed
from such a checkpoint ends with the weights that earlier run ended with: the formats did not change.

tests/files was written by xpnet 0.1.0 as it stood before that change: a 5-8-3 ReLU MLP with dropout, Adam,
64 rows in batches of 16, seed 5, checkpoints every 3 steps; the model after 2 epochs, the checkpoint after
epoch 1, batch 3, and the final weights as .npz."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

import xpnet as xn
from xpnet.models.mlp import mlp

DATA = Path(__file__).resolve().parents[1] / "files"


def _final() -> dict[str, np.ndarray]:
    with np.load(DATA / "mlp-5-8-3-final.npz") as f:
        return {k: f[k] for k in f.files}


def test_a_model_file_written_before_loads_with_its_weights():
    model = xn.load_model(DATA / "mlp-5-8-3.safetensors")
    meta = xn.model_metadata(DATA / "mlp-5-8-3.safetensors")
    assert meta["note"] == "written by xpnet 0.1.0 before the training-step redesign"
    for name, value in _final().items():
        np.testing.assert_array_equal(np.asarray(model.state_dict()[name]), value)


def test_a_checkpoint_written_before_resumes_to_the_same_weights(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(DATA / "ckpt-e0001-b000003.safetensors", ckpt)
    rng = np.random.default_rng(0)
    x = rng.random((64, 5), dtype=np.float32)
    y = (x[:, :3].argmax(1)).astype(np.int64)
    model = mlp((5, 8, 3), "relu", dropout=0.1, seed=99)  # other initial weights: the checkpoint must replace them
    opt = xn.Adam(model.parameters(), lr=1e-2)
    xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (x, y), epochs=2, batch_size=16, seed=5,
           checkpoints=xn.Checkpoints(ckpt, every_steps=3, keep=None, resume=True))
    assert opt.steps == 8
    for name, value in _final().items():
        np.testing.assert_array_equal(np.asarray(model.state_dict()[name]), value)
