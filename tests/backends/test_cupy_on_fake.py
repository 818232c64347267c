"""xpnet's CuPy path on the CPU: the cupy backend, its kernels, cuBLAS (cublas.py), graph mode, the device guard and
the bench contenders, run against the fake CuPy in tests/fake_cupy (its docstring says what the fake
models and what it does not). Runs everywhere: CI has no GPU, and these are not GPU tests, so they never
skip; g++ is required (it compiles the CUDA kernels for the host), and its absence fails them.

Each test runs one scenario of tests/fake_cupy/scenarios.py in a subprocess, because the fake must never be
importable as `cupy` in this process: conftest and the GPU tests decide their skips with
cuda_device_present(), which would find it. g++'s builds are cached in the pytest cache
(.pytest_cache/d/fake_cupy_kernels).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FAKE = Path(__file__).resolve().parents[1] / "fake_cupy"
ROOT = FAKE.parents[1]
DIVERGED_AT = "epoch 1, batch 3 (optimizer step 3)"  # on_nan's poisoned batch


@pytest.fixture(scope="module")
def kernel_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("g++") is None:
        pytest.fail("g++ is not installed: the fake CuPy compiles xpnet's CUDA kernels for the host with it "
                    "(apt-get install g++); these tests must not be skipped", pytrace=False)
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    return cache.mkdir("fake_cupy_kernels") if cache is not None else tmp_path_factory.mktemp("fake_cupy_kernels")


def run_scenario(name: str, cache: Path) -> dict[str, Any]:
    """Run one scenario on the fake in a fresh interpreter; its report, after the checks every run shares."""
    env = {**os.environ, "XPNET_FAKE_CUPY_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, str(FAKE / "scenarios.py"), name], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"scenario {name!r} on the fake CuPy failed (exit {proc.returncode}):\n"
                    f"{proc.stderr[-6000:]}\n{proc.stdout[-2000:]}", pytrace=False)
    report = json.loads(lines[-1][len("RESULT "):])
    assert Path(report["cupy_file"]) == FAKE / "cupy" / "__init__.py"  # the fake ran, not a real CuPy
    return report


def assert_clean(report: dict[str, Any]) -> None:
    """Nothing a capture refuses was attempted (even where xpnet caught the error), no kernel got an argument
    CuPy would pass with the wrong size, no cuBLAS call was refused."""
    assert report["violations"] == []
    assert report["problems"] == []
    assert report["cublas_errors"] == []


def test_the_fake_is_not_importable_as_cupy_here():
    spec = importlib.util.find_spec("cupy")
    assert spec is None or FAKE not in Path(spec.origin or "").parents


def test_the_fake_refuses_what_a_capture_refuses(kernel_cache):
    """The fake's own rules, each broken once on purpose, so a permissive fake cannot pass the rest."""
    report = run_scenario("fake_rules", kernel_cache)
    r = report["result"]
    assert r["capture"]["refused"] == dict.fromkeys(["float()", "get()", "asnumpy", "host-to-device",
                                                     "cupy matmul", "synchronize", "other stream"], True)
    assert len(report["violations"]) == 7  # one each, recorded even though the errors were caught
    assert r["capture"]["after_capture"] == [0, 0, 0, 0]  # capturing ran nothing on older buffers
    assert r["capture"]["after_launch"] == [1, 3, 5, 7]  # (x * 2) + 1
    assert r["capture"]["after_relaunch"] == [21, 21, 21, 21]  # the replay read x's new contents
    c = r["cublas"]
    assert c["eager_maxdiff"] < 1e-6 and c["replayed_maxdiff"] < 1e-6 and c["relaunched_maxdiff"] < 1e-6
    assert c["untouched_by_capture"]
    assert (c["status_no_workspace"], c["status_wrong_stream"], c["status_right"]) == (7, 7, 0)
    assert ["no workspace" in e for e in report["cublas_errors"]] == [True, False]
    assert "is not the current stream" in report["cublas_errors"][1]
    k = r["kernels"]
    assert k["typed_ok"] and k["host_array_refused"] and k["fetched_in_capture_flagged"]
    assert k["untyped_problems"] == ["KERNEL scale: float64 value for float a (CuPy passes it as float64)",
                                     "KERNEL scale: int64 value for int n (CuPy passes it as int64)"]
    assert k["block_sum_error"] < 1e-9  # warp shuffles and __syncthreads across 256 fibers


