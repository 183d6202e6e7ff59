"""Evaluation results: one record per location plus aggregates across locations.

Structure (also the JSON layout written by `writers.write_json`)::

    EvaluationResult
      metric_names: ["nse", ..., "pod@p90", ..., "score"]     output order
      locations: [LocationResult, ...]                        crosswalk order
        gage_id, nexus_id, n_pairs
        metrics: {name: float}        NaN = undefined (reason in notes) or not evaluated
        thresholds: {label: float}    per-location threshold used, m3/s
        notes: {name: reason}         why a metric is NaN for an evaluated location
        error: str | None             set when the location could not be evaluated at all
      aggregate: {"mean": {name: v}, "median": {name: v}, "count": {name: n}}
                                      over evaluated locations with a finite value
      config: {...}                   window, resample, min_pairs, thresholds, weights, units
      series: AlignedSeries | None    aligned data kept for plotting (not serialised)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .align import AlignedSeries


@dataclass
class LocationResult:
    gage_id: str
    nexus_id: str
    n_pairs: int
    metrics: dict[str, float]
    thresholds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"gage_id": self.gage_id, "nexus_id": self.nexus_id, "n_pairs": self.n_pairs,
                "error": self.error, "metrics": _clean(self.metrics), "thresholds": _clean(self.thresholds),
                "notes": dict(self.notes)}


@dataclass
class EvaluationResult:
    metric_names: list[str]
    locations: list[LocationResult]
    aggregate: dict[str, dict[str, float]]
    config: dict[str, Any] = field(default_factory=dict)
    series: AlignedSeries | None = field(default=None, repr=False)

    @property
    def errors(self) -> dict[str, str]:
        """gage id → error, for the locations that could not be evaluated."""
        return {loc.gage_id: loc.error for loc in self.locations if loc.error}

    def location(self, gage_id: str) -> LocationResult:
        for loc in self.locations:
            if loc.gage_id == gage_id:
                return loc
        raise KeyError(gage_id)

    def summary(self) -> dict[str, int]:
        failed = sum(1 for loc in self.locations if loc.error)
        return {"locations": len(self.locations), "evaluated": len(self.locations) - failed, "failed": failed}

    def to_frame(self) -> pd.DataFrame:
        """One row per location: gage_id, nexus_id, n_pairs, error, then one column per metric."""
        rows = [{"gage_id": loc.gage_id, "nexus_id": loc.nexus_id, "n_pairs": loc.n_pairs,
                 "error": loc.error or "", **loc.metrics} for loc in self.locations]
        return pd.DataFrame(rows, columns=["gage_id", "nexus_id", "n_pairs", "error", *self.metric_names])

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "summary": self.summary(), "metrics": list(self.metric_names),
                "aggregate": {k: _clean(v) for k, v in self.aggregate.items()},
                "locations": [loc.to_dict() for loc in self.locations]}


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    """JSON-safe: NaN/inf → None, numpy scalars → Python numbers."""
    out = {}
    for k, v in values.items():
        v = v.item() if isinstance(v, np.generic) else v
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out


def aggregate(names: list[str], values: dict[str, np.ndarray], evaluated: np.ndarray) -> dict[str, dict]:
    """Mean, median and count of finite values over evaluated locations, per metric (NaN if none)."""
    out: dict[str, dict] = {"mean": {}, "median": {}, "count": {}}
    for name in names:
        v = values[name][evaluated]
        v = v[np.isfinite(v)]
        out["count"][name] = int(v.size)
        out["mean"][name] = float(v.mean()) if v.size else math.nan
        out["median"][name] = float(np.median(v)) if v.size else math.nan
    return out
