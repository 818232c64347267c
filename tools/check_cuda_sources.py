"""Compile every CUDA C source that xpnet's CuPy kernels launch, with NVRTC and no GPU.

A machine without a GPU cannot run the CuPy kernels, but NVRTC (pip's nvidia-cuda-nvrtc wheel, which CuPy
loads) compiles them without one: this catches syntax and type errors before GPU time is spent.

    python tools/check_cuda_sources.py            # needs cupy and nvidia-cuda-nvrtc installed, no GPU

Each module xpnet/backends/cupy_*.py (and cuda_*.py) may define CUDA_SOURCES: {name: CUDA C source}. The
modules import CuPy only inside functions, so importing them here needs no device.
"""
from __future__ import annotations

import importlib
import pathlib
import sys

ARCH = "compute_90"  # Hopper (H100/H200), the machines GPU work is verified on


def sources() -> dict[str, str]:
    root = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    found: dict[str, str] = {}
    for path in sorted((root / "xpnet" / "backends").glob("*.py")):
        if not path.stem.startswith(("cupy_", "cuda_")):
            continue
        module = importlib.import_module(f"xpnet.backends.{path.stem}")
        for name, src in getattr(module, "CUDA_SOURCES", {}).items():
            found[f"{path.stem}.{name}"] = src
    return found


def compile_one(name: str, src: str) -> str | None:
    from cupy_backends.cuda.libs import nvrtc

    prog = nvrtc.createProgram(src, f"{name}.cu", [], [])
    try:
        nvrtc.compileProgram(prog, [f"-arch={ARCH}", "-std=c++17"])
    except Exception:
        return nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return None


def main() -> int:
    found = sources()
    failed = 0
    for name, src in found.items():
        log = compile_one(name, src)
        print(f"{'FAIL' if log else 'ok  '} {name}")
        if log:
            failed += 1
            print(log)
    print(f"{len(found) - failed}/{len(found)} sources compiled for {ARCH}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
