"""Dense: y = x @ W + b, and its backward."""
from __future__ import annotations

import functools
from typing import Any, Callable

from xpnet.backends import ops
from xpnet.backends.ops import lookup
from xpnet.core.activations import ReLU
from xpnet.core.arrays import check_float_dtype, check_matrix_input, is_writeable, matmul, namespace
from xpnet.core.init import initial_weight, zeros
from xpnet.core.module import Module, Parameter


class Dense(Module):
    """Fully connected layer. x: (batch, in_features) -> (batch, out_features)."""

    skips_dx = True

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init: str = "glorot",
                 dtype: str = "float32", rng: Any = None) -> None:
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Dense sizes must be positive, got ({in_features}, {out_features})")
        check_float_dtype("Dense", dtype)
        self.in_features, self.out_features, self.init = in_features, out_features, init
        self.weight = Parameter(initial_weight(init, in_features, out_features, dtype, rng))
        self.bias = Parameter(zeros((out_features,), dtype)) if bias else None
        self._x: Any = None

    def forward(self, x: Any) -> Any:
        y = self.forward_unbiased(x)
        if self.bias is None:
            return y
        if is_writeable(y):  # y is ours, fresh from the matmul: add in place, no second (batch, out) array
            y += self.bias.value
            return y
        return y + self.bias.value

    def fused_with(self, following: Module) -> Callable[[Any], Any] | None:
        """Dense with bias, then ReLU: where the backend has a bias+ReLU kernel it replaces the bias add and
        ReLU's pass with one (on a GPU a small op costs mostly its launch); elsewhere the two run as usual."""
        if self.bias is None or type(following) is not ReLU:
            return None
        return functools.partial(self._forward_bias_relu, following)

    def _forward_bias_relu(self, relu: ReLU, x: Any) -> Any:
        xp = namespace(x)
        kernel = lookup(xp, ops.BIAS_RELU_FORWARD)
        if kernel is None:
            return relu.forward(self.forward(x))
        return relu.fused(*kernel(xp, self.forward_unbiased(x), self.bias.value))

    def forward_unbiased(self, x: Any) -> Any:
        """x @ W, remembering x for backward (the fused forward adds the bias itself)."""
        w = self.weight.value
        check_matrix_input(self, x, self.in_features, w.dtype)
        self._x = x
        return matmul(x, w)

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        self.weight.accumulate(matmul(self._x.mT, dy))
        if self.bias is not None:
            self.bias.accumulate(namespace(dy).sum(dy, axis=0))
        # The first layer's dx is a third of the MLP's backward FLOPs and nobody reads it when x is data.
        return matmul(dy, self.weight.value.mT) if need_dx else None

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "init": self.init}

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        n_in, n_out = config["in_features"], config["out_features"]
        return {"weight": (n_in, n_out), **({"bias": (n_out,)} if config.get("bias", True) else {})}

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features})"

