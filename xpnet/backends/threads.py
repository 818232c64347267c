"""CPU thread counts, set in one place for every library in the process.

NumPy's BLAS and torch each keep a thread pool; two pools spinning on the same cores slowed both several
times in the team's probe (shared/notes/array-api-findings.md), so a run (and every benchmark worker)
fixes both to the same count before it starts timing.
"""
from __future__ import annotations

import os
import sys

_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def set_threads(n: int | None) -> int:
    """Use `n` CPU threads for BLAS and torch (None: one per core). Returns the count in force."""
    n = n or os.cpu_count() or 1
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    for var in _ENV:  # for libraries not loaded yet, and for child processes
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a missing helper only means the env vars above must do
        pass
    else:
        threadpool_limits(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n
