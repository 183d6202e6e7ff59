"""Partitioning methods (catchment → rank) and the public `partition()` entry point.

DFS_CHUNK   ngen partitionGenerator style: depth-first order from the outlets, a sentinel
            before each terminal nexus' basins, cut into N equal contiguous chunks.
LOCAL_ONLY  whole basins (everything draining to one terminal nexus) packed into N parts,
            so no rank ever talks to another.
METIS       k-way METIS on the catchment graph with vertex weights (cost per catchment),
            ufactor for ≤ 3 % imbalance, best of a few seeds, then a tree-aware refinement
            that moves whole connected pieces between ranks to remove cut nexuses.

Every method's result then goes through `hang_repair.repair_hang_hazards` (unless
`repair=False`): ngen hangs when the rank owning a boundary nexus also holds two or more of
its contributors (see `partition_file.ngen_hang_hazards`), so by default no DMOD partition
has that pattern. `repair=False` keeps the raw result (DFS_CHUNK then matches ngen's own
partitionGenerator, hazards included; `stats["ngen_hang_hazards"]` counts them).
"""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

import numpy as np

from .network import Network
from .partition_file import Assignment, build_document, partition_stats, place_sentinels

METHODS = ("DFS_CHUNK", "LOCAL_ONLY", "METIS")


@dataclass
class PartitionResult:
    method: str
    assignment: Assignment
    document: dict  # the ngen partition file
    stats: dict


# ---- DFS_CHUNK ----------------------------------------------------------------------------

def dfs_sequence(net: Network) -> np.ndarray:
    """Catchments in depth-first order from the outlets, each terminal nexus' sentinel
    (-(j+1)) placed before the basins draining to it; basins with no nexus come last."""
    t = net.tour
    roots = t.order[t.depth[t.order] == 0]  # outlet catchments in tour order
    j = net.cat_to_nex[roots]
    j = np.where(j >= 0, j, -1)
    term = (j >= 0) & (net.nex_to_cat[np.maximum(j, 0)] < 0)
    # group roots by terminal nexus (in nexus order); non-terminal/unknown last
    key = np.where(term, j, net.n_nexuses)
    o = np.argsort(key, kind="stable")
    roots, key = roots[o], key[o]
    pieces = []
    prev = -2
    for r, k in zip(roots.tolist(), key.tolist()):
        if k != prev and k < net.n_nexuses:
            pieces.append(np.array([-(k + 1)]))
        prev = k
        pieces.append(t.upstream_slice(r))
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)


def dfs_chunk(net: Network, n_parts: int) -> Assignment:
    seq = dfs_sequence(net)
    L = len(seq)
    if n_parts > L:
        raise ValueError(f"cannot cut {L} items (catchments + sentinels) into {n_parts} parts")
    # chunk k gets floor(L/N) items, the first L % N chunks one more
    base, extra = divmod(L, n_parts)
    sizes = np.full(n_parts, base, dtype=np.int64)
    sizes[:extra] += 1
    rank = np.repeat(np.arange(n_parts), sizes)
    part = np.empty(net.n_catchments, dtype=np.int64)
    is_cat = seq >= 0
    part[seq[is_cat]] = rank[is_cat]
    sr = np.full(net.n_nexuses, -1, dtype=np.int64)
    sr[-seq[~is_cat] - 1] = rank[~is_cat]
    return Assignment(part=part, n_parts=n_parts, sentinel_rank=sr, sequence=seq)


# ---- LOCAL_ONLY ---------------------------------------------------------------------------

