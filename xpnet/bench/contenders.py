"""The contenders `xpnet bench` times, by name: xpnet on a backend (optionally with its CUDA-graph step or
its fast paths off), a plain NumPy MLP, and native PyTorch: eager on the CPU, and on a CUDA GPU eager, one
CUDA graph per step, and torch.compile.

Each trains the benchmark's model (the 784-128-64-10 ReLU MLP, or LeNet-5 as in models/lenet.py) with
softmax cross-entropy on data already resident where it computes, in the same shuffled batches, and times
whole epochs (device synchronised before the clock). The plain NumPy reference exists for the MLP only.
No module here imports torch or CuPy until a contender that needs it is made.
"""
from __future__ import annotations

from xpnet.bench.base import LR, MODELS, Contender, ContenderUnavailable
from xpnet.bench.numpy_reference import NumpyReference
from xpnet.bench.torch_cuda import TorchCudaCompile, TorchCudaGraph
from xpnet.bench.torch_eager import TorchReference
from xpnet.bench.xpnet_contender import XpnetContender

XPNET_BACKENDS = ("numpy", "cupy", "torch", "strict")  # xpnet.backends.NAMES, without importing the backends
GPU_REFERENCE_NAMES = ("torch-cuda-eager", "torch-cuda-graph", "torch-cuda-compile")
REFERENCE_NAMES = ("numpy-reference", "torch-eager", *GPU_REFERENCE_NAMES)


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
    compile_mode: torch-cuda-compile's torch.compile mode (default torch_cuda.COMPILE_MODE). Raises
    ContenderUnavailable (a reference) or BackendUnavailable (xpnet) where it cannot run here."""
    if name == "numpy-reference":
        return NumpyReference()
    if name == "torch-eager":
        return TorchReference()
    if name == "torch-cuda-eager":
        return TorchReference("cuda")
    if name == "torch-cuda-graph":
        return TorchCudaGraph()
    if name == "torch-cuda-compile":
        return TorchCudaCompile(mode=compile_mode)
    parts = xpnet_parts(name)
    if parts is None:
        raise ValueError(f"unknown contender {name!r}")
    base, graph, _ = parts  # '-portable' is the worker's business (it turns the fast paths off first)
    return XpnetContender(base, graph=graph)


__all__ = ["GPU_REFERENCE_NAMES", "LR", "MODELS", "REFERENCE_NAMES", "XPNET_BACKENDS", "Contender",
           "ContenderUnavailable", "NumpyReference", "TorchCudaCompile", "TorchCudaGraph", "TorchReference",
           "XpnetContender", "canonical", "known", "make_contender", "supports", "xpnet_parts"]
