"""A test double of a communicator: N ranks as N threads of this process, summing through shared slots.

Sums are taken in rank order on every rank (as MPI's are for two processes: a + b), so the ranks end
bit-identical, as real MPI ranks do. `abort` records the message, breaks the barrier (so the other ranks'
next collective raises instead of waiting forever) and raises SystemExit, as MPI_Abort ends a process.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, NoReturn

import numpy as np

from xpnet.backends import backend_for
from xpnet.distributed.communicator import Communicator, _check_op

TIMEOUT = 60  # seconds a collective waits for the other ranks: a deadlock fails the test, never hangs it


class ThreadGroup:
    def __init__(self, size: int) -> None:
        self.size = size
        self.barrier = threading.Barrier(size)
        self.slots: list[Any] = [None] * size
        self.aborted: list[tuple[int, str, int]] = []
        self.allreduce_sizes: list[int] = []

    def run(self, work: Callable[[Communicator], Any]) -> list[Any]:
        """work(comm) on every rank at once; each rank's result, or the exception it raised."""
        results: list[Any] = [None] * self.size

        def one(rank: int) -> None:
            try:
                results[rank] = work(ThreadCommunicator(self, rank))
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                results[rank] = exc

        threads = [threading.Thread(target=one, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 4)
        assert not any(t.is_alive() for t in threads), "a rank is still running: a collective deadlocked"
        return results


class ThreadCommunicator(Communicator):
    name = "threads"

    def __init__(self, group: ThreadGroup, rank: int) -> None:
        super().__init__()
        self.group, self.rank, self.size = group, rank, group.size
        self.local_rank, self.local_size = rank, group.size

    def _exchange(self, value: Any) -> list[Any]:
        g = self.group
        g.slots[self.rank] = value
        g.barrier.wait(TIMEOUT)
        seen = list(g.slots)
        g.barrier.wait(TIMEOUT)  # nobody overwrites a slot before everyone has read them all
        return seen

    def allreduce(self, array: Any) -> Any:
        backend = backend_for(array)
        parts = self._exchange(np.array(backend.to_numpy(array), copy=True))
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        array[...] = backend.asarray(total)
        if self.rank == 0:
            self.group.allreduce_sizes.append(int(total.size))
        self.allreduces += 1
        return array

    def agree(self, value: float, op: str = "max") -> float:
        _check_op(op)
        values = self._exchange(float(value))
        return float({"sum": sum, "max": max, "min": min}[op](values))

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        return self._exchange(obj)[root]

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        values = self._exchange(obj)
        return values if self.rank == root else None

    def allgather(self, obj: Any) -> list[Any]:
        return self._exchange(obj)

    def abort(self, message: str, code: int = 1) -> NoReturn:
        self.group.aborted.append((self.rank, message, code))
        self.group.barrier.abort()
        raise SystemExit(code)
