"""Remove ngen's receive-side hang pattern from a catchment → rank assignment.

ngen (measured: NOAA-OWP/ngen 0.3.0, dd04bbcc) hangs when the rank owning a boundary nexus
(its downstream catchment, or its terminal sentinel) also holds two or more of the nexus'
contributing catchments while another contributor is on a different rank; see
`partition_file.ngen_hang_hazards`. Every other boundary runs byte-identical to serial.

The repair visits each hazardous nexus j (owner rank R, local contributors L, |L| ≥ 2,
remote contributors M, |M| ≥ 1) and applies the cheapest of:

1. terminal nexus: move its sentinel to a rank holding exactly one contributor, else to one
   holding none (a sentinel weighs nothing, so balance is untouched);
2. *pull*: move each remote contributor m ∈ M (that catchment alone) to R, so every
   contributor is local;
3. *push*: move all but one local contributor (each alone) to another rank, so R keeps one.

A single-catchment move only changes the nexus it drains into (j) and the nexuses draining
into it; a move is allowed only when it leaves those hazard-free and does not empty its rank.
Among the allowed options the one that stays within the load cap, then adds the fewest cut
edges, then moves the least weight wins. A pass over all hazards is repeated until none is
left; whatever a few passes cannot fix gets the always-safe fallback: the whole upstream
closures of the remote contributors move to R (every nexus inside them is then rank-local, so
no hazard can appear, and the number of boundary nexuses strictly falls).
"""
from __future__ import annotations

import numpy as np

from .network import Network, _csr
from .partition_file import Assignment, ngen_hang_hazards


