"""Observed streamflow CSVs → frame (time × gage id) in m3/s.

Two layouts, both with a header (column names case-insensitive):

* per gage: ``time,value`` — the gage id is `gage_id` or else the file name stem
  (``01013500.csv`` → "01013500"); a directory of such files is read as one frame;
* long: ``gage_id,time,value`` — many gages in one file.

Units are never guessed: the caller declares `units` ("m3/s"/"cms" or "ft3/s"/"cfs") and values
are converted to m3/s. Times are parsed as UTC (a zone offset in the text is honoured).
Missing values: empty cells and any non-numeric text (NWIS codes such as "Ice", "Eqp") become
NaN; so do the sentinel numbers in `na_values`. Duplicate (gage, time) rows are an error rather
than being silently averaged.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..timeseries import frame_from_series, normalize_frame, to_utc_naive
from ..units import normalize_unit, to_m3s

DEFAULT_NA_VALUES = (-999999.0, -9999.0)
GAGE_COLUMNS = ("gage_id", "gage", "site_no")


def _columns(frame: pd.DataFrame, path: Path) -> dict[str, str]:
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    found = {"time": lowered.get("time"), "value": lowered.get("value"),
             "gage": next((lowered[g] for g in GAGE_COLUMNS if g in lowered), None)}
    if found["time"] is None or found["value"] is None:
        raise ValueError(f"{path}: observation CSV needs 'time' and 'value' columns, "
                         f"found {', '.join(map(str, frame.columns))}")
    return found


def _values(text: pd.Series, na_values: Iterable[float]) -> np.ndarray:
    values = pd.to_numeric(text.str.strip(), errors="coerce").to_numpy(dtype="float64", copy=True)
    for sentinel in na_values:
        values[values == sentinel] = np.nan
    return values


def _read_one(path: Path, gage_id: str | None, na_values) -> pd.DataFrame:
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    cols = _columns(raw, path)
    times = to_utc_naive(raw[cols["time"]].str.strip())
    values = _values(raw[cols["value"]], na_values)
    if cols["gage"] is not None:
        gages = raw[cols["gage"]].str.strip()
    else:
        gages = pd.Series(gage_id or path.stem, index=raw.index)
    long = pd.DataFrame({"gage": gages.to_numpy(), "time": times, "value": values})
    dup = long.duplicated(["gage", "time"])
    if dup.any():
        row = long[dup].iloc[0]
        raise ValueError(f"{path}: {int(dup.sum())} duplicate observation(s), e.g. gage {row.gage} at {row.time}")
    return long.pivot(index="time", columns="gage", values="value")


def read_observations(source, units: str, gage_id: str | None = None,
                      na_values: Iterable[float] = DEFAULT_NA_VALUES) -> pd.DataFrame:
    """Observations from a CSV file or a directory of per-gage CSVs → frame (time × gage) in m3/s."""
    normalize_unit(units)  # fail on an unknown unit before reading anything
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise FileNotFoundError(f"no observation CSVs in {path}")
        frames = [_read_one(f, None, na_values) for f in files]
        clash = pd.Index([]).append([f.columns for f in frames])
        if clash.has_duplicates:
            raise ValueError(f"{path}: gage {clash[clash.duplicated()][0]} appears in more than one file")
        frame = pd.concat(frames, axis=1)
    elif path.is_file():
        frame = _read_one(path, gage_id, na_values)
    else:
        raise FileNotFoundError(f"observations not found: {path}")
    frame.columns.name = None
    return normalize_frame(to_m3s(frame, units))


def load_observations(source, units: str = "m3/s") -> pd.DataFrame:
    """Observations from a frame (time × gage), ``{gage: Series}`` or a path (see
    `read_observations`), converted from the declared `units` to m3/s."""
    if isinstance(source, pd.DataFrame):
        return normalize_frame(to_m3s(source, units))
    if isinstance(source, Mapping):
        return to_m3s(frame_from_series(source), units)
    return read_observations(source, units)
