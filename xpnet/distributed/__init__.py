"""Data-parallel training across processes: MPI through mpi4py, with NCCL summing CuPy gradients on the GPU.

    mpiexec -n 4 xpnet train mnist                      # the command line detects the launcher
    fit(..., communicator=xpnet.distributed.mpi())      # Python, started under mpiexec
    fit(..., communicator=xpnet.distributed.nccl())     # CuPy: one GPU per process

Every process holds the data, walks the same seeded global batches and trains on its own part of each
(shard.py); one allreduce per step sums the gradients (reducer.py), so N processes follow the trajectory of
one. mpi4py and CuPy are imported only when a communicator is made: `import xpnet` loads neither.
"""
from xpnet.distributed.communicator import Communicator
from xpnet.distributed.launch import communicator_for, launched_rank, launched_size
from xpnet.distributed.mpi import MPICommunicator, mpi
from xpnet.distributed.nccl import NcclCommunicator, nccl
from xpnet.distributed.shard import Part, part_of, shard

__all__ = ["Communicator", "MPICommunicator", "NcclCommunicator", "Part", "communicator_for", "launched_rank",
           "launched_size", "mpi", "nccl", "part_of", "shard"]
