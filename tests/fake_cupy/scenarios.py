"""xpnet's CuPy path on the fake CuPy, one scenario per run: `python tests/fake_cupy/scenarios.py NAME`.

Each scenario trains through xpnet's public API on the fake and returns the numbers to check; the last line
of stdout is `RESULT <json>`: those numbers plus what the fake saw (GEMMs, captures, replays, and the
violations and problems that must stay empty). tests/backends/test_cupy_on_fake.py runs this and asserts on them.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# The fake goes in before xpnet is imported, so nothing can have found (or cached the absence of) a cupy.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from install import install

cupy, FAKE_BLAS = install()

import xpnet as xn
from xpnet.backends import transfer
from xpnet.core.schedules import Cosine
from xpnet.errors import DivergedError

NP, CP = xn.get_backend("numpy"), xn.get_backend("cupy")


def counters() -> dict[str, int]:
    gemms = FAKE_BLAS.gemms
    return {**cupy.STATS, "gemm_calls": len(gemms), "gemm_captured_calls": sum(g.captured for g in gemms)}


def measured(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, dict[str, int]]:
    """fn(*args, **kwargs) and how the fake's counters moved while it ran."""
    before = counters()
    result = fn(*args, **kwargs)
    return result, {k: v - before[k] for k, v in counters().items()}


def weights(model: Any) -> list[np.ndarray]:
    return [transfer(p.value, NP) for p in model.parameters()]


def maxdiff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b) and all(u.shape == v.shape for u, v in zip(a, b))
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))


def data(n: int = 300, f: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5) + (x[:, 2] > 1)).astype(np.int64)
    return x, y


def mlp(p: float) -> Any:
    return xn.Sequential([xn.Dense(20, 32, rng=np.random.default_rng(0)), xn.ReLU(), xn.Dropout(p),
                          xn.Dense(32, 4, rng=np.random.default_rng(1))])


def fit(backend: Any, graph: bool, p: float = 0.0) -> tuple[Any, Any, Any]:
    """300 rows in batches of 64 (the last one partial: 44) for 3 epochs, with validation and dropout p."""
    m = mlp(p)
    opt = xn.Adam(m.parameters(), lr=0.01, schedule=Cosine(15))
    x, y = data()
    xv, yv = data(100, seed=1)
    h = xn.fit(m, xn.SoftmaxCrossEntropy(), opt, (backend.asarray(x), backend.asarray(y)), epochs=3, batch_size=64,
               validation=(backend.asarray(xv), backend.asarray(yv)), seed=3, graph=graph)
    return m, opt, h


def scenario_mlp() -> dict[str, Any]:
    """An MLP fit on the fake, windowed and graph, against NumPy; then dropout windowed vs graph."""
    ref, ref_opt, ref_h = fit(NP, False)
    out: dict[str, Any] = {"numpy": {"steps": ref_opt.steps, "train_loss": ref_h["train_loss"],
                                     "val_loss": ref_h["val_loss"]}}
    for graph in (False, True):
        (m, o, h), delta = measured(fit, CP, graph)
        out["graph" if graph else "windowed"] = {
            "maxdiff_vs_numpy": maxdiff(weights(m), weights(ref)), "steps": o.steps,
            "param_steps": o.param_steps(), "train_loss": h["train_loss"], "val_loss": h["val_loss"],
            "counters": delta}
    (mw, _, hw), out["dropout_windowed_counters"] = measured(fit, CP, False, 0.3)
    windowed_draws = CP.rng_state()["counter"]  # Philox calls since fit's reseed for the last epoch
    (mg, _, hg), out["dropout_graph_counters"] = measured(fit, CP, True, 0.3)
    graph_draws = CP.rng_state()["counter"]
    m0, _, _ = fit(CP, False, 0.0)
    out["dropout"] = {"maxdiff_windowed_vs_graph": maxdiff(weights(mw), weights(mg)),
                      "maxdiff_vs_no_dropout": maxdiff(weights(mw), weights(m0)),
                      "train_loss_windowed": hw["train_loss"], "train_loss_graph": hg["train_loss"],
                      "last_epoch_draws_windowed": windowed_draws, "last_epoch_draws_graph": graph_draws}
    return out


