"""Masked pairwise statistics for a block of locations (rows) × time (columns).

Pairwise deletion: a time step counts for a location only when both the simulated and the
observed value are finite. Every continuous metric is a cheap function of these per-row sums,
so the big 2-D arrays are traversed a fixed, small number of times whatever metrics are asked.
Moments are population moments (divide by n); every ratio that uses them (r, α, γ) is the same
with n − 1, so nothing depends on the choice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PairStats:
    n: np.ndarray        # valid pairs per row (int64)
    sum_s: np.ndarray    # Σ s over valid pairs
    sum_o: np.ndarray    # Σ o
    mean_s: np.ndarray   # μs = Σ s / n   (NaN when n = 0)
    mean_o: np.ndarray   # μo
    var_s: np.ndarray    # σs² = Σ (s − μs)² / n
    var_o: np.ndarray    # σo²
    cov: np.ndarray      # Σ (s − μs)(o − μo) / n
    sse: np.ndarray      # Σ (s − o)²
    sae: np.ndarray      # Σ |s − o|
    max_s: np.ndarray    # peak simulated value (NaN when n = 0)
    max_o: np.ndarray
    argmax_s: np.ndarray  # column of the first simulated peak (0 when n = 0)
    argmax_o: np.ndarray
    const_s: np.ndarray  # True when all valid simulated values are identical (min == max, exactly)
    const_o: np.ndarray
    mask: np.ndarray     # (rows, time) bool: valid pairs; kept for categorical scores
    o_hi: np.ndarray     # (rows, time) observations with invalid pairs set to +inf (for percentiles)


def row_count(mask: np.ndarray) -> np.ndarray:
    """True cells per row (a uint8 view summed as int32 is ~2× faster than count_nonzero)."""
    return mask.view(np.uint8).sum(axis=1, dtype=np.int32).astype(np.int64)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Row-wise Σ a·b without a full-size temporary.
    return np.einsum("ij,ij->i", a, b)


class Workspace:
    """Scratch arrays reused from block to block.

    Allocating fresh multi-megabyte temporaries costs more than the arithmetic (every new page is
    faulted in), so each worker thread keeps one set and every step writes into it with ``out=``.
    """

    def __init__(self, rows: int, cols: int):
        self.f = [np.empty((rows, cols)) for _ in range(3)]
        self.b = [np.empty((rows, cols), dtype=bool) for _ in range(4)]

    def view(self, rows: int, cols: int):
        """Float and bool buffers trimmed to a (rows, cols) block."""
        if rows > self.f[0].shape[0] or cols != self.f[0].shape[1]:
            raise ValueError("block larger than workspace")
        return [a[:rows] for a in self.f], [a[:rows] for a in self.b]


def _shift(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row offset close to the observed mean, from a strided sample of the valid values.

    Moments are accumulated on (value − shift); with the shift near the mean the one-pass formula
    var = Σx²/n − (Σx/n)² loses no meaningful precision (see `_refine` for the rare rows where it would).
    """
    step = max(1, obs.shape[1] // 128)
    sample, ok = obs[:, ::step], mask[:, ::step]
    cnt = row_count(np.ascontiguousarray(ok))
    tot = np.where(ok, sample, 0.0).sum(axis=1)
    return np.divide(tot, cnt, out=np.zeros(len(cnt)), where=cnt > 0)


def _two_pass(x: np.ndarray, y: np.ndarray, m: np.ndarray, n: np.ndarray):
    """Exact two-pass variance/covariance for a few rows (the fallback of `_refine`)."""
    mx = np.where(m, x, 0.0).sum(axis=1) / n
    my = np.where(m, y, 0.0).sum(axis=1) / n
    dx = np.where(m, x - mx[:, None], 0.0)
    dy = np.where(m, y - my[:, None], 0.0)
    return _rowdot(dx, dx) / n, _rowdot(dy, dy) / n, _rowdot(dx, dy) / n


def pair_stats(sim: np.ndarray, obs: np.ndarray, ws: Workspace | None = None) -> PairStats:
    """Statistics of valid (sim, obs) pairs for each row of two equally shaped 2-D arrays.

    Written for memory bandwidth: each big array is touched a handful of times, always into
    reused buffers. With a workspace, the returned `mask` and `o_hi` live in its buffers (valid
    until the next call with the same workspace).
    """
    rows, cols = sim.shape
    (f_a, f_b, f_c), (fin_s, fin_o, mask, notmask) = (ws or Workspace(rows, cols)).view(rows, cols)
    np.isfinite(sim, out=fin_s)
    np.isfinite(obs, out=fin_o)
    np.logical_and(fin_s, fin_o, out=mask)
    np.logical_not(mask, out=notmask)
    n = row_count(mask)
    k = _shift(obs, mask)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        # a = s − k, b = o − k on valid pairs, 0 elsewhere (same k, so a − b = s − o).
        # (plain subtract + masked scalar copy is ~2× faster than subtract(..., where=mask))
        np.subtract(sim, k, out=f_a)
        np.copyto(f_a, 0.0, where=notmask)
        np.subtract(obs, k, out=f_b)
        np.copyto(f_b, 0.0, where=notmask)
        sa, sb = f_a.sum(axis=1), f_b.sum(axis=1)
        ma, mb = sa / n, sb / n
        var_s = _rowdot(f_a, f_a) / n - ma * ma
        var_o = _rowdot(f_b, f_b) / n - mb * mb
        cov = _rowdot(f_a, f_b) / n - ma * mb
        mean_s, mean_o = ma + k[:, 0], mb + k[:, 0]
        sum_s, sum_o = sa + n * k[:, 0], sb + n * k[:, 0]
        np.subtract(f_a, f_b, out=f_c)  # s − o, 0 outside valid pairs
        sse = _rowdot(f_c, f_c)
        sae = np.abs(f_c, out=f_c).sum(axis=1)
        # Peaks and exact constancy from the masked extremes (k shifts values, not their order).
        np.copyto(f_a, -np.inf, where=notmask)
        argmax_s = f_a.argmax(axis=1)
        max_s = np.take_along_axis(f_a, argmax_s[:, None], axis=1)[:, 0] + k[:, 0]
        np.copyto(f_a, np.inf, where=notmask)
        min_s = f_a.min(axis=1) + k[:, 0]
        np.copyto(f_b, -np.inf, where=notmask)
        argmax_o = f_b.argmax(axis=1)
        max_o = np.take_along_axis(f_b, argmax_o[:, None], axis=1)[:, 0] + k[:, 0]
        # o_hi: observations on valid pairs, +inf elsewhere (percentile thresholds sort it).
        np.add(f_b, k, out=f_b)
        np.copyto(f_b, np.inf, where=notmask)
        o_hi = f_b
        min_o = o_hi.min(axis=1)
    empty = n == 0
    const_s = ~empty & (min_s == max_s)
    const_o = ~empty & (min_o == max_o)
    # Where the mean sits far from the shift (in units of σ) the one-pass variance would lose
    # digits: recompute those few rows exactly.
    with np.errstate(invalid="ignore"):
        poor = ~empty & ~const_s & ~const_o & (
            (ma * ma > 1e6 * np.maximum(var_s, 0)) | (mb * mb > 1e6 * np.maximum(var_o, 0)))
    if poor.any():
        i = np.flatnonzero(poor)
        var_s[i], var_o[i], cov[i] = _two_pass(sim[i], obs[i], mask[i], n[i])
    # Exact zero variance for constant rows; rounding can leave ±ulp residue.
    var_s = np.maximum(var_s, 0.0)
    var_o = np.maximum(var_o, 0.0)
    var_s[const_s] = 0.0
    var_o[const_o] = 0.0
    cov[const_s | const_o] = 0.0
    max_s[empty] = np.nan
    max_o[empty] = np.nan
    return PairStats(n=n, sum_s=sum_s, sum_o=sum_o, mean_s=mean_s, mean_o=mean_o, var_s=var_s, var_o=var_o,
                     cov=cov, sse=sse, sae=sae, max_s=max_s, max_o=max_o, argmax_s=argmax_s,
                     argmax_o=argmax_o, const_s=const_s, const_o=const_o, mask=mask, o_hi=o_hi)
