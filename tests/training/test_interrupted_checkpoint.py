"""TrainingInterrupted carries the path of the checkpoint fit saved (None without one), so a caller need not
parse the message, and the message stays the Python user's advice."""
from __future__ import annotations

import os
import pickle
import signal
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.errors import TrainingInterrupted
from xpnet.io import Checkpoints, checkpoint_files


class _CtrlCAfterEpoch:
    def on_epoch_end(self, epoch, logs):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)


def _fit(checkpoints):
    x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    model = xn.Sequential([xn.Dense(4, 2)])
    xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters()), (x, (x[:, 0] > 0.5).astype(np.int64)),
           epochs=3, batch_size=16, callbacks=[_CtrlCAfterEpoch()], checkpoints=checkpoints)


def test_the_saved_checkpoints_path_is_on_the_exception(tmp_path):
    with pytest.raises(TrainingInterrupted) as caught:
        _fit(Checkpoints(tmp_path))
    saved = checkpoint_files(tmp_path)[-1]
    assert caught.value.checkpoint == str(saved) and Path(caught.value.checkpoint).is_file()
    assert str(caught.value) == (f"interrupted after epoch 1; checkpoint saved to {saved} "
                                 f"(continue with --resume, or Checkpoints(resume=True))")


def test_without_a_checkpoint_directory_it_is_none(tmp_path):
    with pytest.raises(TrainingInterrupted, match="nothing saved") as caught:
        _fit(None)
    assert caught.value.checkpoint is None


def test_the_path_survives_pickling_and_defaults_to_none():
    path = "/runs/ckpt-e0001-b000004.safetensors"
    again = pickle.loads(pickle.dumps(TrainingInterrupted("stopped", checkpoint=path)))
    assert str(again) == "stopped" and again.checkpoint == path
    assert TrainingInterrupted("stopped").checkpoint is None
    assert isinstance(again, KeyboardInterrupt)
