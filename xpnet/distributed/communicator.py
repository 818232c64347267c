"""What data-parallel training asks of the processes it runs on: a rank and a size, an in-place sum of an
array over every process (the one collective of a step), and a few host-side agreements (a flag, a scalar, a
Python object) for the decisions every process must take together.

This base class is the trivial case, one process: every collective returns its input. MPICommunicator
(mpi.py) and NcclCommunicator (nccl.py) run the same interface across processes.
"""
from __future__ import annotations

import sys
from typing import Any, NoReturn

OPS = ("sum", "max", "min")


class Communicator:
    """One process on its own: rank 0 of 1; the collectives return what they are given."""

    name = "single"

    def __init__(self) -> None:
        self.rank, self.size = 0, 1
        self.local_rank, self.local_size = 0, 1  # among the processes on this machine
        self.allreduce_seconds = 0.0  # host time inside MPI's allreduce (NCCL's, queued on the GPU, is not timed)
        self.allreduces = 0

    @property
    def is_root(self) -> bool:
        """True on the process that alone prints and writes files."""
        return self.rank == 0

    def allreduce(self, array: Any) -> Any:
        """Sum `array` element-wise over every process, in place (all processes end with the same sum)."""
        self.allreduces += 1
        return array

    def agree(self, value: float, op: str = "max") -> float:
        """One number every process ends with: the sum, max or min of each process's `value`."""
        _check_op(op)
        return float(value)

    def any(self, flag: bool) -> bool:
        """True on every process when `flag` is true on at least one of them."""
        return self.agree(1.0 if flag else 0.0, "max") > 0.0

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        """`obj` as the process `root` has it (a picklable Python object), on every process."""
        return obj

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Every process's `obj` in rank order, on `root`; None elsewhere."""
        return [obj]

    def allgather(self, obj: Any) -> list[Any]:
        """Every process's `obj` in rank order, on every process."""
        return [obj]

    def abort(self, message: str, code: int = 1) -> NoReturn:
        """Print `message` and end every process of the job with exit code `code`: what a process must do
        when it fails on its own, since the others would otherwise wait for it in the next collective."""
        print(f"xpnet: {message}", file=sys.stderr, flush=True)
        raise SystemExit(code)

    def describe(self) -> str:
        return "1 process"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} rank {self.rank} of {self.size}>"


def _check_op(op: str) -> None:
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
