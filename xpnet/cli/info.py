"""`xpnet info`: each backend, available or not and why, its versions and device; for a GPU its name, compute
capability, memory and CUDA versions.

The backends give the versions (`Backend.versions`) and the device's name (`describe_device()`); the GPU's
other facts are read here, from the library that owns the device, so the backends stay small.
"""
from __future__ import annotations

import os
import platform
from typing import Any

from xpnet.cli.output import plural

CUDA_VERSION_KEYS = ("cuda_runtime", "cuda_driver")  # CuPy's integers, e.g. 12080 for CUDA 12.8


def cuda_version(value: Any) -> str:
    """CUDA's encoded version (1000 * major + 10 * minor, as cudaRuntimeGetVersion gives it) as 'major.minor';
    anything that is not such an integer unchanged."""
    try:
        v = int(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{v // 1000}.{v % 1000 // 10}" if v >= 1000 else str(value)


def shown_versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {cuda_version(v) if k in CUDA_VERSION_KEYS else v}" for k, v in versions.items())


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2 ** 30:.1f} GiB"


def gpu_facts(backend: Any) -> str | None:
    """One line about the GPU a backend computes on (None on the CPU)."""
    if backend.name == "cupy":
        import cupy

        device_id = int(getattr(backend.device, "id", backend.device))
        props = cupy.cuda.runtime.getDeviceProperties(device_id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        runtime = backend.versions.get("cuda_runtime") or cupy.cuda.runtime.runtimeGetVersion()
        driver = backend.versions.get("cuda_driver") or cupy.cuda.runtime.driverGetVersion()
        return (f"GPU {name}, compute capability {props['major']}.{props['minor']}, "
                f"{_gib(props['totalGlobalMem'])}; CUDA driver {cuda_version(driver)}, "
                f"CUDA runtime {cuda_version(runtime)}, CuPy {backend.versions.get('cupy', cupy.__version__)}")
    device = backend.device
    if backend.name == "torch" and getattr(device, "type", "") == "cuda":
        import torch

        props = torch.cuda.get_device_properties(device)
        return (f"GPU {props.name}, compute capability {props.major}.{props.minor}, {_gib(props.total_memory)}; "
                f"torch built with CUDA {torch.version.cuda}")
    return None


def run_info() -> int:
    from xpnet import __version__
    from xpnet.backends import backend_status, get_backend

    cpus = plural(os.cpu_count() or 1, "CPU")
    print(f"xpnet {__version__} on Python {platform.python_version()} ({platform.machine()}, {cpus})")
    for s in backend_status():
        if not s.available:
            print(f"  {s.name:<7} unavailable: {s.reason}")
            continue
        print(f"  {s.name:<7} available  device {s.device}  ({shown_versions(s.versions)})")
        try:
            facts = gpu_facts(get_backend(s.name))
        except Exception as exc:  # a driver that answers one query and not the next: say so, list the rest
            facts = f"GPU details unavailable ({type(exc).__name__}: {' '.join(str(exc).split())})"
        if facts:
            print(f"  {'':<7} {facts}")
    return 0
