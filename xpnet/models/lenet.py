"""LeNet-5 for MNIST rows: two convolution + max-pool stages, then three Dense layers, logits out."""
from __future__ import annotations

from xpnet.backends import host_rng
from xpnet.core.activations import ReLU
from xpnet.core.conv import Conv2D
from xpnet.core.dense import Dense
from xpnet.core.module import Sequential
from xpnet.core.pool import MaxPool2D
from xpnet.core.shape import Flatten, Reshape


def lenet(dtype: str = "float32", seed: int = 0) -> Sequential:
    """(N, 784) -> 1x28x28 -> conv5x5 (6, pad 2) -> 6x14x14 -> conv5x5 (16) -> 16x5x5 -> 120 -> 84 -> 10.

    LeCun et al. (1998) with ReLU and max-pooling in place of its scaled tanh and trainable average pooling,
    and full connections between the two convolutions (the paper's C3 links 10 of 16 maps to subsets)."""
    rng = host_rng(seed)
    return Sequential([
        Reshape((1, 28, 28)),
        Conv2D(1, 6, 5, padding=2, dtype=dtype, rng=rng), ReLU(), MaxPool2D(2),
        Conv2D(6, 16, 5, dtype=dtype, rng=rng), ReLU(), MaxPool2D(2),
        Flatten(),
        Dense(400, 120, init="he", dtype=dtype, rng=rng), ReLU(),
        Dense(120, 84, init="he", dtype=dtype, rng=rng), ReLU(),
        Dense(84, 10, dtype=dtype, rng=rng),
    ])
