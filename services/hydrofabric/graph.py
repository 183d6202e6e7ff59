"""Tree algorithms on the catchment forest (catchment → downstream catchment), vectorised.

The key precomputation is an Euler tour: catchments in depth-first pre-order from the
outlets, so the upstream closure of any catchment is one contiguous slice of `order`.
That makes upstream subsets O(result) and gives DFS_CHUNK partitioning its order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def cut_cycles(down: np.ndarray) -> np.ndarray:
    """Copy of `down` with one edge per cycle removed, so it is a forest (cycles are a
    validation error; this keeps traversals of a broken file finite)."""
    n = len(down)
    jump = down.copy()
    for _ in range(int(np.ceil(np.log2(max(n, 2)))) + 1):
        m = jump >= 0
        if not m.any():
            return down
        jump[m] = jump[jump[m]]
    if not (jump >= 0).any():
        return down
    from .validate import find_cycles_in

    out = down.copy()
    for cyc in find_cycles_in(down):
        out[cyc[0]] = -1
    return out


def chain_sum(down: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Per node: sum of `val` over the node and all its downstream nodes (pointer doubling,
    O(n log depth))."""
    acc = val.astype(np.int64).copy()
    jump = down.copy()
    m = np.flatnonzero(jump >= 0)
    while len(m):
        acc[m] += acc[jump[m]]
        jump[m] = jump[jump[m]]
        m = m[jump[m] >= 0]
    return acc


def csr_children(down: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(down)
    kids = np.flatnonzero(down >= 0)
    p = down[kids]
    order = np.argsort(p, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(p, minlength=n), out=indptr[1:])
    return indptr, kids[order]


@dataclass(frozen=True)
class Tour:
    order: np.ndarray  # catchment indices in DFS pre-order (outlets in index order, children ascending)
    tin: np.ndarray  # position of each catchment in `order`
    size: np.ndarray  # catchments in each upstream closure, itself included
    depth: np.ndarray  # hops from the catchment's outlet (outlet = 0)
    down: np.ndarray  # downstream catchment (cycles cut), -1 at outlets

    def upstream_slice(self, c: int) -> np.ndarray:
        return self.order[self.tin[c]: self.tin[c] + self.size[c]]


def euler_tour(down: np.ndarray) -> Tour:
    down = cut_cycles(np.asarray(down, dtype=np.int64))
    n = len(down)
    depth = chain_sum(down, np.ones(n, dtype=np.int64)) - 1
    # subtree sizes, deepest level first
    size = np.ones(n, dtype=np.int64)
    by_depth = np.argsort(-depth, kind="stable")
    d_sorted = depth[by_depth]
    bounds = np.flatnonzero(np.diff(d_sorted)) + 1
    for lvl in np.split(by_depth, bounds):
        if len(lvl) and depth[lvl[0]] > 0:
            np.add.at(size, down[lvl], size[lvl])
    # offset of each child among its siblings (earlier siblings' subtrees come first)
    indptr, kids = csr_children(down)
    s = size[kids]
    cs = np.cumsum(s) - s
    seg_start = np.repeat(cs[indptr[:-1].clip(max=max(len(kids) - 1, 0))] if len(kids) else cs, np.diff(indptr))
    val = np.zeros(n, dtype=np.int64)
    val[kids] = 1 + cs - seg_start
    roots = np.flatnonzero(down < 0)
    rs = size[roots]
    val[roots] = np.cumsum(rs) - rs
    tin = chain_sum(down, val)
    order = np.empty(n, dtype=np.int64)
    order[tin] = np.arange(n)
    return Tour(order=order, tin=tin, size=size, depth=depth, down=down)
