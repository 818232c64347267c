"""When one process fails, the job ends: the others would otherwise wait for it in their next collective.

Two kinds of error reach the top of a data-parallel run. Those every process raises at the same step, from
values they share (a loss that is not finite, after the allreduce; a stop that all agreed on) propagate as
usual, and each process exits with the same code. Any other error may be this process's alone (a disk full
on the rank that writes, a file missing on one machine): it is printed, with the process's rank, and the
whole job is ended through the communicator (MPI_Abort), with the exit code the command line gives that
error. A process killed outright (kill -9) is mpiexec's to notice: MPICH's and Open MPI's end the job then.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from xpnet.distributed.communicator import Communicator
from xpnet.errors import DivergedError, TrainingInterrupted, XpnetError

AGREED = (DivergedError, TrainingInterrupted)  # raised by every process at the same step


def exit_code(exc: BaseException) -> int:
    """The command line's exit code for `exc`: 2 for an input or usage error, 130 for an interrupt, else 1."""
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 2 if isinstance(exc, (XpnetError, ValueError, OSError)) else 1


def describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def one_fails_all_end(communicator: Communicator | None) -> Iterator[None]:
    """Around work every process does in step: an error not in AGREED ends every process of the job."""
    try:
        yield
    except AGREED:
        raise
    except BaseException as exc:
        if communicator is None or communicator.size == 1:
            raise
        communicator.abort(describe(exc), exit_code(exc))
