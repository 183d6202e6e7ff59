"""Cooperative NetCDF forcing read for MPI runs.

When every rank takes all its forcing from the same NetCDF file, each rank decompresses only
an equal, contiguous slice of the file's catchment rows and one `Alltoallv` hands every rank the
rows it simulates (a partition's catchments are scattered over the file, so reading them
directly would make each rank decompress nearly the whole file). Errors found while planning
(missing ids, time coverage, variables) are agreed on before any collective, so a bad file
cannot leave ranks waiting; the rank with the problem reports it, the others return NaN
forcing and stop at the engine's setup agreement.
"""
from __future__ import annotations

import numpy as np

from .comm import polite_barrier
from .errors import ConfigError
from .forcing_netcdf import finish, open_forcing, plan_rows, read_netcdf_forcing, read_range
from .timegrid import TimeGrid


def read_netcdf_shared(comm, path: str, catchment_ids: list[str], variables: list[str],
                       grid: TimeGrid) -> dict[str, np.ndarray]:
    """Collective over `comm`: {var: (K, n_local) float64} like read_netcdf_forcing."""
    from mpi4py import MPI

    error, ds, rows, first = None, None, np.zeros(0, np.int64), np.zeros(0, np.int64)
    try:
        ds = open_forcing(path)
        rows, first = plan_rows(ds, path, catchment_ids, variables, grid)
    except ConfigError as exc:
        error = exc
    window = int(first[0]) if first.size and (first == first[0]).all() else (-1 if first.size else -2)
    n_file = len(ds.dimensions["catchment-id"]) if ds is not None and "catchment-id" in ds.dimensions else 0
    polite_barrier(comm)
    status = comm.allgather(None if error else (window, n_file))
    try:
        if any(s is None for s in status):
            if error is not None:
                raise error
            return {v: np.full((grid.n_steps, len(catchment_ids)), np.nan) for v in variables}
        windows = {w for w, _ in status if w != -2}  # -2: rank needs nothing
        if len(windows) != 1 or -1 in windows:  # per-row time windows: read independently
            ds.close()
            ds = None
            return read_netcdf_forcing(path, catchment_ids, variables, grid)
        return _exchange(comm, MPI, ds, path, catchment_ids, variables, grid, rows, windows.pop(), status[0][1])
    finally:
        if ds is not None:
            ds.close()


def _exchange(comm, MPI, ds, path, catchment_ids, variables, grid, rows, first, n_file) -> dict[str, np.ndarray]:
    rank, size, steps, nv = comm.rank, comm.size, grid.n_steps, len(variables)
    bounds = np.linspace(0, n_file, size + 1).astype(np.int64)
    lo, hi = int(bounds[rank]), int(bounds[rank + 1])
    needs = comm.allgather(rows)  # every rank's file rows, in its local order
    # my slice of the file, all variables: (rows, vars, steps)
    block = np.empty((hi - lo, nv, steps))
    for i, v in enumerate(variables):
        block[:, i, :] = read_range(ds.variables[v], lo, hi, first, steps)
    send_parts, send_counts = [], []
    for q in range(size):
        wanted = needs[q][(needs[q] >= lo) & (needs[q] < hi)]  # q's order
        send_parts.append(block[wanted - lo])
        send_counts.append(wanted.size * nv * steps)
    sendbuf = np.concatenate([p.reshape(-1) for p in send_parts]) if send_parts else np.zeros(0)
    owner = np.searchsorted(bounds, rows, side="right") - 1  # which rank reads each of my rows
    recv_counts = [int((owner == s).sum()) * nv * steps for s in range(size)]
    recvbuf = np.empty(sum(recv_counts))
    comm.Alltoallv([sendbuf, send_counts, _displs(send_counts), MPI.DOUBLE],
                   [recvbuf, recv_counts, _displs(recv_counts), MPI.DOUBLE])
    data = np.empty((len(rows), nv, steps))
    offset = 0
    for s in range(size):
        mine = np.flatnonzero(owner == s)  # my positions whose rows rank s read, in my order
        data[mine] = recvbuf[offset: offset + recv_counts[s]].reshape(mine.size, nv, steps)
        offset += recv_counts[s]
    return {v: finish(data[:, i, :], v, catchment_ids, grid, path) for i, v in enumerate(variables)}


def _displs(counts: list[int]) -> list[int]:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64).tolist() if counts else []
