"""Native PyTorch eager as a benchmark contender, on the CPU (torch-eager) or a CUDA GPU (torch-cuda-eager);
also the base of the CUDA-graph and torch.compile contenders in torch_cuda.py."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from xpnet.bench.base import GPU_GEMM_SIZE, LR, Contender, ContenderUnavailable, time_gemm


class TorchReference(Contender):
    """Native PyTorch eager: nn.Sequential, autograd, torch.optim (foreach), CrossEntropyLoss.

    device "cpu" is `torch-eager`; device "cuda" is `torch-cuda-eager`, the same code with the data, model and
    optimizer state on the GPU."""

    name = "torch-eager"
    capturable = False  # Adam(capturable=True): its step count lives on the device, as a CUDA graph needs

    def __init__(self, device: str = "cpu") -> None:
        import torch

        self.torch, self.device = torch, torch.device(device)
        if type(self) is TorchReference:
            self.name = "torch-eager" if self.device.type == "cpu" else f"torch-{self.device.type}-eager"
        if self.device.type == "cuda" and not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ContenderUnavailable(f"needs a CUDA GPU; torch.cuda.is_available() is False here "
                                       f"(torch {torch.__version__}, {build})")

    def setup(self, x: np.ndarray, y: np.ndarray, batch_size: int, optimizer: str, seed: int,
              model: str = "mlp") -> None:
        torch, nn = self.torch, self.torch.nn
        torch.manual_seed(seed)
        self.model = (self._lenet() if model == "lenet" else
                      nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                    nn.Linear(64, 10))).to(self.device)
        params, lr = self.model.parameters(), LR[optimizer]
        capturable = self.capturable and self.device.type == "cuda"  # CPU tensors cannot be capturable
        self.opt = (torch.optim.Adam(params, lr, capturable=capturable) if optimizer == "adam"
                    else torch.optim.SGD(params, lr, momentum=0.9 if optimizer == "momentum" else 0.0))
        self.loss = nn.CrossEntropyLoss()
        self.x = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
        self.y = torch.from_numpy(np.ascontiguousarray(y, np.int64)).to(self.device)
        self.batch_size, self.seed = batch_size, seed

    def _lenet(self) -> Any:
        """models/lenet.py in torch.nn: the same layers, shapes and order."""
        nn = self.torch.nn
        return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                             nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def epoch(self, epoch: int) -> float:
        order = np.random.default_rng((self.seed, epoch)).permutation(self.x.shape[0])
        index = self.torch.from_numpy(order).to(self.device)
        self._sync()
        start = time.perf_counter()
        for i in range(0, len(order), self.batch_size):
            rows = index[i:i + self.batch_size]
            self.opt.zero_grad(set_to_none=True)
            self._train_on(self.x[rows], self.y[rows])
        self._sync()
        return time.perf_counter() - start

    def info(self) -> dict[str, Any]:
        out = {"device": str(self.device), "torch": self.torch.__version__}
        if self.device.type == "cuda":
            out.update(device=f"{self.device} ({self.torch.cuda.get_device_name(self.device)})",
                       cuda=str(self.torch.version.cuda))
        return out

    def gemm_gflops(self) -> float | None:
        if self.device.type != "cuda":
            return None
        n = GPU_GEMM_SIZE
        a, b = (self.torch.rand((n, n), device=self.device, dtype=self.torch.float32) for _ in range(2))
        return time_gemm(lambda: a @ b, self._sync, n)

    # -- shared by the graph and compile contenders ----------------------------------------------------
    def _batch_sizes(self) -> list[int]:
        """The distinct batch sizes an epoch uses: the full one, and the last partial batch's if any."""
        n, b = self.x.shape[0], self.batch_size
        return sorted({min(b, n), n % b} - {0}, reverse=True)

    def _snapshot(self) -> list[Any]:
        return [p.detach().clone() for p in self.model.parameters()]

    def _restore(self, snapshot: list[Any]) -> None:
        """Undo the set-up steps in place (the tensors a graph or compiled step holds stay the same objects):
        the parameters as they were, and the optimizer's moments and step counts zero, which is how a fresh
        optimizer behaves (SGD's momentum buffer 0 then `buf = 0.9 * 0 + g` is its first step's `buf = g`)."""
        with self.torch.no_grad():
            for p, saved in zip(self.model.parameters(), snapshot):
                p.copy_(saved)
            for state in self.opt.state.values():
                for value in state.values():
                    if isinstance(value, self.torch.Tensor):
                        value.zero_()
        self.opt.zero_grad(set_to_none=True)
        self._sync()

    def _step(self, xb: Any, yb: Any) -> None:
        """Forward, loss, backward and update; the gradients must be None before (they are assigned)."""
        self.loss(self.model(xb), yb).backward()
        self.opt.step()

    def _train_on(self, xb: Any, yb: Any) -> None:
        """What `epoch` runs per batch: the eager step here; the compile contender runs its compiled one."""
        self._step(xb, yb)
