"""How much arithmetic a training step of the benchmarked networks needs, and how fast this machine multiplies
matrices."""
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


def conv_flops(c_in: int, c_out: int, k: int, h_out: int, w_out: int) -> int:
    """Multiply-adds x2 of one sample through a k x k convolution: 2 * Cout * Cin * k * k * Hout * Wout."""
    return 2 * c_out * c_in * k * k * h_out * w_out


def lenet_training_flops_per_sample() -> int:
    """The floor for LeNet-5 (models/lenet.py), counted as for the MLP: forward, weight gradients (the same
    GEMMs again) and input gradients of every weighted layer but the first, whose input is data.

    Counted: the two convolutions (1->6, 5x5 over 28x28 with padding 2: 235,200; 6->16, 5x5 to 10x10:
    480,000) and the three Dense layers (117,840), 833,040 forward in all; 2,263,920 per training sample.
    Not counted: biases, ReLU, max-pooling, softmax, the optimizer (O(size) elementwise work, not
    multiply-adds) and im2col's copies, so no implementation can reach the floor."""
    convs = [conv_flops(1, 6, 5, 28, 28), conv_flops(6, 16, 5, 10, 10)]
    dense_forward = sum(2 * a * b for a, b in ((400, 120), (120, 84), (84, 10)))
    forward = sum(convs) + dense_forward
    return 2 * forward + convs[1] + dense_forward  # input gradients: all but the first convolution


def training_flops(model: str = "mlp") -> int:
    """FLOPs per training sample of the benchmark's 'mlp' (784-128-64-10) or 'lenet'."""
    if model == "lenet":
        return lenet_training_flops_per_sample()
    if model == "mlp":
        return training_flops_per_sample()
    raise ValueError(f"unknown model {model!r} for bench; choose mlp or lenet")


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
