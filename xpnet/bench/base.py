"""What every benchmark contender shares: the interface `xpnet bench` drives, the learning rates and models
all of them train with, and how a GPU's matrix-multiply rate is timed."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

LR = {"sgd": 0.1, "momentum": 0.05, "adam": 1e-3}
MODELS = ("mlp", "lenet")
GPU_GEMM_SIZE = 4096  # a 1024^3 product takes tens of microseconds on a large GPU: too short to time well


class ContenderUnavailable(Exception):
    """This contender cannot run here (no CUDA device, compilation failed): skipped with this reason."""


class Contender:
    """setup() once per (batch size, optimizer); epoch() trains one pass and returns its seconds."""

    name = "?"

    models: tuple[str, ...] = MODELS  # the networks this contender can train

    def setup(self, x: np.ndarray, y: np.ndarray, batch_size: int, optimizer: str, seed: int,
              model: str = "mlp") -> None:
        raise NotImplementedError

    def epoch(self, epoch: int) -> float:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {}

    def gemm_gflops(self) -> float | None:
        """This contender's device's float32 GEMM rate, for a GPU; None on the CPU (the run's NumPy rate)."""
        return None


def time_gemm(matmul: Callable[[], Any], sync: Callable[[], Any], n: int, repeats: int = 10) -> float:
    """GFLOP/s of the best of `repeats` calls of matmul() (an n x n x n float32 product), synchronised."""
    matmul()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul()
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9
