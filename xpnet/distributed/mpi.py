"""The Communicator over MPI (mpi4py): CPU arrays are summed in place in host memory, GPU arrays through a
host copy (NCCL is the GPU route: nccl.py). mpi4py is imported here only, when a communicator is made."""
from __future__ import annotations

import sys
import time
from typing import Any, NoReturn

import numpy as np

from xpnet.backends import backend_for
from xpnet.distributed.communicator import Communicator, _check_op
from xpnet.errors import DistributedError

INSTALL_HINT = 'pip install -e ".[mpi]" (mpi4py with an MPI library and its mpiexec)'


def import_mpi() -> Any:
    """mpi4py's MPI module (initialising MPI), or a DistributedError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(f"data-parallel training needs mpi4py: {INSTALL_HINT} ({exc})") from None
    return MPI


class MPICommunicator(Communicator):
    """The processes of an MPI communicator (default COMM_WORLD)."""

    name = "mpi"

    def __init__(self, comm: Any = None) -> None:
        super().__init__()
        self.MPI = MPI = import_mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # the processes sharing this machine's memory
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}

    def allreduce(self, array: Any) -> Any:
        start = time.perf_counter()
        host = _host_view(array)
        if host is not None:
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        else:  # device memory: through the host (slow, and no capture; NcclCommunicator avoids both)
            backend = backend_for(array)
            staged = np.ascontiguousarray(backend.to_numpy(array))
            self.comm.Allreduce(self.MPI.IN_PLACE, staged, op=self.MPI.SUM)
            array[...] = backend.asarray(staged)
        self.allreduce_seconds += time.perf_counter() - start
        self.allreduces += 1
        return array

    def agree(self, value: float, op: str = "max") -> float:
        _check_op(op)
        return float(self.comm.allreduce(float(value), op=self._ops[op]))

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        return self.comm.gather(obj, root=root)

    def allgather(self, obj: Any) -> list[Any]:
        return self.comm.allgather(obj)

    def abort(self, message: str, code: int = 1) -> NoReturn:
        # sys.__stderr__: a process other than 0 may have silenced sys.stderr, yet this must be seen
        stream = sys.stderr if self.rank == 0 or sys.__stderr__ is None else sys.__stderr__
        print(f"xpnet: process {self.rank} of {self.size}: {message}; ending the job", file=stream, flush=True)
        self.comm.Abort(code)
        raise SystemExit(code)  # not reached: MPI_Abort ends this process too

    def describe(self) -> str:
        library = " ".join(self.MPI.Get_library_version().split()[:3]).rstrip(",")  # "MPICH Version: 5.0.2"
        return f"{self.size} process{'es' if self.size > 1 else ''} (MPI: {library})"


def _host_view(array: Any) -> np.ndarray | None:
    """A writeable NumPy view of a CPU array's memory (NumPy, torch, array-api-strict), or None for device
    memory, so MPI sums into the array itself."""
    if isinstance(array, np.ndarray):
        return array if array.flags.c_contiguous and array.flags.writeable else None
    try:
        view = np.from_dlpack(array)
    except (TypeError, RuntimeError, BufferError, ValueError, AttributeError):
        return None
    return view if view.flags.c_contiguous and view.flags.writeable else None


def mpi(comm: Any = None) -> MPICommunicator:
    """A Communicator over MPI's COMM_WORLD (or `comm`): fit(..., communicator=xpnet.distributed.mpi())."""
    return MPICommunicator(comm)
