"""The time loop: advance every model each step, exchange boundary contributions, and write
ngen's output files a block of steps at a time (one file open per block, not per step)."""
from __future__ import annotations

import os
import time

import numpy as np

from .models import FormulationGroup
from .nexus import nexus_flows
from .outputs import catchment_writer, nexus_writer
from .precreate import StaggeredCreator
from .precreate import worthwhile as precreate_worthwhile
from .progress import Progress

#: bytes of output rows buffered per rank before they are written
BLOCK_BUDGET = 768 * 2**20


def _block_steps(n_local: int, groups: list[FormulationGroup], n_out: int, total: int) -> int:
    forced = os.environ.get("DMOD_ENGINE_BLOCK_STEPS")
    if forced:
        return max(1, min(total, int(forced)))
    per_step = 8 * (2 * n_local + sum(g.m * len(g.record) for g in groups) + 3 * n_out)
    return max(1, min(total, BLOCK_BUDGET // max(per_step, 1)))


def _advance_models(run, k: int, records: list[np.ndarray], main: np.ndarray) -> None:
    """Step k of every formulation group: fill each group's output record row (when catchment
    output is on) and the main output of every local catchment."""
    for gi, g in enumerate(run.groups):
        g.advance(k, run.forcing, run.realization.time.interval)
        cache: dict[tuple[int, str], np.ndarray] = {}
        for r, slot in enumerate(g.record if records else ()):
            cache[slot] = cache[slot] if slot in cache else g.values(slot)
            records[gi][:, r] = cache[slot]
        main[g.members] = cache[g.main] if g.main in cache else g.values(g.main)


def step_loop(run, exchange, progress: Progress, comm=None) -> dict[str, float]:
    """Advance every step; returns seconds spent in models, exchange/nexus sums and writing."""
    grid = run.realization.time
    total, dom = grid.n_steps, run.domain
    labels = grid.labels()
    n_local = len(dom.local_cats)
    write_cats = run.realization.output.catchment_enabled
    cat_writers = [catchment_writer(run.output_root, g.ids, g.headers) for g in run.groups] if write_cats else []
    nex_ids = [str(n) for n in run.network.nexus_ids[dom.out_nexus].tolist()]
    nex_out = nexus_writer(run.output_root, nex_ids)
    block = _block_steps(n_local, run.groups, len(nex_ids), total)
    contrib = np.empty((block, n_local))
    main = np.empty(n_local)
    recv_offsets = getattr(exchange, "recv_offsets", np.zeros(1, np.int64))
    # step-major buffers: each step writes one contiguous row
    rec_blocks = [np.empty((block, g.m, len(g.record))) for g in run.groups] if write_cats else []
    writers = [*cat_writers, nex_out]
    staggered = comm is not None and comm.size > 1 and precreate_worthwhile(run.output_root)
    creator = StaggeredCreator(comm, writers, total) if staggered else None
    spent = {"models": 0.0, "exchange": 0.0, "write": 0.0}
    creating = 0.0  # file creation turns inside the loop count as writing
    clock = time.perf_counter
    for k0 in range(0, total, block):
        steps = range(k0, min(total, k0 + block))
        t0 = clock()
        for kb, k in enumerate(steps):
            progress.step(k)
            _advance_models(run, k, [b[kb] for b in rec_blocks], main)
            # m/h over the catchment area → m³/s; the same expression on every rank
            contrib[kb] = main * run.area_m2 / 3600.0
            exchange.post(k, contrib[kb])
            if creator is not None:
                tc = clock()
                creator.step()
                creating += clock() - tc
        t1 = clock()
        exchange.complete_through(steps[-1])
        n = len(steps)
        received = getattr(exchange, "received", None)
        received = received[k0: k0 + n] if received is not None else np.zeros((n, 0))
        flows = nexus_flows(dom, contrib[:n], received, recv_offsets)
        t2 = clock()
        if creator is not None:
            creator.finish()
            creator = None
        for gi, w in enumerate(cat_writers):
            w.write_block(steps, labels, rec_blocks[gi][:n].transpose(1, 0, 2))
        nex_out.write_block(steps, labels, flows.T[:, :, None])
        t3 = clock()
        spent["models"] += t1 - t0 - creating
        spent["exchange"] += t2 - t1
        spent["write"] += t3 - t2 + creating
        creating = 0.0
    return spent
