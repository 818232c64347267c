"""Divergence that stays finite (Adam at lr 1e6: loss 8e19, chance accuracy) stops the run like a NaN does: one
line, exit 2, no model saved; and the watch never fires on healthy runs, near-zero losses or negative ones."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.errors import DivergedError
from xpnet.training.checkpointing import Position
from xpnet.training.divergence import EXPLODED, LossWatch
from xpnet.training.epoch import PROGRESS_EVERY, run_epoch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
import hostile  # noqa: E402


def test_adam_at_lr_1e6_on_mnist_stops_with_one_line_and_saves_nothing(mnist_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    outcome = hostile.run_case("cli", "train", "mnist", "--lr", "1e6", "--epochs", "2", "--no-progress",
                               "--data-dir", str(mnist_dir), "--save", str(out), "--json", str(tmp_path / "r.json"))
    assert outcome.code == 2 and outcome.one_line, outcome.stderr
    assert "training diverged: the mean loss rose to" in outcome.stderr and "epoch 1/2" in outcome.stderr
    assert not out.exists() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("argv", [["housing", "--lr", "1e7"], ["housing", "--optimizer", "sgd", "--lr", "1e9"],
                                  ["linear", "--lr", "1e4"]])
def test_any_blow_up_is_one_line_without_numpy_warnings(tmp_path, argv):
    outcome = hostile.run_case("cli", "train", *argv, "--epochs", "3", "--no-progress",
                               "--save", str(tmp_path / "m.safetensors"))
    assert outcome.code == 2 and outcome.one_line, outcome.stderr  # no numpy RuntimeWarning lines before it
    assert "diverged" in outcome.stderr or "loss became" in outcome.stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_fit_raises_on_a_finite_explosion():
    x = np.random.default_rng(0).random((256, 8), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    model = xn.Sequential([xn.Dense(8, 16), xn.ReLU(), xn.Dense(16, 2)])
    with pytest.raises(DivergedError, match="rose to"):
        xn.fit(model, xn.SoftmaxCrossEntropy(), xn.Adam(model.parameters(), lr=1e6), (x, y), epochs=5, batch_size=8)


def _feed(watch: LossWatch, means: list[float]) -> None:
    total, seen = 0.0, 0
    watch.start(total, seen)
    for i, mean in enumerate(means):
        total, seen = total + mean * 10, seen + 10
        watch.reading(total, seen, f"reading {i}")


@pytest.mark.parametrize("means", [
    [2.3, 1.0, 0.1, 0.01, 0.02],  # healthy
    [339.0, 1e-3, 1e-8, 1e-10, 3e-6, 1e-9],  # y = 3x fitted to rounding: wanders by any factor, far below the start
    [2.3, 0.01, 50.0, 0.02],  # a spike 5000x the best: noisy, not exploded
    [-1.0, -5.0, -0.1, 3.0],  # a loss that can be negative: no ratio applies
    [1e10, 1e6, 1e9],  # an untrained loss that is huge to start with
])
def test_the_watch_leaves_healthy_runs_alone(means):
    _feed(LossWatch(), means)


@pytest.mark.parametrize("means", [[2.3, 8e19], [2.3, 0.5, 0.4, 0.4 * EXPLODED * 1.01], [1.0, 0.2, 2e4]])
def test_the_watch_catches_an_explosion(means):
    with pytest.raises(DivergedError, match=f"reading {len(means) - 1}"):
        _feed(LossWatch(), means)


class _State:
    """A step state whose loss sums grow as `losses` say; counts the host reads."""

    def __init__(self, losses: list[float]) -> None:
        self.losses, self.reads, self.total, self.seen = losses, 0, 0.0, 0

    def reset(self, loss_sum: float, seen: int) -> None:
        self.total, self.seen = loss_sum, seen

    def totals(self, epoch: int, first_batch: int) -> tuple[float, int]:
        self.reads += 1
        return self.total, self.seen


class _Runner:
    step = None  # a single process: no gradient reducer

    def __init__(self, losses: list[float]) -> None:
        self.x, self.state = np.zeros((10 * len(losses), 1)), _State(losses)

    def steps(self, epoch, order, first_batch):
        for loss in self.state.losses:
            self.state.total, self.state.seen = self.state.total + loss * 10, self.state.seen + 10
            yield 10


class _Backend:
    def __init__(self, sync_costly: bool) -> None:
        self.sync_costly = sync_costly

    def synchronize(self) -> None:
        pass


@pytest.mark.parametrize("sync_costly", [True, False])
def test_the_epoch_loop_watches_with_its_usual_reads(sync_costly):
    losses = [2.3] + [8e19] * (3 * PROGRESS_EVERY)
    runner = _Runner(losses)
    with pytest.raises(DivergedError):
        run_epoch(runner, _Backend(sync_costly), Position(), None, 10, "epoch 1/1")
    # A GPU reads after the first step and at the epoch's end, no more: it finds the explosion at the end.
    # A CPU, free to read, reads every window: it stops at the first window after the first step.
    assert runner.state.reads == 2
    healthy = _Runner([2.3] * (3 * PROGRESS_EVERY))
    run_epoch(healthy, _Backend(sync_costly), Position(), None, 10, "epoch 1/1")
    assert healthy.state.reads == (2 if sync_costly else 3 + 1)
