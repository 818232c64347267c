"""`xpnet bench --processes`: the layouts it compares, and one real (small) run of each through mpiexec."""
from __future__ import annotations

import json
import subprocess
import sys

from xpnet.bench.scaling import Layout, layouts


def test_layouts_share_the_cores_and_keep_the_one_thread_baseline():
    assert layouts([1, 2], 2) == [Layout(1, 2), Layout(1, 1), Layout(2, 1)]
    assert layouts([2, 4], 8) == [Layout(1, 1), Layout(2, 4), Layout(4, 2)]
    assert layouts([1], 1) == [Layout(1, 1)]


def test_bench_processes_reports_each_layout(tmp_path, mnist_dir, mpiexec):
    out = tmp_path / "scaling.json"
    proc = subprocess.run([sys.executable, "-m", "xpnet", "bench", "--processes", "1,2", "--samples", "1280",
                           "--repeats", "1", "--no-progress", "--data-dir", str(mnist_dir), "--json", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(out.read_text())["scaling"]
    assert (s["batch_size"], s["optimizer"], s["samples"]) == (128, "adam", 1280)
    rows = {(r["processes"], r["threads"]): r for r in s["rows"]}
    cores = max(t for p, t in rows if p == 1)
    assert set(rows) == {(1, cores), (1, 1), (2, max(1, cores // 2))}
    two = rows[(2, max(1, cores // 2))]
    assert 0 < two["allreduce_share"] < 1 and two["allreduces_per_epoch"] == 10  # 1,280 / 128 steps, one each
    assert rows[(1, 1)]["speedup"] == 1.0 and rows[(1, 1)]["allreduce_share"] is None
    assert "allreduce share" in proc.stdout and "2 x " in proc.stdout
