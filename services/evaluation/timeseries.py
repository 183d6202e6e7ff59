"""Time handling shared by readers and alignment: UTC-naive indexes, windows, resampling.

Conventions: every frame is indexed by a sorted, unique, timezone-naive DatetimeIndex in UTC
(ngen writes UTC without a zone); one column per location; values float64 in m3/s, NaN = missing.
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

# Friendly names → pandas offset aliases.
_RESAMPLE = {"hourly": "h", "hour": "h", "h": "h", "1h": "h", "daily": "D", "day": "D", "d": "D", "1d": "D"}


def to_utc_naive(times) -> pd.DatetimeIndex:
    """Parse times to a UTC, timezone-naive DatetimeIndex (aware inputs are converted to UTC)."""
    index = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    return index.tz_localize(None)


def frame_from_series(series: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Wide frame (time × id) from ``{id: Series indexed by time}``; indexes are outer-joined."""
    cols = {str(k): pd.Series(v, dtype="float64") for k, v in series.items()}
    frame = pd.concat(cols, axis=1) if cols else pd.DataFrame(dtype="float64")
    return normalize_frame(frame)


def _is_normal(frame: pd.DataFrame) -> bool:
    idx = frame.index
    return (isinstance(idx, pd.DatetimeIndex) and idx.tz is None and idx.is_monotonic_increasing
            and idx.is_unique and all(isinstance(c, str) for c in frame.columns)
            and all(dt == "float64" for dt in frame.dtypes))


def normalize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Enforce the conventions above: string column names, UTC-naive sorted unique index, float64.
    A frame that already conforms is returned as is (no copy: nothing downstream mutates it)."""
    if _is_normal(frame):
        return frame
    frame = frame.copy()
    frame.index = to_utc_naive(frame.index)
    frame.columns = [str(c) for c in frame.columns]
    if frame.index.has_duplicates:
        dup = frame.index[frame.index.duplicated()][0]
        raise ValueError(f"duplicate time stamp {dup} in series")
    return frame.sort_index().astype("float64")


def parse_window(window) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """``(start, end)`` → UTC-naive timestamps; either bound may be None (open). Inclusive both ends,
    like ngen's realization ``time`` block, so its start/end can be passed unchanged."""
    if window is None:
        return None, None
    if isinstance(window, Mapping):
        start, end = window.get("start"), window.get("end")
    else:
        start, end = window
    bounds = tuple(None if b is None else to_utc_naive([b])[0] for b in (start, end))
    if bounds[0] is not None and bounds[1] is not None and bounds[1] < bounds[0]:
        raise ValueError(f"time window end {bounds[1]} is before start {bounds[0]}")
    return bounds  # type: ignore[return-value]


def apply_window(frame: pd.DataFrame, window) -> pd.DataFrame:
    """Rows with start <= time <= end."""
    start, end = parse_window(window)
    return frame.loc[start:end]


def resample_rule(resample: str | None) -> str | None:
    """"hourly"/"daily" (or a pandas alias like "h", "D", "6h") → pandas rule; None = no resampling."""
    if resample is None:
        return None
    key = str(resample).strip()
    rule = _RESAMPLE.get(key.lower(), key)
    try:
        pd.tseries.frequencies.to_offset(rule)
    except ValueError as exc:
        raise ValueError(f"unknown resample interval {resample!r}; use 'hourly' or 'daily'") from exc
    return rule


def resample_mean(frame: pd.DataFrame, resample: str | None) -> pd.DataFrame:
    """Mean of the available (non-NaN) values in each interval, labelled by the interval start.

    A bin with no values is NaN, so a gap stays a gap instead of being filled.
    """
    rule = resample_rule(resample)
    if rule is None or frame.empty:
        return frame
    return frame.resample(rule, label="left", closed="left").mean()
