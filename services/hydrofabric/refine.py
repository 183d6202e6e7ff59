"""Tree-aware refinement of a k-way partition (run after METIS).

On a forest, a *piece* is a maximal connected set of catchments on one rank. Every edge
leaving a piece is already cut, so moving a whole piece to another rank never adds a cut:
to a rank it touches it removes ≥ 1 cut (one per adjacent piece there), to any other rank
it is free. So: apply cut-reducing moves greedily, and when the target rank is full, make
room by moving some other piece of that rank to a rank with spare capacity. Only the
heaviest rank sets the run time, so the cap is `max_imbalance × mean load`.
"""
from __future__ import annotations

import numpy as np


def pieces(down: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Per catchment: the root (most downstream catchment) of its piece."""
    n = len(down)
    same = (down >= 0) & (part == part[np.maximum(down, 0)])
    jump = np.where(same, down, np.arange(n))
    while True:
        nxt = jump[jump]
        if np.array_equal(nxt, jump):
            return jump
        jump = nxt


def refine_partition(down: np.ndarray, part: np.ndarray, n_parts: int, weights: np.ndarray | None = None,
                     max_imbalance: float = 1.03, min_fill: float = 0.5, max_passes: int = 100) -> np.ndarray:
    """Return a copy of `part` with fewer cut edges and max load ≤ max(max_imbalance × mean,
    current max); ranks keep at least `min_fill` × mean load."""
    n = len(down)
    part = np.asarray(part, dtype=np.int64).copy()
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    load = np.bincount(part, weights=w, minlength=n_parts)
    mean = load.sum() / n_parts
    cap = max(max_imbalance * mean, load.max())
    floor = min_fill * mean
    ar = np.arange(n)
    for _ in range(max_passes):
        root = pieces(down, part)
        pw = np.bincount(root, weights=w, minlength=n)
        # piece adjacency: every cut edge joins a child piece (rooted at r) to a parent piece
        r = np.flatnonzero((root == ar) & (down >= 0))
        pr = root[down[r]]
        # candidate moves (piece, destination rank) with gain = adjacent pieces on that rank
        cand = np.concatenate([r * n_parts + part[down[r]], pr * n_parts + part[r]])
        key, gain = np.unique(cand, return_counts=True)
        cp, cx = key // n_parts, key % n_parts
        o = np.lexsort((pw[cp], -gain))
        cp, cx = cp[o], cx[o]
        # children of each piece (for the "do not touch neighbours twice in a pass" rule)
        so = np.argsort(pr, kind="stable")
        pr_s, r_s = pr[so], r[so]
        parent_of = np.full(n, -1, dtype=np.int64)
        parent_of[r] = pr
        # pieces per rank sorted by weight, to find one to evict when a rank is full
        all_roots = np.flatnonzero(root == ar)
        ro = np.lexsort((pw[all_roots], part[all_roots]))
        by_rank = all_roots[ro]
        rank_start = np.searchsorted(part[by_rank], np.arange(n_parts + 1))
        touched = np.zeros(n, dtype=bool)
        L = load.tolist()
        newp = np.full(n, -1, dtype=np.int64)
        moved = 0

        def neighbours(p: int) -> np.ndarray:
            a, b = np.searchsorted(pr_s, p), np.searchsorted(pr_s, p, side="right")
            kids = r_s[a:b]
            return kids if parent_of[p] < 0 else np.append(kids, parent_of[p])

        def free(p: int) -> bool:
            return not touched[p] and not touched[neighbours(p)].any()

        def take(p: int, dest: int) -> None:
            nonlocal moved
            src = int(part[p])
            L[src] -= pw[p]
            L[dest] += pw[p]
            newp[p] = dest
            touched[p] = True
            touched[neighbours(p)] = True
            moved += 1

        for p, x in zip(cp.tolist(), cx.tolist()):
            if touched[p] or not free(p):
                continue
            a, wp = int(part[p]), pw[p]
            if L[a] - wp < floor:
                continue
            over = L[x] + wp - cap
            if over <= 0:
                take(p, x)
                continue
            # make room on x: evict its lightest piece heavier than the overflow to the
            # least-loaded rank (free for the cut, see module doc)
            lo, hi = rank_start[x], rank_start[x + 1]
            ws = pw[by_rank[lo:hi]]
            i = lo + int(np.searchsorted(ws, over))
            while i < hi:
                q = int(by_rank[i])
                if q != p and not touched[q] and free(q) and L[x] - pw[q] + wp >= floor:
                    break
                i += 1
            else:
                continue
            # prefer a rank q touches (that also removes cuts), else the least loaded
            z = -1
            for nb in neighbours(q).tolist():
                y = int(part[nb])
                if y != x and L[y] + pw[q] <= cap and (z < 0 or L[y] < L[z]):
                    z = y
            if z < 0:
                z = int(np.argmin(L))
            if z == x or L[z] + pw[q] > cap:
                continue
            if q in neighbours(p).tolist():
                continue
            take(q, z)
            if free(p):
                take(p, x)
        if not moved:
            break
        load = np.asarray(L)
        m = newp[root] >= 0
        part[m] = newp[root][m]
    return part
