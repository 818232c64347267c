"""Compile every CUDA C source that xpnet's CuPy kernels launch, with no GPU.

A machine without a GPU cannot run the CuPy kernels, but NVRTC (pip's nvidia-cuda-nvrtc wheel, which CuPy
loads) compiles them without one: this catches syntax and type errors before GPU time is spent. Where CuPy
is not installed, nvcc (a CUDA toolkit on PATH) compiles them to PTX instead.

    python tools/check_cuda_sources.py            # needs cupy + nvidia-cuda-nvrtc, or nvcc; no GPU

Each module of xpnet/backends/cupy/ may define CUDA_SOURCES: {name: CUDA C source}, read from name.cu beside
it (launch.cuda_source pastes in the .cuh headers). The modules import CuPy only inside functions, so
importing them here needs no device. Every .cu file there must belong to some module's CUDA_SOURCES.
"""
from __future__ import annotations

import importlib
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xpnet" / "backends" / "cupy"
ARCH = "compute_90"  # Hopper (H100/H200), the machines GPU work is verified on


def sources() -> dict[str, str]:
    """'module.name' -> CUDA source, for every module of xpnet/backends/cupy/."""
    sys.path.insert(0, str(ROOT))
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.glob("[!_]*.py")):
        module = importlib.import_module(f"xpnet.backends.cupy.{path.stem}")
        for name, src in getattr(module, "CUDA_SOURCES", {}).items():
            found[f"{path.stem}.{name}"] = src
    return found


def orphans(found: dict[str, str]) -> list[str]:
    """The .cu files that no module's CUDA_SOURCES compiles (each source `name` is read from name.cu)."""
    used = {key.split(".", 1)[1] + ".cu" for key in found}
    return sorted(p.name for p in PACKAGE.glob("*.cu") if p.name not in used)


def compile_nvrtc(name: str, src: str, options: tuple[str, ...]) -> str | None:
    from cupy_backends.cuda.libs import nvrtc

    prog = nvrtc.createProgram(src, f"{name}.cu", [], [])
    try:
        nvrtc.compileProgram(prog, [f"-arch={ARCH}", *options])
    except Exception:
        return nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return None


def compile_nvcc(name: str, src: str, options: tuple[str, ...]) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        cu = pathlib.Path(tmp) / f"{name}.cu"
        cu.write_text(src)
        proc = subprocess.run(["nvcc", f"-arch={ARCH}", "-ptx", *options, str(cu), "-o", str(cu.with_suffix(".ptx"))],
                              capture_output=True, text=True, check=False)
    return (proc.stderr or proc.stdout or f"nvcc exited {proc.returncode}") if proc.returncode else None


def main() -> int:
    from xpnet.backends.cupy.launch import OPTIONS

    try:
        import cupy_backends.cuda.libs.nvrtc  # noqa: F401
        compile_one, compiler = compile_nvrtc, "NVRTC"
    except ImportError:
        if shutil.which("nvcc") is None:
            print("neither CuPy's NVRTC nor nvcc is installed: nothing can compile the sources", file=sys.stderr)
            return 2
        compile_one, compiler = compile_nvcc, "nvcc"
    found = sources()
    failed = 0
    for name, src in found.items():
        log = compile_one(name, src, OPTIONS)
        print(f"{'FAIL' if log else 'ok  '} {name}")
        if log:
            failed += 1
            print(log)
    print(f"{len(found) - failed}/{len(found)} sources compiled by {compiler} for {ARCH} with {' '.join(OPTIONS)}")
    for name in orphans(found):
        failed += 1
        print(f"FAIL {name}: no module's CUDA_SOURCES compiles it")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
