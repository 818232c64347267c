"""Regression networks: a single neuron (the linear fit) and a small ReLU MLP (house prices)."""
from __future__ import annotations

from xpnet.backends import host_rng
from xpnet.core.dense import Dense
from xpnet.core.module import Sequential
from xpnet.models.mlp import mlp


def linear_regression(in_features: int = 1, dtype: str = "float32", seed: int = 0) -> Sequential:
    """One Dense(in_features, 1): y = x w + b."""
    return Sequential([Dense(in_features, 1, init="normal", dtype=dtype, rng=host_rng(seed))])


def housing_mlp(in_features: int, hidden: tuple[int, ...] = (32, 16), dtype: str = "float32",
                seed: int = 0) -> Sequential:
    """in_features -> hidden ReLU layers -> 1 price."""
    return mlp((in_features, *hidden, 1), "relu", dtype=dtype, seed=seed)