def scenario_on_nan() -> dict[str, Any]:
    """on_nan='stop' raises at the poisoned batch with no update from it; on_nan='skip' drops it and goes on."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6)).astype(np.float32)  # 100 rows in batches of 16: 6 full, 1 partial (4)
    y = (x[:, 0] > 0).astype(np.int64)
    x[32:48] = 3e38  # batch 3 overflows to inf

    def model() -> Any:
        return xn.Sequential([xn.Dense(6, 16, rng=np.random.default_rng(0)), xn.ReLU(),
                              xn.Dense(16, 3, rng=np.random.default_rng(1))])

    clean = model()
    xn.fit(clean, xn.SoftmaxCrossEntropy(), xn.Adam(clean.parameters(), lr=0.01), (x[:32], y[:32]), epochs=1,
           batch_size=16, shuffle=False)
    out: dict[str, Any] = {}
    for name, backend, graph in (("numpy", NP, False), ("windowed", CP, False), ("graph", CP, True)):
        m = model()
        o = xn.Adam(m.parameters(), lr=0.01)
        error = None
        with np.errstate(all="ignore"):
            try:
                xn.fit(m, xn.SoftmaxCrossEntropy(), o, (backend.asarray(x), backend.asarray(y)), epochs=3,
                       batch_size=16, shuffle=False, graph=graph)
            except DivergedError as exc:
                error = str(exc)
        out[f"stop_{name}"] = {"error": error, "steps": o.steps, "param_steps": o.param_steps(),
                               "maxdiff_vs_two_clean_steps": maxdiff(weights(m), weights(clean))}
    # Skip: the device guard drops the update but, as fit() documents, the step still counts on a GPU (in the
    # schedule and Adam's bias correction), so CuPy is compared with itself here, windowed against graph.
    runs = {}
    for name, backend, graph in (("numpy", NP, False), ("windowed", CP, False), ("graph", CP, True)):
        m = model()
        o = xn.Adam(m.parameters(), lr=0.01)
        with np.errstate(all="ignore"):
            h = xn.fit(m, xn.SoftmaxCrossEntropy(), o, (backend.asarray(x), backend.asarray(y)), epochs=2,
                       batch_size=16, shuffle=False, graph=graph, on_nan="skip")
        runs[name] = weights(m)
        out[f"skip_{name}"] = {"skipped_steps": h.skipped_steps, "steps": o.steps, "param_steps": o.param_steps(),
                               "train_loss": h["train_loss"],
                               "finite": all(bool(np.isfinite(w).all()) for w in runs[name])}
    out["skip_graph"]["maxdiff_vs_windowed"] = maxdiff(runs["graph"], runs["windowed"])
    return out


def scenario_lenet() -> dict[str, Any]:
    """LeNet-5 (conv/pool kernels, im2col GEMMs) on NumPy, the fake windowed and the fake in graph mode."""
    from xpnet.models.lenet import lenet

    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 28, 28), dtype=np.float32)  # batches 16, 16, 8
    y = rng.integers(0, 10, 40)
    runs: dict[str, Any] = {}
    for name, backend, graph in (("numpy", NP, False), ("windowed", CP, False), ("graph", CP, True)):
        m = lenet()
        o = xn.Adam(m.parameters(), lr=1e-3)
        h, delta = measured(xn.fit, m, xn.SoftmaxCrossEntropy(), o, (backend.asarray(x), backend.asarray(y)),
                            epochs=2, batch_size=16, seed=1, graph=graph)
        runs[name] = {"weights": weights(m), "train_loss": h["train_loss"], "steps": o.steps, "counters": delta}
    ref = runs["numpy"]["weights"]
    for name in ("numpy", "windowed", "graph"):
        runs[name]["maxdiff_vs_numpy"] = maxdiff(runs[name].pop("weights"), ref)
    return runs


def scenario_resume() -> dict[str, Any]:
    """Graph mode with dropout: checkpoints every 2 steps, resume from a mid-epoch one, and compare with the
    uninterrupted run."""
    from xpnet.io.checkpoint import checkpoint_files

    full, full_opt, full_h = fit(CP, True, 0.3)
    x, y = data()
    xv, yv = data(100, seed=1)
    args = {"batch_size": 64, "validation": (CP.asarray(xv), CP.asarray(yv)), "seed": 3, "graph": True}
    with tempfile.TemporaryDirectory() as tmp:
        m = mlp(0.3)
        o = xn.Adam(m.parameters(), lr=0.01, schedule=Cosine(15))
        xn.fit(m, xn.SoftmaxCrossEntropy(), o, (CP.asarray(x), CP.asarray(y)), epochs=2,
               checkpoints=xn.Checkpoints(tmp, every_steps=2, keep=None), **args)
        written = sorted(os.listdir(tmp))
        for p in checkpoint_files(tmp):  # "interrupted" just after epoch 2, batch 2
            if p.name > "ckpt-e0002-b000002.safetensors":
                os.remove(p)
        m2 = mlp(0.3)
        o2 = xn.Adam(m2.parameters(), lr=0.01, schedule=Cosine(15))
        resume = xn.Checkpoints(tmp, every_steps=2, keep=None, resume=True)
        h2, delta = measured(xn.fit, m2, xn.SoftmaxCrossEntropy(), o2, (CP.asarray(x), CP.asarray(y)), epochs=3,
                             checkpoints=resume, **args)
    return {"written": written, "maxdiff_resumed_vs_full": maxdiff(weights(m2), weights(full)),
            "steps": o2.steps, "full_steps": full_opt.steps, "train_loss": h2["train_loss"],
            "full_train_loss": full_h["train_loss"], "resumed_counters": delta}


def scenario_bench() -> dict[str, Any]:
    """`xpnet bench`'s xpnet-cupy and xpnet-cupy-graph contenders (in process: no worker, no GEMM timing) on
    a 300-sample MNIST-shaped set, batch 128 (two graphs: 128 and the partial 44), against xpnet-numpy."""
    from xpnet.training import captured as graph_mode
    from xpnet.bench import contenders as C

    rng = np.random.default_rng(0)
    x = rng.random((300, 784), dtype=np.float32)
    y = rng.integers(0, 10, 300)
    out: dict[str, Any] = {}
    for name in ("numpy", "cupy", "cupy-graph"):
        c = C.make_contender(name)
        c.setup(x, y, 128, "adam", 0, "mlp")
        seconds, delta = measured(lambda c: [c.epoch(e) for e in range(2)], c)
        cached = graph_mode._cache.get(c.model)
        graphs = {} if cached is None else cached[1].graphs
        out[name] = {"contender": c.name, "seconds": seconds, "steps": c.optimizer.steps, "counters": delta,
                     "weights": weights(c.model), "info": c.info(),
                     "graphs": {str(rows): g.replay is not None for rows, g in sorted(graphs.items())}}
    ref = out["numpy"]["weights"]
    for run in out.values():
        run["maxdiff_vs_numpy"] = maxdiff(run.pop("weights"), ref)
    return out


def scenario_capture_fails() -> dict[str, Any]:
    """The driver refuses every capture (end_capture raises, as a capture invalidated by a synchronising
    library would): graph-mode fit warns once and trains on eagerly, exactly as the windowed step does."""
    import contextlib
    import io

    from cupy import _capture

    ended = _capture.Stream.end_capture

    def refuse(stream: Any) -> Any:
        ended(stream)  # the stream stops capturing, and what it recorded is thrown away
        raise _capture.CUDARuntimeError("cudaErrorStreamCaptureInvalidated: operation failed due to a "
                                        "previous error during capture")

    windowed, w_opt, w_hist = fit(CP, False)
    err = io.StringIO()
    _capture.Stream.end_capture = refuse
    try:
        with contextlib.redirect_stderr(err):
            (graphed, g_opt, g_hist), delta = measured(fit, CP, True)
    finally:
        _capture.Stream.end_capture = ended
    return {"stderr": err.getvalue(), "maxdiff_vs_windowed": maxdiff(weights(graphed), weights(windowed)),
            "steps": [g_opt.steps, w_opt.steps], "param_steps": [g_opt.param_steps(), w_opt.param_steps()],
            "train_loss": [g_hist["train_loss"], w_hist["train_loss"]], "counters": delta}


def scenario_clip() -> dict[str, Any]:
    """fit(clip_norm=...) in graph mode on the fake (the clipping captured into the graphs) against NumPy."""
    def run(backend: Any, graph: bool, clip: float | None) -> list[np.ndarray]:
        m = mlp(0.0)
        x, y = data()
        xn.fit(m, xn.SoftmaxCrossEntropy(), xn.Adam(m.parameters(), lr=0.01), (backend.asarray(x * 4),
               backend.asarray(y)), epochs=2, batch_size=64, seed=3, graph=graph, clip_norm=clip)
        return weights(m)

    ref = run(NP, False, 0.25)
    got, delta = measured(run, CP, True, 0.25)
    return {"maxdiff_vs_numpy": maxdiff(got, ref), "maxdiff_vs_unclipped": maxdiff(run(NP, False, None), ref),
            "counters": delta}


def scenario_nccl() -> dict[str, Any]:
    """Data-parallel graph mode through NCCL on the fake: one rank against the plain run, then 2 ranks whose
    peers mirror this one (cupy/_nccl.py) on data whose batch halves are equal, against NumPy alone."""
    from cupy import _nccl

    from xpnet.distributed import Communicator, NcclCommunicator

    class Mirrors(Communicator):
        """Host collectives of rank `rank` of `size` processes that all hold what this one holds."""

        def __init__(self, rank: int, size: int) -> None:
            super().__init__()
            self.rank, self.size = rank, size

        def allgather(self, obj: Any) -> list[Any]:
            return [obj] * self.size

        def broadcast(self, obj: Any, root: int = 0) -> Any:  # only NCCL's id is broadcast here: rank 0's
            return _nccl.get_unique_id() if obj is None else obj

    x, y = data(256)
    for b in range(0, 256, 64):  # every global batch of 64: rows 32-63 repeat rows 0-31
        x[b + 32:b + 64], y[b + 32:b + 64] = x[b:b + 32], y[b:b + 32]

    def run(backend: Any, graph: bool, comm: Any) -> tuple[list[np.ndarray], Any]:
        m = mlp(0.0)
        h = xn.fit(m, xn.SoftmaxCrossEntropy(), xn.Adam(m.parameters(), lr=0.01, schedule=Cosine(8)),
                   (backend.asarray(x), backend.asarray(y)), epochs=2, batch_size=64, shuffle=False, graph=graph,
                   communicator=comm, clip_norm=5.0)
        return weights(m), h["train_loss"]

    ref, ref_loss = run(NP, False, None)
    plain, plain_loss = run(CP, True, None)
    out: dict[str, Any] = {}
    for name, host in (("one_rank", Communicator()), ("rank0_of_2", Mirrors(0, 2)), ("rank1_of_2", Mirrors(1, 2))):
        del _nccl.CALLS[:]
        (w, loss), delta = measured(run, CP, True, NcclCommunicator(host))
        out[name] = {"maxdiff_vs_numpy": maxdiff(w, ref), "maxdiff_vs_plain_graph": maxdiff(w, plain),
                     "train_loss": loss, "calls": list(_nccl.CALLS), "counters": delta}
    out["numpy_train_loss"], out["plain_train_loss"] = ref_loss, plain_loss
    out["params"] = sum(int(w.size) for w in ref)
    return out


def scenario_fake_rules() -> dict[str, Any]:
    """The fake itself: that it refuses what a capture refuses, replays what it recorded, and flags kernels."""
    import fake_rules

    return fake_rules.run(cupy, FAKE_BLAS)


SCENARIOS: dict[str, Callable[[], dict[str, Any]]] = {
    "mlp": scenario_mlp, "on_nan": scenario_on_nan, "lenet": scenario_lenet, "resume": scenario_resume,
    "bench": scenario_bench, "capture_fails": scenario_capture_fails, "clip": scenario_clip, "nccl": scenario_nccl,
    "fake_rules": scenario_fake_rules}


def main(name: str) -> None:
    start = time.perf_counter()
    result = SCENARIOS[name]()
    report = {"scenario": name, "result": result, "counters": counters(), "violations": list(cupy.VIOLATIONS),
              "problems": sorted(set(cupy.PROBLEMS)), "cublas_errors": FAKE_BLAS.errors,
              "cupy_file": cupy.__file__, "seconds": time.perf_counter() - start}
    print("RESULT " + json.dumps(report, default=float), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