def basin_labels(net: Network) -> np.ndarray:
    """Per catchment: a label shared by everything draining to the same terminal nexus (or
    the same outlet catchment when the outlet has no nexus)."""
    t = net.tour
    root_of = np.empty(net.n_catchments, dtype=np.int64)
    roots = np.flatnonzero(t.down < 0)
    # each root's tour slice is its whole basin
    lab = np.repeat(roots, t.size[roots])
    root_of[t.order[np.concatenate([np.arange(t.tin[r], t.tin[r] + t.size[r]) for r in roots])
                    if len(roots) else np.empty(0, dtype=np.int64)]] = lab
    j = net.cat_to_nex[roots]
    # roots sharing a terminal nexus share a label: the nexus index offset past catchments
    root_label = np.where(j >= 0, net.n_catchments + j, roots)
    label_of_root = np.empty(net.n_catchments, dtype=np.int64)
    label_of_root[roots] = root_label
    return label_of_root[root_of]


def local_only(net: Network, n_parts: int, weights: np.ndarray | None = None) -> Assignment:
    labels = basin_labels(net)
    ul, inv = np.unique(labels, return_inverse=True)
    if len(ul) < n_parts:
        raise ValueError(f"LOCAL_ONLY: only {len(ul)} independent basin(s) for {n_parts} parts; "
                         "use fewer parts or another method")
    w = np.bincount(inv, weights=weights, minlength=len(ul)) if weights is not None else np.bincount(inv).astype(float)
    # longest-processing-time greedy: biggest basin to the least-loaded part
    heap = [(0.0, r) for r in range(n_parts)]
    basin_part = np.empty(len(ul), dtype=np.int64)
    for b in np.argsort(-w, kind="stable").tolist():
        load, r = heapq.heappop(heap)
        basin_part[b] = r
        heapq.heappush(heap, (load + w[b], r))
    part = basin_part[inv]
    return Assignment(part=part, n_parts=n_parts, sentinel_rank=place_sentinels(net, part, "needed"))


# ---- METIS --------------------------------------------------------------------------------

def catchment_graph(net: Network) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected CSR graph for METIS: an edge per catchment → downstream catchment
    (weight 4), plus cheap edges (weight 1) chaining outlets so the graph is connected
    (METIS' contiguity needs that) and outlets sharing a terminal nexus stay together."""
    down = net.tour.down
    n = len(down)
    c = np.flatnonzero(down >= 0)
    u, v, w = [c], [down[c]], [np.full(len(c), 4, dtype=np.int64)]
    roots = np.flatnonzero(down < 0)
    if len(roots) > 1:
        j = net.cat_to_nex[roots]
        o = np.lexsort((roots, np.where(j >= 0, j, n + roots)))  # outlets of one nexus adjacent
        r = roots[o]
        u.append(r[:-1]); v.append(r[1:]); w.append(np.ones(len(r) - 1, dtype=np.int64))
    u, v, w = np.concatenate(u), np.concatenate(v), np.concatenate(w)
    src = np.concatenate([u, v]); dst = np.concatenate([v, u]); ww = np.concatenate([w, w])
    o = np.argsort(src, kind="stable")
    xadj = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=xadj[1:])
    return xadj, dst[o], ww[o]


