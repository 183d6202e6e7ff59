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


class _Pass:
    """One refinement pass over a fixed piece structure (moves take effect at the end)."""

    def __init__(self, down: np.ndarray, part: np.ndarray, w: np.ndarray, load: np.ndarray, n_parts: int):
        n = len(down)
        ar = np.arange(n)
        self.part = part
        self.root = pieces(down, part)
        self.pw = np.bincount(self.root, weights=w, minlength=n)
        # piece adjacency: every cut edge joins a child piece (rooted at r) to a parent piece
        r = np.flatnonzero((self.root == ar) & (down >= 0))
        pr = self.root[down[r]]
        # candidate moves (piece, destination rank) with gain = adjacent pieces on that rank
        cand = np.concatenate([r * n_parts + part[down[r]], pr * n_parts + part[r]])
        key, gain = np.unique(cand, return_counts=True)
        cp, cx = key // n_parts, key % n_parts
        o = np.lexsort((self.pw[cp], -gain))
        self.candidates = (cp[o], cx[o])
        so = np.argsort(pr, kind="stable")
        self.pr_s, self.r_s = pr[so], r[so]
        self.parent_of = np.full(n, -1, dtype=np.int64)
        self.parent_of[r] = pr
        # pieces per rank sorted by weight, to find one to evict when a rank is full
        all_roots = np.flatnonzero(self.root == ar)
        self.by_rank = all_roots[np.lexsort((self.pw[all_roots], part[all_roots]))]
        self.rank_start = np.searchsorted(part[self.by_rank], np.arange(n_parts + 1))
        self.touched = np.zeros(n, dtype=bool)
        self.L = load.tolist()
        self.newp = np.full(n, -1, dtype=np.int64)
        self.moved = 0

    def neighbours(self, p: int) -> np.ndarray:
        a, b = np.searchsorted(self.pr_s, p), np.searchsorted(self.pr_s, p, side="right")
        kids = self.r_s[a:b]
        return kids if self.parent_of[p] < 0 else np.append(kids, self.parent_of[p])

    def free(self, p: int) -> bool:
        # pieces next to a moved piece wait for the next pass, so gains stay exact
        return not self.touched[p] and not self.touched[self.neighbours(p)].any()

    def take(self, p: int, dest: int) -> None:
        self.L[int(self.part[p])] -= self.pw[p]
        self.L[dest] += self.pw[p]
        self.newp[p] = dest
        self.touched[p] = True
        self.touched[self.neighbours(p)] = True
        self.moved += 1

    def evictable(self, x: int, over: float, p: int, wp: float, floor: float) -> int | None:
        """Lightest piece of rank x weighing at least `over` that may leave it."""
        lo, hi = self.rank_start[x], self.rank_start[x + 1]
        i = lo + int(np.searchsorted(self.pw[self.by_rank[lo:hi]], over))
        for q in self.by_rank[i:hi].tolist():
            if q != p and self.free(q) and self.L[x] - self.pw[q] + wp >= floor:
                return q
        return None

    def run(self, cap: float, floor: float) -> None:
        L, pw, part = self.L, self.pw, self.part
        for p, x in zip(*(c.tolist() for c in self.candidates)):
            if not self.free(p):
                continue
            a, wp = int(part[p]), pw[p]
            if L[a] - wp < floor:
                continue
            over = L[x] + wp - cap
            if over <= 0:
                self.take(p, x)
                continue
            # make room on x by moving another of its pieces away (never adds a cut)
            q = self.evictable(x, over, p, wp, floor)
            if q is None or q in self.neighbours(p).tolist():
                continue
            # prefer a rank q touches (that also removes cuts), else the least loaded
            z = -1
            for nb in self.neighbours(q).tolist():
                y = int(part[nb])
                if y != x and L[y] + pw[q] <= cap and (z < 0 or L[y] < L[z]):
                    z = y
            if z < 0:
                z = int(np.argmin(L))
            if z == x or L[z] + pw[q] > cap:
                continue
            self.take(q, z)
            if self.free(p):
                self.take(p, x)


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
    for _ in range(max_passes):
        ps = _Pass(down, part, w, load, n_parts)
        ps.run(cap, floor)
        if not ps.moved:
            break
        load = np.asarray(ps.L)
        dest = ps.newp[ps.root]
        m = dest >= 0
        part[m] = dest[m]
    return part