class _State:
    def __init__(self, net: Network, a: Assignment, weights: np.ndarray | None, max_imbalance: float):
        self.net = net
        self.part = np.asarray(a.part, dtype=np.int64).copy()
        self.sr = np.asarray(a.sentinel_rank, dtype=np.int64).copy()
        self.k = a.n_parts
        self.w = np.ones(net.n_catchments) if weights is None else np.asarray(weights, dtype=np.float64)
        self.load = np.bincount(self.part, weights=self.w, minlength=self.k)
        self.count = np.bincount(self.part, minlength=self.k)
        mean = self.load.sum() / max(self.k, 1)
        self.cap = max(float(self.load.max()), max_imbalance * mean, mean + float(self.w.max()))
        self.up_ptr, self.up_cat = net.nexus_upstream  # contributors of each nexus
        self.in_ptr, self.in_nex = _csr(net.nex_to_cat, net.n_catchments)  # nexuses draining into each catchment
        self.stats = {"hang_hazards": 0, "hang_repairs": 0, "hang_moved_catchments": 0,
                      "hang_moved_sentinels": 0, "hang_subtree_pulls": 0, "hang_repair_passes": 0}

    # ---- helpers ------------------------------------------------------------------------
    def contributors(self, j: int) -> np.ndarray:
        return self.up_cat[self.up_ptr[j]:self.up_ptr[j + 1]]

    def owner(self, j: int) -> int:
        d = self.net.nex_to_cat[j]
        return int(self.part[d]) if d >= 0 else int(self.sr[j])

    def move_effect(self, c: int, t: int) -> tuple[bool, int]:
        """(allowed, change in cut edges) of moving catchment c alone to rank t."""
        s = int(self.part[c])
        if self.count[s] <= 1:
            return False, 0
        delta = 0
        j = self.net.cat_to_nex[c]
        if j >= 0:
            o = self.owner(j)
            if o >= 0:
                delta += int(o != t) - int(o != s)
        for k in self.in_nex[self.in_ptr[c]:self.in_ptr[c + 1]].tolist():
            r = self.part[self.contributors(k)]
            on_t = int((r == t).sum())
            if on_t >= 2 and on_t < len(r):  # t would own k with ≥ 2 local and ≥ 1 remote
                return False, 0
            delta += int((r != t).sum() - (r != s).sum())
        return True, delta

    def apply(self, moves: list[tuple[int, int]]) -> None:
        for c, t in moves:
            s = int(self.part[c])
            self.load[s] -= self.w[c]; self.count[s] -= 1
            self.load[t] += self.w[c]; self.count[t] += 1
            self.part[c] = t
        self.stats["hang_moved_catchments"] += len(moves)

    def plan(self, moves: list[tuple[int, int]]) -> tuple | None:
        """Score of a set of single-catchment moves (None when one is not allowed)."""
        delta, added = 0, {}
        for c, t in moves:
            ok, d = self.move_effect(c, t)
            if not ok:
                return None
            delta += d
            s = int(self.part[c])
            added[t] = added.get(t, 0.0) + self.w[c]
            added[s] = added.get(s, 0.0) - self.w[c]
        peak = max(self.load[r] + dw for r, dw in added.items())
        return (peak > self.cap, delta, sum(self.w[c] for c, _ in moves))

    # ---- one hazard -----------------------------------------------------------------------
    def fix(self, j: int) -> bool:
        cats = self.contributors(j)
        ranks = self.part[cats]
        R = self.owner(j)
        local, remote = cats[ranks == R], cats[ranks != R]
        if len(local) < 2 or not len(remote):
            return True  # already fixed by an earlier move
        if self.net.nex_to_cat[j] < 0 and self.sr[j] >= 0:
            cnt = np.bincount(ranks, minlength=self.k)
            for want in (1, 0):
                cand = np.flatnonzero(cnt == want)
                cand = cand[cand != R]
                if len(cand):
                    self.sr[j] = int(cand[np.argmin(self.load[cand])])
                    self.stats["hang_moved_sentinels"] += 1
                    self.stats["hang_repairs"] += 1
                    return True
        options = []
        pull = [(int(m), R) for m in remote.tolist()]
        score = self.plan(pull)
        if score is not None:
            options.append((score, pull))
        # push: each local contributor to its best other rank; keep the costliest one on R
        best = []
        for c in local.tolist():
            targets = set(self.part[remote].tolist())
            for k in self.in_nex[self.in_ptr[c]:self.in_ptr[c + 1]].tolist():
                targets.update(self.part[self.contributors(k)].tolist())
            others = np.flatnonzero(np.arange(self.k) != R)
            targets.add(int(others[np.argmin(self.load[others])]))
            targets.discard(R)
            choice = None
            for t in sorted(targets):
                ok, d = self.move_effect(c, t)
                if ok and (choice is None or (d, self.load[t]) < (choice[0], self.load[choice[1]])):
                    choice = (d, t)
            best.append((c, choice))
        movable = [(c, ch) for c, ch in best if ch is not None]
        if len(movable) >= len(local) - 1:
            keep = max(best, key=lambda x: (x[1] is None, x[1][0] if x[1] else 0, self.w[x[0]]))
            push = [(c, ch[1]) for c, ch in best if c != keep[0]]
            score = self.plan(push)
            if score is not None:
                options.append((score, push))
        if not options:
            return False
        _score, moves = min(options, key=lambda o: o[0])
        self.apply(moves)
        self.stats["hang_repairs"] += 1
        return True

    def pull_subtrees(self, j: int) -> None:
        """Fallback: every remote contributor's whole upstream closure moves to the owner."""
        cats = self.contributors(j)
        R = self.owner(j)
        tour = self.net.tour
        moved = []
        for m in cats[self.part[cats] != R].tolist():
            moved.append(tour.upstream_slice(m))
        idx = np.concatenate(moved)
        idx = idx[self.part[idx] != R]
        self.apply([(int(c), R) for c in idx.tolist()])
        self.stats["hang_subtree_pulls"] += 1
        self.stats["hang_repairs"] += 1


def repair_hang_hazards(net: Network, a: Assignment, weights: np.ndarray | None = None,
                        max_imbalance: float = 1.03, max_passes: int = 20) -> tuple[Assignment, dict]:
    """A copy of `a` without ngen hang hazards, and what it took (stats keys `hang_*`)."""
    st = _State(net, a, weights, max_imbalance)
    hz = ngen_hang_hazards(net, st.part, st.sr)
    st.stats["hang_hazards"] = int(len(hz))
    passes = 0
    while len(hz) and passes < max_passes:
        passes += 1
        for j in hz.tolist():
            st.fix(j)
        hz = ngen_hang_hazards(net, st.part, st.sr)
    while len(hz):  # always terminates: each pull makes j and everything above it rank-local
        st.pull_subtrees(int(hz[0]))
        hz = ngen_hang_hazards(net, st.part, st.sr)
    st.stats["hang_repair_passes"] = passes
    out = Assignment(part=st.part, n_parts=a.n_parts, sentinel_rank=st.sr, sequence=a.sequence)
    return out, st.stats
