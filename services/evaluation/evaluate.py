"""`evaluate`: simulated nexus flows vs observed gage flows → per-location metrics + aggregates."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .align import align
from .crosswalk import load_crosswalk
from .metrics import compute_metrics, parse_thresholds, select_metrics
from .metrics.engine import Progress
from .metrics.scoring import DEFAULT_WEIGHTS
from .readers import load_observations, load_simulation
from .result import EvaluationResult, LocationResult, aggregate
from .timeseries import parse_window, resample_rule
from .units import normalize_unit


def evaluate(sim, obs, crosswalk, window=None, resample: str | None = None,
             metrics: Sequence[str] | None = None, thresholds=None, min_pairs: int = 10,
             progress: Progress | None = None, *, obs_units: str = "m3/s",
             weights: Mapping[str, float] | None = None, keep_series: bool = True,
             workers: int | None = None) -> EvaluationResult:
    """Evaluate every crosswalk pair (gage ↔ nexus).

    sim: frame (time × nexus id, m3/s), ``{nexus: Series}``, a directory of ngen
        ``<nex-id>_output.csv`` files, one such file, or a NetCDF file (readers.ngen_netcdf).
    obs: frame (time × gage id), ``{gage: Series}``, an observation CSV or a directory of per-gage
        CSVs (readers.observations); values are in `obs_units` ("m3/s" or "ft3/s") and converted.
    crosswalk: ``{gage: nexus}``, pairs, or a JSON/CSV file (crosswalk module).
    window: ``(start, end)`` (either may be None), inclusive, UTC; None = everything.
    resample: None, "hourly" or "daily" (interval means, applied after the window).
    metrics: names (metrics.registry.ALL_METRICS); None = all (categorical only with thresholds).
    thresholds: for categorical scores: a value in m3/s, "p90" (observation percentile per
        location), Threshold(...), or a list of those.
    min_pairs: a location with fewer valid (both finite) pairs is not evaluated; its error says
        e.g. "gage 0123: 3 valid pairs < minimum 10".
    progress: ``progress(done, total)`` over locations while metrics are computed; raising in it
        aborts the evaluation (the exception propagates), e.g. to honour a cancellation.
    weights: score weights (metrics.scoring.DEFAULT_WEIGHTS when None).
    keep_series: keep the aligned arrays on the result (needed for hydrograph plots).
    """
    # Validate the cheap arguments before reading any data.
    if int(min_pairs) < 1:
        raise ValueError("min_pairs must be >= 1")
    thr = parse_thresholds(thresholds)
    names = select_metrics(metrics, bool(thr))
    parse_window(window)
    resample_rule(resample)
    obs_units = normalize_unit(obs_units)
    xwalk = load_crosswalk(crosswalk)

    sim_frame = load_simulation(sim, nexus_ids=set(xwalk.values()))
    obs_frame = load_observations(obs, obs_units)
    data = align(sim_frame, obs_frame, xwalk, window, resample)
    table = compute_metrics(data.sim, data.obs, data.times.to_numpy(), metrics=names, thresholds=thr,
                            weights=weights, min_pairs=int(min_pairs), ids=data.gage_ids,
                            progress=progress, workers=workers)

    # A missing gage/nexus explains "no observations" better than the generic engine message.
    errors = {**table.errors, **data.missing}
    evaluated = np.ones(len(data.gage_ids), dtype=bool)
    evaluated[list(errors)] = False
    cols = table.names
    columns = [table.values[c].tolist() for c in cols]  # bulk conversion to Python floats
    thr_cols = {label: v.tolist() for label, v in table.thresholds.items()}
    locations = []
    for i, (g, n) in enumerate(zip(data.gage_ids, data.nexus_ids)):
        err = errors.get(i)
        locations.append(LocationResult(
            gage_id=g, nexus_id=n, n_pairs=int(table.n_pairs[i]),
            metrics={c: (col[i] if err is None else float("nan")) for c, col in zip(cols, columns)},
            thresholds={} if err else {label: v[i] for label, v in thr_cols.items()},
            notes={} if err else table.notes.get(i, {}),
            error=f"gage {g}: {err}" if err else None))
    config = {
        "window": [None if b is None else str(b) for b in parse_window(window)],
        "resample": resample, "min_pairs": int(min_pairs), "obs_units": obs_units,
        "thresholds": [t.describe() for t in thr],
        "weights": (dict(DEFAULT_WEIGHTS if weights is None else weights) if "score" in cols else None),
        "time_steps": len(data.times),
    }
    return EvaluationResult(metric_names=cols, locations=locations,
                            aggregate=aggregate(cols, table.values, evaluated), config=config,
                            series=data if keep_series else None)
