"""`xpnet train` as one of several processes: rank 0 alone prints and writes; the others keep quiet, exit
with rank 0's code when all of them stop together, and end the job when one fails on its own."""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator

from xpnet.backends import Backend, get_backend
from xpnet.backends.threads import cores, set_threads
from xpnet.distributed.communicator import Communicator
from xpnet.distributed.failures import AGREED, exit_code, one_fails_all_end
from xpnet.distributed.launch import device_communicator
from xpnet.distributed.nccl import NcclCommunicator


def run_on_processes(host: Communicator, backend_name: str | None, threads: int | None,
                     train: Callable[[Backend, Communicator, Any], int], fetch: Callable[[], object] | None = None,
                     plan: Callable[[], Any] | None = None) -> int:
    """train(backend, communicator, planned) on this process of `host`'s job: its GPU and NCCL for CuPy, its
    share of the machine's cores unless --threads. plan(): what rank 0 alone decides before any work (the
    settings checked against a checkpoint, the model file's name), handed to every process as `planned`.
    fetch(): data to download once, by rank 0, before the others read it. Everything runs under
    one_fails_all_end: a failure of this process alone (rank 0 refusing the command, say) ends the job."""
    with one_fails_all_end(host):
        # processes on one machine share its cores rather than each spinning a thread per core
        set_threads(threads or max(1, cores() // host.local_size))
        backend = get_backend(backend_name)
        comm = device_communicator(host, backend)
        if isinstance(comm, NcclCommunicator):
            backend = comm.backend()
        # rank 0 decides, so that the processes agree (and two never pick different free file names)
        planned = comm.broadcast(plan() if plan is not None and comm.rank == 0 else None)
        if fetch is not None:
            if comm.rank == 0:
                fetch()
            comm.any(False)  # the others wait here until it is there
        try:
            with _quiet(comm.rank != 0):
                return train(backend, comm, planned)
        except AGREED as exc:  # raised by every process at the same step: rank 0 reports it, once
            if comm.rank == 0:
                raise
            return exit_code(exc)


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """stdout and stderr to nowhere while `quiet`: what they would say, rank 0 says."""
    if not quiet:
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield
