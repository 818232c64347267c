"""`xpnet bench --under-load`: the jobs it runs, the load it starts and stops, its medians and ratios, and its
option checks. Speeds are reported, never asserted."""
from __future__ import annotations

import json
import subprocess

import pytest

from xpnet.bench import under_load as ul
from xpnet.cli import main


def test_the_jobs_cover_every_setting_quiet_and_loaded():
    labels = [j.label for j in ul.jobs(2)]
    assert labels == ["default, quiet", "1 thread, quiet", "2 threads, quiet",
                      "default, loaded", "1 thread, loaded", "2 threads, loaded"]
    assert [j.threads for j in ul.jobs(1)] == [None, 1, None, 1]


def test_a_job_is_the_users_command_in_a_users_environment(monkeypatch):
    default = ul.train_command(ul.Job(None, True), 2, "numpy", "/data", "/tmp/r.json")
    assert default[1:5] == ["-m", "xpnet", "train", "mnist"] and "--threads" not in default
    assert default[-2:] == ["--data-dir", "/data"] and "--no-save" in default
    fixed = ul.train_command(ul.Job(1, False), 2, "numpy", None, "/tmp/r.json")
    assert fixed[fixed.index("--threads") + 1] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # the suite fixes the count; a user's shell does not
    assert not set(ul.THREAD_VARS) & set(ul.job_env())


def test_medians_ratios_and_order(monkeypatch):
    monkeypatch.setattr(ul, "cores", lambda: 2)
    rates = {(None, False): [100, 90, 110], (1, False): [95, 95, 95], (2, False): [105, 100, 101],
             (None, True): [60, 70, 80], (1, True): [90, 90, 90], (2, True): [20, 30, 25]}
    order = []

    def fake(job, epochs, backend, data_dir, load):
        order.append(job)
        rate = rates[(job.threads, job.loaded)][sum(o == job for o in order) - 1]
        return {"samples_per_second": rate, "train_seconds": 1.0, "wall_seconds": 2.0}

    monkeypatch.setattr(ul, "run_job", fake)
    result = ul.run_under_load(rounds=3)["under_load"]
    assert order[0] == ul.jobs(2)[0] and order[6] == ul.jobs(2)[1]  # the order rotates each round
    row = next(r for r in result["rows"] if r["threads"] == "default" and not r["loaded"])
    assert (row["samples_per_second"], row["min_samples_per_second"], row["max_samples_per_second"]) == (100, 90, 110)
    assert result["loaded_over_quiet_default"] == pytest.approx(70 / 100)
    assert result["quiet_default_over_best_fixed"] == pytest.approx(100 / 101)
    table = ul.under_load_table({"under_load": result})
    assert "default loaded / default quiet: 0.70x" in table and "0.99x" in table


def test_a_loaded_job_runs_the_real_command_and_stops_its_load(monkeypatch, mnist_dir):
    started = []
    real_start = ul.start_load

    def start(n):
        started.extend(real_start(n))
        return started

    monkeypatch.setattr(ul, "start_load", start)
    result = ul.run_job(ul.Job(None, True), 1, "numpy", str(mnist_dir), load=1)
    assert result["samples_per_second"] > 0 and result["wall_seconds"] >= result["train_seconds"] > 0
    assert len(started) == 1 and started[0].poll() is not None  # the busy process is gone


def test_a_failing_job_names_itself(monkeypatch, tmp_path):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 2, "", "xpnet: error: boom\n"))
    with pytest.raises(ul.BenchError, match=r"default, quiet\) failed \(exit 2\): xpnet: error: boom"):
        ul.run_job(ul.Job(None, False), 1, "numpy", None, load=1)


@pytest.mark.parametrize("argv, message", [
    (["--under-load", "0"], "positive number of busy processes"),
    (["--under-load", "--backends", "torch"], "not --backends"),
    (["--under-load", "--model", "lenet"], "not --model"),
    (["--under-load", "--processes", "1,2"], "different runs"),
    (["--under-load", "--plot", "x.png"], "nothing to plot"),
])
def test_options_it_cannot_honour_are_refused_before_any_work(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(ul, "run_under_load", lambda **k: pytest.fail("ran"))
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_command_prints_the_table_and_writes_json(monkeypatch, capsys, tmp_path, mnist_dir):
    monkeypatch.setattr(ul, "run_job", lambda job, *a: {"samples_per_second": 50.0 if job.loaded else 100.0,
                                                         "train_seconds": 1.0, "wall_seconds": 1.5})
    out = tmp_path / "load.json"
    assert main(["bench", "--under-load", "2", "--repeats", "1", "--data-dir", str(mnist_dir), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "beside 2 busy processes" in text and "default loaded / default quiet: 0.50x" in text
    saved = json.loads(out.read_text())
    assert saved["under_load"]["load_processes"] == 2 and "cpus" in saved["machine"]
