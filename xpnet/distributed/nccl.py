"""The Communicator for CuPy arrays: NCCL sums the gradients on the GPU, on the current stream, so the sum is
one more node of the step's CUDA graph (NCCL supports stream capture); a host communicator (MPI) carries the
rest: NCCL's unique id at start-up, flags, scalars and Python objects (the ChainerMN / Horovod design).

One GPU per process: NCCL refuses two ranks on one device, so process k of a machine takes its device k."""
from __future__ import annotations

from typing import Any, NoReturn

from xpnet.backends import Backend
from xpnet.distributed.communicator import Communicator
from xpnet.errors import DistributedError


class NcclCommunicator(Communicator):
    """NCCL across one GPU per process, bootstrapped and accompanied by the host communicator `host`."""

    name = "nccl"

    def __init__(self, host: Communicator, device: int | None = None) -> None:
        super().__init__()
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as exc:
            raise DistributedError(f"NCCL needs CuPy built with NCCL support ({exc})") from None
        self.host, self._cupy, self._nccl = host, cupy, nccl
        self.rank, self.size = host.rank, host.size
        self.local_rank, self.local_size = host.local_rank, host.local_size
        count = cupy.cuda.runtime.getDeviceCount()
        self.device = host.local_rank % max(count, 1) if device is None else int(device)
        uid = nccl.get_unique_id() if host.rank == 0 else None
        uid = host.broadcast(uid)  # MPI's one job here: every rank must build its communicator from one id
        with cupy.cuda.Device(self.device):
            self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        self._types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}

    def allreduce(self, array: Any) -> Any:
        """Sum on the GPU, in place, queued on the current stream (recorded into a graph being captured)."""
        dtype = str(array.dtype)
        if dtype not in self._types:
            raise DistributedError(f"NCCL allreduce: no route for dtype {dtype}")
        if not array.flags.c_contiguous:
            raise DistributedError("NCCL allreduce needs a contiguous array (the flat gradient buffer)")
        stream = self._cupy.cuda.get_current_stream()
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, self._types[dtype], self._nccl.NCCL_SUM,
                            stream.ptr)
        self.allreduces += 1
        return array

    def agree(self, value: float, op: str = "max") -> float:
        return self.host.agree(value, op)

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        return self.host.broadcast(obj, root)

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        return self.host.gather(obj, root)

    def allgather(self, obj: Any) -> list[Any]:
        return self.host.allgather(obj)

    def abort(self, message: str, code: int = 1) -> NoReturn:
        self.host.abort(message, code)

    def backend(self) -> Backend:
        """The CuPy backend on this process's GPU (the one its NCCL rank was made on)."""
        from xpnet.backends import backend_for

        with self._cupy.cuda.Device(self.device):
            return backend_for(self._cupy.empty((0,), dtype=self._cupy.float32))

    def describe(self) -> str:
        return f"{self.host.describe()}; gradients summed by NCCL on cuda:{self.device}"


def nccl(host: Communicator | None = None) -> NcclCommunicator:
    """NCCL for CuPy training, bootstrapped over MPI (or `host`): fit(..., communicator=xpnet.distributed.nccl())."""
    if host is None:
        from xpnet.distributed.mpi import mpi

        host = mpi()
    return NcclCommunicator(host)
