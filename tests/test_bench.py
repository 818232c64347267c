"""`xpnet bench` end to end, small: real workers, real MNIST, real table, JSON and plot."""
from __future__ import annotations

import json


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
