"""The GPU training loop, checked on every backend here: the windowed stepper (loss sums and NaN checks on
the device, read once per window) and graph mode (the step over fixed buffers, replayed) compute what the
per-step checked loop computes. On a CPU the graph 'replay' runs the same step eagerly; on CuPy it is a
captured CUDA graph (tests/training/test_cupy_graph.py)."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends import transfer
from xpnet.core.schedules import Cosine
from xpnet.errors import DivergedError, TrainingInterrupted
from xpnet.training.fit import step_mode


class _Poison(xn.Module):
    """Turns rows whose last feature exceeds 100 into inf: a loss that is not finite for that batch alone
    (real data with NaN is refused by fit before training starts)."""

    def forward(self, x):
        from xpnet.core.arrays import namespace

        xp = namespace(x)
        return x / xp.astype(x[:, 5:6] <= 100.0, x.dtype)


def _model(dtype="float32", dropout=False, poison_layer=False):
    layers = [_Poison()] if poison_layer else []
    layers += [xn.Dense(6, 16, rng=np.random.default_rng(0), dtype=dtype), xn.ReLU()]
    layers += [xn.Dropout(0.3)] if dropout else []
    layers += [xn.Dense(16, 3, rng=np.random.default_rng(1), dtype=dtype)]
    return xn.Sequential(layers)


def _data(n=100, poison_rows=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)
    if poison_rows is not None:  # finite inputs whose products overflow float32 in the first layer
        x[poison_rows] = 3e38
    return x, y


def _fit(backend, mode, monkeypatch, *, dtype="float32", optimizer="adam", data=None, dropout=False,
         poison_layer=False, **kw):
    """Train with the stepper `mode` forced: 'checked', 'windowed' (as on a GPU) or 'graph'."""
    model = _model(dtype, dropout, poison_layer).to(backend)
    opt = (xn.Adam(model.parameters(), lr=0.01, schedule=Cosine(40)) if optimizer == "adam"
           else xn.SGD(model.parameters(), lr=0.05, momentum=0.9))
    x, y = data or _data()
    monkeypatch.setattr(type(backend), "sync_costly", mode == "windowed")
    history = xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (backend.asarray(x), backend.asarray(y)),
                     batch_size=16, graph=mode == "graph", **{"epochs": 3, "seed": 1, **kw})
    return model, opt, history


def _weights(model):
    return [transfer(p.value, xn.get_backend("numpy")) for p in model.parameters()]


def test_step_mode_choice():
    numpy = xn.get_backend("numpy")
    assert step_mode(numpy, None) == "checked" and step_mode(numpy, True) == "graph"


@pytest.mark.parametrize("mode", ["windowed", "graph"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_same_weights_and_losses_as_the_checked_loop(backend, monkeypatch, mode, optimizer):
    # 100 rows in batches of 16: six full batches and a partial one of 4, so graph mode holds two graphs.
    ref_model, ref_opt, ref_hist = _fit(backend, "checked", monkeypatch, optimizer=optimizer)
    model, opt, hist = _fit(backend, mode, monkeypatch, optimizer=optimizer)
    for a, b in zip(_weights(model), _weights(ref_model)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)  # lr and step as float32 device scalars
    np.testing.assert_allclose(hist["train_loss"], ref_hist["train_loss"], rtol=1e-5)
    assert opt.steps == ref_opt.steps == 21 and opt.param_steps() == ref_opt.param_steps()


def test_graph_mode_float64_matches_to_rounding(monkeypatch):
    numpy = xn.get_backend("numpy")
    ref_model, _, _ = _fit(numpy, "checked", monkeypatch, dtype="float64")
    model, _, _ = _fit(numpy, "graph", monkeypatch, dtype="float64")
    for a, b in zip(_weights(model), _weights(ref_model)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_graph_mode_with_dropout_draws_the_same_masks(monkeypatch):
    numpy = xn.get_backend("numpy")
    ref_model, _, _ = _fit(numpy, "checked", monkeypatch, dropout=True)
    model, _, _ = _fit(numpy, "graph", monkeypatch, dropout=True)
    for a, b in zip(_weights(model), _weights(ref_model)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("mode", ["windowed", "graph"])
def test_nan_stop_names_the_batch_and_keeps_the_weights_before_it(backend, monkeypatch, mode):
    poisoned = _data(poison_rows=slice(32, 48))  # batch 3 of epoch 1 (no shuffle)
    with pytest.raises(DivergedError) as ref_info:
        ref_model, ref_opt, _ = _fit(backend, "checked", monkeypatch, data=poisoned, shuffle=False)
    model = _model().to(backend)
    opt = xn.Adam(model.parameters(), lr=0.01)
    monkeypatch.setattr(type(backend), "sync_costly", mode == "windowed")
    x, y = poisoned
    with pytest.raises(DivergedError) as info:
        xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (backend.asarray(x), backend.asarray(y)), epochs=3,
               batch_size=16, shuffle=False, graph=mode == "graph")
    assert "epoch 1, batch 3 (optimizer step 3)" in str(info.value)
    assert "epoch 1, batch 3 (optimizer step 3)" in str(ref_info.value)
    assert opt.steps == 2 and opt.param_steps() == [2] * 4  # the dropped steps are not counted
    ref = _model()
    ref_opt = xn.Adam(ref.parameters(), lr=0.01)
    xn.fit(ref, xn.SoftmaxCrossEntropy(), ref_opt, (x[:32], y[:32]), epochs=1, batch_size=16, shuffle=False)
    for a, b in zip(_weights(model), _weights(ref)):  # exactly two clean steps were applied, nothing after
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("mode", ["windowed", "graph"])
def test_nan_skip_drops_the_same_batches(monkeypatch, capsys, mode):
    numpy = xn.get_backend("numpy")
    x, y = _data()
    x[[5, 70], 5] = 1000.0  # two rows that _Poison turns into inf: two bad batches per epoch
    kw = dict(optimizer="sgd", data=(x, y), on_nan="skip", poison_layer=True)
    ref_model, _, ref_hist = _fit(numpy, "checked", monkeypatch, **kw)
    model, _, hist = _fit(numpy, mode, monkeypatch, **kw)
    assert hist.skipped_steps == ref_hist.skipped_steps == 6
    assert "skipped" in capsys.readouterr().err
    for a, b in zip(_weights(model), _weights(ref_model)):  # SGD: no step count in the maths, so equal
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(hist["train_loss"], ref_hist["train_loss"], rtol=1e-5)


def test_graph_mode_resumes_from_a_step_checkpoint_exactly(tmp_path, monkeypatch):
    numpy = xn.get_backend("numpy")
    full, _, _ = _fit(numpy, "graph", monkeypatch)
    model = _model()
    opt = xn.Adam(model.parameters(), lr=0.01, schedule=Cosine(40))
    x, y = _data()
    ck = xn.Checkpoints(tmp_path, every_steps=5)
    calls = {"n": 0}

    def stop_after_eleven() -> bool:  # an interrupt after step 11 (epoch 2, batch 4)
        calls["n"] += 1
        return calls["n"] >= 11

    from xpnet.training import fit as train

    monkeypatch.setattr(train, "interrupt_requests", lambda: _Ctx(stop_after_eleven))
    with pytest.raises(TrainingInterrupted):
        xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (x, y), epochs=3, batch_size=16, seed=1, graph=True,
               checkpoints=ck)
    monkeypatch.undo()
    resumed = _model()
    opt2 = xn.Adam(resumed.parameters(), lr=0.01, schedule=Cosine(40))
    xn.fit(resumed, xn.SoftmaxCrossEntropy(), opt2, (x, y), epochs=3, batch_size=16, seed=1, graph=True,
           checkpoints=xn.Checkpoints(tmp_path, resume=True))
    for a, b in zip(_weights(resumed), _weights(full)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


class _Ctx:
    def __init__(self, flag):
        self.flag = flag

    def __enter__(self):
        return self.flag

    def __exit__(self, *exc):
        return False


def test_graph_mode_records_afresh_after_the_weights_are_rebound(backend):
    """A checkpoint loaded between epochs rebinds every parameter: replays of the old recording would go on
    updating the old arrays, so graph mode must notice and record again (on CuPy: a real recapture)."""
    from xpnet.training.fit import train_epoch

    def run(graph: bool):
        model = _model().to(backend)
        opt = xn.Adam(model.parameters(), lr=0.01)
        loss = xn.SoftmaxCrossEntropy()
        x, y = (backend.asarray(a) for a in _data())
        train_epoch(backend, model, loss, opt, x, y, 16, np.arange(100), graph=graph)
        train_epoch(backend, model, loss, opt, x, y, 16, np.arange(100)[::-1].copy(), graph=graph)
        snapshot = {k: transfer(v, xn.get_backend("numpy")) for k, v in model.state_dict().items()}
        model.load_state_dict({k: v * 0.5 for k, v in snapshot.items()})  # new arrays for every parameter
        train_epoch(backend, model, loss, opt, x, y, 16, np.arange(100), graph=graph)
        return _weights(model)

    for a, b in zip(run(True), run(False)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
