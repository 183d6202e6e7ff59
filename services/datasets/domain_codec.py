"""Domain ↔ protobuf (`dmod.v1.Domain`) and ↔ JSON (the `datasets.domain` JSONB column)."""
from __future__ import annotations

import datetime as dt
import heapq

from google.protobuf import timestamp_pb2

from dmod.services.datasets.domains import (
    ALL,
    INDEX_NAMES,
    TIME,
    Domain,
    DomainError,
    TimeRange,
    merge,
    natural_key,
)
from dmod.services.runtime.errors import InvalidArgument
from dmod.v1 import domain_pb2


def _ts_to_dt(ts: timestamp_pb2.Timestamp) -> dt.datetime:
    return ts.ToDatetime(tzinfo=dt.UTC)


def _dt_to_ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC))
    return ts


# Values listed per discrete restriction in responses (value_count tells the real size).
MAX_VALUES = 20_000
MAX_VALUES_IN_LISTS = 1_000


def from_proto(pb: domain_pb2.Domain, field: str = "domain") -> Domain:
    """Validate and normalise (one restriction per index; repeated ones are merged)."""
    result = Domain()
    violations = []
    for i, c in enumerate(pb.continuous):
        where = f"{field}.continuous[{i}]"
        if c.index not in INDEX_NAMES:
            violations.append((f"{where}.index", "must be a known StandardIndex"))
            continue
        if not c.HasField("begin_time") or not c.HasField("end_time"):
            violations.append((where, "begin_time and end_time are required"))
            continue
        try:
            r = TimeRange(_ts_to_dt(c.begin_time), _ts_to_dt(c.end_time))
            result = merge(result, Domain({c.index: r}, {}))
        except DomainError as exc:
            violations.append((where, str(exc)))
    for i, d in enumerate(pb.discrete):
        where = f"{field}.discrete[{i}]"
        if d.index not in INDEX_NAMES or d.index == TIME:
            violations.append((f"{where}.index", "must be a known non-TIME StandardIndex"))
            continue
        values = [v.strip() for v in d.values]
        if d.value_count > len(values):
            violations.append((f"{where}.values", (f"lists {len(values)} of {d.value_count} values (a truncated "
                                                  "domain from a response); send every value")))
            continue
        if any(not v for v in values):
            violations.append((f"{where}.values", "values must be non-empty strings"))
            continue
        result = merge(result, Domain({}, {d.index: frozenset(values)}))
    if violations:
        raise InvalidArgument(violations)
    return result


def to_proto(d: Domain, max_values: int = MAX_VALUES) -> domain_pb2.Domain:
    """At most `max_values` values per discrete restriction (the first, in natural order);
    `value_count` always carries the real number."""
    pb = domain_pb2.Domain()
    for index, r in sorted(d.continuous.items()):
        pb.continuous.add(index=index, begin_time=_dt_to_ts(r.begin), end_time=_dt_to_ts(r.end))
    for index, values in sorted(d.discrete.items()):
        ordered = sorted(values, key=natural_key) if len(values) <= max_values else \
            heapq.nsmallest(max_values, values, key=natural_key)
        pb.discrete.add(index=index, values=ordered, value_count=len(values))
    return pb


def to_json(d: Domain) -> dict:
    return {
        "continuous": [{"index": INDEX_NAMES[i], "begin": r.begin.isoformat(), "end": r.end.isoformat()}
                       for i, r in sorted(d.continuous.items())],
        "discrete": [{"index": INDEX_NAMES[i], "values": sorted(v, key=natural_key)}
                     for i, v in sorted(d.discrete.items())],
    }


_BY_NAME = {v: k for k, v in INDEX_NAMES.items()}


def json_to_proto(doc: dict | None, max_values: int = MAX_VALUES) -> domain_pb2.Domain:
    """`to_proto(from_json(doc))` without re-sorting: `to_json` stored the values in natural
    order already (sorting 50 ids of each of 50 datasets was most of a ListDatasets call)."""
    pb = domain_pb2.Domain()
    if not doc:
        return pb
    for c in sorted(doc.get("continuous", []), key=lambda c: _BY_NAME[c["index"]]):
        pb.continuous.add(index=_BY_NAME[c["index"]], begin_time=_dt_to_ts(dt.datetime.fromisoformat(c["begin"])),
                          end_time=_dt_to_ts(dt.datetime.fromisoformat(c["end"])))
    for x in sorted(doc.get("discrete", []), key=lambda x: _BY_NAME[x["index"]]):
        values = x["values"]
        pb.discrete.add(index=_BY_NAME[x["index"]], values=values[:max_values], value_count=len(values))
    return pb


def from_json(doc: dict | None) -> Domain:
    if not doc:
        return Domain()
    continuous = {_BY_NAME[c["index"]]: TimeRange(dt.datetime.fromisoformat(c["begin"]),
                                                  dt.datetime.fromisoformat(c["end"]))
                  for c in doc.get("continuous", [])}
    discrete = {_BY_NAME[x["index"]]: (frozenset(x["values"]) if x["values"] else ALL)
                for x in doc.get("discrete", [])}
    return Domain(continuous, discrete)
