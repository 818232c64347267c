"""xpnet itself as a benchmark contender: the training loop `fit` runs, on one backend."""
from __future__ import annotations

from typing import Any

import numpy as np

from xpnet.bench.base import GPU_GEMM_SIZE, LR, Contender, time_gemm


class XpnetContender(Contender):
    """xpnet's own training loop (the one `fit` runs) on one backend; graph=True: train_epoch(graph=True),
    each step replayed from a captured CUDA graph where the backend supports it."""

    def __init__(self, backend_name: str, graph: bool = False) -> None:
        from xpnet.backends import get_backend

        self.backend = get_backend(backend_name)
        self.graph = graph
        self.name = f"xpnet-{backend_name}" + ("-graph" if graph else "")

    def setup(self, x: np.ndarray, y: np.ndarray, batch_size: int, optimizer: str, seed: int,
              model: str = "mlp") -> None:
        from xpnet.core.losses import SoftmaxCrossEntropy
        from xpnet.core.optim import make_optimizer
        from xpnet.recipes import MNIST_MODELS

        self.model = MNIST_MODELS[model]("float32", seed).to(self.backend)
        self.optimizer = make_optimizer(optimizer, self.model.parameters(), LR[optimizer])
        self.loss = SoftmaxCrossEntropy(check_labels=False)
        self.x, self.y = self.backend.asarray(x, "float32"), self.backend.asarray(y, "int64")
        self.batch_size, self.seed = batch_size, seed

    def epoch(self, epoch: int) -> float:
        from xpnet.data.batches import epoch_order
        from xpnet.training.fit import train_epoch

        order = epoch_order(self.x.shape[0], self.seed, epoch)
        _, seconds = train_epoch(self.backend, self.model, self.loss, self.optimizer, self.x, self.y,
                                  self.batch_size, order, progress=False, desc="", graph=self.graph)
        return seconds

    def info(self) -> dict[str, Any]:
        return {"device": self.backend.describe_device(), **self.backend.versions,
                **({"graph": True} if self.graph else {})}

    def _on_gpu(self) -> bool:
        return self.backend.name == "cupy" or getattr(self.backend.device, "type", "") == "cuda"

    def gemm_gflops(self) -> float | None:
        if not self._on_gpu():
            return None
        b, n = self.backend, GPU_GEMM_SIZE
        rng = np.random.default_rng(0)
        x, w = (b.asarray(rng.random((n, n), dtype=np.float32)) for _ in range(2))
        return time_gemm(lambda: x @ w, b.synchronize, n)