def test_mlp_fit_windowed_and_graph_match_numpy(kernel_cache):
    """300 rows, batch 64 (a partial batch of 44), 3 epochs, validation; then dropout 0.3."""
    report = run_scenario("mlp", kernel_cache)
    assert_clean(report)
    r = report["result"]
    ref = r["numpy"]
    assert ref["steps"] == 15
    for mode in ("windowed", "graph"):
        run = r[mode]
        assert run["maxdiff_vs_numpy"] < 1e-5, mode
        assert run["steps"] == 15 and run["param_steps"] == [15] * 4, mode
        np.testing.assert_allclose(run["train_loss"], ref["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(run["val_loss"], ref["val_loss"], rtol=1e-5)
    windowed, graph = r["windowed"]["counters"], r["graph"]["counters"]
    assert windowed["recorded"] == windowed["replays"] == windowed["gemm_captured_calls"] == 0  # eager CuPy
    # One GEMM route: eager matmuls go through cublas.gemm too (a step has 6 of them: 2 forward, 4 backward;
    # the first layer's input gradient is skipped), so eager and captured steps compute the same bits.
    per_step = 5
    assert windowed["gemm_calls"] > per_step * 15  # the validation passes add theirs
    # Each batch size (64, 44) runs eagerly once, is captured the next time, then replayed: 15 - 2 replays.
    assert graph["replays"] == 13
    assert graph["gemm_captured_calls"] > 0  # the matmuls went through cublas.gemm into the graphs
    # ... and the eager step before each capture took the same route (creating the handle outside capture):
    # beside the captured ones, graph mode calls cuBLAS for those 2 eager steps and for validation, as eager does.
    assert graph["gemm_captured_calls"] == 2 * per_step
    assert graph["gemm_calls"] - graph["gemm_captured_calls"] == windowed["gemm_calls"] - 13 * per_step
    d = r["dropout"]
    # Same masks step for step: the graphs advance the Philox counter on the device, not a baked-in mask.
    assert d["maxdiff_windowed_vs_graph"] < 1e-5
    np.testing.assert_allclose(d["train_loss_graph"], d["train_loss_windowed"], rtol=1e-6)
    assert d["maxdiff_vs_no_dropout"] > 1e-4  # the masks were applied at all
    # A new mask every step: fit reseeds each epoch, and the last one's 5 steps each drew once (graph replays
    # included: the counter's increment is a recorded kernel).
    assert d["last_epoch_draws_windowed"] == d["last_epoch_draws_graph"] == 5
    assert r["dropout_graph_counters"]["replays"] == 13


def test_on_nan_stop_and_skip_on_the_device_guard(kernel_cache):
    """Batch 3 overflows to inf: 'stop' raises there with the weights of the 2 clean steps, 'skip' drops it."""
    report = run_scenario("on_nan", kernel_cache)
    assert_clean(report)
    r = report["result"]
    for mode in ("numpy", "windowed", "graph"):
        stop = r[f"stop_{mode}"]
        assert stop["error"] is not None and DIVERGED_AT in stop["error"], (mode, stop["error"])
        assert stop["steps"] == 2 and stop["param_steps"] == [2] * 4, mode
        assert stop["maxdiff_vs_two_clean_steps"] < 1e-5, mode
        skip = r[f"skip_{mode}"]
        assert skip["skipped_steps"] == 2 and skip["finite"], mode  # one poisoned batch per epoch
        assert np.isfinite(skip["train_loss"]).all(), mode
    assert r["skip_numpy"]["steps"] == 12
    # On the device a dropped step still counts (fit's docstring): 2 epochs x 7 batches.
    assert r["skip_windowed"]["steps"] == r["skip_graph"]["steps"] == 14
    assert r["skip_graph"]["maxdiff_vs_windowed"] < 1e-5
    np.testing.assert_allclose(r["skip_graph"]["train_loss"], r["skip_windowed"]["train_loss"], rtol=1e-6)


def test_lenet_conv_kernels_windowed_and_graph_match_numpy(kernel_cache):
    """40 images, batch 16 (16, 16, 8), 2 epochs: im2col/col2im/max-pool kernels and their GEMMs captured."""
    report = run_scenario("lenet", kernel_cache)
    assert_clean(report)
    r = report["result"]
    for mode in ("windowed", "graph"):
        assert r[mode]["maxdiff_vs_numpy"] < 1e-4, mode
        assert r[mode]["steps"] == r["numpy"]["steps"] == 6, mode
        np.testing.assert_allclose(r[mode]["train_loss"], r["numpy"]["train_loss"], rtol=1e-5)
    assert r["windowed"]["counters"]["recorded"] == 0
    assert r["graph"]["counters"]["replays"] == 4  # 6 steps, 2 of them eager (first of each batch size)
    assert r["graph"]["counters"]["gemm_captured_calls"] > 0


def test_checkpoint_resume_in_graph_mode_matches_the_uninterrupted_run(kernel_cache):
    """Graph mode with dropout, checkpoints every 2 steps; resumed from epoch 2 batch 2 to the end."""
    report = run_scenario("resume", kernel_cache)
    assert_clean(report)
    r = report["result"]
    assert r["written"] == [f"ckpt-e000{e}-b00000{b}.safetensors" for e in (1, 2) for b in (2, 4, 5)]
    assert r["maxdiff_resumed_vs_full"] < 1e-6  # weights, optimizer state and the Philox stream all resumed
    assert r["steps"] == r["full_steps"] == 15
    np.testing.assert_allclose(r["train_loss"], r["full_train_loss"], rtol=1e-6)
    assert r["resumed_counters"]["replays"] > 0 and r["resumed_counters"]["gemm_captured_calls"] > 0


def test_bench_cupy_contenders_train_what_numpy_trains(kernel_cache):
    """`xpnet bench`'s xpnet-cupy and xpnet-cupy-graph (in process), batch 128 over 300 samples, 2 epochs."""
    report = run_scenario("bench", kernel_cache)
    assert_clean(report)
    r = report["result"]
    assert (r["cupy"]["contender"], r["cupy-graph"]["contender"]) == ("xpnet-cupy", "xpnet-cupy-graph")
    for name in ("cupy", "cupy-graph"):
        assert r[name]["maxdiff_vs_numpy"] < 1e-5, name
        assert r[name]["steps"] == 6 and all(s > 0 for s in r[name]["seconds"]), name
        assert r[name]["info"]["device"].startswith("cuda:0"), name
    assert r["cupy-graph"]["info"]["graph"] is True
    assert r["cupy"]["graphs"] == {}
    assert r["cupy-graph"]["graphs"] == {"44": True, "128": True}  # both batch sizes captured
    assert r["cupy-graph"]["counters"]["replays"] == 4
    assert r["cupy-graph"]["counters"]["gemm_captured_calls"] > 0


def test_a_failed_capture_falls_back_to_the_eager_step_with_one_warning(kernel_cache):
    """Every capture fails at end_capture (as a capture invalidated by the driver does): fit warns once,
    naming the cause, and trains on with the same step run eagerly, to the windowed run's weights."""
    report = run_scenario("capture_fails", kernel_cache)
    assert_clean(report)
    r = report["result"]
    lines = [line for line in r["stderr"].splitlines() if "capture failed" in line]
    assert len(lines) == 1, r["stderr"]
    assert "CUDARuntimeError: cudaErrorStreamCaptureInvalidated" in lines[0] and "eagerly" in lines[0]
    assert r["maxdiff_vs_windowed"] == 0.0  # the same body, the same GEMM route: the same bits
    assert r["steps"] == [15, 15] and r["param_steps"][0] == r["param_steps"][1] == [15] * 4
    assert r["train_loss"][0] == r["train_loss"][1]
    assert r["counters"]["replays"] == 0 and r["counters"]["recorded"] > 0  # one capture tried, none replayed


def test_gradient_clipping_is_captured_into_the_graph(kernel_cache):
    """fit(clip_norm=0.25) in graph mode: the clipping runs inside the replayed graphs and matches NumPy."""
    report = run_scenario("clip", kernel_cache)
    assert_clean(report)
    r = report["result"]
    assert r["maxdiff_vs_numpy"] < 1e-5
    assert r["maxdiff_vs_unclipped"] > 1e-3  # clipping changed the run
    assert r["counters"]["replays"] > 0 and r["counters"]["gemm_captured_calls"] > 0


def test_data_parallel_graph_mode_sums_through_nccl_inside_the_graph(kernel_cache):
    """fit(communicator=NcclCommunicator(...)) in graph mode: the allreduce of the flat buffer (gradients, loss,
    stop flag: params + 2 numbers) is called once eagerly and once on the capturing stream, then replayed with
    the graph. One rank trains exactly as without a communicator; two mirror ranks (each batch's halves equal)
    train as NumPy does on the whole batch, whichever half a rank takes."""
    report = run_scenario("nccl", kernel_cache)
    assert_clean(report)
    r = report["result"]
    for name in ("one_rank", "rank0_of_2", "rank1_of_2"):
        run = r[name]
        assert run["calls"] == [{"count": r["params"] + 2, "captured": False},
                                {"count": r["params"] + 2, "captured": True}], name
        assert run["counters"]["replays"] == 7, name  # 8 steps: one eager, one captured and replayed, 6 more
        assert run["maxdiff_vs_numpy"] < 1e-6, name
        np.testing.assert_allclose(run["train_loss"], r["numpy_train_loss"], rtol=1e-6)
    assert r["one_rank"]["maxdiff_vs_plain_graph"] == 0.0  # the reducer's copies change no bit


def test_every_gpu_test_passes_on_the_fake(kernel_cache, tmp_path):
    """The GPU-only tests (tests/backends/test_cupy_*.py, test_cuda_blas.py, test_bench_gpu.py, the `cupy` parameter of
    every backend-parametrised test, the GPU benchmarks) run here too, in a pytest subprocess whose conftest
    installs the fake first: a test that breaks a capture rule (a host read or copy inside a capture, a
    stream left capturing) fails on a CPU instead of on the rare GPU run. Skips allowed: torch on CUDA,
    which has no double here, and the tests marked not_on_fake, each with its reason."""
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "XPNET_TEST_FAKE_CUPY": "1", "XPNET_FAKE_CUPY_CACHE": str(kernel_cache)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cupy or cuda or gpu",
                           "--ignore", str(Path(__file__)), "--ignore", str(ROOT / "tests" / "test_gpu_verify.py"),
                           f"--junitxml={junit}", "tests", "benchmarks"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    import xml.etree.ElementTree as ET

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    failures, errors = int(suite.get("failures", 0)), int(suite.get("errors", 0))
    total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    assert failures == errors == 0
    # the GPU files and the cupy parameters really ran (416 here with torch installed, 390 without: the
    # cross-backend tests that compare with torch skip then)
    assert total - skipped >= 380
    reasons = {s.get("message", "") for s in suite.iter("skipped")}
    allowed = ["PyTorch with a CUDA GPU", "not on the fake CuPy"]
    if importlib.util.find_spec("torch") is None:  # a lighter install: the tests that compare with torch skip
        allowed += ["torch", "collection skipped"]
    assert all(any(a in r for a in allowed) for r in reasons), reasons
