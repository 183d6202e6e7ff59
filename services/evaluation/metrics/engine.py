"""Compute every requested metric for many locations at once.

Input: two 2-D float arrays (locations × time) on the same time grid, NaN = missing. Rows are
processed in blocks (bounded memory, cache friendly) on a small thread pool — numpy releases the
GIL in the heavy loops — and a ``progress(done, total)`` callback is told after each block.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np

from . import categorical, continuous
from .registry import CONTINUOUS, SCORE, select_metrics
from .scoring import DEFAULT_WEIGHTS, validate_weights, weighted_score
from .stats import Workspace, pair_stats, row_count
from .thresholds import Threshold, parse_thresholds, per_location, threshold_values

Progress = Callable[[int, int], None]


@dataclass
class MetricTable:
    """Per-location results; row i of every array is location i of the input."""
    names: list[str]                    # output columns: "nse", ..., "pod@p90", ..., "score"
    values: dict[str, np.ndarray]       # name → float array (NaN = undefined / not evaluated)
    n_pairs: np.ndarray                 # valid pairs per location
    thresholds: dict[str, np.ndarray]   # threshold label → value used per location (m3/s)
    errors: dict[int, str] = field(default_factory=dict)            # row → why not evaluated
    notes: dict[int, dict[str, str]] = field(default_factory=dict)  # row → {metric: why NaN}


def _time_axis(times, n_time: int, step_seconds: float | None) -> tuple[np.ndarray, float]:
    """Hours since the first column, and the grid step in seconds (median spacing)."""
    if times is None:
        step = 3600.0 if step_seconds is None else float(step_seconds)
        return np.arange(n_time) * step / 3600.0, step
    t = np.asarray(times, dtype="datetime64[ns]")
    if t.shape != (n_time,):
        raise ValueError(f"times has shape {t.shape}, expected ({n_time},)")
    hours = (t - t[0]).astype("timedelta64[s]").astype(float) / 3600.0 if n_time else np.zeros(0)
    if step_seconds is None:
        step_seconds = float(np.median(np.diff(hours))) * 3600.0 if n_time > 1 else 3600.0
    return hours, float(step_seconds)


_CONTINUOUS_FUNCS = {
    "nse": continuous.nse, "nnse": continuous.nnse, "kge": continuous.kge, "kge_prime": continuous.kge_prime,
    "pearson_r": continuous.pearson_r, "kge_alpha": continuous.kge_alpha, "kge_beta": continuous.kge_beta,
    "kge_gamma": continuous.kge_gamma, "pbias": continuous.pbias, "rmse": continuous.rmse,
    "mae": continuous.mae, "peak_flow_error": continuous.peak_flow_error,
}


def _block(sim, obs, rows: slice, ws: Workspace, needed_cont, needed_cat, thresholds, site_values, hours,
           step_s):
    """All needed metrics for one block of rows → (values, notes, threshold values, pair counts)."""
    st = pair_stats(sim, obs, ws)
    values, notes = {}, []
    for name in needed_cont:
        if name == "volume_error":
            v, nt = continuous.volume_error(st, step_s)
        elif name == "peak_timing_error":
            v, nt = continuous.peak_timing_error(st, hours)
        else:
            v, nt = _CONTINUOUS_FUNCS[name](st)
        values[name] = v
        notes += [(name, np.flatnonzero(c) + rows.start, r) for c, r in nt]
    thr_used = {}
    _, bools = ws.view(*sim.shape)
    for thr in thresholds:
        site = None if site_values[thr.label] is None else site_values[thr.label][rows]
        tv = threshold_values(thr, st.o_hi, st.n, site)
        thr_used[thr.label] = tv
        missing = ~np.isfinite(tv) & (st.n > 0)
        # bools[2:4] are spare scratch flags (0 and 1 hold the pair mask and its negation).
        ct = categorical.contingency(sim, obs, st.mask, tv, buffers=(bools[2], bools[3]))
        for name, (v, nt) in categorical.scores(ct, needed_cat).items():
            key = f"{name}@{thr.label}"
            v[missing] = np.nan
            values[key] = v
            if missing.any():
                notes.append((key, np.flatnonzero(missing) + rows.start,
                              f"no threshold {thr.label} for this location"))
            notes += [(key, np.flatnonzero(c & ~missing) + rows.start, r) for c, r in nt]
    return values, notes, thr_used, st.n


def _error(n: int, n_sim: int, n_obs: int, min_pairs: int) -> str | None:
    if n_obs == 0:
        return "no valid observations"
    if n_sim == 0:
        return "no simulated values"
    if n == 0:
        return f"no time step with both values ({n_obs} observed, {n_sim} simulated, none coincide)"
    if n < min_pairs:
        return f"{n} valid pairs < minimum {min_pairs}"
    return None


def compute_metrics(sim: np.ndarray, obs: np.ndarray, times=None, *, metrics: Sequence[str] | None = None,
                    thresholds=None, weights: Mapping[str, float] | None = None, min_pairs: int = 1,
                    ids: Sequence[str] | None = None, step_seconds: float | None = None,
                    block_rows: int = 128, workers: int | None = None,
                    progress: Progress | None = None) -> MetricTable:
    """Metrics for every row of `sim` / `obs` (locations × time, m3/s, NaN = missing).

    times: datetime64 per column (for peak timing and volume); None = hourly steps.
    metrics: names from registry.ALL_METRICS (None = all; categorical only with thresholds).
    thresholds: see metrics.thresholds (value, "p90", Threshold(...), or a list of them).
    weights: score weights (default scoring.DEFAULT_WEIGHTS).
    min_pairs: locations with fewer valid pairs get an error and NaN metrics.
    ids: location ids in row order; needed only for per-location threshold values.
    progress: called as progress(done, total) after each block, from the calling thread; an
        exception raised in it stops the computation and propagates (use it to cancel).
    """
    sim = np.asarray(sim, dtype=float)
    obs = np.asarray(obs, dtype=float)
    if sim.ndim != 2 or sim.shape != obs.shape:
        raise ValueError(f"sim {sim.shape} and obs {obs.shape} must be equal 2-D (locations × time) arrays")
    if min_pairs < 1:
        raise ValueError("min_pairs must be >= 1")
    n_loc, n_time = sim.shape
    thr_list: list[Threshold] = parse_thresholds(thresholds)
    names = select_metrics(metrics, bool(thr_list))
    wts = validate_weights(DEFAULT_WEIGHTS if weights is None else weights) if SCORE in names else {}
    # Score inputs are computed even when not requested for output.
    needed = set(names) | set(wts)
    needed_cont = [m for m in CONTINUOUS if m in needed]
    needed_cat = [m for m in categorical.CATEGORICAL if m in needed] if thr_list else []
    site_values = {}
    for thr in thr_list:
        if thr.values is not None and ids is None:
            raise ValueError(f"threshold {thr.label} has per-location values: pass ids")
        site_values[thr.label] = per_location(thr, ids) if thr.values is not None else None
    hours, step_s = _time_axis(times, n_time, step_seconds)

    labels = [t.label for t in thr_list]
    keys = needed_cont + [f"{m}@{lab}" for lab in labels for m in needed_cat]
    out: dict[str, np.ndarray] = {key: np.full(n_loc, np.nan) for key in keys}
    thr_used = {t.label: np.full(n_loc, np.nan) for t in thr_list}
    n_pairs = np.zeros(n_loc, dtype=np.int64)
    all_notes: list = []
    # No time steps → no block work; every location then fails with "no observations".
    blocks = [slice(i, min(i + block_rows, n_loc)) for i in range(0, n_loc, block_rows)] if n_time else []

    local = threading.local()  # one workspace per worker thread

    def run(rows: slice):
        if not hasattr(local, "ws"):
            local.ws = Workspace(min(block_rows, n_loc), n_time)
        return rows, _block(sim[rows], obs[rows], rows, local.ws, needed_cont, needed_cat, thr_list,
                            site_values, hours, step_s)

    workers = workers or min(4, os.cpu_count() or 1)
    done = 0
    if progress:
        progress(0, n_loc)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(run, b) for b in blocks]
        try:
            for fut in as_completed(futures):
                rows, (vals, notes, used, cnt) = fut.result()
                for key, v in vals.items():
                    out[key][rows] = v
                for label, v in used.items():
                    thr_used[label][rows] = v
                n_pairs[rows] = cnt
                all_notes += notes
                done += rows.stop - rows.start
                if progress:
                    progress(done, n_loc)  # may raise to abort (e.g. the caller was cancelled)
        except BaseException:
            for fut in futures:  # don't run the remaining blocks before propagating
                fut.cancel()
            raise

    bad = n_pairs < min_pairs
    idx = np.flatnonzero(bad)
    # Finite-value counts only for the failing rows, to say why they failed.
    n_sim, n_obs = row_count(np.isfinite(sim[idx])), row_count(np.isfinite(obs[idx]))
    errors = {int(i): _error(int(n_pairs[i]), int(ns), int(no), min_pairs)
              for i, ns, no in zip(idx, n_sim, n_obs)}
    for v in out.values():
        v[bad] = np.nan
    if SCORE in names:
        out[SCORE] = weighted_score(out, wts, labels, n_loc)
        out[SCORE][bad] = np.nan
    cat_names = [m for m in names if m in categorical.CATEGORICAL]
    cols = [m for m in names if m in CONTINUOUS]
    cols += [f"{m}@{lab}" for lab in labels for m in cat_names]
    cols += [SCORE] if SCORE in names else []
    keep = set(cols)
    notes_by_row: dict[int, dict[str, str]] = {}
    for key, idx, reason in all_notes:
        if key not in keep:
            continue  # computed only as a score input
        for i in idx:
            if not bad[i]:
                notes_by_row.setdefault(int(i), {}).setdefault(key, reason)
    if SCORE in names:
        for i in np.flatnonzero(~bad & np.isnan(out[SCORE])):
            notes_by_row.setdefault(int(i), {})[SCORE] = "no weighted metric is defined"
    for used in thr_used.values():
        used[bad] = np.nan
    return MetricTable(names=cols, values={c: out[c] for c in cols}, n_pairs=n_pairs, thresholds=thr_used,
                       errors=errors, notes=notes_by_row)
