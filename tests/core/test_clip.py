"""Gradient clipping by global norm: the maths on every backend, and fit(clip_norm=...) reaching every way a
step runs (per-step host reads, device books, the captured-graph runner) because it lives in the one step body."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends import transfer
from xpnet.core.clip import clip_grad_norm
from xpnet.core.module import Parameter

NP = xn.get_backend("numpy")


def _grads(backend, scale):
    rng = np.random.default_rng(0)
    params = [Parameter(backend.asarray(np.zeros(s, np.float32))) for s in ((3, 4), (4,))]
    host = [rng.normal(size=p.shape).astype(np.float32) * scale for p in params]
    for p, g in zip(params, host):
        p.grad = backend.asarray(g)
    return params, host


def test_clip_grad_norm_scales_to_the_limit_and_leaves_small_gradients(backend):
    params, host = _grads(backend, 10.0)
    norm = float(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in host)))
    got = clip_grad_norm(params, 1.0)
    assert float(backend.to_numpy(got)) == pytest.approx(norm, rel=1e-5)
    clipped = [backend.to_numpy(p.grad) for p in params]
    assert float(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in clipped))) == pytest.approx(1.0, rel=1e-5)
    for g, h in zip(clipped, host):  # the direction is kept
        np.testing.assert_allclose(g, h / norm, rtol=1e-5, atol=1e-7)
    params, host = _grads(backend, 1e-3)
    clip_grad_norm(params, 1.0)
    for p, h in zip(params, host):
        np.testing.assert_allclose(backend.to_numpy(p.grad), h, rtol=1e-6)


def _model():
    return xn.Sequential([xn.Dense(6, 16, rng=np.random.default_rng(0)), xn.ReLU(),
                          xn.Dense(16, 3, rng=np.random.default_rng(1))])


def _data():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(96, 6)) * 5).astype(np.float32)  # large inputs: large gradients, so clipping bites
    return x, ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64))


def _by_hand(clip):
    """The reference: a plain loop with the clipping written out in NumPy."""
    model, (x, y) = _model(), _data()
    opt, loss = xn.SGD(model.parameters(), lr=0.1, momentum=0.9), xn.SoftmaxCrossEntropy()
    for _ in range(2):
        for s in range(0, 96, 16):
            opt.zero_grad()
            loss.forward(model.forward(x[s:s + 16]), y[s:s + 16])
            model.backward(loss.backward())
            norm = np.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in model.parameters()))
            for p in model.parameters():
                p.grad = p.grad * np.float32(min(1.0, clip / norm))
            opt.step()
    return [p.value for p in model.parameters()]


def _fit(backend, mode, monkeypatch, clip):
    model, (x, y) = _model().to(backend), _data()
    opt = xn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    monkeypatch.setattr(type(backend), "sync_costly", mode == "windowed")
    xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (backend.asarray(x), backend.asarray(y)), epochs=2,
           batch_size=16, shuffle=False, graph=mode == "graph", clip_norm=clip)
    return [transfer(p.value, NP) for p in model.parameters()]


@pytest.mark.parametrize("mode", ["checked", "windowed", "graph"])
def test_fit_clips_in_every_mode_on_every_backend(backend, mode, monkeypatch):
    want = _by_hand(0.5)
    got = _fit(backend, mode, monkeypatch, 0.5)
    tol = 1e-4 if "cuda" in backend.describe_device() else 2e-5
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
    unclipped = _fit(backend, mode, monkeypatch, None)
    assert max(float(np.abs(u - w).max()) for u, w in zip(unclipped, want)) > 1e-3  # the clip made a difference


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1"])
def test_a_bad_clip_norm_is_refused_before_training(bad):
    model, (x, y) = _model(), _data()
    with pytest.raises(ValueError, match="clip_norm must be a positive finite number"):
        xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters()), (x, y), clip_norm=bad)


def test_a_resume_with_another_clip_norm_is_refused(tmp_path):
    from xpnet.errors import CheckpointError

    x, y = _data()
    for clip, resume in ((0.5, False), (None, True)):
        model = _model()
        ck = xn.Checkpoints(tmp_path, resume=resume)
        if resume:
            with pytest.raises(CheckpointError, match="clip_norm 0.5, not None"):
                xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters()), (x, y), epochs=2,
                       checkpoints=ck, clip_norm=clip)
        else:
            xn.fit(model, xn.SoftmaxCrossEntropy(), xn.SGD(model.parameters()), (x, y), checkpoints=ck,
                   clip_norm=clip)
