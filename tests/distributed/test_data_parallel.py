"""Data-parallel fit on N ranks against one process, with the communicator's test double (N threads of this
process, tests/distributed/thread_ranks.py): the same trajectory for every optimizer, odd splits, the NaN
guard and Ctrl-C agreed across ranks, rank 0 alone writing, exact resume, and an error on one rank ending all."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from thread_ranks import ThreadGroup

import xpnet as xn
from xpnet.core.optim import make_optimizer
from xpnet.distributed import Communicator
from xpnet.errors import DivergedError, TrainingInterrupted
from xpnet.io.checkpoint import checkpoint_files
from xpnet.training import fit as fit_module

OPTIMIZERS = [("sgd", {}), ("momentum", {}), ("nesterov", {}), ("adam", {}), ("adamw", {}),
              ("adam", {"weight_decay": 1e-3}), ("momentum", {"weight_decay": 1e-3})]


def data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)).astype(np.int64)
    return x, y


def model() -> xn.Sequential:
    return xn.Sequential([xn.Dense(12, 16, rng=np.random.default_rng(1)), xn.ReLU(),
                          xn.Dense(16, 3, rng=np.random.default_rng(2))])


def train(comm: Any, name: str = "adam", extra: dict[str, Any] | None = None, flat: bool | None = None,
          x: np.ndarray | None = None, y: np.ndarray | None = None, **kw: Any) -> dict[str, Any]:
    m = model()
    opt = make_optimizer(name, m.parameters(), 0.05 if name in ("sgd", "momentum", "nesterov") else 0.01,
                         **(extra or {}))
    if flat is not None:
        opt.flat = flat
    if x is None:
        x, y = data()
    kw = {"epochs": 3, "batch_size": 32, "seed": 4, **kw}
    history = xn.fit(m, xn.SoftmaxCrossEntropy(), opt, (x, y), communicator=comm, **kw)
    return {"weights": [np.array(p.value) for p in m.parameters()], "history": history, "steps": opt.steps}


def on_ranks(size: int, **kw: Any) -> list[Any]:
    results = ThreadGroup(size).run(lambda comm: train(comm, **kw))
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def maxdiff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))


def assert_same_trajectory(ranks: list[dict[str, Any]], alone: dict[str, Any], tol: float = 2e-6) -> None:
    for r in ranks[1:]:  # every rank holds the same weights, bit for bit
        assert all(np.array_equal(u, v) for u, v in zip(r["weights"], ranks[0]["weights"]))
    assert maxdiff(ranks[0]["weights"], alone["weights"]) < tol
    assert ranks[0]["steps"] == alone["steps"]
    np.testing.assert_allclose(ranks[0]["history"]["train_loss"], alone["history"]["train_loss"], rtol=1e-5)


@pytest.mark.parametrize("name,extra", OPTIMIZERS, ids=[f"{n}{'-wd' if e else ''}" for n, e in OPTIMIZERS])
def test_every_optimizer_follows_the_single_process_trajectory(name, extra):
    """The allreduce sums the gradients each optimizer then applies: 2 ranks (even split) and 3 (32 rows =
    11 + 11 + 10, weighted) train as one process does, flat buffer and per-parameter update alike."""
    alone = train(None, name, extra)
    assert_same_trajectory(on_ranks(2, name=name, extra=extra), alone)
    assert_same_trajectory(on_ranks(3, name=name, extra=extra, flat=False), train(None, name, extra, flat=False))


def test_clipping_sees_the_summed_gradient():
    """clip_norm scales by the norm of the global gradient: each rank's own half would clip differently."""
    alone = train(None, clip_norm=0.05)
    assert maxdiff(alone["weights"], train(None)["weights"]) > 1e-3  # the clipping mattered
    assert_same_trajectory(on_ranks(2, clip_norm=0.05), alone)


def test_a_partial_batch_smaller_than_the_ranks():
    """130 rows in batches of 32: the last global batch has 2 rows for 3 ranks; the rank without a row adds
    nothing (weight 0) but joins the collective. Validation is split across ranks (50 rows: 16, 17, 17)."""
    x, y = data(130)
    val = data(50, seed=9)
    alone = train(None, x=x, y=y, validation=val)
    ranks = on_ranks(3, x=x, y=y, validation=val)
    assert_same_trajectory(ranks, alone)
    for key in ("val_loss", "val_accuracy"):
        assert ranks[0]["history"][key] == ranks[2]["history"][key]
        np.testing.assert_allclose(ranks[0]["history"][key], alone["history"][key], rtol=1e-6)


