"""Flatten and Reshape: change how each sample's values are laid out, keeping the batch axis. No parameters."""
from __future__ import annotations

from typing import Any, Sequence

from xpnet.core.arrays import namespace
from xpnet.core.module import Module
from xpnet.errors import DTypeError, ShapeError


def _size(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class Flatten(Module):
    """x: (N, d1, d2, ...) -> (N, d1 * d2 * ...): images into the rows a Dense layer takes."""

    def forward(self, x: Any) -> Any:
        shape = getattr(x, "shape", None)
        if shape is None:
            raise DTypeError(f"Flatten() expects an array, got {type(x).__name__}")
        if len(shape) < 2:
            raise ShapeError(f"Flatten() expects input of shape (batch, ...), got {tuple(shape)}")
        self._shape = tuple(shape)
        return namespace(x).reshape(x, (shape[0], _size(shape[1:])))

    def backward(self, dy: Any) -> Any:
        return namespace(dy).reshape(dy, self._shape)


class Reshape(Module):
    """x: (N, prod(shape)) -> (N, *shape), e.g. Reshape((1, 28, 28)) turns MNIST rows into 1-channel images."""

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(int(d) for d in shape)
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"Reshape needs a shape of positive sizes, got {tuple(shape)}")
        self.size = _size(self.shape)

    def forward(self, x: Any) -> Any:
        shape = getattr(x, "shape", None)
        if shape is None:
            raise DTypeError(f"{self!r} expects an array, got {type(x).__name__}")
        if len(shape) < 1 or _size(shape[1:]) != self.size:
            raise ShapeError(f"{self!r} expects input of shape (batch, {self.size}) or any (batch, ...) with "
                             f"{self.size} values per sample, got {tuple(shape)}")
        self._shape = tuple(shape)
        return namespace(x).reshape(x, (shape[0], *self.shape))

    def backward(self, dy: Any) -> Any:
        return namespace(dy).reshape(dy, self._shape)

    def config(self) -> dict[str, Any]:
        return {"shape": list(self.shape)}

    def __repr__(self) -> str:
        return f"Reshape({self.shape})"
