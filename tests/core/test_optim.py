"""Optimizers match torch.optim step for step; schedules hit their end points."""
from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet.core.module import Parameter
from xpnet.core.optim import make_optimizer

CASES = {
    "sgd": (lambda ps: xn.SGD(ps, lr=0.1), lambda t, ps: t.optim.SGD(ps, lr=0.1)),
    "sgd-l2": (lambda ps: xn.SGD(ps, lr=0.1, weight_decay=0.01), lambda t, ps: t.optim.SGD(ps, lr=0.1, weight_decay=0.01)),
    "momentum": (lambda ps: xn.SGD(ps, lr=0.05, momentum=0.9), lambda t, ps: t.optim.SGD(ps, lr=0.05, momentum=0.9)),
    "nesterov": (lambda ps: xn.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
                 lambda t, ps: t.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True)),
    "adam": (lambda ps: xn.Adam(ps, lr=1e-2), lambda t, ps: t.optim.Adam(ps, lr=1e-2)),
    "adam-l2": (lambda ps: xn.Adam(ps, lr=1e-2, weight_decay=0.1), lambda t, ps: t.optim.Adam(ps, lr=1e-2, weight_decay=0.1)),
    "adamw": (lambda ps: xn.AdamW(ps, lr=1e-2, weight_decay=0.1), lambda t, ps: t.optim.AdamW(ps, lr=1e-2, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_optim_over_several_steps(backend, name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(4, 3)), rng.normal(size=(3,))]
    grads = [[rng.normal(size=a.shape) for a in init] for _ in range(5)]
    ours = [Parameter(backend.asarray(a, "float64")) for a in init]
    theirs = [torch.tensor(a, requires_grad=True) for a in init]
    make_ours, make_theirs = CASES[name]
    opt, ref = make_ours(ours), make_theirs(torch, theirs)
    for step_grads in grads:
        for p, t, g in zip(ours, theirs, step_grads):
            p.grad = backend.asarray(g, "float64")
            t.grad = torch.tensor(g)
        opt.step()
        ref.step()
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(backend.to_numpy(p.value), t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_parameters_without_gradients_are_left_alone():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(3))
    a.grad = np.ones(3)
    xn.SGD([a, b], lr=0.5).step()
    np.testing.assert_array_equal(a.value, 0.5)
    np.testing.assert_array_equal(b.value, 1.0)


def test_bad_hyperparameters_are_refused():
    p = [Parameter(np.ones(2))]
    for make in (lambda: xn.SGD(p, lr=0), lambda: xn.SGD(p, lr=float("nan")), lambda: xn.SGD(p, momentum=1.0),
                 lambda: xn.Adam(p, betas=(1.0, 0.9)), lambda: xn.SGD([], lr=0.1),
                 lambda: make_optimizer("rmsprop", p), lambda: xn.SGD(p, nesterov=True)):
        with pytest.raises(ValueError):
            make()


def test_schedules():
    cos = xn.Cosine(total_steps=100, min_lr=0.0)
    assert cos(1.0, 1) == 1.0 and cos(1.0, 51) == pytest.approx(0.5) and cos(1.0, 101) == pytest.approx(0.0)
    step = xn.StepDecay(every=10, gamma=0.5)
    assert [step(1.0, s) for s in (1, 10, 11, 21)] == [1.0, 1.0, 0.5, 0.25]
    p = Parameter(np.zeros(1))
    opt = xn.SGD([p], lr=1.0, schedule=cos)
    for _ in range(51):
        p.grad = np.ones(1)
        opt.step()
    assert opt.current_lr == pytest.approx(0.5)
    assert p.value[0] == pytest.approx(-sum(cos(1.0, s) for s in range(1, 52)))
    assert math.isclose(-p.value[0], sum(0.5 * (1 + math.cos(math.pi * (s - 1) / 100)) for s in range(1, 52)))
