"""The CPU floor's GEMM rate is measured once per repeat round, in its rotating place among the contenders'
epochs, and "% of GEMM floor" divides by the median of those rounds (stub workers and a stub GEMM timer)."""
from __future__ import annotations

import statistics

import pytest

import xpnet.bench.runner as runner
from xpnet.bench.flops import training_flops
from xpnet.bench.report import throughput_table
from xpnet.bench.runner import BenchConfig


class _Worker:
    """Answers set-up and epochs at once, writing each timed epoch into the shared log."""

    def __init__(self, name: str, log: list[str], seconds: float, gemm_gflops: float | None = None) -> None:
        self.name, self.log, self.seconds = name, log, seconds
        self.info = {"gemm_gflops": gemm_gflops} if gemm_gflops else {}

    def call(self, what: str, *args):
        if what == "epoch" and args[0] > 0:  # epoch 0 is the warm-up
            self.log.append(self.name)
        return self.seconds if what == "epoch" else None

    def close(self) -> None:
        pass


def _run(monkeypatch, rates: list[float], config: BenchConfig, gpu: bool = False):
    log: list[str] = []
    workers = [_Worker("numpy", log, 0.5), _Worker("numpy-reference", log, 0.25)]
    if gpu:
        workers.append(_Worker("torch-cuda-graph", log, 0.01, gemm_gflops=40_000.0))
    monkeypatch.setattr(runner, "_start_workers", lambda config, progress, skipped: list(workers))
    pending = iter(rates)

    def gemm_timer() -> float:
        log.append("GEMM")
        return next(pending)

    return runner.run_throughput(config, gemm_timer=gemm_timer), log


def test_the_floor_is_the_median_of_one_gemm_measurement_per_round(monkeypatch):
    rates = [90.0, 30.0, 60.0, 200.0, 50.0]  # first 90, best 200, mean 86: only the median is 60
    config = BenchConfig(["numpy", "numpy-reference"], [128], ["adam"], repeats=5, samples=1000, threads=1)
    result, _ = _run(monkeypatch, rates, config)
    assert result["gemm_gflops_rounds"] == rates
    assert result["gemm_gflops"] == 60.0
    flops = training_flops("mlp")
    for row in result["rows"]:
        assert row["fraction_of_floor"] == pytest.approx(row["samples_per_second"] * flops / 60e9)
    text = throughput_table(result)
    assert "at 60.0 GFLOP/s, the median of 5 float32 1024^3 GEMM measurements" in text
    assert "(NumPy BLAS, 30.0-200.0), one per repeat round, interleaved with the contenders' epochs" in text


def test_the_gemm_rotates_with_the_contenders_once_per_round(monkeypatch):
    config = BenchConfig(["numpy", "numpy-reference"], [128, 512], ["sgd", "adam"], repeats=3, samples=1000)
    result, log = _run(monkeypatch, [float(r) for r in range(1, 13)], config)
    assert len(result["gemm_gflops_rounds"]) == 2 * 2 * 3  # batch sizes x optimizers x repeats
    assert result["gemm_gflops"] == statistics.median(range(1, 13))
    rounds = [log[i:i + 3] for i in range(0, len(log), 3)]
    # the GEMM takes each place in turn, like the contenders: drift on a shared machine hits it as often
    assert rounds[:3] == [["numpy", "numpy-reference", "GEMM"], ["numpy-reference", "GEMM", "numpy"],
                          ["GEMM", "numpy", "numpy-reference"]]
    assert all(sorted(r) == ["GEMM", "numpy", "numpy-reference"] for r in rounds)


def test_gpu_contenders_keep_their_gpu_floor(monkeypatch):
    config = BenchConfig(["numpy", "numpy-reference", "torch-cuda-graph"], [128], ["adam"], repeats=3, samples=1000)
    result, _ = _run(monkeypatch, [100.0, 100.0, 100.0], config, gpu=True)
    flops = training_flops("mlp")
    by_name = {r["contender"]: r for r in result["rows"]}
    gpu = by_name["torch-cuda-graph"]
    assert gpu["fraction_of_floor"] == pytest.approx(gpu["samples_per_second"] * flops / 40_000e9)
    cpu = by_name["xpnet-numpy"]
    assert cpu["fraction_of_floor"] == pytest.approx(cpu["samples_per_second"] * flops / 100e9)


def test_a_result_without_rounds_still_reports_its_floor():
    result = {"rows": [], "config": {"samples": 1000, "repeats": 3, "threads": 1}, "flops_per_sample": 454_400,
              "gemm_gflops": 80.0}
    assert "Floor: 454,400 FLOP/sample at 80.0 GFLOP/s (float32 1024^3 GEMM, NumPy BLAS)." in throughput_table(result)
