"""The command line's GPU parts that a CPU can check: `xpnet train --graph / --no-graph` reaching fit, and
`xpnet info`'s GPU line (decoded CUDA versions, compute capability, memory) from stand-in device queries."""
from __future__ import annotations

import importlib.util

import sys
import types

import pytest

from xpnet.cli import build_parser, main
from xpnet.cli import info as info_cmd

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")


@pytest.mark.parametrize(("flags", "expected"), [([], None), (["--graph"], True), (["--no-graph"], False)])
def test_graph_flags_parse(flags, expected):
    assert build_parser().parse_args(["train", "mnist", *flags]).graph is expected


def test_graph_and_no_graph_together_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["train", "mnist", "--graph", "--no-graph"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_train_help_documents_the_graph_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--graph" in out and "--no-graph" in out and "CUDA graph" in out


@pytest.mark.parametrize(("flags", "expected"), [([], "absent"), (["--graph"], True), (["--no-graph"], False)])
def test_train_passes_the_flag_to_fit(flags, expected, fit_calls, monkeypatch, tmp_path, capsys):
    """--graph / --no-graph become fit(graph=True/False); without either, fit's own default (None) decides."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "linear", "--epochs", "1", "--no-save", "--no-progress", *flags]) == 0
    assert [call.get("graph", "absent") for call in fit_calls] == [expected]
    assert "learned y =" in capsys.readouterr().out


@pytest.mark.parametrize(("value", "shown"), [(12080, "12.8"), ("12040", "12.4"), (13000, "13.0"), (11080, "11.8"),
                                              ("12.8", "12.8"), ("unknown", "unknown")])
def test_cuda_versions_decode_as_major_minor(value, shown):
    assert info_cmd.cuda_version(value) == shown


def test_versions_line_decodes_cupys_cuda_integers():
    assert info_cmd.shown_versions({"cupy": "13.6.0", "cuda_runtime": "12080", "cuda_driver": "12090"}) == (
        "cupy 13.6.0, cuda_runtime 12.8, cuda_driver 12.9")


def test_gpu_facts_for_cupy(monkeypatch):
    runtime = types.SimpleNamespace(
        getDeviceProperties=lambda i: {"name": b"NVIDIA H100 80GB HBM3", "major": 9, "minor": 0,
                                       "totalGlobalMem": 85_031_714_816},
        runtimeGetVersion=lambda: 12080, driverGetVersion=lambda: 12090)
    fake = types.SimpleNamespace(__version__="13.6.0", cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    backend = types.SimpleNamespace(name="cupy", device=types.SimpleNamespace(id=0),
                                    versions={"cupy": "13.6.0", "cuda_runtime": "12080", "cuda_driver": "12090"})
    assert info_cmd.gpu_facts(backend) == ("GPU NVIDIA H100 80GB HBM3, compute capability 9.0, 79.2 GiB; "
                                           "CUDA driver 12.9, CUDA runtime 12.8, CuPy 13.6.0")
    backend.versions = {}  # versions the backend does not give are asked of CuPy
    assert "CUDA driver 12.9, CUDA runtime 12.8, CuPy 13.6.0" in info_cmd.gpu_facts(backend)


@needs_torch
def test_gpu_facts_for_torch_on_cuda_and_none_on_a_cpu(monkeypatch):
    import torch

    props = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", major=9, minor=0, total_memory=85_031_714_816)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    backend = types.SimpleNamespace(name="torch", device=torch.device("cuda", 0), versions={"torch": "2.13.0"})
    assert info_cmd.gpu_facts(backend) == ("GPU NVIDIA H100 80GB HBM3, compute capability 9.0, 79.2 GiB; "
                                           "torch built with CUDA 12.8")
    assert info_cmd.gpu_facts(types.SimpleNamespace(name="torch", device=torch.device("cpu"), versions={})) is None
    assert info_cmd.gpu_facts(types.SimpleNamespace(name="numpy", device="cpu", versions={})) is None


@needs_torch
def test_info_prints_the_gpu_line_and_survives_a_failing_query(monkeypatch, capsys):
    def facts(backend):
        if backend.name == "torch":
            raise RuntimeError("CUDA driver went away")
        return "GPU Stand-in, compute capability 9.0" if backend.name == "numpy" else None

    monkeypatch.setattr(info_cmd, "gpu_facts", facts)
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    numpy_line = next(i for i, line in enumerate(lines) if line.startswith("  numpy "))
    assert lines[numpy_line + 1].strip() == "GPU Stand-in, compute capability 9.0"
    assert any("GPU details unavailable (RuntimeError: CUDA driver went away)" in line for line in lines)
