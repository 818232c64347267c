"""Activations: elementwise, no parameters. Each keeps the one array its backward needs."""
from __future__ import annotations

import math
from typing import Any

from xpnet.backends import ops
from xpnet.backends.ops import lookup
from xpnet.core.arrays import namespace
from xpnet.core.module import Module
from xpnet.errors import NotDifferentiableError


class Identity(Module):
    """y = x (the 'linear' activation)."""

    def forward(self, x: Any) -> Any:
        return x

    def backward(self, dy: Any) -> Any:
        return dy


Linear = Identity


class Step(Module):
    """Heaviside step, y = 1 if x >= 0 else 0. Forward only: its gradient is zero almost everywhere."""

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        return xp.astype(x >= 0, x.dtype)

    def backward(self, dy: Any) -> Any:
        raise NotDifferentiableError("Step has zero gradient almost everywhere, so nothing before it can "
                                     "learn by backpropagation; train with Sigmoid (its smooth version) "
                                     "or ReLU, and use Step only for inference")


class ReLU(Module):
    """y = max(x, 0). The 0/1 mask is kept: a multiply is cheaper than `where` on every backend."""

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        kernel = lookup(xp, ops.RELU_FORWARD)  # y and mask in one pass where a backend has it
        if kernel is not None:
            y, self._mask = kernel(xp, x)
            return y
        self._mask = xp.astype(x > 0, x.dtype)
        return x * self._mask

    def fused(self, y: Any, mask: Any) -> Any:
        """Take the output and mask of a bias+ReLU kernel that ran in the preceding Dense's place."""
        self._mask = mask
        return y

    def backward(self, dy: Any) -> Any:
        return dy * self._mask


class LeakyReLU(Module):
    """y = x if x > 0 else alpha * x."""

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = alpha

    def forward(self, x: Any) -> Any:
        mask = namespace(x).astype(x > 0, x.dtype)
        self._slope = mask * (1.0 - self.alpha) + self.alpha
        return x * self._slope

    def backward(self, dy: Any) -> Any:
        return dy * self._slope

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


def _sigmoid(xp: Any, x: Any) -> Any:
    # exp of -|x| only, so no overflow for x = -1e4: sigma(x) = 1/(1+e) for x >= 0, e/(1+e) otherwise.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x)), computed without overflow."""

    def forward(self, x: Any) -> Any:
        self._y = _sigmoid(namespace(x), x)
        return self._y

    def backward(self, dy: Any) -> Any:
        xp = namespace(dy)
        kernel = lookup(xp, ops.SIGMOID_BACKWARD)
        return kernel(xp, dy, self._y) if kernel is not None else dy * self._y * (1.0 - self._y)


class Tanh(Module):
    """y = tanh(x)."""

    def forward(self, x: Any) -> Any:
        self._y = namespace(x).tanh(x)
        return self._y

    def backward(self, dy: Any) -> Any:
        xp = namespace(dy)
        kernel = lookup(xp, ops.TANH_BACKWARD)
        return kernel(xp, dy, self._y) if kernel is not None else dy * (1.0 - self._y * self._y)


class Swish(Module):
    """y = x * sigmoid(x) (also called SiLU)."""

    def forward(self, x: Any) -> Any:
        self._x, self._s = x, _sigmoid(namespace(x), x)
        return x * self._s

    def backward(self, dy: Any) -> Any:
        s = self._s
        return dy * (s + self._x * s * (1.0 - s))


SiLU = Swish

_GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Module):
    """y = 0.5 x (1 + tanh(c (x + 0.044715 x^3))), the tanh form used by BERT and GPT-2."""

    def forward(self, x: Any) -> Any:
        self._x = x
        self._t = namespace(x).tanh(_GELU_C * (x + 0.044715 * x * x * x))
        return 0.5 * x * (1.0 + self._t)

    def backward(self, dy: Any) -> Any:
        x, t = self._x, self._t
        inner = _GELU_C * (1.0 + 3.0 * 0.044715 * x * x)
        return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner)


class Softmax(Module):
    """Softmax over the last axis. For classification prefer SoftmaxCrossEntropy on logits (stabler, fused)."""

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
        self._y = e / xp.sum(e, axis=-1, keepdims=True)
        return self._y

    def backward(self, dy: Any) -> Any:
        y = self._y
        return y * (dy - namespace(dy).sum(dy * y, axis=-1, keepdims=True))


ACTIVATIONS: dict[str, type[Module]] = {
    "identity": Identity, "linear": Identity, "step": Step, "relu": ReLU, "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid, "tanh": Tanh, "swish": Swish, "silu": Swish, "gelu": GELU, "softmax": Softmax,
}
