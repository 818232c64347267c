"""A training run for the crash tests: prints one line per step so a test can kill it at a chosen point.

usage: resumable_run.py CHECKPOINT_DIR RESULT_FILE [normal|block-mid-write]
"""
from __future__ import annotations

import sys

import numpy as np

import xpnet as xn
import xpnet.io.safetensors_file as st
from xpnet.backends.threads import set_threads
from xpnet.errors import TrainingInterrupted
from xpnet.io import Checkpoints
from xpnet.models import mlp

set_threads(1)  # bit-identical results need the same thread count in every run
directory, result, mode = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "normal"

if mode == "block-mid-write":
    def torn_write(path, data):  # write half the bytes where the temp file would be, then wait to be killed
        with open(f"{path}.partial.tmp", "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
        print("half-written", flush=True)
        sys.stdin.readline()
        raise SystemExit(3)

    st.atomic_write_bytes = torn_write

rng = np.random.default_rng(0)
x = rng.random((2000, 32), dtype=np.float32)
y = (x[:, :4].argmax(1)).astype(np.int64)
model = mlp((32, 64, 64, 4), "relu", dropout=0.1, seed=1)
opt = xn.Adam(model.parameters(), lr=3e-3)
step = opt.step


def announced_step() -> None:
    step()
    print(f"step {opt.steps}", flush=True)


opt.step = announced_step
try:
    xn.fit(model, xn.SoftmaxCrossEntropy(), opt, (x, y), epochs=4, batch_size=32, seed=7,
           checkpoints=Checkpoints(directory, every_steps=10, keep=2, resume=True))
except TrainingInterrupted as exc:
    print(f"interrupted: {exc}", flush=True)
    raise SystemExit(130) from None
xn.save_model(result, model)
print("done", flush=True)
