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
    const_s: np.ndarray  # True when all valid simulated values are identical (decided exactly)
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

    Moments are accumulated on (o − shift); with the shift near the mean the one-pass formula
    var = Σx²/n − (Σx/n)² keeps its precision (rows where it might not are recomputed exactly).
    """
    step = max(1, obs.shape[1] // 128)
    sample, ok = obs[:, ::step], mask[:, ::step]
    cnt = row_count(np.ascontiguousarray(ok))
    tot = np.where(ok, sample, 0.0).sum(axis=1)
    return np.divide(tot, cnt, out=np.zeros(len(cnt)), where=cnt > 0)


def _exact(sim: np.ndarray, obs: np.ndarray, mask: np.ndarray, n: np.ndarray):
    """Two-pass variances/covariance and exact constancy for a few rows (the slow, safe path)."""
    s0, o0 = np.where(mask, sim, 0.0), np.where(mask, obs, 0.0)
    ms, mo = s0.sum(axis=1) / n, o0.sum(axis=1) / n
    ds, do = np.where(mask, sim - ms[:, None], 0.0), np.where(mask, obs - mo[:, None], 0.0)
    const_s = np.where(mask, sim, np.inf).min(axis=1) == np.where(mask, sim, -np.inf).max(axis=1)
    const_o = np.where(mask, obs, np.inf).min(axis=1) == np.where(mask, obs, -np.inf).max(axis=1)
    return _rowdot(ds, ds) / n, _rowdot(do, do) / n, _rowdot(ds, do) / n, const_s, const_o


def pair_stats(sim: np.ndarray, obs: np.ndarray, ws: Workspace | None = None) -> PairStats:
    """Statistics of valid (sim, obs) pairs for each row of two equally shaped 2-D arrays.

    Written for memory bandwidth, which is what bounds this code: only two full-size float
    arrays are built, e = s − o and b = o − k (k = per-row shift), both zeroed outside valid pairs,
    and all sums follow from them since s − k = b + e:
        Σs = Σo + Σe,   Σ(s−k)² = Σb² + 2Σbe + Σe²,   Σ(s−k)(o−k) = Σb² + Σbe.
    Rows whose variance is tiny are candidates for "constant"; constancy is then decided exactly
    (min == max) on those rows only, and their moments recomputed two-pass.
    With a workspace, `mask` and `o_hi` live in its buffers (valid until its next use).
    """
    rows, cols = sim.shape
    (f_e, f_b, f_c), (mask, notmask, _, _) = (ws or Workspace(rows, cols)).view(rows, cols)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        np.subtract(sim, obs, out=f_e)
        np.isfinite(f_e, out=mask)  # finite difference ⇔ both finite
        np.logical_not(mask, out=notmask)
        np.copyto(f_e, 0.0, where=notmask)
        n = row_count(mask)
        k = _shift(obs, mask)
        np.subtract(obs, k[:, None], out=f_b)
        np.copyto(f_b, 0.0, where=notmask)
        se, sb = f_e.sum(axis=1), f_b.sum(axis=1)
        see, sbb, sbe = _rowdot(f_e, f_e), _rowdot(f_b, f_b), _rowdot(f_b, f_e)
        sae = np.abs(f_e, out=f_c).sum(axis=1)
        mb, me = sb / n, se / n
        ma = mb + me  # mean of s − k
        var_o = sbb / n - mb * mb
        var_s = (sbb + 2 * sbe + see) / n - ma * ma
        cov = (sbb + sbe) / n - ma * mb
        sum_o = sb + n * k
        sum_s = sum_o + se
        # Peaks: argmax over valid pairs (invalid → −inf); values read back from the raw inputs.
        np.copyto(f_b, -np.inf, where=notmask)
        argmax_o = f_b.argmax(axis=1)
        np.add(f_b, f_e, out=f_c)  # s − k on valid pairs, −inf elsewhere
        argmax_s = f_c.argmax(axis=1)
        r = np.arange(rows)
        max_o, max_s = obs[r, argmax_o], sim[r, argmax_s]
        # Raw observations with +inf outside valid pairs, for percentile thresholds.
        np.copyto(f_b, obs)
        np.copyto(f_b, np.inf, where=notmask)
        o_hi = f_b
        mean_o, mean_s = sum_o / n, sum_s / n
    empty = n == 0
    const_s = np.zeros(rows, dtype=bool)
    const_o = np.zeros(rows, dtype=bool)
    with np.errstate(invalid="ignore"):
        # Variance tiny next to the shifted mean or the scale → candidate for constant or for
        # precision loss: decide and recompute exactly (rare rows, so the slow path is cheap).
        scale_s = ma * ma + (max_s - k) ** 2
        scale_o = mb * mb + (max_o - k) ** 2
        shaky = ~empty & ((var_s <= 1e-8 * scale_s) | (var_o <= 1e-8 * scale_o))
    if shaky.any():
        i = np.flatnonzero(shaky)
        var_s[i], var_o[i], cov[i], const_s[i], const_o[i] = _exact(sim[i], obs[i], mask[i], n[i])
    var_s = np.maximum(var_s, 0.0)
    var_o = np.maximum(var_o, 0.0)
    var_s[const_s] = 0.0
    var_o[const_o] = 0.0
    cov[const_s | const_o] = 0.0
    max_s[empty] = np.nan
    max_o[empty] = np.nan
    return PairStats(n=n, sum_s=sum_s, sum_o=sum_o, mean_s=mean_s, mean_o=mean_o, var_s=var_s, var_o=var_o,
                     cov=cov, sse=see, sae=sae, max_s=max_s, max_o=max_o, argmax_s=argmax_s,
                     argmax_o=argmax_o, const_s=const_s, const_o=const_o, mask=mask, o_hi=o_hi)
