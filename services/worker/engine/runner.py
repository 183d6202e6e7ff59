"""`run_engine`: set up a run (every check before the first step), then step it.

Setup errors are agreed on collectively under MPI (every rank learns every rank's error), so a
bad partition or missing forcing on one rank stops all ranks with the same message instead of
leaving the others blocked in the exchange.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from .args import EngineArgs, parse_argv
from .comm import polite_barrier, world
from .domain import (
    assign_from_partitions,
    assign_serial,
    build_domain,
    check_remote_connections,
    load_partitions,
)
from .errors import ConfigError, EngineError
from .exchange import MpiExchange, NullExchange
from .forcing import load_forcing
from .loop import step_loop
from .models import FormulationGroup, build_groups
from .partition_check import validate_partition_file
from .progress import Progress, ProgressCallback
from .realization import HydrofabricParam, Realization, load_realization, resolve


@dataclass
class EngineResult:
    steps: int
    catchments: int  # simulated across all ranks
    local_catchments: int
    rank: int
    size: int
    output_root: str
    timings: dict[str, float] = field(default_factory=dict)  # this rank: setup, run, total (s)
    rank_timings: list[dict[str, float]] | None = None  # rank 0 only: every rank's timings


@dataclass
class _Run:
    args: EngineArgs
    realization: Realization
    network: object
    domain: object
    groups: list[FormulationGroup]
    forcing: dict[str, np.ndarray]
    area_m2: np.ndarray
    output_root: str
    ids: list[str] = field(default_factory=list)  # local catchment ids
    needs: list[tuple[str, ...]] = field(default_factory=list)  # forcing variables per local catchment
    specs: list = field(default_factory=list)  # ForcingSpec per local catchment


def _hydrofabric_columns(real: Realization) -> list[str]:
    specs = [real.global_formulation, *real.catchment_formulations.values()]
    cols = {v.column for s in specs if s for m in s.modules for v in m.model_params.values()
            if isinstance(v, HydrofabricParam)}
    return sorted(cols)


def _load_network(args: EngineArgs, real: Realization, cwd: str):
    # read_topology + build_network rather than load_network: the engine has no use for the
    # content hash, and every rank would read the whole file again just to compute it
    from dmod.services.hydrofabric import build_network, read_topology

    cat_path, nex_path = resolve(args.catchment_path, cwd), resolve(args.nexus_path, cwd)
    for p, what in ((cat_path, "catchment data"), (nex_path, "nexus data")):
        if not os.path.exists(p):
            raise ConfigError(f"{what} file {p} does not exist", field="command line")
    try:
        return build_network(read_topology(cat_path, nex_path, _hydrofabric_columns(real)), "")
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read hydrofabric: {exc}", field=cat_path) from None


def _setup(args: EngineArgs, cwd: str, rank: int, size: int, tag_ub: int, network, batch: bool) -> _Run:
    real = load_realization(resolve(args.realization_path, cwd))
    if network is None:
        network = _load_network(args, real, cwd)
    if args.partition_path:
        path = resolve(args.partition_path, cwd)
        parts = load_partitions(path)
        validate_partition_file(network, path, {"partitions": parts}, size)
        rank_of, sentinel = assign_from_partitions(network, parts, size)
    elif size > 1:
        raise ConfigError(f"{size} MPI ranks need a partition file (6th argument)", field="command line")
    else:
        parts, rank_of, sentinel = None, assign_serial(network, args.cat_subset), {}
    dom = build_domain(network, rank, size, rank_of, sentinel, args.nex_subset, tag_ub)
    if parts is not None:
        check_remote_connections(network, dom, parts[rank])
    ids = [str(c) for c in network.catchment_ids[dom.local_cats].tolist()]
    area = np.asarray(network.area_sqkm, dtype=np.float64)[dom.local_cats]
    bad = np.flatnonzero(~(area > 0) | ~np.isfinite(area))
    if bad.size:
        raise ConfigError(f"area_sqkm is missing or not positive ({area[bad[0]]})", catchment=ids[bad[0]],
                          field="hydrofabric areasqkm")
    groups = build_groups(ids, dom.local_cats, real, network.attributes, cwd, real.time.interval, batch)
    needs: list[tuple[str, ...]] = [()] * len(ids)
    for g in groups:
        need = g.forcing_needs()
        for j in g.members.tolist():
            needs[j] = need
    specs = [real.forcing_for(cid) if needs[j] else None for j, cid in enumerate(ids)]
    return _Run(args=args, realization=real, network=network, domain=dom, groups=groups, forcing={},
                area_m2=area * 1.0e6, output_root=resolve(real.output.root, cwd), ids=ids, needs=needs,
                specs=specs)


@contextmanager
def _agreed(comm):
    """Run a setup phase; then every rank learns whether any rank failed it."""
    error = None
    try:
        yield
    except EngineError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - a bug or model failure must still reach the agreement
        error = EngineError(f"setup failed: {type(exc).__name__}: {exc}")
    _agree(comm, error)


def _agree(comm, error: EngineError | None) -> None:
    """Raise the same error on every rank if any rank failed setup."""
    if comm is None:
        if error is not None:
            raise error
        return
    polite_barrier(comm)  # ranks finish setup phases at different times
    errors = comm.allgather(None if error is None else (error.exit_code, str(error)))
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if not failed:
        return
    first_rank: dict[str, int] = {}
    for r, (_, msg) in failed:
        first_rank.setdefault(msg, r)
    if len(first_rank) == 1:
        text = next(iter(first_rank))
    else:
        text = "; ".join(f"rank {r}: {msg}" for msg, r in first_rank.items())
    if all(code == ConfigError.exit_code for _, (code, _) in failed):
        raise ConfigError(text)
    raise EngineError(text)


def run_engine(argv: Sequence[str] | EngineArgs, progress_callback: ProgressCallback | None = None, *,
               cwd: str | None = None, network=None, batch: bool | None = None,
               stdout: TextIO | None = None) -> EngineResult:
    """Run the engine in this process (one MPI rank when started under mpiexec).

    argv: ngen's positional arguments (without the program name) or parsed `EngineArgs`.
    progress_callback(done, total) is called at the cadence of the progress lines (rank 0).
    network: an already loaded hydrofabric `Network` (skips reading the files).
    batch: vectorise models that support it (default on; DMOD_ENGINE_BATCH=0 turns it off).
    Raises ConfigError (exit code 2) for bad inputs, EngineError (exit code 1) for run failures.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    cwd = os.path.abspath(cwd or os.getcwd())
    if batch is None:
        batch = os.environ.get("DMOD_ENGINE_BATCH", "1") != "0"
    args = argv if isinstance(argv, EngineArgs) else parse_argv(list(argv))
    comm, rank, size, tag_ub = world(args.partition_path is not None)
    run = None
    with _agreed(comm):
        run = _setup(args, cwd, rank, size, tag_ub, network, batch)
        run.forcing = load_forcing(run.ids, run.specs, run.needs, run.realization.time, cwd)
    out = stdout or sys.stdout
    if rank == 0:
        for w in run.realization.warnings:
            print(f"WARNING: {w}", file=sys.stderr, flush=True)
    try:
        os.makedirs(run.output_root, exist_ok=True)
    except OSError as exc:  # every rank sees the same path: all fail alike, none waits
        raise ConfigError(f"cannot create output root {run.output_root}: {exc.strerror}", field="output.root") from None
    t_setup, c_setup = time.perf_counter(), time.process_time()
    exchange = MpiExchange(comm, run.domain, run.realization.time.n_steps) if size > 1 else NullExchange()
    progress = Progress(run.realization.time.n_steps, enabled=rank == 0, stream=out,
                        callback=progress_callback if rank == 0 else None)
    try:
        spent = step_loop(run, exchange, progress, comm)
        exchange.close()
        for g in run.groups:
            g.finalize()
    except Exception as exc:
        if comm is not None and size > 1:
            print(f"ERROR rank {rank}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            comm.Abort(1)
        if isinstance(exc, EngineError):
            raise
        raise EngineError(f"run failed: {type(exc).__name__}: {exc}") from exc
    progress.finished()
    t_end, c_end = time.perf_counter(), time.process_time()
    # wall seconds per phase, plus this process' CPU seconds (robust on a busy machine)
    timings = {"setup": t_setup - t0, "run": t_end - t_setup, "total": t_end - t0, **spent,
               "cpu_setup": c_setup - c0, "cpu_run": c_end - c_setup, "cpu_total": c_end - c0}
    simulated = int((run.domain.rank_of >= 0).sum())
    result = EngineResult(steps=run.realization.time.n_steps, catchments=simulated,
                          local_catchments=len(run.domain.local_cats), rank=rank, size=size,
                          output_root=run.output_root, timings=timings)
    if comm is not None:
        polite_barrier(comm)
        gathered = comm.gather(timings, root=0)
        result.rank_timings = gathered if rank == 0 else None
    else:
        result.rank_timings = [timings]
    return result
