"""Dropout: zero a fraction p of activations while training, scaling the rest by 1/(1-p)."""
from __future__ import annotations

from typing import Any

from xpnet.backends import backend_for
from xpnet.core.module import Module


class Dropout(Module):
    """Inverted dropout; the identity in eval mode. The mask comes from the backend's seeded generator."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout p must be in [0, 1), got {p}")
        self.p = p
        self._mask: Any = None

    def forward(self, x: Any) -> Any:
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        backend = backend_for(x)
        keep = backend.uniform(tuple(x.shape), x.dtype) >= self.p
        self._mask = backend.xp.astype(keep, x.dtype) * (1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, dy: Any) -> Any:
        return dy if self._mask is None else dy * self._mask

    def config(self) -> dict[str, Any]:
        return {"p": self.p}
