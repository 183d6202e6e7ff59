"""Flow thresholds for categorical (event) scores, and their per-location values.

A threshold is one of
* a fixed value in m3/s, the same for every location      — ``Threshold(value=10.0)``, ``10.0``;
* a percentile of each location's own observations          — ``Threshold(percentile=90)``, ``"p90"``, ``"90%"``;
  computed over the observations that are part of valid pairs, numpy's default "linear"
  interpolation: position (n − 1)·q/100 in the sorted values;
* explicit per-location values ``Threshold(values={"01013500": 12.5, ...}, name="flood")``;
  a location without an entry gets NaN scores with a note.

An event is ``value >= threshold`` (observed and simulated compared against the same number).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Threshold:
    value: float | None = None
    percentile: float | None = None
    values: Mapping[str, float] | None = None  # per-location, keyed by gage id
    name: str | None = None

    def __post_init__(self):
        given = sum(x is not None for x in (self.value, self.percentile, self.values))
        if given != 1:
            raise ValueError("a threshold needs exactly one of value, percentile or values")
        if self.percentile is not None and not 0 <= self.percentile <= 100:
            raise ValueError(f"threshold percentile {self.percentile} outside [0, 100]")
        if self.value is not None and not np.isfinite(self.value):
            raise ValueError(f"threshold value {self.value} is not finite")

    @property
    def label(self) -> str:
        """Short tag used in metric names, e.g. "p90" → "pod@p90", value 10 → "pod@10"."""
        if self.name:
            return self.name
        if self.percentile is not None:
            return f"p{self.percentile:g}"
        if self.value is not None:
            return f"{self.value:g}"
        return "site"

    def describe(self) -> dict:
        if self.percentile is not None:
            return {"label": self.label, "percentile": self.percentile}
        if self.value is not None:
            return {"label": self.label, "value": self.value}
        return {"label": self.label, "values": dict(self.values or {})}


def parse_threshold(spec) -> Threshold:
    """One threshold from a Threshold, a number, "p90"/"90%"/"10", or a dict of the fields."""
    if isinstance(spec, Threshold):
        return spec
    if isinstance(spec, bool):
        raise TypeError("a threshold cannot be a boolean")
    if isinstance(spec, (int, float, np.number)):
        return Threshold(value=float(spec))
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text.startswith("p") or text.endswith("%"):
            return Threshold(percentile=float(text.strip("p%")))
        return Threshold(value=float(text))
    if isinstance(spec, Mapping):
        return Threshold(**{k: spec[k] for k in ("value", "percentile", "values", "name") if k in spec})
    raise TypeError(f"cannot read a threshold from {spec!r}")


def parse_thresholds(spec) -> list[Threshold]:
    """None → []; one threshold or a sequence of them → list; labels must be unique."""
    if spec is None:
        return []
    items = spec if isinstance(spec, Sequence) and not isinstance(spec, str) else [spec]
    out = [parse_threshold(s) for s in items]
    labels = [t.label for t in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate threshold labels {labels}; give each a distinct name")
    return out


def per_location(threshold: Threshold, gage_ids: Iterable[str]) -> np.ndarray | None:
    """Values for explicit per-location thresholds in row order (NaN where absent); else None."""
    if threshold.values is None:
        return None
    return np.array([float(threshold.values.get(g, np.nan)) for g in gage_ids], dtype=float)


def row_percentiles(o_hi: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """q-th percentile of each row's valid values (linear interpolation, like numpy's default).

    `o_hi` holds the valid values with invalid cells set to +inf, so after partitioning a row the
    valid values are its first n entries. It is partitioned in place (the row's values are only
    reordered, so later calls stay correct). Rows sharing the same n are partitioned together:
    np.partition is much faster than a full sort and needs one k per call.
    """
    out = np.full(len(n), np.nan)
    for k in np.unique(n[n > 0]):
        rows = np.flatnonzero(n == k)
        pos = (k - 1) * q / 100.0
        lo = int(np.floor(pos))
        frac = pos - lo
        whole = len(rows) == len(n)
        block = o_hi if whole else o_hi[rows]
        block.partition(lo, axis=1)
        v_lo = block[:, lo]
        if frac > 0 and lo + 1 < k:
            v_hi = block[:, lo + 1:].min(axis=1)  # next order statistic
            out[rows] = v_lo + frac * (v_hi - v_lo)
        else:
            out[rows] = v_lo
        if whole:
            break
    return out


def threshold_values(threshold: Threshold, o_hi: np.ndarray, n: np.ndarray,
                     site_values: np.ndarray | None) -> np.ndarray:
    """Per-row threshold (m3/s) for one block of rows."""
    if threshold.value is not None:
        return np.full(len(n), threshold.value)
    if threshold.percentile is not None:
        return row_percentiles(o_hi, n, threshold.percentile)
    if site_values is None:
        raise ValueError(f"threshold {threshold.label}: per-location values not resolved")
    return site_values
