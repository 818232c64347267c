"""tools/gpu_verify.sh, the one GPU verification run: its step deadlines fit the device's budget, and on a
machine without a GPU it stops at once, saying so, with a non-zero exit."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xpnet.backends.cupy import cuda_device_present

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "gpu_verify.sh"


def test_the_step_deadlines_add_up_to_at_most_480_seconds():
    text = SCRIPT.read_text()
    steps = dict(re.findall(r"^\s*step (\S+) (\d+) ", text, re.M))
    train = steps.pop('"train-$mode"')  # one line, run for both modes
    steps.update({"train-graph": train, "train-eager": train})
    assert set(steps) == {"env", "smoke", "train-graph", "train-eager", "bench", "tests-gpu", "tests-params", "nccl",
                          "lenet"}
    assert sum(int(s) for s in steps.values()) <= 480, steps
    assert re.search(r"^BUDGET=480$", text, re.M)  # and no step runs past the whole run's deadline


@pytest.mark.skipif(cuda_device_present(), reason="on a GPU machine the script verifies the GPU instead")
def test_without_a_gpu_it_stops_at_once_and_says_no_cuda_device(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60, check=False)
    summary = (tmp_path / "summary.txt").read_text()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "no CUDA device" in summary and summary in proc.stdout  # the summary is also what it printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs.tgz", "summary.txt"]
