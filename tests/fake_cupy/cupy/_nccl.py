"""cupy.cuda.nccl of the fake: what xpnet calls (get_unique_id, NcclCommunicator, allReduce), with checks.

One process holds every rank here, so the peers are mirrors: an allReduce over `ndev` ranks sums `ndev`
copies of this rank's buffer (a 1-rank allReduce leaves it as it is). A test makes its data so that each
rank's part of a batch equals every other rank's, and the sum is then what real ranks would compute.
The call is checked as the capture rules require: on the current stream, or on the capturing stream while
one captures (then recorded into the graph and run at each replay), over device memory of `count` elements.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from . import _capture as cap

NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0  # ncclFloat32, ncclFloat64, ncclSum
_TYPES = {NCCL_FLOAT32: np.float32, NCCL_FLOAT64: np.float64}
CALLS: list[dict[str, Any]] = []  # one per allReduce call: count, captured


def get_unique_id() -> tuple[int, ...]:
    return tuple(range(128))  # ncclUniqueId: 128 bytes, which CuPy hands out as a tuple


class NcclCommunicator:
    def __init__(self, ndev: int, commId: tuple[int, ...], rank: int) -> None:
        if not 0 <= rank < ndev or len(commId) != 128:
            raise cap.CUDARuntimeError(f"ncclInvalidArgument: rank {rank} of {ndev}, id of {len(commId)} bytes")
        self.ndev, self.rank = ndev, rank

    def allReduce(self, sendbuf: int, recvbuf: int, count: int, datatype: int, op: int, stream: int) -> None:
        expected = cap.S.capture.ptr if cap.capturing() else cap.current_stream().ptr
        if stream != expected:
            raise cap.violation(f"ncclAllReduce on stream {stream:#x}, not the current stream {expected:#x}")
        if op != NCCL_SUM or datatype not in _TYPES or count <= 0 or not sendbuf or not recvbuf:
            raise cap.CUDARuntimeError(f"ncclInvalidArgument: op {op}, type {datatype}, count {count}")
        dtype = _TYPES[datatype]
        nbytes = count * np.dtype(dtype).itemsize

        def view(ptr: int) -> np.ndarray:
            return np.ctypeslib.as_array((ctypes.c_char * nbytes).from_address(ptr)).view(dtype)

        def run() -> None:
            view(recvbuf)[...] = view(sendbuf) * self.ndev  # every (mirror) rank's copy, summed

        CALLS.append({"count": count, "captured": cap.capturing()})
        if cap.capturing():
            cap.record(run, "ncclAllReduce")
            if any(r.ctypes.data <= recvbuf < r.ctypes.data + r.nbytes for r in cap.S.fresh.values()):
                run()
        else:
            run()
