"""The split of each global batch across processes, and how a launcher is recognised from its environment
(without importing mpi4py)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from xpnet.backends import get_backend
from xpnet.distributed import Communicator, communicator_for, launched_rank, launched_size, part_of, shard
from xpnet.distributed.shard import local_batches


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 64, 127, 128, 129])
def test_the_parts_of_a_batch_cover_it_once_and_weigh_one(rows, size):
    parts = [part_of(rows, r, size) for r in range(size)]
    real = [p for p in parts if p.weight > 0]
    covered = [i for p in real for i in range(p.start, p.stop)]
    assert covered == list(range(rows))  # in order, each row once
    assert sum(p.weight for p in parts) == pytest.approx(1.0)
    assert max(p.stop - p.start for p in real) - min(p.stop - p.start for p in real) <= 1
    for p in parts:
        assert p.rows == rows
        if p.weight == 0:  # more processes than rows: a stand-in row inside the batch
            assert (p.start, p.stop) == (rows - 1, rows) and rows < size


def test_local_batches_walk_the_global_order():
    """Every process walks the same global batches of the seeded order; together they train on each row of
    the epoch once (here 10 rows in batches of 4 on 3 processes: parts 1+1+2, 1+1+2, and 0+1+1)."""
    b = get_backend("numpy")
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10)
    order = np.random.default_rng(0).permutation(10)
    seen = []
    for rank in range(3):
        for xb, yb, part in local_batches(b, x, y, 4, order, 0, rank, 3):
            assert np.array_equal(xb[:, 0].astype(np.int64), yb)
            if part.weight:
                seen += list(yb)
    assert sorted(seen) == list(range(10))
    resumed = [part.rows for _, _, part in local_batches(b, x, y, 4, order, 2, 0, 3)]
    assert resumed == [2]  # from batch 2 on: only the last, partial one


def test_shard_splits_an_evaluation_set():
    assert [shard(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]


@pytest.mark.parametrize("env,size,rank", [
    ({}, 1, 0),
    ({"PMI_SIZE": "4", "PMI_RANK": "2"}, 4, 2),  # MPICH / Intel MPI hydra, Slurm PMI-2
    ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}, 2, 1),  # Open MPI
    ({"MV2_COMM_WORLD_SIZE": "3", "MV2_COMM_WORLD_RANK": "0"}, 3, 0),  # MVAPICH
    ({"PMIX_RANK": "5"}, None, 5),  # PMIx without a size variable: only MPI can tell
    ({"PMI_SIZE": "1", "PMI_RANK": "0"}, 1, 0),
])
def test_the_launcher_is_read_from_the_environment(env, size, rank):
    assert launched_size(env) == size
    assert launched_rank(env) == rank


def test_auto_outside_a_launcher_and_none_import_no_mpi():
    code = ("import sys; from xpnet.backends import get_backend; from xpnet.distributed import communicator_for; "
            "b = get_backend('numpy'); "
            "assert communicator_for('auto', b, {}) is None; "
            "assert communicator_for('none', b, {'PMI_SIZE': '4'}) is None; "
            "print('mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="distributed must be one of"):
        communicator_for("nccl", get_backend("numpy"))


def test_the_one_process_communicator_returns_what_it_is_given():
    c = Communicator()
    a = np.arange(3.0)
    assert c.allreduce(a) is a and list(a) == [0.0, 1.0, 2.0]
    assert (c.rank, c.size, c.is_root) == (0, 1, True)
    assert c.any(True) and not c.any(False) and c.agree(2.5, "sum") == 2.5
    assert c.broadcast({"k": 1}) == {"k": 1} and c.gather(7) == [7] and c.allgather(7) == [7]
    with pytest.raises(ValueError, match="op must be one of"):
        c.agree(1.0, "mean")
