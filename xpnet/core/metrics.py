"""Metrics: each takes arrays of one backend and returns a Python float (read once per evaluation)."""
from __future__ import annotations

import math
from typing import Any

import array_api_compat

from xpnet.core.arrays import namespace
from xpnet.core.integers import default_int


def accuracy(scores: Any, target: Any) -> float:
    """Fraction of rows whose highest score is the label; target may be labels (n,) or one-hot (n, c)."""
    # counted in integers and divided on the host: 9607 of 10,000 is 0.9607, not float32's 0.96069997...
    return int(correct_count(scores, target)) / max(scores.shape[0], 1)


def correct_count(scores: Any, target: Any) -> Any:
    """Number of correct rows as a 0-d device array (no read-back, for accumulating over batches)."""
    xp = namespace(scores)
    pred = xp.argmax(scores, axis=1)
    labels = target if target.ndim == 1 else xp.argmax(target, axis=1)
    return xp.sum(xp.astype(pred == xp.astype(labels, pred.dtype), default_int(xp, array_api_compat.device(pred))))


def _diff(pred: Any, target: Any) -> tuple[Any, Any]:
    xp = namespace(pred)
    target = xp.reshape(target, pred.shape) if target.ndim == 1 and pred.ndim == 2 else target
    return xp, pred - xp.astype(target, pred.dtype)


def mse(pred: Any, target: Any) -> float:
    xp, d = _diff(pred, target)
    return float(xp.mean(d * d))


def mae(pred: Any, target: Any) -> float:
    xp, d = _diff(pred, target)
    return float(xp.mean(xp.abs(d)))


def r2(pred: Any, target: Any) -> float:
    """Coefficient of determination: 1 - SS_res / SS_tot (1 is perfect, 0 predicts the mean)."""
    xp, d = _diff(pred, target)
    t = xp.astype(xp.reshape(target, d.shape), d.dtype)
    ss_tot = float(xp.sum((t - xp.mean(t)) ** 2))
    return 1.0 - float(xp.sum(d * d)) / ss_tot if ss_tot > 0 else float("nan")


def psnr(pred: Any, target: Any, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; inf when the two are equal."""
    err = mse(pred, target)
    return math.inf if err == 0 else 10.0 * math.log10(max_value * max_value / err)
