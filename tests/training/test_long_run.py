"""Long-run stability: 50 epochs keep host memory flat (no per-step or per-epoch leak)."""
from __future__ import annotations

import sys

import pytest

import xpnet as xn
from xpnet.data.housing import make_housing
from xpnet.recipes import housing_model


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class RecordMemory:
    def __init__(self) -> None:
        self.rss: list[float] = []

    def on_epoch_end(self, epoch, logs) -> None:
        self.rss.append(rss_mb())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_fifty_epochs_keep_memory_flat(tmp_path):
    data = make_housing(n_train=4000, n_test=500)
    model = housing_model(data.x_train, data.y_train, "float32", seed=0)
    record = RecordMemory()
    xn.fit(model, xn.MSE(), xn.Adam(model.parameters(), lr=3e-3), (data.x_train, data.y_train[:, None]),
           epochs=50, batch_size=32, validation=(data.x_test, data.y_test[:, None]), callbacks=[record],
           checkpoints=xn.io.Checkpoints(tmp_path, every_steps=50, keep=2))
    growth = record.rss[-1] - record.rss[9]  # after warm-up (allocator pools, first checkpoints) to the end
    print(f"RSS epoch 10 {record.rss[9]:.1f} MB, epoch 50 {record.rss[-1]:.1f} MB, max {max(record.rss):.1f} MB")
    assert growth < 3.0, record.rss