def test_graph_mode_runner_and_device_state_on_ranks():
    """graph=True on NumPy runs the captured-step runner eagerly with the device-side state: the same rows
    and weights per rank as the eager runner."""
    assert_same_trajectory(on_ranks(2, graph=True), train(None, graph=True))


def test_one_allreduce_per_step_of_gradients_loss_and_stop():
    group = ThreadGroup(2)
    results = group.run(lambda comm: train(comm, epochs=1))
    params = sum(w.size for w in results[0]["weights"])
    assert group.allreduce_sizes == [params + 2] * 7  # 200 rows / 32: 7 steps, one buffer each


def test_batch_smaller_than_the_processes_is_refused():
    three = Communicator()
    three.size = 3
    with pytest.raises(ValueError, match="smaller than the 3 processes"):
        train(three, batch_size=2)


@pytest.mark.parametrize("on_nan", ["stop", "skip"])
def test_a_nan_on_one_rank_stops_or_skips_the_step_on_all(on_nan):
    """Rows 48-63 overflow: in batch 2 (rows 32-63, no shuffle) they are rank 1's half only."""
    x, y = data()
    x[48:64] = 3e38
    kw = {"x": x, "y": y, "shuffle": False, "on_nan": on_nan}
    alone = _outcome(lambda: train(None, **kw))
    ranks = ThreadGroup(2).run(lambda comm: _outcome(lambda: train(comm, **kw)))
    if on_nan == "stop":
        assert all(isinstance(r, DivergedError) for r in ranks), ranks
        assert isinstance(alone, DivergedError)
        assert "epoch 1, batch 2" in str(ranks[0]) and "epoch 1, batch 2" in str(ranks[1])
    else:
        assert ranks[0]["history"].skipped_steps == ranks[1]["history"].skipped_steps == 3  # once per epoch
        assert_same_trajectory(ranks, alone)


def _outcome(fn: Any) -> Any:
    try:
        with np.errstate(all="ignore"):  # per thread: the overflow is the point
            return fn()
    except DivergedError as exc:
        return exc


def test_rank_0_alone_writes_checkpoints_and_all_resume_exactly(tmp_path):
    """Each rank is given its own directory: rank 1's stays empty. A run resumed from a mid-epoch checkpoint
    of rank 0's directory (both ranks reading it) ends bit-identical to the uninterrupted run."""
    dirs = [tmp_path / "r0", tmp_path / "r1"]
    full = ThreadGroup(2).run(lambda comm: train(comm, checkpoints=xn.Checkpoints(dirs[comm.rank], every_steps=3,
                                                                                   keep=None)))
    assert checkpoint_files(dirs[1]) == [] and len(checkpoint_files(dirs[0])) == 9
    for p in checkpoint_files(dirs[0]):
        if p.name > "ckpt-e0002-b000003.safetensors":
            p.unlink()
    resumed = ThreadGroup(2).run(lambda comm: train(comm, checkpoints=xn.Checkpoints(dirs[0], every_steps=3,
                                                                                      keep=None, resume=True)))
    for a, b in zip(resumed, full):
        assert all(np.array_equal(u, v) for u, v in zip(a["weights"], b["weights"]))
        assert a["history"]["train_loss"] == b["history"]["train_loss"]


