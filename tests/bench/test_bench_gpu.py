"""The CUDA contenders of `xpnet bench`, each for a tiny epoch or two on the GPU, and what they train checked
against the eager reference. Skipped cleanly without a CUDA GPU (their CPU-checkable parts are in
tests/bench/test_bench.py and tests/cli/test_cli_graph.py)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from xpnet.backends.cupy import cuda_device_present
from xpnet.bench import contenders as C
from xpnet.bench import torch_cuda as TC
from xpnet.cli import main


def _torch_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


needs_torch_cuda = pytest.mark.skipif(not _torch_cuda(), reason="needs PyTorch with a CUDA GPU")
needs_cupy = pytest.mark.skipif(not cuda_device_present(), reason="needs CuPy with a CUDA GPU")


@pytest.fixture
def small_mnist(mnist_dir):
    from xpnet.bench.worker import load_mnist_host

    return load_mnist_host(str(mnist_dir), 300)  # 300 = 2 x 128 + a partial batch of 44


def _train(contender, x, y, optimizer, epochs=2, model="mlp"):
    contender.setup(x, y, 128, optimizer, 0, model)
    for e in range(epochs):
        assert contender.epoch(e) > 0
    return [np.asarray(_host(p)) for p in contender.model.parameters()]


def _host(p):
    if hasattr(p, "detach"):  # torch
        return p.detach().cpu().numpy()
    from xpnet.backends import backend_for

    value = getattr(p, "value", p)  # xpnet's Parameter
    return backend_for(value).to_numpy(value)


def _close(got, want, atol, strict=True):
    """strict: every weight within atol. Otherwise all but 0.1% of them: where two kernels sum in another order,
    a gradient that nearly cancels can change sign, and Adam's first steps move such a weight a whole lr (1e-3)
    the other way; a real fault (set-up steps not undone, a stale batch) moves nearly every weight."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and np.isfinite(a).all()
        if strict:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)
        else:
            off = np.abs(a - b) > atol + 1e-4 * np.abs(b)
            assert off.mean() <= 1e-3, f"{off.sum()} of {off.size} weights differ by more than {atol}"


@needs_torch_cuda
@pytest.mark.parametrize(("optimizer", "model"), [("adam", "mlp"), ("momentum", "mlp"), ("sgd", "mlp"),
                                                   ("adam", "lenet")])
def test_torch_cuda_graph_trains_what_eager_trains(small_mnist, optimizer, model):
    """Two graphs (batch 128 and the partial 44), warm-up undone: the same weights as torch-cuda-eager."""
    x, y = small_mnist
    graph = C.make_contender("torch-cuda-graph")
    got = _train(graph, x, y, optimizer, model=model)
    assert sorted(graph.graphs) == [44, 128]
    eager = C.make_contender("torch-cuda-eager")
    eager.capturable = True  # the same Adam arithmetic (step count on the device): only the graphs differ
    want = _train(eager, x, y, optimizer, model=model)
    _close(got, want, atol=1e-5, strict=model == "mlp")  # LeNet: cuDNN may pick another algorithm in a graph


@needs_torch_cuda
def test_torch_cuda_eager_runs_on_the_gpu(small_mnist):
    x, y = small_mnist
    eager = C.make_contender("torch-cuda-eager")
    assert eager.name == "torch-cuda-eager" and eager.info()["device"].startswith("cuda")
    _train(eager, x, y, "adam", epochs=1)
    assert next(eager.model.parameters()).is_cuda
    assert eager.gemm_gflops() > 1000  # any CUDA GPU multiplies float32 faster than 1 TFLOP/s


@needs_torch_cuda
def test_torch_cuda_compile_trains_what_eager_trains(small_mnist):
    """The bench's own mode, max-autotune-no-cudagraphs."""
    x, y = small_mnist
    compiled = C.make_contender("torch-cuda-compile", compile_mode="default")  # no autotuning: seconds, not minutes
    got = _train(compiled, x, y, "adam", epochs=1)
    want = _train(C.make_contender("torch-cuda-eager"), x, y, "adam", epochs=1)
    _close(got, want, atol=1e-5, strict=False)  # Inductor's GEMMs sum in another order than cuBLAS
    assert compiled.info()["compile_mode"] == "default"
    assert C.make_contender("torch-cuda-compile").mode == TC.COMPILE_MODE == "max-autotune-no-cudagraphs"


@needs_cupy
def test_xpnet_cupy_and_cupy_graph_train_the_same(small_mnist):
    x, y = small_mnist
    plain = C.make_contender("cupy")
    graphed = C.make_contender("cupy-graph")
    assert (plain.name, graphed.name, graphed.graph) == ("xpnet-cupy", "xpnet-cupy-graph", True)
    _close(_train(graphed, x, y, "adam"), _train(plain, x, y, "adam"), atol=1e-5, strict=False)
    rate = graphed.gemm_gflops()  # measured, not judged: speed is the benchmark's business
    assert rate is not None and 0 < rate < float("inf")


@needs_cupy
@needs_torch_cuda
def test_bench_runs_every_gpu_contender(mnist_dir, tmp_path, capsys):
    report = tmp_path / "gpu.json"
    names = ["xpnet-cupy", "xpnet-cupy-graph", *C.GPU_REFERENCE_NAMES]
    assert main(["bench", "--backends", ",".join(names), "--batch-sizes", "128,2048", "--optimizers", "adam",
                 "--repeats", "1", "--samples", "4000", "--compile-mode", "default", "--data-dir", str(mnist_dir), "--no-progress",
                 "--json", str(report)]) == 0
    out = capsys.readouterr().out
    result = json.loads(report.read_text())
    assert result["skipped"] == {}, result["skipped"]
    assert {(r["contender"], r["batch_size"]) for r in result["rows"]} == {(n, b) for n in names for b in (128, 2048)}
    assert 0 < result["gpu_gemm_gflops"] < float("inf")  # measured, not judged
    assert all(0 < r["fraction_of_floor"] < 1 for r in result["rows"])
    assert "x torch-cuda-graph" in out and "60k epoch ms" in out and "GPU contenders" in out
    assert "torch-cuda-compile: torch.compile(mode='default')" in out


@needs_torch_cuda
def test_default_contenders_on_a_gpu_machine():
    from xpnet.cli.bench import default_contenders

    names = default_contenders()
    assert names[-3:] == list(C.GPU_REFERENCE_NAMES) and "torch-eager" in names
    if cuda_device_present():
        assert names[names.index("cupy") + 1] == "cupy-graph"


@needs_cupy
def test_info_shows_the_gpu(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "compute capability" in out and "CUDA runtime" in out and "GiB" in out
    if _torch_cuda():
        assert "torch built with CUDA" in out
