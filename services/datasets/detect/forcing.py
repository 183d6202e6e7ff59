"""Forcing datasets: per-catchment CSV files (AORC_CSV) and ngen NetCDF forcing.

The domain's TIME is the range *every* catchment covers (the intersection), CATCHMENT_ID the
catchments present.
"""
from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from dmod.services.datasets.detect.context import DATASET, BadFile, DetectionContext, Obj
from dmod.services.datasets.detect.csvtime import read_span
from dmod.services.datasets.domains import (
    CATCHMENT_ID,
    TIME,
    Domain,
    TimeRange,
    fmt_range,
    intersect_ranges,
    utc,
)

CATCHMENT_IN_NAME = re.compile(r"(?<![A-Za-z0-9])((?:cat|wb|agg)-\d+)(?!\d)")
ID_COLUMNS = ("catchment_id", "catchment-id", "cat_id", "divide_id", "catchment", "id")


def catchment_from_name(stem: str) -> str | None:
    match = CATCHMENT_IN_NAME.search(stem)
    return match.group(1) if match else None


def _common(ranges: dict[str, TimeRange]) -> TimeRange:
    common = intersect_ranges(list(ranges.values()))
    if common is None:
        first = sorted(ranges.items(), key=lambda kv: kv[1].begin)
        raise BadFile(DATASET, f"the forcing files share no common time range ({first[0][0]}: "
                               f"{fmt_range(first[0][1])}, {first[-1][0]}: {fmt_range(first[-1][1])})")
    return common


def detect_csv(ctx: DetectionContext) -> Domain:
    files = ctx.with_suffix(".csv")
    if not files:
        raise BadFile(DATASET, "no .csv forcing files")
    spans = ctx.map(lambda o: (o, read_span(ctx, o)), files)
    ranges: dict[str, TimeRange] = {}
    owner: dict[str, str] = {}
    for obj, span in spans:
        lowered = [h.strip().lower() for h in span.header]
        id_col = next((c for c in ID_COLUMNS if c in lowered), None)
        cat = catchment_from_name(obj.stem)
        if id_col is not None and (id_col != "id" or cat is None):
            for cat, r in _long_format(ctx, obj, span.header, id_col).items():
                ranges[cat] = r if cat not in ranges else _common({"a": ranges[cat], "b": r})
                owner[cat] = obj.path
            continue
        if cat is None:
            raise BadFile(obj.path, "cannot tell the catchment: the file name has no id like cat-123 and there "
                                    f"is no catchment id column ({', '.join(ID_COLUMNS)})")
        if cat in owner:
            raise BadFile(obj.path, f"a second forcing file for {cat} (also {owner[cat]})")
        owner[cat] = obj.path
        if len([h for h in span.header if h.strip()]) < 2:
            raise BadFile(obj.path, "has a time column but no forcing variables")
        ranges[cat] = span.range(obj.path)
    return Domain({TIME: _common(ranges)}, {CATCHMENT_ID: frozenset(ranges)})


def _long_format(ctx: DetectionContext, obj: Obj, header: list[str], id_col: str) -> dict[str, TimeRange]:
    """One CSV holding many catchments: a catchment id column and a time column."""
    names = {h.lower(): h for h in header}
    path = ctx.fetch(obj)
    try:
        frame = pd.read_csv(path, usecols=[names[id_col], names["time"]], dtype=str)
    except (ValueError, pd.errors.ParserError) as exc:
        raise BadFile(obj.path, f"cannot read as CSV: {exc}") from None
    try:
        times = pd.to_datetime(frame[names["time"]], utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise BadFile(obj.path, f"bad time value: {exc}") from None
    out = {}
    for cat, t in times.groupby(frame[names[id_col]].str.strip()):
        values = np.sort(t.to_numpy())
        step = (values[-1] - values[-2]) if len(values) > 1 else np.timedelta64(3600, "s")
        begin = utc(pd.Timestamp(values[0]).to_pydatetime())
        end = utc(pd.Timestamp(values[-1] + step).to_pydatetime())
        out[str(cat)] = TimeRange(begin, end)
    if not out:
        raise BadFile(obj.path, "has no data rows")
    return out


# ---- NetCDF ----------------------------------------------------------------------------------

ID_VARIABLES = ("ids", "catchment-id", "catchment_id", "id")
TIME_VARIABLES = ("Time", "time")


def detect_netcdf(ctx: DetectionContext) -> Domain:
    files = ctx.with_suffix(".nc", ".nc4", ".netcdf")
    if not files:
        raise BadFile(DATASET, "no NetCDF (.nc) forcing file")
    ids: set[str] = set()
    ranges = {}
    for obj in files:
        file_ids, r = _netcdf_file(ctx, obj)
        overlap = ids & file_ids
        if overlap:
            raise BadFile(obj.path, f"catchments also in another file: {', '.join(sorted(overlap)[:3])}")
        ids |= file_ids
        ranges[obj.path] = r
    return Domain({TIME: _common(ranges)}, {CATCHMENT_ID: frozenset(ids)})


def _netcdf_file(ctx: DetectionContext, obj: Obj) -> tuple[set[str], TimeRange]:
    import cftime
    import netCDF4

    path = ctx.fetch(obj)
    try:
        ds = netCDF4.Dataset(path)
    except OSError as exc:
        raise BadFile(obj.path, f"not a NetCDF file ({exc.strerror or exc})") from None
    with ds:
        id_var = next((ds.variables[v] for v in ID_VARIABLES if v in ds.variables), None)
        if id_var is None:
            raise BadFile(obj.path, "no 'ids' variable (ngen NetCDF forcing has ids(catchment-id))")
        raw = id_var[:]
        ids = {(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in np.asarray(raw).ravel().tolist()}
        if not ids:
            raise BadFile(obj.path, "the ids variable is empty")
        t_var = next((ds.variables[v] for v in TIME_VARIABLES if v in ds.variables), None)
        if t_var is None:
            raise BadFile(obj.path, "no 'Time' variable (ngen NetCDF forcing has Time(catchment-id, time))")
        units = getattr(t_var, "units", None)
        if not units:
            raise BadFile(obj.path, f"variable {t_var.name} has no units (e.g. 'seconds since 1970-01-01 00:00:00')")
        values = np.ma.filled(np.asarray(t_var[:], dtype="f8"), np.nan)
        if values.size == 0:
            raise BadFile(obj.path, f"variable {t_var.name} is empty")
        rows = values.reshape(1, -1) if values.ndim == 1 else values.reshape(values.shape[0], -1)
        first, last = np.nanmax(rows[:, 0]), np.nanmin(rows[:, -1])
        step = rows[0, 1] - rows[0, 0] if rows.shape[1] > 1 else None
        calendar = getattr(t_var, "calendar", "standard")
        try:
            def to_dt(v):
                return utc(cftime.num2pydate(v, units, calendar=calendar))
            begin = to_dt(first)
            end = to_dt(last + step) if step else to_dt(last) + dt.timedelta(hours=1)
        except (ValueError, TypeError) as exc:
            raise BadFile(obj.path, f"cannot read times with units {units!r}: {exc}") from None
        if not begin < end:
            raise BadFile(obj.path, "times are not increasing")
        return ids, TimeRange(begin, end)