def test_a_stop_asked_of_one_rank_stops_all_after_the_same_step(tmp_path, monkeypatch):
    """Only rank 1 'gets' SIGTERM (before its 5th step): both stop after that step, one checkpoint is written."""
    from contextlib import contextmanager
    import threading

    calls: dict[str, int] = {}

    @contextmanager
    def fake_requests():
        name = threading.current_thread().name
        calls[name] = 0

        def asked() -> bool:  # asked before each step (and at the epoch's end): rank 1 from its 5th step on
            calls[name] += 1
            return name == "rank 1" and calls[name] > 4
        yield asked

    monkeypatch.setattr(fit_module, "interrupt_requests", fake_requests)
    group = ThreadGroup(2)

    def work(comm: Any) -> Any:
        threading.current_thread().name = f"rank {comm.rank}"
        try:
            return train(comm, checkpoints=xn.Checkpoints(tmp_path, keep=None))
        except TrainingInterrupted as exc:
            return exc

    ranks = group.run(work)
    assert all(isinstance(r, TrainingInterrupted) for r in ranks), ranks
    assert "epoch 1, batch 5/7" in str(ranks[0]) and "epoch 1, batch 5/7" in str(ranks[1])
    assert [p.name for p in checkpoint_files(tmp_path)] == ["ckpt-e0001-b000005.safetensors"]
    assert str(ranks[0]).split("saved to ")[1] == str(ranks[1]).split("saved to ")[1]


def test_a_stop_agreed_in_one_run_does_not_end_the_next(tmp_path, monkeypatch):
    """The reducer is cached per optimizer and, where reads wait for the device, reads the stop count once per
    window: a resumed fit in the same processes (same optimizer) must not inherit the earlier run's stop."""
    from contextlib import contextmanager
    import threading

    from xpnet.backends import get_backend

    monkeypatch.setattr(get_backend("numpy"), "sync_costly", True)
    stopping = {"on": True}

    @contextmanager
    def fake_requests():
        yield lambda: stopping["on"] and threading.current_thread().name == "rank 1"

    monkeypatch.setattr(fit_module, "interrupt_requests", fake_requests)
    x, y = data(800)

    def work(comm: Any) -> Any:
        threading.current_thread().name = f"rank {comm.rank}"
        m = model()
        opt = make_optimizer("sgd", m.parameters(), 0.05)
        kw = {"epochs": 1, "batch_size": 32, "communicator": comm}
        with pytest.raises(TrainingInterrupted, match="batch 20/25"):  # read at the first window's end
            xn.fit(m, xn.SoftmaxCrossEntropy(), opt, (x, y), checkpoints=xn.Checkpoints(tmp_path / f"r{comm.rank}"),
                   **kw)
        comm.any(False)
        stopping["on"] = False
        comm.any(False)
        return xn.fit(m, xn.SoftmaxCrossEntropy(), opt, (x, y),
                      checkpoints=xn.Checkpoints(tmp_path / "r0", resume=True), **kw)

    ranks = ThreadGroup(2).run(work)
    assert all(isinstance(r, xn.History) and len(r.epochs) == 1 for r in ranks), ranks


def test_an_error_on_one_rank_ends_every_rank():
    """A failure of rank 1 alone (here a callback) would leave rank 0 waiting in its next collective: the
    job is ended instead (MPI_Abort; here the double's abort), with the rank and the message."""
    class Fails:
        def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool:
            raise OSError("disk full")

    group = ThreadGroup(2)
    ranks = group.run(lambda comm: train(comm, callbacks=[Fails()] if comm.rank == 1 else []))
    assert all(isinstance(r, SystemExit) for r in ranks), ranks
    first = group.aborted[0]
    assert first[0] == 1 and first[2] == 2 and "OSError: disk full" in first[1]


def test_ranks_read_the_device_state_at_the_same_steps_with_a_bar_on_rank_0_only(monkeypatch):
    """Where a read waits for the device (a GPU) the books are read once per window, and a reading can raise
    (a NaN met on the device): every rank must read at the same steps, bar or not, or rank 0 would raise
    while rank 1 waits in the next allreduce. 800 rows: 25 steps, so a window closes at step 21."""
    from xpnet.backends import get_backend

    monkeypatch.setattr(get_backend("numpy"), "sync_costly", True)  # the GPU's books, on NumPy
    x, y = data(800)
    x[48:64] = 3e38
    ranks = ThreadGroup(2).run(lambda comm: _outcome(lambda: train(comm, x=x, y=y, shuffle=False, epochs=1,
                                                                   progress=comm.rank == 0)))
    assert all(isinstance(r, DivergedError) for r in ranks), ranks
    assert "batch 2 " in str(ranks[0]) and str(ranks[0]) == str(ranks[1])
