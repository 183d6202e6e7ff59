"""ngen's `NetCDF` forcing provider: one file for all catchments.

Dimensions `catchment-id` and `time`; `ids(catchment-id)` strings; `Time(catchment-id, time)`
(or `Time(time)`) with CF units `<unit> since <YYYY-MM-DD[ HH:MM:SS]>`; every forcing variable
`(catchment-id, time)`. Missing values (masked / NaN) in a needed slice are an error.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np

from .errors import ConfigError
from .timegrid import TimeGrid

MAX_RUNS = 256  # more runs of wanted rows than this: read the whole variable instead
CHUNK_CACHE = 256 * 2**20

_UNIT_SECONDS = {"ns": 1e-9, "nanoseconds": 1e-9, "nanosecond": 1e-9, "us": 1e-6, "microseconds": 1e-6,
                 "ms": 1e-3, "milliseconds": 1e-3, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
                 "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0,
                 "hours": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0}
_UNITS_RE = re.compile(r"^\s*(\w+)\s+since\s+(\d{4}-\d{1,2}-\d{1,2})(?:[ T](\d{1,2}:\d{2}(?::\d{2}(?:\.\d*)?)?))?\s*(?:Z|UTC|\+00:?00)?\s*$")


def time_units_to_epoch(units: str) -> tuple[float, int]:
    """CF time units → (seconds per unit, epoch seconds of the reference time)."""
    m = _UNITS_RE.match(units or "")
    if not m or m.group(1).lower() not in _UNIT_SECONDS:
        raise ValueError(f"unsupported time units {units!r}")
    clock = m.group(3) or "00:00:00"
    if clock.count(":") == 1:
        clock += ":00"
    ref = datetime.strptime(f"{m.group(2)} {clock.split('.')[0]}", "%Y-%m-%d %H:%M:%S")
    return _UNIT_SECONDS[m.group(1).lower()], int(ref.replace(tzinfo=UTC).timestamp())


def _read_ids(ds) -> list[str]:
    import netCDF4

    var = ds.variables["ids"]
    raw = var[:]
    if getattr(raw, "dtype", None) is not None and raw.dtype.kind == "S" and raw.ndim == 2:
        raw = netCDF4.chartostring(raw)
    return [(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in np.asarray(raw).tolist()]


def _fill_to_nan(var, raw: np.ndarray) -> np.ndarray:
    """float64 copy of `raw` with the variable's fill value (or the netCDF default) as NaN."""
    data = np.asarray(raw, dtype=np.float64)
    fill = getattr(var, "_FillValue", None)
    if fill is None:
        import netCDF4

        fill = netCDF4.default_fillvals.get(var.dtype.str[1:]) if hasattr(var.dtype, "str") else None
    if fill is not None:
        raw = np.asarray(raw)
        data[raw == np.asarray(fill, dtype=raw.dtype)] = np.nan
    return data


