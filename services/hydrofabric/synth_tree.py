"""Random dendritic river networks with realistic shape, for synthetic hydrofabrics.

Each basin is grown top-down by recursively splitting its catchment count among tributaries
so the smaller tributary has a heavy-tailed size, P(size ≥ s) ~ s^-1/2 — the split law of
random Shreve topologies — so most junctions add a small headwater tributary to a long mainstem
and basin height grows like sqrt(n). Some junctions have a single
upstream catchment (a reach split by length) and a few are triple confluences.
"""
from __future__ import annotations

import numpy as np


def basin_sizes(n: int, outlets: int, rng: np.random.Generator) -> np.ndarray:
    """Split n catchments into `outlets` basins with heavy-tailed (Pareto) sizes, each ≥ 1."""
    outlets = max(1, min(outlets, n))
    w = rng.pareto(1.1, outlets) + 1.0
    sizes = np.maximum(1, np.floor(w / w.sum() * n).astype(np.int64))
    diff = n - int(sizes.sum())
    order = np.argsort(-sizes, kind="stable")
    i = 0
    while diff != 0:  # fix rounding on the largest basins
        j = order[i % outlets]
        if diff > 0:
            sizes[j] += 1
            diff -= 1
        elif sizes[j] > 1:
            sizes[j] -= 1
            diff += 1
        i += 1
    return sizes


def random_forest(n: int, outlets: int, rng: np.random.Generator, p_single: float = 0.3,
                  p_triple: float = 0.04) -> np.ndarray:
    """Parent index per node (-1 for basin outlets), nodes numbered in depth-first pre-order
    so parent[i] < i and every subtree is a contiguous block."""
    sizes = basin_sizes(n, outlets, rng)
    parent = np.full(n, -1, dtype=np.int64)
    kind = rng.random(n).tolist()
    # tributary sizes: Pareto(1/2) via inverse CDF, U^-2 (U in (0, 1])
    trib1 = np.minimum(1.0 - rng.random(n), 1.0) ** -2.0
    trib2 = np.minimum(1.0 - rng.random(n), 1.0) ** -2.0
    split1 = np.minimum(trib1, 1e15).astype(np.int64).tolist()
    split2 = np.minimum(trib2, 1e15).astype(np.int64).tolist()
    par = parent  # local alias for speed
    stack: list[tuple[int, int]] = [(-1, int(s)) for s in sizes[::-1]]
    nid = 0
    while stack:
        p, s = stack.pop()
        me = nid
        nid += 1
        par[me] = p
        r = s - 1
        if r == 0:
            continue
        k = kind[me]
        if r == 1 or k < p_single:
            stack.append((me, r))
        elif k > 1.0 - p_triple and r >= 3:
            a = min(r // 3, split1[me])
            b = min((r - a) // 2, split2[me])
            stack.extend(((me, r - a - b), (me, b), (me, a)))
        else:
            small = min(r // 2, split1[me])
            # push the mainstem first so the tributary is numbered next (depth-first)
            stack.extend(((me, r - small), (me, small)))
    return parent


def tree_metrics(parent: np.ndarray, area: np.ndarray) -> dict[str, np.ndarray]:
    """Per node: depth, total drainage area, Strahler order, mainstem id (requires
    parent[i] < i, as produced by `random_forest`)."""
    n = len(parent)
    par = parent.tolist()
    tot = area.astype(np.float64).tolist()
    order = [1] * n
    maxo = [0] * n  # highest child order seen
    cnt = [0] * n  # children reaching that order
    best = [-1] * n  # child with largest drainage (continues the mainstem)
    for i in range(n - 1, -1, -1):
        p = par[i]
        if maxo[i]:
            order[i] = maxo[i] + 1 if cnt[i] >= 2 else maxo[i]
        if p < 0:
            continue
        tot[p] += tot[i]
        o = order[i]
        if o > maxo[p]:
            maxo[p], cnt[p] = o, 1
        elif o == maxo[p]:
            cnt[p] += 1
        b = best[p]
        if b < 0 or tot[i] > tot[b]:
            best[p] = i
    depth = [0] * n
    main = [0] * n
    nxt = 1
    for i in range(n):
        p = par[i]
        if p < 0 or best[p] != i:
            main[i] = nxt
            nxt += 1
        else:
            main[i] = main[p]
        if p >= 0:
            depth[i] = depth[p] + 1
    return {
        "depth": np.asarray(depth, dtype=np.int64),
        "tot_area": np.asarray(tot),
        "order": np.asarray(order, dtype=np.int64),
        "mainstem": np.asarray(main, dtype=np.int64),
    }
