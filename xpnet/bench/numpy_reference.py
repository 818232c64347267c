"""The MLP as plain NumPy: the bar an Array API framework on NumPy is measured against."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from xpnet.bench.base import LR, Contender


class NumpyReference(Contender):
    """The MLP as a competent person writes it in plain NumPy: no layers, no Array API, no framework."""

    name = "numpy-reference"
    models = ("mlp",)

    def setup(self, x: np.ndarray, y: np.ndarray, batch_size: int, optimizer: str, seed: int,
              model: str = "mlp") -> None:
        if model not in self.models:
            raise ValueError(f"{self.name} implements the MLP only, not {model!r}")
        rng = np.random.default_rng(seed)
        sizes = (784, 128, 64, 10)
        self.params = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            self.params += [(rng.normal(0, np.sqrt(2 / a), (a, b))).astype(np.float32), np.zeros(b, np.float32)]
        self.x, self.y, self.batch_size, self.seed, self.optimizer = x, y, batch_size, seed, optimizer
        self.state = [[np.zeros_like(p), np.zeros_like(p)] for p in self.params]
        self.t = 0

    def _grads(self, xb: np.ndarray, yb: np.ndarray) -> list[np.ndarray]:
        w1, b1, w2, b2, w3, b3 = self.params
        h1 = np.maximum(xb @ w1 + b1, 0)
        h2 = np.maximum(h1 @ w2 + b2, 0)
        z = h2 @ w3 + b3
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(yb)), yb] -= 1
        p /= len(yb)
        d2 = (p @ w3.T) * (h2 > 0)
        d1 = (d2 @ w2.T) * (h1 > 0)
        return [xb.T @ d1, d1.sum(0), h1.T @ d2, d2.sum(0), h2.T @ p, p.sum(0)]

    def _update(self, grads: list[np.ndarray]) -> None:
        lr = LR[self.optimizer]
        self.t += 1
        for p, g, (m, v) in zip(self.params, grads, self.state):
            if self.optimizer == "sgd":
                p -= lr * g
            elif self.optimizer == "momentum":
                m *= 0.9
                m += g
                p -= lr * m
            else:
                m[...] = 0.9 * m + 0.1 * g
                v[...] = 0.999 * v + 0.001 * g * g
                p -= lr / (1 - 0.9 ** self.t) * m / (np.sqrt(v / (1 - 0.999 ** self.t)) + 1e-8)

    def epoch(self, epoch: int) -> float:
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.x))
        start = time.perf_counter()
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            self._update(self._grads(self.x[idx], self.y[idx]))
        return time.perf_counter() - start

    def info(self) -> dict[str, Any]:
        return {"device": "cpu", "numpy": np.__version__}
