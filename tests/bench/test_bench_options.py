"""`xpnet bench` checks every option before it fetches data, starts a worker or measures anything, and draws
its progress line only for a terminal. Nothing here starts a worker: the runner is replaced by stand-ins."""
from __future__ import annotations

import io
import sys

import pytest

import xpnet.bench.runner as runner
import xpnet.data.mnist as mnist
from xpnet.cli import main


class _Forbidden:
    """Any work: fails the test if called, and remembers that it was."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        raise AssertionError("work started before the options were checked")


@pytest.fixture
def no_work(monkeypatch):
    """Data loading, worker start-up and every kind of run replaced by _Forbidden."""
    forbidden = _Forbidden()
    for module, name in ((mnist, "load_mnist"), (runner, "Worker"), (runner, "run_throughput"),
                         (runner, "run_to_accuracy")):
        monkeypatch.setattr(module, name, forbidden)
    return forbidden


def _hide_matplotlib(monkeypatch) -> None:
    """`import matplotlib` (and any submodule) raises ImportError, as on a machine without it."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_missing_matplotlib_is_one_line_before_any_work(monkeypatch, no_work, tmp_path, capsys):
    _hide_matplotlib(monkeypatch)
    plot = tmp_path / "b.png"
    assert main(["bench", "--quick", "--backends", "numpy", "--plot", str(plot)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xpnet: error: --plot needs matplotlib")
    assert err.rstrip().endswith("pip install matplotlib")
    assert no_work.calls == 0 and not plot.exists()


@pytest.mark.parametrize("extra, message", [
    (["--plot", "{tmp}/b.png", "--to-accuracy", "0.9"], "nothing to plot"),
    (["--plot", "{tmp}/b.png", "--processes", "1"], "nothing to plot"),
    (["--plot", "{tmp}"], "not a regular file"),  # a directory
    (["--json", "{tmp}/file/b.json"], "is not a directory"),  # under a regular file
    (["--to-accuracy", "0"], "(0, 1]"),
    (["--to-accuracy", "97.5"], "(0, 1]"),
    (["--to-accuracy", "0.9", "--processes", "1"], "choose one"),
    (["--to-accuracy", "0.9", "--model", "lenet"], "MLP"),
    (["--threads", "0"], "threads must be positive, got 0"),
    (["--repeats", "0"], "repeats must be positive, got 0"),
    (["--samples", "0"], "samples must be positive, got 0"),
    (["--batch-sizes", "128,big"], "--batch-sizes expects comma-separated integers"),
    (["--processes", "0"], "--processes expects positive process counts"),
    (["--processes", "one"], "--processes expects comma-separated integers"),
])
def test_a_bad_option_is_refused_before_any_work(no_work, tmp_path, capsys, extra, message):
    (tmp_path / "file").write_text("")
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert main(["bench", "--backends", "numpy", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert no_work.calls == 0


def _stub_run(monkeypatch) -> list[bool]:
    """load_mnist records its progress flag; the run reports progress twice and measures nothing."""
    seen: list[bool] = []
    monkeypatch.setattr(mnist, "load_mnist", lambda data_dir=None, progress=False, **kw: seen.append(progress))

    def run_throughput(config, progress):
        progress("starting numpy")
        progress("numpy batch 128 adam: repeat 1/1")
        return {"config": {"samples": 1, "repeats": 1, "threads": 1}, "rows": [], "flops_per_sample": 1,
                "gemm_gflops": 1.0, "contenders": {}, "skipped": {}}

    monkeypatch.setattr(runner, "run_throughput", run_throughput)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    return seen


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_progress_output_when_stderr_is_not_a_terminal(monkeypatch, capsys):
    seen = _stub_run(monkeypatch)
    assert not sys.stderr.isatty()  # capsys's stand-in, as for `2> file` or a CI log
    assert main(["bench", "--backends", "numpy"]) == 0
    assert capsys.readouterr().err == ""
    assert seen == [False]  # nor a download bar


@pytest.mark.parametrize("flag, shown", [([], True), (["--no-progress"], False)])
def test_progress_on_a_terminal_unless_no_progress(monkeypatch, capsys, flag, shown):
    seen = _stub_run(monkeypatch)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["bench", "--backends", "numpy", *flag]) == 0
    assert ("xpnet bench" in terminal.getvalue()) is shown
    assert seen == [shown]
