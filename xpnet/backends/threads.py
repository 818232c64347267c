"""CPU thread counts, set in one place for every library in the process.

NumPy's BLAS and torch each keep a thread pool; a run (and every benchmark worker) gives both the same count,
so that together they start no more threads than it means to use.

Two ways a count comes into force. `set_threads(n)` fixes it: the user's choice (`--threads`, or
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS set before the process started), which nothing
changes afterwards. Otherwise the count is xpnet's to choose, and training measures its own steps to choose
it (xpnet/training/thread_tuning.py) through `use_threads`: on a busy machine a BLAS that splits each
product over every core waits for the thread the scheduler has parked, and one thread is then several times
faster than all of them.
"""
from __future__ import annotations

import os
import sys

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# A count in the environment at start-up is the user's (or a parent process's) decision.
_fixed: int | None = next((int(os.environ[v]) for v in THREAD_VARS if os.environ.get(v, "").isdigit()
                           and int(os.environ[v]) > 0), None)
_current: int | None = None


def cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def set_threads(n: int | None) -> int:
    """Fix the CPU threads for BLAS and torch at `n` (None: one per core) for the rest of the process: training
    no longer chooses its own count. Returns the count in force."""
    n = n or cores()
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    global _fixed
    _fixed = n
    for var in THREAD_VARS:  # for libraries not loaded yet, and for child processes
        os.environ[var] = str(n)
    return _apply(n)


def threads_fixed() -> int | None:
    """The count the user fixed, or None where xpnet may choose."""
    return _fixed


def free_threads() -> None:
    """Hand the choice back to xpnet (undoes set_threads for this process; the environment keeps its values
    for child processes started later)."""
    global _fixed
    _fixed = None


def use_threads(n: int) -> int:
    """Put `n` threads in force without fixing them (the tuner's switch). Returns `n`."""
    return _apply(n)


def current_threads() -> int:
    """The count last put in force by xpnet, else the BLAS's own (one per core unless the environment says)."""
    return _current or _fixed or cores()


def _apply(n: int) -> int:
    global _current
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a missing helper only means the environment variables must do
        pass
    else:
        threadpool_limits(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    _current = n
    return n
