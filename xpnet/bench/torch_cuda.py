"""PyTorch's own fast CUDA paths, the bar xpnet's graph mode is measured against: the whole step captured
as one CUDA graph (TorchCudaGraph), and torch.compile of the step (TorchCudaCompile)."""
from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from xpnet.bench.base import ContenderUnavailable
from xpnet.bench.torch_eager import TorchReference

# torch.compile's mode for torch-cuda-compile (`xpnet bench --compile-mode` chooses another: "default" for a
# quicker compile, "reduce-overhead" to add CUDA graphs); TorchCudaCompile's docstring says why this one
COMPILE_MODE = "max-autotune-no-cudagraphs"
GRAPH_WARMUP_STEPS = 3  # eager steps on the side stream before capture (PyTorch's whole-network example)


class TorchCudaGraph(TorchReference):
    """Native PyTorch with the whole step - forward, loss, backward, optimizer.step - captured once as a CUDA
    graph and replayed for every batch, as in PyTorch's "whole-network capture" recipe (CUDA semantics notes):

    - Adam(capturable=True) keeps its step count on the GPU, so the update replays correctly; SGD (with or
      without momentum) has no host-side state.
    - Warm-up: 3 eager steps on a side stream (lazy initialisation: cuBLAS workspaces, autograd streams, the
      optimizer's state, which must exist before capture or the graph would re-create it every replay); the
      same stream then captures (so nothing is first initialised on the capture stream mid-capture).
    - The gradients are None at capture, so the captured backward writes (not accumulates) them into the
      graph's own memory, where the captured optimizer step reads them: no zero_grad in the replayed step.
    - Each batch's rows are gathered into static input and label tensors (index_select into them) and the
      graph replayed. The last partial batch (60,000 % 128 = 96 rows) replays a second graph, captured the
      same way for that shape in its own memory pool: both graphs update the same parameters and optimizer
      state in place. (Run eagerly instead, it would add a whole eager step's launch overhead to every epoch,
      which at batch 2048 is only 30 steps long.)
    - The warm-up steps are undone before capture (parameters restored, optimizer state zeroed in place), so
      an epoch trains what torch-cuda-eager trains on the same batches (up to the rounding of capturable
      Adam's on-device arithmetic).

    On a CPU device (tests only; the registry never builds one) nothing is captured: the "replay" runs the
    same step eagerly, so the bookkeeping around the graphs can be checked without a GPU.
    """

    name = "torch-cuda-graph"
    capturable = True

    def __init__(self, device: str = "cuda") -> None:
        super().__init__(device)
        self.graphs: dict[int, tuple[Any, Any, Any]] = {}

    def setup(self, x: np.ndarray, y: np.ndarray, batch_size: int, optimizer: str, seed: int,
              model: str = "mlp") -> None:
        self.graphs = {}  # the previous configuration's graphs (and their memory pools) go first
        super().setup(x, y, batch_size, optimizer, seed, model)
        torch = self.torch
        cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        initial = self._snapshot()
        statics = {}
        for size in self._batch_sizes():
            rows = torch.arange(size, device=self.device)
            statics[size] = (self.x[rows], self.y[rows])  # real rows: warm-up on garbage could overflow
            self._warm_up(*statics[size])
        self._restore(initial)
        for size, (sx, sy) in statics.items():
            self.graphs[size] = (sx, sy, self._capture(sx, sy))

    def _warm_up(self, sx: Any, sy: Any) -> None:
        torch = self.torch
        if self.stream is None:
            for _ in range(GRAPH_WARMUP_STEPS):
                self.opt.zero_grad(set_to_none=True)
                self._step(sx, sy)
            return
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream), warnings.catch_warnings():
            # Adam(capturable=True) warns once that it steps outside a graph: here that is the point
            warnings.filterwarnings("ignore", message="This instance was constructed with capturable=True")
            for _ in range(GRAPH_WARMUP_STEPS):
                self.opt.zero_grad(set_to_none=True)
                self._step(sx, sy)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)

    def _capture(self, sx: Any, sy: Any) -> Any:
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)  # the captured backward then allocates the grads in the graph
        if self.stream is None:
            def replay() -> None:
                self.opt.zero_grad(set_to_none=True)
                self._step(sx, sy)
            return replay
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self._step(sx, sy)
        return graph.replay

    def epoch(self, epoch: int) -> float:
        torch = self.torch
        order = np.random.default_rng((self.seed, epoch)).permutation(self.x.shape[0])
        index = torch.from_numpy(order).to(self.device)
        n, b = len(order), self.batch_size
        self._sync()
        start = time.perf_counter()
        for i in range(0, n, b):
            sx, sy, replay = self.graphs[min(b, n - i)]
            rows = index[i:i + b]
            torch.index_select(self.x, 0, rows, out=sx)
            torch.index_select(self.y, 0, rows, out=sy)
            replay()
        self._sync()
        return time.perf_counter() - start

    def info(self) -> dict[str, Any]:
        return {**super().info(), "step": "whole step in one CUDA graph (second graph for the partial batch)"}


