"""Losses: forward(prediction, target) -> scalar mean loss; backward() -> dL/dprediction.

Each forward computes its gradient too when that is cheaper than keeping the inputs (softmax-CE).
"""
from __future__ import annotations

from typing import Any

from xpnet.backends.ops import SOFTMAX_CROSS_ENTROPY_LABELS, lookup
from xpnet.core.arrays import dtype_name, namespace
from xpnet.errors import DataError, DTypeError, ShapeError


class Loss:
    """Base class; `loss(pred, target)` is `loss.forward(pred, target)`."""

    def forward(self, pred: Any, target: Any) -> Any:
        raise NotImplementedError

    def backward(self) -> Any:
        return self._grad

    def __call__(self, pred: Any, target: Any) -> Any:
        return self.forward(pred, target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _match_target(name: str, pred: Any, target: Any) -> Any:
    """Targets of shape (batch,) for predictions (batch, 1) are reshaped: broadcasting them would be silent."""
    if tuple(target.shape) == tuple(pred.shape):
        return target
    xp = namespace(pred)
    if target.ndim == 1 and pred.ndim == 2 and pred.shape[1] == 1 and target.shape[0] == pred.shape[0]:
        return xp.reshape(target, (-1, 1))
    raise ShapeError(f"{name}: prediction shape {tuple(pred.shape)} and target shape {tuple(target.shape)} differ")


def _as_float_target(xp: Any, pred: Any, target: Any) -> Any:
    return target if target.dtype == pred.dtype else xp.astype(target, pred.dtype)


class MSE(Loss):
    """Mean squared error over every element."""

    def forward(self, pred: Any, target: Any) -> Any:
        xp = namespace(pred)
        diff = pred - _as_float_target(xp, pred, _match_target("MSE", pred, target))
        n = _size(diff)
        self._grad = diff * (2.0 / n)
        return xp.sum(diff * diff) / n


class MAE(Loss):
    """Mean absolute error over every element."""

    def forward(self, pred: Any, target: Any) -> Any:
        xp = namespace(pred)
        diff = pred - _as_float_target(xp, pred, _match_target("MAE", pred, target))
        n = _size(diff)
        self._grad = xp.sign(diff) * (1.0 / n)
        return xp.sum(xp.abs(diff)) / n


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy with targets in [0, 1]: from logits (stable, default) or from probabilities."""

    def __init__(self, from_logits: bool = True, eps: float = 1e-7) -> None:
        self.from_logits, self.eps = from_logits, eps

    def forward(self, pred: Any, target: Any) -> Any:
        xp = namespace(pred)
        y = _as_float_target(xp, pred, _match_target("BinaryCrossEntropy", pred, target))
        n = _size(pred)
        if self.from_logits:
            # log(1 + exp(-|z|)) never overflows; max(z, 0) - z*y completes log-sigmoid for both signs.
            e = xp.exp(-xp.abs(pred))
            loss = xp.sum(xp.maximum(pred, 0.0) - pred * y + xp.log1p(e)) / n
            p = xp.where(pred >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            self._grad = (p - y) * (1.0 / n)
            return loss
        p = xp.clip(pred, self.eps, 1.0 - self.eps)
        self._grad = (p - y) / (p * (1.0 - p)) * (1.0 / n)
        return -xp.sum(y * xp.log(p) + (1.0 - y) * xp.log(1.0 - p)) / n

    def __repr__(self) -> str:
        return f"BinaryCrossEntropy(from_logits={self.from_logits})"


class SoftmaxCrossEntropy(Loss):
    """Softmax + cross-entropy fused, from logits (batch, classes) and integer labels (batch,) or
    probabilities / one-hot (batch, classes). Stable for logits of +-1e4: the max is subtracted first
    and log-probabilities are never exponentiated back."""

    def __init__(self, check_labels: bool = True) -> None:
        # The label-range check reads a value back from the device; fit() checks the whole dataset once
        # and the CLI turns the per-batch check off.
        self.check_labels = check_labels

    def forward(self, logits: Any, target: Any) -> Any:
        xp = namespace(logits)
        if logits.ndim != 2:
            raise ShapeError(f"SoftmaxCrossEntropy expects logits of shape (batch, classes), got {tuple(logits.shape)}")
        n, c = logits.shape
        if xp.isdtype(target.dtype, "integral") and tuple(target.shape) == (n,):
            kernel = lookup(xp, SOFTMAX_CROSS_ENTROPY_LABELS)
            if kernel is not None:
                if self.check_labels:
                    check_label_range(xp, target, c)
                loss, self._grad = kernel(xp, logits, target)
                return loss
        onehot = self._onehot(xp, logits, target)
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        e = xp.exp(shifted)
        total = xp.sum(e, axis=1, keepdims=True)
        logp = shifted - xp.log(total)
        self._grad = (e / total - onehot) * (1.0 / n)
        return -xp.sum(onehot * logp) / n

    def _onehot(self, xp: Any, logits: Any, target: Any) -> Any:
        n, c = logits.shape
        if xp.isdtype(target.dtype, "integral"):
            if tuple(target.shape) != (n,):
                raise ShapeError(f"SoftmaxCrossEntropy: integer labels must have shape ({n},), got {tuple(target.shape)}")
            if self.check_labels:
                check_label_range(xp, target, c)
            classes = xp.arange(c, dtype=target.dtype, device=target.device)
            return xp.astype(target[:, None] == classes, logits.dtype)
        if not xp.isdtype(target.dtype, "real floating"):
            raise DTypeError(f"SoftmaxCrossEntropy: labels must be integers or probabilities, "
                             f"got {dtype_name(xp, target.dtype)}")
        if tuple(target.shape) != (n, c):
            raise ShapeError(f"SoftmaxCrossEntropy: one-hot targets must have shape ({n}, {c}), got {tuple(target.shape)}")
        return _as_float_target(xp, logits, target)

    def __repr__(self) -> str:
        return "SoftmaxCrossEntropy()"


def check_label_range(xp: Any, labels: Any, num_classes: int) -> None:
    """Raise DataError unless every integer label lies in 0..num_classes-1 (reads two values back)."""
    if labels.shape[0] == 0:
        return
    lo, hi = int(xp.min(labels)), int(xp.max(labels))
    if lo < 0 or hi >= num_classes:
        raise DataError(f"labels must be in 0..{num_classes - 1} for {num_classes} classes, "
                        f"found values from {lo} to {hi}")


def _size(a: Any) -> int:
    n = 1
    for d in a.shape:
        n *= d
    return max(n, 1)


LOSSES: dict[str, type[Loss]] = {
    "mse": MSE, "mae": MAE, "bce": BinaryCrossEntropy, "softmax_cross_entropy": SoftmaxCrossEntropy,
}
