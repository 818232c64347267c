"""The contenders `xpnet bench` times: xpnet on a backend (optionally with its CUDA-graph step), a plain
NumPy MLP, and native PyTorch: eager on the CPU, and on a CUDA GPU eager, one CUDA graph per step, and
torch.compile.

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
XPNET_BACKENDS = ("numpy", "cupy", "torch", "strict")  # xpnet.backends.NAMES, without importing the backends
GPU_REFERENCE_NAMES = ("torch-cuda-eager", "torch-cuda-graph", "torch-cuda-compile")
REFERENCE_NAMES = ("numpy-reference", "torch-eager", *GPU_REFERENCE_NAMES)
# torch.compile's mode for torch-cuda-compile (`xpnet bench --compile-mode` chooses another: "default" for a
# quicker compile, "reduce-overhead" to add CUDA graphs)


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


def _time_gemm(matmul: Any, sync: Any, n: int, repeats: int = 10) -> float:
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


GPU_GEMM_SIZE = 4096  # a 1024^3 product takes tens of microseconds on a large GPU: too short to time well


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
        from xpnet.models import lenet, mnist_mlp

        self.model = {"mlp": mnist_mlp, "lenet": lenet}[model](seed=seed).to(self.backend)
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
        return _time_gemm(lambda: x @ w, b.synchronize, n)


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
        return _time_gemm(lambda: a @ b, self._sync, n)

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


def xpnet_parts(name: str) -> tuple[str, bool, bool] | None:
    """'cupy-graph' -> ('cupy', graph, portable); None if `name` is not xpnet on a known backend."""
    base = name.removeprefix("xpnet-")
    portable = base.endswith("-portable")
    base = base.removesuffix("-portable")
    graph = base.endswith("-graph")
    base = base.removesuffix("-graph")
    return (base, graph, portable) if base in XPNET_BACKENDS else None


def canonical(name: str) -> str:
    """The name a worker is started with: references as they are, xpnet without its 'xpnet-' prefix."""
    return name if name in REFERENCE_NAMES else name.removeprefix("xpnet-")


def known(name: str) -> bool:
    return name in REFERENCE_NAMES or xpnet_parts(name) is not None


def supports(name: str, model: str) -> bool:
    """Whether contender `name` can train `model` (without starting it)."""
    return model in (NumpyReference.models if name == "numpy-reference" else MODELS)


def make_contender(name: str, compile_mode: str | None = None) -> Contender:
    """'numpy' / 'torch' / 'cupy' / 'strict' (xpnet on that backend; '-graph' for train_epoch(graph=True)),
    'numpy-reference', 'torch-eager', 'torch-cuda-eager', 'torch-cuda-graph', 'torch-cuda-compile'.
    compile_mode: torch-cuda-compile's torch.compile mode (default torch_cuda.COMPILE_MODE). Raises ContenderUnavailable
    (a reference) or BackendUnavailable (xpnet) where it cannot run here."""
    if name == "numpy-reference":
        return NumpyReference()
    if name == "torch-eager":
        return TorchReference()
    if name == "torch-cuda-eager":
        return TorchReference("cuda")
    if name in ("torch-cuda-graph", "torch-cuda-compile"):
        from xpnet.bench.torch_cuda import TorchCudaCompile, TorchCudaGraph

        return TorchCudaGraph() if name == "torch-cuda-graph" else TorchCudaCompile(mode=compile_mode)
    parts = xpnet_parts(name)
    if parts is None:
        raise ValueError(f"unknown contender {name!r}")
    base, graph, _ = parts  # '-portable' is the worker's business (it turns the fast paths off first)
    return XpnetContender(base, graph=graph)