def _take_rows(var, rows: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """var[rows, lo:hi], reading each contiguous run of the wanted rows as one slice: netCDF4's
    fancy indexing reads row by row, and reading everything decompresses chunks of catchments
    another rank simulates (a partition's rows usually form a few runs in the file)."""
    if not rows.size:
        return np.empty((0, hi - lo), dtype=var.dtype)
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    breaks = np.flatnonzero(np.diff(srt) != 1) + 1
    starts, ends = np.concatenate([[0], breaks]), np.concatenate([breaks, [srt.size]])
    if starts.size > MAX_RUNS:
        return np.asarray(var[:, lo:hi])[rows]
    if var.chunking() != "contiguous":
        var.set_var_chunk_cache(size=CHUNK_CACHE)  # a chunk shared by two runs is decompressed once
    out = np.empty((rows.size, hi - lo), dtype=var.dtype)
    for a, b in zip(starts.tolist(), ends.tolist()):
        out[order[a:b]] = var[int(srt[a]): int(srt[b - 1]) + 1, lo:hi]
    return out


def read_rows(var, rows: np.ndarray, first: np.ndarray, n_steps: int) -> np.ndarray:
    """(n_steps, len(rows)) float64 of `var` from per-row time index `first`; missing → NaN.
    Transposed while still in the file's (often 4-byte) type: half the bytes to move."""
    if not rows.size:
        return np.zeros((n_steps, 0))
    if (first == first[0]).all():  # one shared time window
        lo = int(first[0])
        raw = _take_rows(var, rows, lo, lo + n_steps)
    else:
        lo, hi = int(first.min()), int(first.max()) + n_steps
        raw = _take_rows(var, rows, lo, hi)[np.arange(rows.size)[:, None],
                                            (first - lo)[:, None] + np.arange(n_steps)[None, :]]
    return _fill_to_nan(var, np.ascontiguousarray(raw.T))


def open_forcing(path: str):
    import netCDF4

    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise ConfigError(f"cannot open NetCDF forcing {path}: {exc}", field="forcing.path") from None
    ds.set_auto_mask(False)  # fill values are handled in _fill_to_nan, much faster than masked arrays
    return ds


def plan_rows(ds, path: str, catchment_ids: list[str], variables: list[str], grid: TimeGrid
              ) -> tuple[np.ndarray, np.ndarray]:
    """Every check before reading: (file row of each catchment, its first time index)."""
    for dim in ("catchment-id", "time"):
        if dim not in ds.dimensions:
            raise ConfigError(f"NetCDF forcing {path} has no dimension {dim!r}", field="forcing.path")
    for name in ("ids", "Time"):
        if name not in ds.variables:
            raise ConfigError(f"NetCDF forcing {path} has no variable {name!r}", field="forcing.path")
    row_of = {cid: i for i, cid in enumerate(_read_ids(ds))}
    rows = np.empty(len(catchment_ids), dtype=np.int64)
    for j, cid in enumerate(catchment_ids):
        if cid not in row_of:
            raise ConfigError(f"no forcing in {path} (its `ids` do not list this catchment)", catchment=cid,
                              field="forcing")
        rows[j] = row_of[cid]
    missing = [v for v in variables if v not in ds.variables]
    if missing:
        raise ConfigError(f"NetCDF forcing {path} has no variable(s) {', '.join(missing)}",
                          catchment=catchment_ids[0] if catchment_ids else None, field="forcing")
    for v in variables:
        if ds.variables[v].dimensions != ("catchment-id", "time"):
            raise ConfigError(f"NetCDF forcing {path}: variable {v} must have dims (catchment-id, time), "
                              f"has {ds.variables[v].dimensions}", field="forcing")
    return rows, _locate_steps(ds.variables["Time"], rows, catchment_ids, grid, path)


def finish(data: np.ndarray, variable: str, catchment_ids: list[str], grid: TimeGrid, path: str) -> np.ndarray:
    """Refuse missing values in (K, n) `data`, naming the catchment and time."""
    bad = ~np.isfinite(data)
    if bad.any():
        k, j = np.argwhere(bad)[0]
        raise ConfigError(f"NetCDF forcing {path}: {variable} is missing at {grid.label(int(k))}",
                          catchment=catchment_ids[j], field="forcing")
    return data


def read_netcdf_forcing(path: str, catchment_ids: list[str], variables: list[str],
                        grid: TimeGrid) -> dict[str, np.ndarray]:
    """{var: (K, n) float64} for `catchment_ids` (in that order) on the run's time grid."""
    with open_forcing(path) as ds:
        rows, first = plan_rows(ds, path, catchment_ids, variables, grid)
        return {v: finish(read_rows(ds.variables[v], rows, first, grid.n_steps), v, catchment_ids, grid, path)
                for v in variables}


def _locate_steps(time_var, rows: np.ndarray, catchment_ids: list[str], grid: TimeGrid, path: str) -> np.ndarray:
    """Per catchment, the time index of the run's first step (checking every step is present)."""
    try:
        scale, ref = time_units_to_epoch(getattr(time_var, "units", ""))
    except ValueError as exc:
        raise ConfigError(f"NetCDF forcing {path}: Time {exc}", field="forcing") from None
    if len(time_var.dimensions) == 2:
        raw = np.asarray(_take_rows(time_var, rows, 0, time_var.shape[1]), dtype=np.float64)
        rows = np.arange(rows.size)  # raw now holds exactly the wanted rows
        if raw.shape[0] and (raw == raw[0]).all():
            raw = raw[0]  # the usual case: one time axis repeated per catchment
    else:
        raw = np.asarray(time_var[:], dtype=np.float64)
    if raw.ndim == 1:
        first = _first_step(np.round(raw * scale).astype(np.int64) + ref, grid)
        if first < 0:
            raise ConfigError(f"NetCDF forcing {path} does not cover the run {grid.label(0)} .. "
                              f"{grid.label(grid.n_steps - 1)} every {grid.interval} s",
                              catchment=catchment_ids[0] if catchment_ids else None, field="forcing")
        return np.full(rows.size, first, dtype=np.int64)
    first = np.empty(rows.size, dtype=np.int64)
    for j, row in enumerate(rows.tolist()):
        first[j] = _first_step(np.round(raw[row] * scale).astype(np.int64) + ref, grid)
        if first[j] < 0:
            raise ConfigError(f"NetCDF forcing {path} does not cover the run {grid.label(0)} .. "
                              f"{grid.label(grid.n_steps - 1)} every {grid.interval} s", catchment=catchment_ids[j],
                              field="forcing")
    return first


def _first_step(epochs: np.ndarray, grid: TimeGrid) -> int:
    """Index of the run's start in `epochs` if every step of the run follows in order, else -1."""
    hits = np.flatnonzero(epochs == grid.start)
    if hits.size and np.array_equal(epochs[hits[0]: hits[0] + grid.n_steps], grid.epochs):
        return int(hits[0])
    return -1