class TorchCudaCompile(TorchReference):
    """Native PyTorch with the step compiled: torch.compile(step, mode="max-autotune-no-cudagraphs",
    dynamic=False), the step being forward, loss, backward and optimizer.step. Dynamo breaks the graph at
    loss.backward(): the forward and loss are one compiled graph whose backward AOTAutograd compiles with it,
    and optimizer.step() is a second compiled graph (Dynamo makes Adam capturable, as here explicitly).

    Why this mode: it gives Inductor's fused kernels and the GEMM tiles its autotuner picks for these exact
    shapes, without CUDA graphs. CUDA graphs are what torch-cuda-graph measures, better than
    "reduce-overhead" would (one graph for the whole step there, against cudagraph trees' separate forward/
    backward and optimizer graphs, split at the graph break), and cudagraph trees in a hand-written training
    loop bring their own failure modes (step-boundary heuristics, "overwritten by a subsequent run",
    skipped graphs on mutated inputs) that surface at run time, not at set-up. So the three CUDA references
    separate the two effects: eager, graphs alone, compiled kernels alone. The price is compile time: the
    autotuner tries GEMM tiles for every shape (twice per batch size with a partial batch), at set-up.
    `xpnet bench --compile-mode` chooses another mode ("default" compiles quicker; --quick uses it).

    Each distinct batch shape (the full batch, and the last partial one) is compiled as its own static graph
    at set-up, by a few steps that are then undone (parameters restored, optimizer state zeroed in place); a
    compilation error there makes the contender unavailable with the reason instead of failing the bench.
    """

    name = "torch-cuda-compile"
    capturable = True

    def __init__(self, device: str = "cuda", mode: str | None = None, backend: str = "inductor") -> None:
        super().__init__(device)
        self.mode = mode or COMPILE_MODE
        self.backend = backend  # tests on a CPU pass "aot_eager": Dynamo and AOTAutograd without codegen

    def setup(self, x: np.ndarray, y: np.ndarray, batch_size: int, optimizer: str, seed: int,
              model: str = "mlp") -> None:
        torch = self.torch
        torch._dynamo.reset()  # the previous configuration's compiled code is for other objects and shapes
        super().setup(x, y, batch_size, optimizer, seed, model)
        initial = self._snapshot()
        try:
            mode = {"mode": self.mode} if self.backend == "inductor" else {}  # modes are Inductor's
            self.compiled = torch.compile(self._step, backend=self.backend, dynamic=False, **mode)
            for size in self._batch_sizes():
                rows = torch.arange(size, device=self.device)
                for _ in range(3):  # the first optimizer call sees no state yet: the second recompiles
                    self.opt.zero_grad(set_to_none=True)
                    self.compiled(self.x[rows], self.y[rows])
            self._sync()
        except Exception as exc:
            message = " ".join(str(exc).split())[:300] or "no message"
            raise ContenderUnavailable(f"torch.compile(mode={self.mode!r}) failed at set-up: "
                                       f"{type(exc).__name__}: {message}") from None
        self._restore(initial)

    def _train_on(self, xb: Any, yb: Any) -> None:
        self.compiled(xb, yb)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "compile_mode": self.mode}
