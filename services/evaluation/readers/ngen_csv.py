"""ngen nexus output CSVs: ``<root>/<nex-id>_output.csv``.

Format written by ngen (no header), one row per output step::

    0, 2015-12-01 00:00:00, 0.123
    1, 2015-12-01 01:00:00, 0.131

columns: step index, UTC time ``YYYY-MM-DD HH:MM:SS``, flow in m3/s. The step column is ignored;
the time stamp is authoritative (so files from runs with different starts still line up).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..crosswalk import normalize_nexus_id
from ..timeseries import normalize_frame

SUFFIX = "_output.csv"
_COLS = ["step", "time", "flow"]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def nexus_id_from_path(path: Path) -> str:
    return normalize_nexus_id(Path(path).name)


def _read_raw(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(time strings, flow floats). Fast path parses flows as floats in the C reader; a file with
    odd flow text (e.g. "-nan(ind)") falls back to text, and non-numbers become NaN."""
    with open(path) as fh:
        first = fh.readline()
    if not first.strip():
        return np.array([], dtype=object), np.array([], dtype="float64")
    if first.count(",") != 2:
        raise ValueError(f"{path}: expected 3 columns '<step>, <time>, <flow>', found {first.count(',') + 1}")
    try:
        raw = pd.read_csv(path, header=None, names=_COLS, usecols=["time", "flow"], skipinitialspace=True,
                          dtype={"time": str, "flow": "float64"})
        return raw["time"].to_numpy(dtype=object), raw["flow"].to_numpy(dtype="float64")
    except ValueError:
        raw = pd.read_csv(path, header=None, names=_COLS, skipinitialspace=True, dtype=str, keep_default_na=False)
        flow = pd.to_numeric(raw["flow"].str.strip(), errors="coerce").to_numpy(dtype="float64")
        return raw["time"].str.strip().to_numpy(dtype=object), flow


def _parse_times(text: np.ndarray, path: Path, cache: dict | None) -> pd.DatetimeIndex:
    # Every nexus file of one run has the same time column: parse it once per directory read.
    if cache is not None and "text" in cache and np.array_equal(cache["text"], text):
        return cache["index"]
    try:
        index = pd.DatetimeIndex(pd.to_datetime(text, format=TIME_FORMAT))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: time column is not '{TIME_FORMAT}': {exc}") from exc
    if cache is not None:
        cache.update(text=text, index=index)
    return index


def read_nexus_csv(path, _cache: dict | None = None) -> pd.Series:
    """One nexus file → Series (UTC-naive DatetimeIndex, float64 m3/s) named by the nexus id."""
    path = Path(path)
    text, flow = _read_raw(path)
    index = _parse_times(text, path, _cache)
    series = pd.Series(flow, index=index, name=nexus_id_from_path(path))
    if not index.is_monotonic_increasing or index.has_duplicates:
        if index.has_duplicates:
            raise ValueError(f"{path}: duplicate time stamp {index[index.duplicated()][0]}")
        series = series.sort_index()
    return series


def read_nexus_csv_dir(directory, nexus_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """All ``*_output.csv`` nexus files under `directory` → frame (time × nexus id).

    With `nexus_ids`, only those files are read (ids without a file are simply absent; the
    caller reports them per location). Catchment outputs (``cat-N.csv``) are never matched.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"simulation output directory not found: {directory}")
    if nexus_ids is None:
        paths = sorted(directory.glob(f"*{SUFFIX}"))
    else:
        wanted = dict.fromkeys(normalize_nexus_id(n) for n in nexus_ids)
        paths = [p for p in (directory / f"{n}{SUFFIX}" for n in wanted) if p.is_file()]
    cache: dict = {}
    series = {nexus_id_from_path(p): read_nexus_csv(p, cache) for p in paths}
    if not series:
        return pd.DataFrame(index=pd.DatetimeIndex([]), dtype="float64")
    return normalize_frame(pd.concat(series, axis=1))
