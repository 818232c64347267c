"""The contenders `xpnet bench` times: xpnet on a backend, a plain NumPy MLP, and native PyTorch eager.

Each trains the benchmark's model (the 784-128-64-10 ReLU MLP, or LeNet-5 as in models/lenet.py) with
softmax cross-entropy on data already resident where it computes, in the same shuffled batches, and times
whole epochs (device synchronised before the clock). The plain NumPy reference exists for the MLP only.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

LR = {"sgd": 0.1, "momentum": 0.05, "adam": 1e-3}
MODELS = ("mlp", "lenet")


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


class XpnetContender(Contender):
    """xpnet's own training loop (the one `fit` runs) on one backend."""

    def __init__(self, backend_name: str) -> None:
        from xpnet.backends import get_backend

        self.backend = get_backend(backend_name)
        self.name = f"xpnet-{backend_name}"

    def setup(self, x: np.ndarray, y: np.ndarray, batch_size: int, optimizer: str, seed: int,
              model: str = "mlp") -> None:
        from xpnet.core.losses import SoftmaxCrossEntropy
        from xpnet.core.optim import make_optimizer
        from xpnet.models import lenet, mnist_mlp

        self.model = {"mlp": mnist_mlp, "lenet": lenet}[model](seed=seed).to(self.backend)
        self.optimizer = make_optimizer(optimizer, self.model.parameters(), LR[optimizer])
        self.loss = SoftmaxCrossEntropy(check_labels=False)
        self.x, self.y = self.backend.asarray(x, "float32"), self.backend.asarray(y, "int64")
        self.batch_size, self.seed = batch_size, seed

    def epoch(self, epoch: int) -> float:
        from xpnet.data.batches import epoch_order
        from xpnet.train import train_epoch

        order = epoch_order(self.x.shape[0], self.seed, epoch)
        _, seconds = train_epoch(self.backend, self.model, self.loss, self.optimizer, self.x, self.y,
                                  self.batch_size, order, progress=False, desc="")
        return seconds

    def info(self) -> dict[str, Any]:
        return {"device": self.backend.describe_device(), **self.backend.versions}


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


class TorchReference(Contender):
    """Native PyTorch eager: nn.Sequential, autograd, torch.optim (foreach), CrossEntropyLoss."""

    name = "torch-eager"

    def __init__(self, device: str = "cpu") -> None:
        import torch

        self.torch, self.device = torch, torch.device(device)

    def setup(self, x: np.ndarray, y: np.ndarray, batch_size: int, optimizer: str, seed: int,
              model: str = "mlp") -> None:
        torch, nn = self.torch, self.torch.nn
        torch.manual_seed(seed)
        self.model = (self._lenet() if model == "lenet" else
                      nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                    nn.Linear(64, 10))).to(self.device)
        params, lr = self.model.parameters(), LR[optimizer]
        self.opt = (torch.optim.Adam(params, lr) if optimizer == "adam"
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
            self.loss(self.model(self.x[rows]), self.y[rows]).backward()
            self.opt.step()
        self._sync()
        return time.perf_counter() - start

    def info(self) -> dict[str, Any]:
        return {"device": str(self.device), "torch": self.torch.__version__}


REFERENCE_NAMES = ("numpy-reference", "torch-eager")


def supports(name: str, model: str) -> bool:
    """Whether contender `name` can train `model` (without starting it)."""
    return model in (NumpyReference.models if name == "numpy-reference" else MODELS)


def make_contender(name: str) -> Contender:
    """'numpy' / 'torch' / 'cupy' / 'strict' (xpnet on that backend), 'numpy-reference', 'torch-eager'."""
    if name == "numpy-reference":
        return NumpyReference()
    if name == "torch-eager":
        return TorchReference()
    return XpnetContender(name)
