"""Upstream/downstream closures of catchment, nexus, waterbody or gage ids.

Upstream uses the cached Euler tour (each closure is one slice), downstream walks the
single downstream path. Seeds:
  cat-N / agg-N   the catchment itself
  wb-N            catchment cat-N
  nexus id        upstream: every catchment draining into it; downstream: its downstream catchment
  gage id         its nexus from the crosswalk (hydrolocations / rl_gages), then as a nexus
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .arrays import unique

from .ids import split_id
from .network import Network


@dataclass
class Seeds:
    up: np.ndarray  # catchments whose upstream closure is wanted
    down: np.ndarray  # catchments whose downstream path is wanted
    nexuses: list[int] = field(default_factory=list)  # nexus seeds (kept even if terminal)
    unknown: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # id → catchment|waterbody|nexus|gage


def _gage_key(s: str) -> str:
    # accept "Gages-01234567" / "usgs-01234567" as well as the bare gage number
    low = s.lower()
    for p in ("gages-", "usgs-", "gage-"):
        if low.startswith(p):
            return s[len(p):]
    return s


def resolve_seeds(net: Network, ids: Iterable[str], crosswalk: Mapping[str, str] | None = None) -> Seeds:
    cidx, nidx = net.catchment_index, net.nexus_index
    up_parts: list[np.ndarray] = []
    down: list[int] = []
    nex_seeds: list[int] = []
    unknown: list[str] = []
    kinds: dict[str, str] = {}
    indptr, cats = net.nexus_upstream

    def as_nexus(j: int) -> None:
        nex_seeds.append(j)
        up_parts.append(cats[indptr[j]:indptr[j + 1]])
        d = int(net.nex_to_cat[j])
        if d >= 0:
            down.append(d)

    for raw in ids:
        s = str(raw).strip()
        if s in cidx:
            kinds[s] = "catchment"
            up_parts.append(np.array([cidx[s]]))
            down.append(cidx[s])
            continue
        if s in nidx:
            kinds[s] = "nexus"
            as_nexus(nidx[s])
            continue
        p = split_id(s)
        if p and p[0] == "wb" and f"cat-{p[1]}" in cidx:
            kinds[s] = "waterbody"
            i = cidx[f"cat-{p[1]}"]
            up_parts.append(np.array([i]))
            down.append(i)
            continue
        if crosswalk:
            g = s if s in crosswalk else _gage_key(s)
            nex = crosswalk.get(g)
            if nex is not None and nex in nidx:
                kinds[s] = "gage"
                as_nexus(nidx[nex])
                continue
        unknown.append(s)
    up = unique(np.concatenate(up_parts)) if up_parts else np.empty(0, dtype=np.int64)
    return Seeds(up=up.astype(np.int64), down=unique(np.asarray(down, dtype=np.int64)),
                 nexuses=nex_seeds, unknown=unknown, kinds=kinds)


def validate_ids(net: Network, ids: Iterable[str], crosswalk: Mapping[str, str] | None = None) -> list[str]:
    """The ids that name no catchment, waterbody, nexus or (with a crosswalk) gage."""
    return resolve_seeds(net, ids, crosswalk).unknown


def upstream_closure(net: Network, seeds: np.ndarray, depth: int | None = None) -> np.ndarray:
    """Catchment indices upstream of (and including) each seed; `depth` limits the hops."""
    seeds = np.asarray(seeds, dtype=np.int64)
    if len(seeds) == 0:
        return seeds
    t = net.tour
    n = net.n_catchments
    # union of tour slices via a difference array over tour positions
    diff = np.zeros(n + 1, dtype=np.int32)
    np.add.at(diff, t.tin[seeds], 1)
    np.add.at(diff, t.tin[seeds] + t.size[seeds], -1)
    if len(seeds) == 1:
        s = int(seeds[0])
        res = t.upstream_slice(s)
        if depth is not None:
            res = res[t.depth[res] - t.depth[s] <= depth]
        return np.sort(res)
    covered = np.cumsum(diff[:-1]) > 0
    res = t.order[covered]
    if depth is not None:
        # distance to the nearest seed at or below each node: walk down ≤ depth hops
        ok = np.zeros(len(res), dtype=bool)
        is_seed = np.zeros(n, dtype=bool)
        is_seed[seeds] = True
        cur = res.copy()
        for _ in range(depth + 1):
            live = cur >= 0
            ok |= live & is_seed[np.where(live, cur, 0)]
            cur = np.where(live, t.down[np.where(live, cur, 0)], -1)
        res = res[ok]
    return np.sort(res)


def downstream_closure(net: Network, seeds: np.ndarray, depth: int | None = None) -> np.ndarray:
    """Catchments on the downstream paths from each seed (seeds included) to their outlets."""
    down = net.tour.down
    seen = np.zeros(net.n_catchments, dtype=bool)
    frontier = unique(np.asarray(seeds, dtype=np.int64))
    hops = 0
    while len(frontier):
        seen[frontier] = True
        if depth is not None and hops >= depth:
            break
        nxt = down[frontier]
        nxt = unique(nxt[nxt >= 0])
        frontier = nxt[~seen[nxt]]
        hops += 1
    return np.flatnonzero(seen)


@dataclass
class Subset:
    catchments: np.ndarray  # catchment indices, ascending
    nexuses: np.ndarray  # nexus indices, ascending: every included catchment's downstream nexus
    unknown: list[str]
    kinds: dict[str, str]

    def catchment_ids(self, net: Network) -> list[str]:
        return net.catchment_ids[self.catchments].tolist()

    def nexus_ids(self, net: Network) -> list[str]:
        return net.nexus_ids[self.nexuses].tolist()


def subset_network(net: Network, ids: Iterable[str], upstream: bool = True, downstream: bool = False,
                   depth: int | None = None, crosswalk: Mapping[str, str] | None = None,
                   strict: bool = True) -> Subset:
    """Closure of `ids`. strict: unknown ids raise KeyError (listing them all)."""
    if not upstream and not downstream:
        raise ValueError("choose upstream and/or downstream")
    if depth is not None and depth < 0:
        raise ValueError("depth must be ≥ 0")
    seeds = resolve_seeds(net, ids, crosswalk)
    if strict and seeds.unknown:
        raise KeyError("unknown id(s): " + ", ".join(seeds.unknown))
    parts = []
    if upstream:
        parts.append(upstream_closure(net, seeds.up, depth))
    if downstream:
        parts.append(downstream_closure(net, seeds.down, depth))
    cats = unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
    nex = net.cat_to_nex[cats]
    nexs = unique(np.concatenate([nex[nex >= 0], np.asarray(seeds.nexuses, dtype=np.int64)]))
    return Subset(catchments=cats, nexuses=nexs, unknown=seeds.unknown, kinds=seeds.kinds)
