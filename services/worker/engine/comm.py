"""The MPI world, only when there is one.

mpi4py is imported (which initialises MPI) only under an MPI launcher or when a partition file
is given, so a serial in-process run (e.g. from the worker agent) never initialises MPI.
"""
from __future__ import annotations

import os
import time

_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


def under_mpi_launcher() -> bool:
    return any(v in os.environ for v in _LAUNCHER_VARS)


def world(partitioned: bool):
    """(comm or None, rank, size, max tag)."""
    if not (under_mpi_launcher() or partitioned):
        return None, 0, 1, 2**31 - 1
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    tag_ub = comm.Get_attr(MPI.TAG_UB) or 32767
    if comm.size == 1:
        return None, 0, 1, int(tag_ub)
    return comm, comm.rank, comm.size, int(tag_ub)


#: failed polls before a waiting rank starts sleeping between polls
SPINS = 200
NAP = 0.0002


def wait_all(requests) -> None:
    """Like MPI Waitall, but a rank that has to wait yields its core after a short spin: MPICH
    busy-polls, and on a full (or oversubscribed) node a spinning rank takes the CPU from the
    very rank it is waiting for."""
    from mpi4py import MPI

    spins = 0
    while not MPI.Request.Testall(requests):
        spins += 1
        if spins > SPINS:
            time.sleep(NAP)


def polite_barrier(comm) -> None:
    """Barrier that naps while waiting (see wait_all); used before blocking object collectives
    that ranks may reach at different times."""
    wait_all([comm.Ibarrier()])
