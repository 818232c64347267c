"""Host builds of CUDA C kernel sources, the one CUDA-on-CPU builder of the tests: g++ compiles the source
with a prelude that defines the CUDA built-ins, and each `extern "C" __global__` kernel gets an entry point
`xl_<kernel>(grid, block, <the kernel's parameters>)` that runs its whole grid.

Used by the fake CuPy's RawModule and, loaded by file path (never as part of the fake `cupy` package), by the
kernel tests that run in the main pytest process. It imports nothing but the standard library.

Threads run one after another (blockIdx/threadIdx set before each), except in kernels that use
__syncthreads or __shfl_xor_sync: there every thread of a block is a fiber (ucontext) on this one OS
thread, switched at each barrier, so warp shuffles and __shared__ reductions give CUDA's results; a
barrier that some thread never reaches aborts the process ("deadlock") instead of hanging. Fibers rather
than OS threads: 256 OS threads per block and launch made the same scenarios about 4x slower (38 s vs 10 s).

Builds are cached by content in $XPNET_FAKE_CUPY_CACHE (tests/backends/test_cupy_on_fake.py points it into the
pytest cache), a temporary folder otherwise.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

PARSE_VERSION = "1"  # part of the signature cache's key: bump it when parse() or Param changes
CXX_FLAGS = ["-O1", "-std=c++17", "-ffp-contract=off", "-fPIC", "-shared"]  # fp-contract off: --fmad=false

COMMON = r"""
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
struct xp_dim3 { unsigned int x, y, z; };
static xp_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static
static inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}
static inline double __longlong_as_double(long long x) { double d; std::memcpy(&d, &x, 8); return d; }
using std::pow; using std::sqrt; using std::exp; using std::log; using std::isfinite;
"""

SERIAL = r"""
template <typename F> static void xl_launch(unsigned grid, unsigned block, F f) {
    gridDim.x = grid; blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b)
        for (unsigned t = 0; t < block; ++t) { blockIdx.x = b; threadIdx.x = t; f(); }
}
"""

FIBERS = r"""
#include <ucontext.h>
// One fiber per thread of the running block. A fiber that reaches a barrier before the others switches
// back to the scheduler; the last one to arrive opens it and carries on.
struct xl_barrier { unsigned count, expected, gen; };
enum { XL_RUN, XL_WAIT, XL_DONE };
struct xl_fiber { ucontext_t ctx; int state; xl_barrier* bar; unsigned gen; };
static const size_t XL_STACK = 64 * 1024;
static xl_fiber xl_f[1024];
static char* xl_stacks = nullptr;
static ucontext_t xl_sched;
static unsigned xl_cur;
static void (*xl_body)(void*);
static void* xl_arg;
static xl_barrier xl_warp[32], xl_block;
static double xl_slots[1024];  // shuffle exchange: each lane posts its value, then reads its partner's
static void xl_arrive(xl_barrier* b) {
    if (++b->count == b->expected) { b->count = 0; ++b->gen; return; }
    xl_fiber& f = xl_f[xl_cur];
    f.state = XL_WAIT; f.bar = b; f.gen = b->gen;
    swapcontext(&f.ctx, &xl_sched);
}
template <typename T> T __shfl_xor_sync(unsigned, T v, int o) {
    const unsigned t = threadIdx.x, w = t / 32, lane = t % 32;
    xl_slots[t] = (double)v;
    xl_arrive(&xl_warp[w]);
    const T r = (T)xl_slots[w * 32 + (lane ^ o)];
    xl_arrive(&xl_warp[w]);  // nobody overwrites a slot before its partner has read it
    return r;
}
static void __syncthreads() { xl_arrive(&xl_block); }
static void xl_entry() { xl_body(xl_arg); xl_f[xl_cur].state = XL_DONE; }
template <typename F> static void xl_tramp(void* p) { (*(F*)p)(); }
template <typename F> static void xl_launch(unsigned grid, unsigned block, F f) {
    if (!xl_stacks) xl_stacks = (char*)std::malloc(1024 * XL_STACK);
    gridDim.x = grid; blockDim.x = block; xl_body = xl_tramp<F>; xl_arg = &f;
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx.x = b;
        for (unsigned w = 0; w * 32 < block; ++w) xl_warp[w] = {0, block - w * 32 < 32 ? block - w * 32 : 32, 0};
        xl_block = {0, block, 0};
        for (unsigned t = 0; t < block; ++t) {
            xl_fiber& fb = xl_f[t];
            getcontext(&fb.ctx);
            fb.ctx.uc_stack.ss_sp = xl_stacks + t * XL_STACK;
            fb.ctx.uc_stack.ss_size = XL_STACK;
            fb.ctx.uc_link = &xl_sched;
            makecontext(&fb.ctx, xl_entry, 0);
            fb.state = XL_RUN;
        }
        for (unsigned left = block; left;) {
            bool progress = false;
            for (unsigned t = 0; t < block; ++t) {
                xl_fiber& fb = xl_f[t];
                if (fb.state == XL_DONE || (fb.state == XL_WAIT && fb.bar->gen == fb.gen)) continue;
                fb.state = XL_RUN; xl_cur = t; threadIdx.x = t; progress = true;
                swapcontext(&xl_sched, &fb.ctx);
                if (fb.state == XL_DONE) --left;
            }
            if (!progress) {
                std::fprintf(stderr, "fake cupy: deadlock: a barrier some threads of block %u never reach\n", b);
                std::abort();
            }
        }
    }
}
"""

CTYPES = {"float": ctypes.c_float, "double": ctypes.c_double, "long long": ctypes.c_longlong, "int": ctypes.c_int,
          "unsigned int": ctypes.c_uint, "short": ctypes.c_short, "bool": ctypes.c_bool,
          "unsigned long long": ctypes.c_ulonglong, "char": ctypes.c_byte}
_SCALAR = {"float": "float32", "double": "float64", "long long": "int64", "int": "int32", "unsigned int": "uint32",
           "short": "int16", "bool": "bool", "unsigned long long": "uint64", "void": None, "char": "int8"}


@dataclass(frozen=True)
class Param:
    """One kernel parameter: `const float* x` is Param("x", "float", pointer=True, const=True, "float32")."""

    name: str
    type: str  # the C base type
    pointer: bool
    const: bool  # a const pointer: the kernel only reads it
    dtype: str | None  # the NumPy dtype of the C base type (None for void)


def entry_point(kernel: str) -> str:
    """The host function that runs a whole grid of `kernel`: (grid, block, the kernel's parameters)."""
    return f"xl_{kernel}"


def run(lib: ctypes.CDLL, name: str, params: list[Param], grid: int, block: int, args: list[Any]) -> None:
    """Run kernel `name` over grid x block threads. `args` as the kernel's parameters: NumPy arrays by address,
    None for a null pointer, scalars converted to the parameter's C type (checking them is the caller's job)."""
    cargs: list[Any] = [ctypes.c_uint(grid), ctypes.c_uint(block)]
    for p, v in zip(params, args, strict=True):
        if p.pointer:
            cargs.append(ctypes.c_void_p(None if v is None else v.ctypes.data))
        else:
            cargs.append(CTYPES[p.type](v.item() if hasattr(v, "item") else v))
    getattr(lib, entry_point(name))(*cargs)


def cache_dir() -> str:
    path = os.environ.get("XPNET_FAKE_CUPY_CACHE") or os.path.join(tempfile.gettempdir(),
                                                                    f"xpnet-fake-cupy-{os.getuid()}")
    os.makedirs(path, exist_ok=True)
    return path


def _gxx() -> str:
    gxx = shutil.which("g++")
    if gxx is None:
        raise RuntimeError("fake cupy: g++ not found; it compiles the CUDA kernels for the host")
    return gxx


def parse(code: str) -> dict[str, list[Param]]:
    """Every `extern "C" __global__ void` kernel of the source (macros expanded by the preprocessor)."""
    pre = subprocess.run([_gxx(), "-E", "-P", "-x", "c++", "-"], input=code, capture_output=True, text=True,
                         check=True).stdout
    kernels = {}
    for m in re.finditer(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', pre):
        params = []
        for text in m.group(2).split(","):
            text = text.replace("__restrict__", " ").strip()
            if not text:
                continue
            name = re.findall(r"\w+", text)[-1]
            head = text[: text.rfind(name)]
            pointer = "*" in head
            base = " ".join(w for w in re.findall(r"\w+", head) if w != "const")
            const = pointer and "const" in head.split("*")[0]
            params.append(Param(name, base, pointer, const, _SCALAR[base]))
        kernels[m.group(1)] = params
    return kernels


def _wrapper(name: str, params: list[Param]) -> str:
    decl = "".join(f", {'const ' if p.const else ''}{p.type}{'*' if p.pointer else ''} {p.name}" for p in params)
    call = ", ".join(p.name for p in params)
    return (f'extern "C" void {entry_point(name)}(unsigned xl_grid, unsigned xl_block{decl}) '
            f"{{ xl_launch(xl_grid, xl_block, [=] {{ {name}({call}); }}); }}")


def compile_shared(src: str) -> str:
    """The path of a shared library built from C++ source `src` (cached by content)."""
    key = hashlib.sha1("\0".join([src, *CXX_FLAGS]).encode()).hexdigest()[:16]
    so = os.path.join(cache_dir(), f"k{key}.so")
    if not os.path.exists(so):
        pid = os.getpid()  # concurrent builders (two pytest runs) each write files of their own
        cpp, tmp = f"{so[:-3]}.{pid}.cpp", f"{so}.{pid}.tmp"
        with open(cpp, "w") as f:
            f.write(src)
        subprocess.run([_gxx(), *CXX_FLAGS, cpp, "-o", tmp], check=True)
        os.replace(tmp, so)  # atomic: a reader never loads a half-written library
        os.replace(cpp, so[:-3] + ".cpp")  # kept beside it, to read when a kernel misbehaves
    return so


def build(code: str) -> tuple[ctypes.CDLL, dict[str, list[Param]]]:
    """The loaded host library for a CUDA source and its kernels' signatures (both cached by content)."""
    prelude = COMMON + (FIBERS if "__syncthreads" in code or "__shfl_xor_sync" in code else SERIAL)
    sigs_file = os.path.join(cache_dir(), f"s{hashlib.sha1((PARSE_VERSION + code).encode()).hexdigest()[:16]}.json")
    if os.path.exists(sigs_file):  # saves a g++ -E per module and process
        with open(sigs_file) as f:
            signatures = {n: [Param(**p) for p in ps] for n, ps in json.load(f).items()}
    else:
        signatures = parse(code)
        tmp = f"{sigs_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({n: [asdict(p) for p in ps] for n, ps in signatures.items()}, f)
        os.replace(tmp, sigs_file)
    src = prelude + code + "\n" + "\n".join(_wrapper(n, ps) for n, ps in signatures.items()) + "\n"
    return ctypes.CDLL(compile_shared(src)), signatures