def metis(net: Network, n_parts: int, weights: np.ndarray | None = None, max_imbalance: float = 1.03,
          contiguous: bool = False, seed: int = 0, tries: int = 3, refine: bool = True,
          ufactor: int | None = None, niter: int = 10) -> Assignment:
    """METIS k-way (best of `tries` seeds) followed by the tree-aware refinement.

    ufactor defaults to (max_imbalance - 1) × 1000. `contiguous=True` sets METIS' contig
    option; on forests of many basins METIS then trades balance for contiguity (measured
    imbalance 2–3.5 on 830k catchments), so it is off by default — parts are unions of a
    few connected pieces, reported as `pieces` in the stats."""
    import pymetis

    from .refine import refine_partition

    if n_parts > net.n_catchments:
        raise ValueError(f"cannot split {net.n_catchments} catchments into {n_parts} parts")
    if n_parts == 1:
        part = np.zeros(net.n_catchments, dtype=np.int64)
        return Assignment(part=part, n_parts=1, sentinel_rank=place_sentinels(net, part, "needed"))
    xadj, adjncy, ew = catchment_graph(net)
    vw = None
    if weights is not None:
        # METIS wants positive integers: scale costs to ~1000 per mean catchment
        w = np.asarray(weights, dtype=np.float64)
        vw = np.maximum(1, np.round(w / max(w.mean(), 1e-12) * 1000)).astype(np.int64)
    down = net.tour.down
    best, best_cut = None, None
    for t in range(max(1, tries)):
        opts = pymetis.Options()
        opts.ufactor = round((max_imbalance - 1.0) * 1000) if ufactor is None else ufactor
        opts.seed = seed + t
        opts.niter = niter
        opts.contig = 1 if contiguous else 0
        if hasattr(pymetis, "CSRAdjacency"):  # pymetis ≥ 2025.2 deprecates xadj/adjncy
            _cut, memb = pymetis.part_graph(n_parts, pymetis.CSRAdjacency(xadj, adjncy), vweights=vw,
                                            eweights=ew, options=opts)
        else:
            _cut, memb = pymetis.part_graph(n_parts, xadj=xadj, adjncy=adjncy, vweights=vw, eweights=ew,
                                            options=opts)
        part = np.asarray(memb, dtype=np.int64)
        if refine:
            part = refine_partition(down, part, n_parts, weights, max_imbalance=max_imbalance)
        c = np.flatnonzero(down >= 0)
        cut = int((part[c] != part[down[c]]).sum())
        if best_cut is None or cut < best_cut:
            best, best_cut = part, cut
    return Assignment(part=best, n_parts=n_parts, sentinel_rank=place_sentinels(net, best, "needed"))


# ---- entry point --------------------------------------------------------------------------

def cost_weights(net: Network, cost: str | np.ndarray | None) -> np.ndarray | None:
    """Per-catchment cost: None/"count" = 1 each, "area" = areasqkm, or an explicit array."""
    if cost is None or (isinstance(cost, str) and cost == "count"):
        return None
    if isinstance(cost, str):
        if cost == "area":
            a = np.nan_to_num(net.area_sqkm, nan=np.nanmean(net.area_sqkm))
            return np.maximum(a, 1e-6)
        raise ValueError(f"unknown cost {cost!r} (count, area or an array)")
    w = np.asarray(cost, dtype=np.float64)
    if w.shape != (net.n_catchments,) or (w <= 0).any():
        raise ValueError("cost array must hold one positive value per catchment")
    return w


def partition(net: Network, n_parts: int, method: str = "METIS", cost=None, repair: bool = True,
              **options) -> PartitionResult:
    """Partition `net` into `n_parts` ranks; returns the ngen partition document and stats.

    repair: remove ngen's hang pattern afterwards (stats `hang_*`); False keeps the method's
    raw assignment."""
    from .hang_repair import repair_hang_hazards

    method = method.upper()
    if n_parts < 1:
        raise ValueError("n_parts must be ≥ 1")
    weights = cost_weights(net, cost)
    t0 = time.perf_counter()
    if method == "DFS_CHUNK":
        a = dfs_chunk(net, n_parts)
    elif method == "LOCAL_ONLY":
        a = local_only(net, n_parts, weights)
    elif method == "METIS":
        a = metis(net, n_parts, weights, **options)
    else:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    repair_stats: dict = {}
    if repair and n_parts > 1:
        a, repair_stats = repair_hang_hazards(net, a, weights, max_imbalance=options.get("max_imbalance", 1.03))
    t1 = time.perf_counter()
    doc = build_document(net, a)
    stats = partition_stats(net, a, weights)
    stats.update(repair_stats)
    stats.update({"method": method, "partition_seconds": round(t1 - t0, 4),
                  "document_seconds": round(time.perf_counter() - t1, 4)})
    return PartitionResult(method=method, assignment=a, document=doc, stats=stats)
