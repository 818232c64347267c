"""A NaN/inf loss stops training at that step, naming the step and the layer, before the weights are touched;
--on-nan skip drops only the bad batches."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.errors import DivergedError


def _model():
    return xn.Sequential([xn.Dense(4, 8, rng=np.random.default_rng(0)), xn.ReLU(),
                          xn.Dense(8, 2, rng=np.random.default_rng(1))])


def _data(poison_batch: int | None):
    rng = np.random.default_rng(0)
    x = rng.random((64, 4), dtype=np.float32)
    if poison_batch is not None:  # finite inputs whose products overflow float32 in the first layer
        x[poison_batch * 16:(poison_batch + 1) * 16] = 3e38
    return x, (x[:, 0] > 0.5).astype(np.int64)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_stop_names_the_step_and_the_first_bad_layer_and_keeps_weights_finite():
    model = _model()
    opt = xn.SGD(model.parameters(), lr=0.1)
    with pytest.raises(DivergedError) as info:
        xn.fit(model, xn.SoftmaxCrossEntropy(), opt, _data(poison_batch=2), epochs=1, batch_size=16, shuffle=False)
    message = str(info.value)
    assert "epoch 1, batch 3" in message and "optimizer step 3" in message
    assert "layer 0 (Dense(4, 8))" in message and "--on-nan skip" in message
    assert opt.steps == 2
    assert all(np.isfinite(p.value).all() for p in model.parameters())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_skip_drops_only_the_bad_batches():
    model = _model()
    opt = xn.SGD(model.parameters(), lr=0.1)
    h = xn.fit(model, xn.SoftmaxCrossEntropy(), opt, _data(poison_batch=1), epochs=3, batch_size=16,
               shuffle=False, on_nan="skip")
    assert h.skipped_steps == 3 and opt.steps == 3 * 3  # one of four batches per epoch skipped
    assert all(np.isfinite(p.value).all() for p in model.parameters())
    assert np.isfinite(h.last["train_loss"])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverged_parameters_are_named():
    model = _model()
    model.layers[2].weight.value[...] = np.inf
    x, y = _data(None)
    with pytest.raises(DivergedError, match=r"parameter 'weight' of layer 2 \(Dense\(8, 2\)\) is not finite"):
        xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters()), (x, y), batch_size=16)


def test_on_nan_must_be_known():
    x, y = _data(None)
    model = _model()
    with pytest.raises(ValueError, match="on_nan"):
        xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters()), (x, y), on_nan="ignore")
