"""When a loss is not finite: the signal a step raises, and which layer first went wrong."""
from __future__ import annotations

from typing import Any

from xpnet.core.arrays import namespace
from xpnet.core.module import Module, Sequential


class NonFiniteLoss(ArithmeticError):
    """Raised inside a training step, before the update, when the batch loss is NaN or infinite."""

    def __init__(self, value: float) -> None:
        super().__init__(f"non-finite loss {value}")
        self.value = value


def _finite(a: Any) -> bool:
    xp = namespace(a)
    return bool(xp.all(xp.isfinite(a)))


def describe_nonfinite(model: Module, x: Any) -> str:
    """Which layer first holds or produces non-finite values on input x (a short phrase for a message)."""
    layers = model.layers if isinstance(model, Sequential) else [model]
    was_training = model.training
    model.eval()
    try:
        for i, layer in enumerate(layers):
            for name, p in layer.named_parameters():
                if not _finite(p.value):
                    return f"parameter {name!r} of layer {i} ({layer!r}) is not finite (an earlier update diverged)"
            x = layer.forward(x)
            if not _finite(x):
                return f"the output of layer {i} ({layer!r}) is the first to hold NaN or inf"
    finally:
        model.train(was_training)
    return "every layer's output is finite, so the loss itself overflowed"
