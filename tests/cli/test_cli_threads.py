"""The command line's thread count: chosen by training unless --threads (or the environment) fixes it, and
recorded in --json either way."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from xpnet.backends.threads import THREAD_VARS, cores


def _train(tmp_path, *extra, env_threads=None):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}  # the suite fixes the count; users do not
    if env_threads:
        env["OPENBLAS_NUM_THREADS"] = env_threads
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "xpnet", "train", "housing", "--epochs", "2", "--no-save",
                           "--json", str(out), *extra], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_by_default_training_chooses_and_says_so(tmp_path):
    run = _train(tmp_path)
    assert run["threads"] == "auto"
    assert 1 <= run["threads_at_end"] <= cores()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_fixed_count_is_kept(tmp_path, how):
    run = _train(tmp_path, "--threads", "1") if how == "option" else _train(tmp_path, env_threads="1")
    assert run["threads"] == 1 and run["threads_at_end"] == 1
