"""Observation CSVs (gage ids + time range) and ngen CSV outputs (catchment/nexus ids + time).

Observations come either long (one file: a gage column, a time column, values) or one file per
gage named by its id (`01013500.csv`, columns time,value). Their TIME is the hull of all gages'
records (observations have gaps; evaluation aligns on what exists).
"""
from __future__ import annotations

import re

import pandas as pd

from dmod.services.datasets.detect.context import DATASET, BadFile, DetectionContext, Obj
from dmod.services.datasets.detect.csvtime import read_span
from dmod.services.datasets.detect.forcing import _common, catchment_from_name
from dmod.services.datasets.domains import CATCHMENT_ID, GAGE_ID, NEXUS_ID, TIME, Domain, TimeRange, utc

GAGE_COLUMNS = ("gage_id", "gage", "site_no", "usgs_site_code", "station_id", "location_id", "location", "id")
TIME_COLUMNS = ("time", "value_time", "datetime", "date", "timestamp")
GAGE_IN_NAME = re.compile(r"(?<![0-9])(\d{8,15})(?![0-9])")


def _long(ctx: DetectionContext, obj: Obj, header: list[str], gage_col: str) -> tuple[set[str], TimeRange]:
    names = {h.lower(): h for h in header}
    time_col = next(names[c] for c in TIME_COLUMNS if c in names)
    try:
        frame = pd.read_csv(ctx.fetch(obj), usecols=[names[gage_col], time_col], dtype=str)
        times = pd.to_datetime(frame[time_col], utc=True, format="mixed")
    except (ValueError, TypeError, pd.errors.ParserError) as exc:
        raise BadFile(obj.path, f"cannot read observations: {exc}") from None
    if frame.empty:
        raise BadFile(obj.path, "has no data rows")
    gages = set(frame[names[gage_col]].dropna().str.strip())
    ordered = times.sort_values().drop_duplicates()
    step = ordered.diff().median() if len(ordered) > 1 else pd.Timedelta(hours=1)
    return gages, TimeRange(utc(ordered.iloc[0].to_pydatetime()), utc((ordered.iloc[-1] + step).to_pydatetime()))


def detect_observations(ctx: DetectionContext) -> Domain:
    files = ctx.with_suffix(".csv")
    if not files:
        raise BadFile(DATASET, "no .csv observation files")
    gages: set[str] = set()
    ranges: list[TimeRange] = []
    spans = ctx.map(lambda o: (o, read_span(ctx, o, time_names=TIME_COLUMNS)), files)
    for obj, span in spans:
        lowered = [h.lower() for h in span.header]
        gage_col = next((c for c in GAGE_COLUMNS if c in lowered), None)
        named = GAGE_IN_NAME.search(obj.stem)
        if gage_col is not None and (gage_col != "id" or named is None):
            found, r = _long(ctx, obj, span.header, gage_col)
            gages |= found
            ranges.append(r)
        elif named is not None:
            gages.add(named.group(1))
            ranges.append(span.range(obj.path))
        else:
            raise BadFile(obj.path, f"cannot tell the gage: no gage column ({', '.join(GAGE_COLUMNS[:4])}, ...) and "
                                    "no gage id (8-15 digits) in the file name")
    hull = TimeRange(min(r.begin for r in ranges), max(r.end for r in ranges))
    return Domain({TIME: hull}, {GAGE_ID: frozenset(gages)})


def detect_ngen_output(ctx: DetectionContext) -> Domain:
    """ngen CSV output: `<cat-id>.csv` (header Time Step,Time,...) and `<nex-id>_output.csv`
    (no header: step, time, flow)."""
    files = ctx.with_suffix(".csv")
    cats, nexuses, ranges = set(), set(), {}
    for obj in files:
        name = obj.stem
        nex = re.match(r"^((?:nex|tnx|cnx|inx)-\d+)_output$", name)
        if nex:
            ranges[obj.path] = read_span(ctx, obj, has_header=False, column=1).range(obj.path)
            nexuses.add(nex.group(1))
            continue
        cat = catchment_from_name(name)
        if cat and cat == name:
            ranges[obj.path] = read_span(ctx, obj).range(obj.path)
            cats.add(cat)
    if not ranges:
        raise BadFile(DATASET, "no ngen output files (cat-N.csv, nex-N_output.csv)")
    discrete = {}
    if cats:
        discrete[CATCHMENT_ID] = frozenset(cats)
    if nexuses:
        discrete[NEXUS_ID] = frozenset(nexuses)
    return Domain({TIME: _common(ranges)}, discrete)
