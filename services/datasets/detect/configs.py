"""ngen JSON configs: realization (time range, catchments) and partition (LENGTH = number of
partitions, catchments, hydrofabric id when recorded)."""
from __future__ import annotations

import datetime as dt
import json

from dmod.services.datasets.detect.context import DATASET, BadFile, DetectionContext, Obj
from dmod.services.datasets.detect.csvtime import parse_time
from dmod.services.datasets.domains import (
    ALL,
    CATCHMENT_ID,
    HYDROFABRIC_ID,
    LENGTH,
    TIME,
    Domain,
    TimeRange,
    merge,
)

SENTINEL = "wb-TERMINAL_SENTINEL"
MAX_CONFIG_BYTES = 256 << 20


def _json(ctx: DetectionContext, obj: Obj):
    if obj.size > MAX_CONFIG_BYTES:
        raise BadFile(obj.path, f"{obj.size} bytes is too large for a config file")
    try:
        return json.loads(ctx.read(obj))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadFile(obj.path, f"not valid JSON: {exc}") from None


def is_realization(doc) -> bool:
    return isinstance(doc, dict) and "time" in doc and ("global" in doc or "catchments" in doc)


def is_partitioning(doc) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("partitions"), list)


def _json_docs(ctx: DetectionContext, accept, what: str) -> list[tuple[Obj, object]]:
    found = []
    for obj in ctx.with_suffix(".json"):
        doc = _json(ctx, obj)
        if accept(doc):
            found.append((obj, doc))
    if not found:
        raise BadFile(DATASET, f"no {what}")
    return found


# ---- realization -----------------------------------------------------------------------------

def realization_domain(path: str, doc: dict) -> Domain:
    time = doc.get("time")
    if not isinstance(time, dict):
        raise BadFile(path, "'time' must be an object with start_time, end_time, output_interval")
    missing = [k for k in ("start_time", "end_time", "output_interval") if k not in time]
    if missing:
        raise BadFile(path, f"time.{missing[0]} is missing")
    try:
        start, end = parse_time(str(time["start_time"])), parse_time(str(time["end_time"]))
    except ValueError as exc:
        raise BadFile(path, f"time: {exc}") from None
    try:
        interval = dt.timedelta(seconds=float(time["output_interval"]))
    except (TypeError, ValueError):
        raise BadFile(path, "time.output_interval must be a number of seconds") from None
    if interval.total_seconds() <= 0:
        raise BadFile(path, "time.output_interval must be positive")
    if end < start:
        raise BadFile(path, f"time.end_time {time['end_time']} is before time.start_time {time['start_time']}")
    catchments = doc.get("catchments") or {}
    if not isinstance(catchments, dict):
        raise BadFile(path, "'catchments' must be an object keyed by catchment id")
    # ngen's end_time is the last step simulated: the range runs one interval past it.
    cats = ALL if "global" in doc else frozenset(catchments)
    if not cats and "global" not in doc:
        raise BadFile(path, "no 'global' formulation and no catchments")
    return Domain({TIME: TimeRange(start, end + interval)}, {CATCHMENT_ID: cats})


def detect_realization(ctx: DetectionContext) -> Domain:
    docs = _json_docs(ctx, is_realization, "realization config (a JSON object with 'time' and 'global' or "
                                           "'catchments')")
    if len(docs) > 1:
        raise BadFile(DATASET, f"{len(docs)} realization configs ({', '.join(o.path for o, _ in docs[:3])}); "
                               "a realization dataset holds one")
    obj, doc = docs[0]
    return realization_domain(obj.path, doc)


# ---- partitions ------------------------------------------------------------------------------

def partition_domain(path: str, doc: dict) -> Domain:
    parts = doc["partitions"]
    if not parts:
        raise BadFile(path, "'partitions' is empty")
    cats: set[str] = set()
    for i, part in enumerate(parts):
        ids = part.get("cat-ids") if isinstance(part, dict) else None
        if not isinstance(ids, list):
            raise BadFile(path, f"partitions[{i}] has no 'cat-ids' list")
        cats.update(str(c) for c in ids if not str(c).startswith(SENTINEL))
    discrete = {LENGTH: frozenset({str(len(parts))}), CATCHMENT_ID: frozenset(cats)}
    hf = doc.get("hydrofabric_id") or (doc.get("metadata") or {}).get("hydrofabric_id")
    if hf:
        discrete[HYDROFABRIC_ID] = frozenset({str(hf)})
    return Domain({}, discrete)


def detect_partitioning(ctx: DetectionContext) -> Domain:
    """Several partition files (e.g. for 2 and 4 ranks) give LENGTH = every count they cover."""
    docs = _json_docs(ctx, is_partitioning, "partition config (a JSON object with a 'partitions' list)")
    result = Domain()
    for obj, doc in docs:
        result = merge(result, partition_domain(obj.path, doc))
    return result
