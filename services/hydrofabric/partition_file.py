"""Turn a catchment → rank assignment into ngen's partition JSON, and measure it.

Connections follow ngen's semantics: a boundary nexus is simulated by the rank owning its
downstream catchment (or terminal sentinel); every remote contributor gets a receive entry
(`orig_cat-to-nex`) there, and each contributing rank one send entry (`nex-to-dest_cat`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import unique
from .ids import TERMINAL_SENTINEL
from .network import Network

SEND = "nex-to-dest_cat"
RECV = "orig_cat-to-nex"


@dataclass
class Assignment:
    part: np.ndarray  # rank of each catchment
    n_parts: int
    sentinel_rank: np.ndarray  # per nexus: rank holding its terminal sentinel, -1 none
    sequence: np.ndarray | None = None  # optional cat-ids order: c ≥ 0 catchment, -(j+1) sentinel of nexus j


def sentinel_id(nexus_id: str) -> str:
    return f"{TERMINAL_SENTINEL}{nexus_id}"


def place_sentinels(net: Network, part: np.ndarray, mode: str = "needed") -> np.ndarray:
    """Sentinel rank per terminal nexus: "all" gives every terminal nexus with contributors a
    sentinel (ngen's generator does), "needed" only those fed from several ranks. The
    sentinel goes to the rank with most contributors (lowest rank on ties)."""
    sr = np.full(net.n_nexuses, -1, dtype=np.int64)
    c = np.flatnonzero(net.cat_to_nex >= 0)
    j = net.cat_to_nex[c]
    term = net.nex_to_cat[j] < 0
    c, j = c[term], j[term]
    if not len(c):
        return sr
    r = part[c]
    n_parts = int(part.max()) + 1
    key = j * n_parts + r
    uk, cnt = np.unique(key, return_counts=True)
    uj, ur = uk // n_parts, uk % n_parts
    # per nexus: rank with the max count (sort by nexus, then count desc, then rank asc)
    o = np.lexsort((ur, -cnt, uj))
    uj, ur = uj[o], ur[o]
    first = np.r_[True, uj[1:] != uj[:-1]]
    ranks_per_nex = np.bincount(uj, minlength=net.n_nexuses)
    chosen_j, chosen_r = uj[first], ur[first]
    if mode == "all":
        keep = np.ones(len(chosen_j), dtype=bool)
    elif mode == "needed":
        keep = ranks_per_nex[chosen_j] > 1
    else:
        raise ValueError(f"sentinel mode must be 'all' or 'needed', not {mode!r}")
    sr[chosen_j[keep]] = chosen_r[keep]
    return sr


def ngen_hang_hazards(net: Network, part: np.ndarray, sentinel_rank: np.ndarray) -> np.ndarray:
    """Nexuses ngen (NOAA-OWP/ngen 0.3.0, dd04bbcc) hangs on: the rank owning the nexus (its
    downstream catchment, or its terminal sentinel) holds two or more of its contributing
    catchments while at least one contributor is on another rank. Measured with the real
    binary (tests/ngen/test_ngen_hang.py has the table): a receiving nexus re-posts its MPI
    receive on every local contribution, so with m local contributors the rank consumes m
    messages per time step and stops at 1/m of the steps; with 0 or 1 local contributor, or
    any number on the sending side, runs are byte-identical to serial.

    `part` may hold -1 (catchment in no partition); such catchments are ignored."""
    nx = net.n_nexuses
    c = np.flatnonzero(net.cat_to_nex >= 0)
    j = net.cat_to_nex[c]
    d = net.nex_to_cat[j]
    rc = part[c]
    owner = np.where(d >= 0, part[np.maximum(d, 0)], sentinel_rank[j])
    ok = (owner >= 0) & (rc >= 0)
    local = np.bincount(j[ok & (rc == owner)], minlength=nx)
    remote = np.bincount(j[ok & (rc != owner)], minlength=nx)
    return np.flatnonzero((local >= 2) & (remote >= 1))


def _edges(net: Network, a: Assignment):
    """Contribution edges (catchment c → nexus j) with the contributor's and the nexus owner's
    rank; owner = rank of the downstream catchment or sentinel, -1 for an unowned terminal."""
    c = np.flatnonzero(net.cat_to_nex >= 0)
    j = net.cat_to_nex[c]
    d = net.nex_to_cat[j]
    owner = np.where(d >= 0, a.part[np.maximum(d, 0)], a.sentinel_rank[j])
    return c, j, d, a.part[c], owner


def build_document(net: Network, a: Assignment) -> dict:
    """The partition file as a dict (`{"partitions": [...]}`)."""
    cat_ids, nex_ids = net.catchment_ids, net.nexus_ids
    n_parts, nx = a.n_parts, net.n_nexuses
    c, j, d, rc, owner = _edges(net, a)

    # cat-ids per rank
    if a.sequence is not None:
        seq = a.sequence
        seq_rank = np.where(seq >= 0, a.part[np.maximum(seq, 0)], a.sentinel_rank[np.maximum(-seq - 1, 0)])
    else:
        sj = np.flatnonzero(a.sentinel_rank >= 0)
        seq = np.concatenate([-(sj + 1), np.arange(net.n_catchments)])
        seq_rank = np.concatenate([a.sentinel_rank[sj], a.part])
    o = np.argsort(seq_rank, kind="stable")
    seq, seq_rank = seq[o], seq_rank[o]
    cat_bounds = np.searchsorted(seq_rank, np.arange(n_parts + 1))

    # nex-ids per rank: downstream nexus of each catchment, upstream nexuses, sentinel nexuses
    down_j = np.flatnonzero(net.nex_to_cat >= 0)
    sj = np.flatnonzero(a.sentinel_rank >= 0)
    keys = unique(np.concatenate([rc * nx + j, a.part[net.nex_to_cat[down_j]] * nx + down_j,
                                     a.sentinel_rank[sj] * nx + sj]))
    nex_rank, nex_j = keys // nx, keys % nx
    nex_bounds = np.searchsorted(nex_rank, np.arange(n_parts + 1))

    # remote connections
    remote = (owner >= 0) & (owner != rc)
    rc_, own_, j_, d_, c_ = rc[remote], owner[remote], j[remote], d[remote], c[remote]
    dest = [cat_ids[x] if x >= 0 else sentinel_id(nex_ids[y]) for x, y in zip(d_.tolist(), j_.tolist())]
    per_rank: list[list[tuple]] = [[] for _ in range(n_parts)]
    sent = set()
    for r, s, jj, dst, cc in zip(rc_.tolist(), own_.tolist(), j_.tolist(), dest, c_.tolist()):
        if (r, jj) not in sent:  # one send entry per (rank, nexus)
            sent.add((r, jj))
            per_rank[r].append((jj, 0, s, dst, SEND))
        per_rank[s].append((jj, 1, r, cat_ids[cc], RECV))

    names = np.empty(len(seq), dtype=object)
    is_cat = seq >= 0
    names[is_cat] = cat_ids[seq[is_cat]]
    names[~is_cat] = [sentinel_id(nex_ids[-x - 1]) for x in seq[~is_cat].tolist()]
    parts = []
    for r in range(n_parts):
        ids = names[cat_bounds[r]:cat_bounds[r + 1]].tolist()
        nj = nex_j[nex_bounds[r]:nex_bounds[r + 1]]
        conns = [{"mpi-rank": s, "nex-id": nex_ids[jj], "cat-id": cid, "cat-direction": dirn}
                 for jj, _k, s, cid, dirn in sorted(per_rank[r], key=lambda t: (t[0], t[1], t[2], t[3]))]
        parts.append({"id": r, "cat-ids": ids, "nex-ids": nex_ids[nj].tolist(), "remote-connections": conns})
    return {"partitions": parts}


def partition_stats(net: Network, a: Assignment, weights: np.ndarray | None = None) -> dict:
    """Part sizes, imbalance (max/mean load), cut nexuses, remote connections, sentinels."""
    n_parts = a.n_parts
    sizes = np.bincount(a.part, minlength=n_parts)
    load = np.bincount(a.part, weights=weights, minlength=n_parts) if weights is not None else sizes.astype(float)
    _c, j, d, rc, owner = _edges(net, a)
    remote = (owner >= 0) & (owner != rc)
    cut = unique(j[remote])
    send = len(unique(rc[remote] * net.n_nexuses + j[remote]))
    # terminal nexuses fed from several ranks with no sentinel would give partial sums
    t = (d < 0) & (a.sentinel_rank[j] < 0)
    tk = unique(j[t] * n_parts + rc[t])
    unsent = int((np.bincount(tk // n_parts, minlength=net.n_nexuses) > 1).sum())
    mean = load.mean() if n_parts else 0.0
    down = net.tour.down
    same = (down >= 0) & (a.part == a.part[np.maximum(down, 0)])
    n_pieces = int(net.n_catchments - same.sum())  # connected pieces of the per-rank forests
    return {
        "parts": n_parts,
        "catchments": int(net.n_catchments),
        "part_sizes": {"min": int(sizes.min()), "max": int(sizes.max()), "mean": float(sizes.mean())},
        "imbalance": float(load.max() / mean) if mean > 0 else float("inf"),
        "empty_parts": int((sizes == 0).sum()),
        "cut_nexuses": len(cut),
        "remote_connections": int(remote.sum() + send),
        "sentinels": int((a.sentinel_rank >= 0).sum()),
        "pieces": n_pieces,
        "terminal_partial_sums": unsent,
        "ngen_hang_hazards": int(len(ngen_hang_hazards(net, a.part, a.sentinel_rank))),
    }
