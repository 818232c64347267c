"""Started by an MPI launcher? Read from the environment it gives each process, without importing mpi4py,
so that `xpnet train` outside mpiexec never loads MPI.

What the launchers set: MPICH's and Intel MPI's hydra PMI_RANK/PMI_SIZE; Open MPI OMPI_COMM_WORLD_SIZE
(and PMIX_RANK); MVAPICH MV2_COMM_WORLD_SIZE; Slurm's srun under PMI-2 PMI_SIZE, under PMIx PMIX_RANK only.
"""
from __future__ import annotations

import os
from typing import Mapping

from xpnet.backends import Backend
from xpnet.distributed.communicator import Communicator

SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_ONLY_VARIABLES = ("PMIX_RANK",)  # a launcher that tells the size to MPI alone
MODES = ("auto", "mpi", "none")


def launched_size(environ: Mapping[str, str] | None = None) -> int | None:
    """How many processes the launcher started: 1 outside any launcher, None where only MPI can tell."""
    env = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        value = env.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None if any(name in env for name in RANK_ONLY_VARIABLES) else 1


def launched_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank as the launcher set it (0 outside a launcher): who prints before MPI is up."""
    env = os.environ if environ is None else environ
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK"):
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def host_communicator(mode: str, environ: Mapping[str, str] | None = None) -> Communicator | None:
    """MPI's communicator when the run is data-parallel: 'none' never; 'mpi' always, even for one process;
    'auto' when a launcher started more than one. None means train alone (and mpi4py is not imported)."""
    if mode not in MODES:
        raise ValueError(f"distributed must be one of {MODES}, got {mode!r}")
    if mode == "none" or (mode == "auto" and launched_size(environ) == 1):
        return None
    from xpnet.distributed.mpi import mpi

    host = mpi()
    return None if mode == "auto" and host.size == 1 else host


def device_communicator(host: Communicator, backend: Backend) -> Communicator:
    """What sums `backend`'s gradients: NCCL for CuPy (bootstrapped over `host`), else `host` itself."""
    if backend.name == "cupy":
        from xpnet.distributed.nccl import NcclCommunicator

        return NcclCommunicator(host)
    return host


def communicator_for(mode: str, backend: Backend, environ: Mapping[str, str] | None = None) -> Communicator | None:
    """host_communicator, then device_communicator: MPI, with NCCL for CuPy; None to train alone."""
    host = host_communicator(mode, environ)
    return None if host is None else device_communicator(host, backend)
