"""The multilayer perceptron: Dense layers with an activation between them, logits out."""
from __future__ import annotations

from typing import Sequence

from xpnet.backends import host_rng
from xpnet.core.activations import ACTIVATIONS
from xpnet.core.dense import Dense
from xpnet.core.dropout import Dropout
from xpnet.core.module import Module, Sequential


def mlp(sizes: Sequence[int] = (784, 128, 64, 10), activation: str = "relu", dropout: float = 0.0,
        dtype: str = "float32", seed: int = 0) -> Sequential:
    """Dense(sizes[0], sizes[1]), act, ..., Dense(sizes[-2], sizes[-1]); no activation on the output."""
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {list(sizes)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    rng = host_rng(seed)
    init = "he" if activation in ("relu", "leaky_relu", "gelu", "swish", "silu") else "glorot"
    layers: list[Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(Dense(n_in, n_out, init="glorot" if last else init, dtype=dtype, rng=rng))
        if not last:
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(Dropout(dropout))
    return Sequential(layers)


def mnist_mlp(dtype: str = "float32", seed: int = 0) -> Sequential:
    """784-128-64-10 with ReLU: the network `xpnet train mnist` trains."""
    return mlp((784, 128, 64, 10), "relu", dtype=dtype, seed=seed)
