"""`xpnet bench` end to end, small: real workers, real MNIST, real table, JSON and plot."""
from __future__ import annotations

import importlib.util
import json

import pytest

from xpnet.bench.flops import training_flops_per_sample
from xpnet.cli import main


def test_flop_count_of_the_mnist_mlp():
    forward = 2 * (784 * 128 + 128 * 64 + 64 * 10)
    assert training_flops_per_sample() == 2 * forward + 2 * (128 * 64 + 64 * 10) == 454_400


def test_bench_runs_contenders_side_by_side(mnist_dir, tmp_path, capsys):
    report, plot = tmp_path / "b.json", tmp_path / "b.png"
    assert main(["bench", "--backends", "numpy,numpy-portable,numpy-reference", "--batch-sizes", "256",
                 "--optimizers", "sgd,adam", "--repeats", "2", "--samples", "2048", "--threads", "1",
                 "--data-dir", str(mnist_dir), "--no-progress", "--json", str(report), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "xpnet-numpy" in out and "xpnet-numpy-portable" in out and "x numpy-reference" in out
    result = json.loads(report.read_text())
    rows = result["rows"]
    assert {(r["contender"], r["optimizer"]) for r in rows} == {
        (c, o) for c in ("xpnet-numpy", "xpnet-numpy-portable", "numpy-reference") for o in ("sgd", "adam")}
    for r in rows:
        assert len(r["epoch_seconds"]) == 2 and r["min_samples_per_second"] <= r["samples_per_second"]
        assert 0 < r["fraction_of_floor"] < 1.5
    assert result["gemm_gflops"] > 0 and result["config"]["threads"] == 1
    assert len(result["gemm_gflops_rounds"]) == 2 * 2  # one per repeat round of each (batch size, optimizer)
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_bench_to_accuracy_reports_training_time(mnist_dir, tmp_path, capsys):
    report = tmp_path / "acc.json"
    assert main(["bench", "--backends", "numpy", "--to-accuracy", "0.9", "--threads", "1",
                 "--data-dir", str(mnist_dir), "--no-progress", "--json", str(report)]) == 0
    (result,) = json.loads(report.read_text())["to_accuracy"]
    assert result["reached"]["epoch"] == 1 and result["reached"]["test_accuracy"] >= 0.9
    assert result["reached"]["train_seconds"] > 0
    assert "time to 90.0% test accuracy" in capsys.readouterr().out


def test_bench_refuses_unknown_contenders_and_optimizers(mnist_dir, capsys):
    assert main(["bench", "--optimizers", "rmsprop", "--data-dir", str(mnist_dir), "--no-progress"]) == 2
    assert "unknown optimizer" in capsys.readouterr().err
    assert main(["bench", "--backends", "tpu", "--samples", "256", "--repeats", "1", "--batch-sizes", "128",
                 "--data-dir", str(mnist_dir), "--no-progress"]) == 2
    assert "tpu" in capsys.readouterr().err


# -- contender registry, GPU contenders on a machine without one, report ------------------------------------

import numpy as np  # noqa: E402

from xpnet.bench import contenders as C  # noqa: E402
from xpnet.bench import torch_cuda as TC  # noqa: E402

# The CUDA contenders' CPU checks drive torch itself: without torch (the README's plain test command)
# they skip, as every torch-backend test does; CI installs torch, so there they run.
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
from xpnet.bench.runner import BenchConfig, BenchError, Unavailable, Worker, _measure, label  # noqa: E402


def test_contender_names_parse_and_label():
    from xpnet.backends import NAMES

    assert C.XPNET_BACKENDS == NAMES  # the registry's copy of the backend names stays in step
    assert C.xpnet_parts("cupy-graph") == ("cupy", True, False)
    assert C.xpnet_parts("xpnet-numpy-portable") == ("numpy", False, True)
    assert C.xpnet_parts("tpu") is None and C.xpnet_parts("torch-cuda-graph") is None
    assert [C.canonical(n) for n in ("xpnet-cupy-graph", "cupy", "torch-cuda-graph")] == [
        "cupy-graph", "cupy", "torch-cuda-graph"]
    assert all(C.known(n) for n in ("numpy", "cupy-graph", "numpy-portable", *C.REFERENCE_NAMES))
    assert not C.known("tpu") and not C.known("torch-cuda-fast")
    assert [label(n) for n in ("cupy-graph", "numpy-portable", "torch-cuda-compile")] == [
        "xpnet-cupy-graph", "xpnet-numpy-portable", "torch-cuda-compile"]
    assert C.supports("torch-cuda-graph", "lenet") and not C.supports("numpy-reference", "lenet")


@needs_torch
def test_default_contenders_add_the_gpu_ones_only_with_a_gpu(monkeypatch):
    import torch

    import xpnet.backends
    from xpnet.cli.bench import default_contenders

    monkeypatch.setattr(xpnet.backends, "available_backends", lambda: ["numpy", "torch", "strict"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_contenders() == ["numpy", "torch", "numpy-reference", "torch-eager"]
    monkeypatch.setattr(xpnet.backends, "available_backends", lambda: ["numpy", "cupy", "torch", "strict"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_contenders() == ["numpy", "cupy", "cupy-graph", "torch", "numpy-reference", "torch-eager",
                                    "torch-cuda-eager", "torch-cuda-graph", "torch-cuda-compile"]
    assert "numpy-reference" not in default_contenders("lenet")


@needs_torch
def test_cuda_reference_without_a_gpu_says_why(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for make in (lambda: C.TorchReference("cuda"), TC.TorchCudaGraph, TC.TorchCudaCompile):
        with pytest.raises(C.ContenderUnavailable, match="needs a CUDA GPU"):
            make()
    assert C.make_contender("torch-eager").name == "torch-eager"  # the CPU reference is unaffected


@needs_torch
@pytest.mark.not_on_fake("it ignores CUDA_VISIBLE_DEVICES, which these tests use to hide the GPU")
def test_gpu_contenders_named_without_a_gpu_are_skipped_with_a_note(mnist_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the workers see no GPU, on any machine
    report = tmp_path / "b.json"
    assert main(["bench", "--backends", "xpnet-numpy,numpy,torch-cuda-graph,cupy-graph", "--batch-sizes", "128",
                 "--optimizers", "adam", "--repeats", "1", "--samples", "512", "--threads", "1",
                 "--data-dir", str(mnist_dir), "--no-progress", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "skipped torch-cuda-graph: needs a CUDA GPU" in out
    assert "skipped xpnet-cupy-graph: " in out
    result = json.loads(report.read_text())
    assert [r["contender"] for r in result["rows"]] == ["xpnet-numpy"]  # xpnet-numpy and numpy: one contender
    assert set(result["skipped"]) == {"torch-cuda-graph", "xpnet-cupy-graph"}
    (row,) = result["rows"]
    assert row["epoch_ms_60k"] == pytest.approx(60000 / row["samples_per_second"] * 1e3)


@needs_torch
@pytest.mark.not_on_fake("it ignores CUDA_VISIBLE_DEVICES, which these tests use to hide the GPU")
def test_only_gpu_contenders_without_a_gpu_is_a_one_line_error(mnist_dir, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main(["bench", "--backends", "torch-cuda-eager,torch-cuda-compile", "--samples", "256",
                 "--data-dir", str(mnist_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no contender can run here" in err
    assert "torch-cuda-eager: needs a CUDA GPU" in err and "torch-cuda-compile: needs a CUDA GPU" in err


def _train(contender, x, y, optimizer, epochs=2, batch=128, model="mlp"):
    contender.setup(x, y, batch, optimizer, 0, model)
    for e in range(epochs):
        assert contender.epoch(e) > 0
    return [p.detach().cpu().numpy().copy() for p in contender.model.parameters()]


@pytest.fixture
def small_mnist(mnist_dir):
    from xpnet.bench.worker import load_mnist_host

    return load_mnist_host(str(mnist_dir), 300)  # 300 = 2 x 128 + a partial batch of 44


@needs_torch
@pytest.mark.parametrize("optimizer", ["adam", "momentum", "sgd"])
def test_graph_contender_bookkeeping_trains_what_eager_trains(small_mnist, optimizer):
    """On a CPU the 'graphs' run eagerly: the static buffers, the partial batch's second graph and the undoing
    of the warm-up steps must leave exactly the eager contender's weights."""
    x, y = small_mnist
    graph = TC.TorchCudaGraph("cpu")
    got = _train(graph, x, y, optimizer)
    assert sorted(graph.graphs) == [44, 128]
    want = _train(C.TorchReference("cpu"), x, y, optimizer)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@needs_torch
@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_compile_contender_trains_what_eager_trains_without_recompiling(small_mnist, optimizer):
    """Dynamo and AOTAutograd as on the GPU (aot_eager: no code generation, so it is quick here): both batch
    shapes compiled at set-up, set-up steps undone, nothing compiled again while epochs are timed."""
    from torch._dynamo.utils import counters

    x, y = small_mnist
    compiled = TC.TorchCudaCompile("cpu", backend="aot_eager")
    compiled.setup(x, y, 128, optimizer, 0)
    graphs_after_setup = counters["stats"]["unique_graphs"]
    for e in range(2):
        compiled.epoch(e)
    assert counters["stats"]["unique_graphs"] == graphs_after_setup
    got = [p.detach().numpy() for p in compiled.model.parameters()]
    want = _train(C.TorchReference("cpu"), x, y, optimizer)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_torch
def test_compile_failure_makes_the_contender_unavailable(small_mnist):
    x, y = small_mnist
    contender = TC.TorchCudaCompile("cpu", backend="no-such-compiler-backend")
    with pytest.raises(C.ContenderUnavailable, match="torch.compile.*failed at set-up.*no-such-compiler-backend"):
        contender.setup(x, y, 128, "adam", 0)


class _FakeWorker:
    def __init__(self, name, unavailable=False):
        self.name, self.info, self.unavailable, self.closed = name, {}, unavailable, False

    def call(self, what, *args):
        if what == "setup" and self.unavailable:
            raise Unavailable("torch.compile(mode='max-autotune-no-cudagraphs') failed at set-up: boom")
        return 0.5

    def close(self):
        self.closed = True


def test_a_contender_unavailable_at_setup_is_dropped_with_the_reason():
    ok, bad = _FakeWorker("numpy"), _FakeWorker("torch-cuda-compile", unavailable=True)
    workers, skipped, gemm_rounds = [ok, bad], {}, []
    times = _measure(workers, BenchConfig(["numpy", "torch-cuda-compile"], [128], ["adam"], repeats=2, samples=1000),
                     128, "adam", lambda s: None, skipped, lambda: 10.0, gemm_rounds)
    assert times == {"numpy": [0.5, 0.5]} and gemm_rounds == [10.0, 10.0]
    assert workers == [ok] and bad.closed
    assert skipped == {"torch-cuda-compile": "torch.compile(mode='max-autotune-no-cudagraphs') failed at set-up: "
                                             "boom (at batch 128, adam)"}


def test_a_worker_that_dies_is_a_bench_error_not_a_hang(mnist_dir):
    worker = Worker("numpy", BenchConfig(["numpy"], [128], ["adam"], samples=256, data_dir=str(mnist_dir)))
    try:
        worker.process.kill()
        worker.process.join(10)
        with pytest.raises(BenchError, match="worker process died during epoch"):
            worker.call("epoch", 0)
    finally:
        worker.close()


def test_table_has_epoch_ms_gpu_floor_ratios_to_gpu_references_and_skips():
    from xpnet.bench.report import throughput_table

    def row(name, rate):
        return {"contender": name, "batch_size": 128, "optimizer": "adam", "samples_per_second": rate,
                "min_samples_per_second": rate, "max_samples_per_second": rate, "fraction_of_floor": 0.05,
                "epoch_ms_60k": 60000 / rate * 1e3}

    result = {"rows": [row("xpnet-cupy-graph", 6e6), row("torch-cuda-graph", 3e6), row("torch-cuda-eager", 1e6)],
              "config": {"samples": 60000, "repeats": 5, "threads": 16}, "flops_per_sample": 454_400,
              "gemm_gflops": 900.0, "gpu_gemm_gflops": 51_000.0,
              "contenders": {"xpnet-cupy-graph": {"gemm_gflops": 50_000.0}, "torch-cuda-graph": {"gemm_gflops": 51_000.0},
                             "torch-cuda-eager": {"gemm_gflops": 50_500.0}},
              "skipped": {"torch-cuda-compile": "torch.compile(...) failed at set-up: boom (at batch 128, adam)"}}
    text = throughput_table(result)
    head, _, first = text.splitlines()[:3]
    assert "60k epoch ms" in head and "x torch-cuda-eager" in head and "x torch-cuda-graph" in head
    assert "x torch-cuda-compile" not in head and "x torch-eager" not in head
    assert first.split()[0] == "xpnet-cupy-graph" and "10.0" in first.split()  # 60,000 / 6e6 s = 10 ms
    assert first.split()[-2:] == ["6.00", "2.00"]  # x torch-cuda-eager, x torch-cuda-graph
    assert "51,000 GFLOP/s" in text
    assert "skipped torch-cuda-compile: torch.compile(...) failed at set-up: boom (at batch 128, adam)" in text


@needs_torch
def test_compile_mode_reaches_the_contender(mnist_dir, monkeypatch, capsys):
    import torch

    import xpnet.bench.runner as runner

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # construct it here; nothing runs on a GPU
    assert C.make_contender("torch-cuda-compile").mode == TC.COMPILE_MODE == "max-autotune-no-cudagraphs"
    assert C.make_contender("torch-cuda-compile", "reduce-overhead").mode == "reduce-overhead"

    seen = []

    def fake_run(config, progress):
        seen.append(config.compile_mode)
        return {"config": {"samples": 1, "repeats": 1, "threads": 1}, "rows": [], "flops_per_sample": 1,
                "gemm_gflops": 1.0, "contenders": {}, "skipped": {}}

    monkeypatch.setattr(runner, "run_throughput", fake_run)
    base = ["bench", "--backends", "numpy", "--data-dir", str(mnist_dir), "--no-progress"]
    for extra in ([], ["--quick"], ["--compile-mode", "reduce-overhead"], ["--quick", "--compile-mode", "max-autotune"]):
        assert main(base + extra) == 0
    assert seen == [None, "default", "reduce-overhead", "max-autotune"]
