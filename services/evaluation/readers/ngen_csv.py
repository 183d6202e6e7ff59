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

import pandas as pd

from ..crosswalk import normalize_nexus_id
from ..timeseries import normalize_frame

SUFFIX = "_output.csv"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def nexus_id_from_path(path: Path) -> str:
    return normalize_nexus_id(Path(path).name)


def read_nexus_csv(path) -> pd.Series:
    """One nexus file → Series (UTC-naive DatetimeIndex, float64 m3/s) named by the nexus id."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, header=None, skipinitialspace=True, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raw = pd.DataFrame(columns=[0, 1, 2])
    if raw.shape[1] != 3:
        raise ValueError(f"{path}: expected 3 columns '<step>, <time>, <flow>', found {raw.shape[1]}")
    try:
        times = pd.to_datetime(raw[1].str.strip(), format=TIME_FORMAT)
    except ValueError as exc:
        raise ValueError(f"{path}: time column is not '{TIME_FORMAT}': {exc}") from exc
    # Non-numeric flow text (e.g. "nan", "-nan") becomes NaN rather than failing the whole file.
    flow = pd.to_numeric(raw[2].str.strip(), errors="coerce").to_numpy(dtype="float64")
    series = pd.Series(flow, index=pd.DatetimeIndex(times), name=nexus_id_from_path(path))
    if series.index.has_duplicates:
        raise ValueError(f"{path}: duplicate time stamp {series.index[series.index.duplicated()][0]}")
    return series.sort_index()


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
    series = {nexus_id_from_path(p): read_nexus_csv(p) for p in paths}
    if not series:
        return pd.DataFrame(index=pd.DatetimeIndex([]), dtype="float64")
    return normalize_frame(pd.concat(series, axis=1))
