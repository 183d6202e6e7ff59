"""Continuous goodness-of-fit metrics, each a function of `PairStats` (one value per location).

Notation over the n valid pairs of a location: s = simulated, o = observed, μ mean, σ standard
deviation (population), r Pearson correlation.

Every function returns ``(values, notes)``: values is a float array (NaN where undefined) and
notes a list of ``(row_mask, reason)`` saying why rows are NaN. Undefined cases are decided by
explicit tests (constant series, zero denominators), never by catching numpy warnings, so no
warning or exception escapes for legal input. Rows with no valid pairs are NaN without a note:
the engine reports those as per-location errors.
"""
from __future__ import annotations

import numpy as np

from .stats import PairStats

Notes = list[tuple[np.ndarray, str]]
CONST_OBS = "constant observations (σo = 0)"
CONST_SIM = "constant simulation (σs = 0): correlation undefined"
ZERO_MEAN_OBS = "mean observation is 0"
ZERO_MEAN_SIM = "mean simulation is 0"


def _nan_where(values: np.ndarray, notes: Notes, cond: np.ndarray, reason: str) -> None:
    """Blank `values` where `cond` and note why, for rows no earlier note already explains."""
    fresh = cond.copy()
    for earlier, _ in notes:
        fresh &= ~earlier
    if fresh.any():
        notes.append((fresh, reason))
    values[cond] = np.nan


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def nse(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Nash–Sutcliffe efficiency: NSE = 1 − Σ(s − o)² / Σ(o − μo)².  Range (−∞, 1], 1 perfect.
    Undefined for constant observations (zero denominator)."""
    notes: Notes = []
    values = 1.0 - _safe_div(st.sse, st.var_o * st.n)
    _nan_where(values, notes, st.const_o, CONST_OBS)
    return values, notes


def nnse(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Normalised NSE: NNSE = 1 / (2 − NSE).  Range (0, 1], 1 perfect, 0.5 ≙ NSE 0."""
    values, notes = nse(st)
    return 1.0 / (2.0 - values), notes


def pearson_r(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Pearson correlation r = cov(s, o) / (σs σo).  Undefined if either series is constant."""
    notes: Notes = []
    with np.errstate(invalid="ignore"):
        values = _safe_div(st.cov, np.sqrt(st.var_s * st.var_o))
    values = np.clip(values, -1.0, 1.0)  # rounding can step just outside [-1, 1]
    _nan_where(values, notes, st.const_o, CONST_OBS)
    _nan_where(values, notes, st.const_s, CONST_SIM)
    return values, notes


def kge_alpha(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Variability ratio α = σs / σo (KGE 2009 component).  Undefined for constant observations."""
    notes: Notes = []
    values = _safe_div(np.sqrt(st.var_s), np.sqrt(st.var_o))
    _nan_where(values, notes, st.const_o, CONST_OBS)
    return values, notes


def kge_beta(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Bias ratio β = μs / μo.  Undefined when μo = 0."""
    notes: Notes = []
    values = _safe_div(st.mean_s, st.mean_o)
    _nan_where(values, notes, (st.n > 0) & (st.mean_o == 0), ZERO_MEAN_OBS)
    return values, notes


def kge_gamma(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Variability ratio of KGE' (Kling 2012): γ = CVs / CVo = (σs/μs) / (σo/μo).
    Undefined for constant observations or a zero mean."""
    notes: Notes = []
    with np.errstate(invalid="ignore"):
        cv_s = _safe_div(np.sqrt(st.var_s), st.mean_s)
        cv_o = _safe_div(np.sqrt(st.var_o), st.mean_o)
    values = _safe_div(cv_s, cv_o)
    has = st.n > 0
    _nan_where(values, notes, has & (st.mean_o == 0), ZERO_MEAN_OBS)
    _nan_where(values, notes, st.const_o, CONST_OBS)
    _nan_where(values, notes, has & (st.mean_s == 0), ZERO_MEAN_SIM)
    return values, notes


def _merge_notes(parts: list[Notes]) -> Notes:
    """Component notes combined so each row keeps only its first reason."""
    merged: Notes = []
    claimed: np.ndarray | None = None
    for part in parts:
        for cond, reason in part:
            fresh = cond if claimed is None else cond & ~claimed
            claimed = cond.copy() if claimed is None else claimed | cond
            if fresh.any():
                merged.append((fresh, reason))
    return merged


def _distance(r, x, b) -> tuple[np.ndarray, Notes]:
    # 1 − Euclidean distance from the ideal point (1, 1, 1); NaN components propagate.
    values = 1.0 - np.sqrt((r[0] - 1.0) ** 2 + (x[0] - 1.0) ** 2 + (b[0] - 1.0) ** 2)
    return values, _merge_notes([r[1], x[1], b[1]])


def kge(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Kling–Gupta efficiency (Gupta et al. 2009): KGE = 1 − √((r − 1)² + (α − 1)² + (β − 1)²),
    α = σs/σo, β = μs/μo.  Range (−∞, 1], 1 perfect.  NaN when any component is undefined."""
    r, a, b = pearson_r(st), kge_alpha(st), kge_beta(st)
    return _distance(r, a, b)


def kge_prime(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Modified KGE' (Kling et al. 2012): KGE' = 1 − √((r − 1)² + (γ − 1)² + (β − 1)²),
    γ = CVs/CVo; uses the coefficient of variation so bias and variability do not cross-correlate."""
    r, g, b = pearson_r(st), kge_gamma(st), kge_beta(st)
    return _distance(r, g, b)


def pbias(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Percent bias: PBIAS = 100 · Σ(s − o) / Σ o.  Positive = simulation too high.  Undefined when Σo = 0."""
    notes: Notes = []
    values = 100.0 * _safe_div(st.sum_s - st.sum_o, st.sum_o)
    _nan_where(values, notes, (st.n > 0) & (st.sum_o == 0), "sum of observations is 0")
    return values, notes


def rmse(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Root mean square error: RMSE = √(Σ(s − o)² / n), m3/s."""
    return np.sqrt(_safe_div(st.sse, st.n.astype(float))), []


def mae(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Mean absolute error: MAE = Σ|s − o| / n, m3/s."""
    return _safe_div(st.sae, st.n.astype(float)), []


def volume_error(st: PairStats, step_seconds: float) -> tuple[np.ndarray, Notes]:
    """Volume error in m³ over the valid pairs: VE = (Σ s − Σ o) · Δt, Δt = grid step in seconds.
    Positive = too much simulated water.  (Relative volume error is PBIAS / 100.)"""
    values = (st.sum_s - st.sum_o) * float(step_seconds)
    values[st.n == 0] = np.nan
    return values, []


def peak_flow_error(st: PairStats) -> tuple[np.ndarray, Notes]:
    """Relative peak flow error: (max s − max o) / max o over valid pairs.  Positive = peak too high.
    Undefined when the observed peak is 0."""
    notes: Notes = []
    values = _safe_div(st.max_s - st.max_o, st.max_o)
    _nan_where(values, notes, (st.n > 0) & (st.max_o == 0), "observed peak is 0")
    return values, notes


def peak_timing_error(st: PairStats, hours: np.ndarray) -> tuple[np.ndarray, Notes]:
    """Peak timing error in hours: t(max s) − t(max o), first occurrence of each maximum over valid
    pairs.  Positive = simulated peak late.  `hours` gives each column's time in hours.
    Undefined when either series is constant (no distinct peak)."""
    notes: Notes = []
    values = (hours[st.argmax_s] - hours[st.argmax_o]).astype(float)
    values[st.n == 0] = np.nan
    _nan_where(values, notes, st.const_o, "constant observations: no distinct peak")
    _nan_where(values, notes, st.const_s, "constant simulation: no distinct peak")
    return values, notes
