"""How much arithmetic an MLP training step needs, and how fast this machine multiplies matrices."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

MNIST_SIZES = (784, 128, 64, 10)


def training_flops_per_sample(sizes: Sequence[int] = MNIST_SIZES) -> int:
    """Multiply-adds x2 of forward (x W), weight gradients (x^T dy) and input gradients (dy W^T) of every
    layer but the first, whose input is data: the floor any framework must compute (454,400 for MNIST)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(2 * a * b for a, b in pairs)
    input_grads = sum(2 * a * b for a, b in pairs[1:])
    return 2 * forward + input_grads


def gemm_gflops(n: int = 1024, repeats: int = 7) -> float:
    """float32 (n x n) @ (n x n) GFLOP/s with NumPy's BLAS at the current thread count (best of `repeats`)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up: thread pool start, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9
