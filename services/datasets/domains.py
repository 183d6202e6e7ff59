"""Dataset domains (what a dataset covers / what a requirement needs), as pure values.

A `Domain` restricts standard indices (see `dmod.v1.StandardIndex`):

* continuous restrictions — a time range per index, begin inclusive, end exclusive;
* discrete restrictions — a set of values per index; the empty set means "all values".

An index a domain does not restrict is *unknown* for matching: a dataset fulfils a requirement
only when it restricts every index the requirement restricts (`contains`). `merge` and
`subtract` work index by index; results that one restriction per index cannot express (a union
of disjoint ranges, "all but these values") raise `DomainError`.

No gRPC or I/O here: conversions to protobuf and JSON live in `domain_codec`.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

# StandardIndex numbers (dmod.v1.domain.proto), kept here so this module stays import-light.
TIME, CATCHMENT_ID, HYDROFABRIC_ID, DATA_ID, LENGTH, GAGE_ID, NEXUS_ID, VPU = range(1, 9)
INDEX_NAMES = {TIME: "TIME", CATCHMENT_ID: "CATCHMENT_ID", HYDROFABRIC_ID: "HYDROFABRIC_ID", DATA_ID: "DATA_ID",
               LENGTH: "LENGTH", GAGE_ID: "GAGE_ID", NEXUS_ID: "NEXUS_ID", VPU: "VPU"}
_NOUNS = {CATCHMENT_ID: "catchments", GAGE_ID: "gages", NEXUS_ID: "nexuses", HYDROFABRIC_ID: "hydrofabric ids",
          DATA_ID: "data ids", VPU: "VPUs", LENGTH: "lengths"}

ALL: frozenset[str] = frozenset()  # a discrete restriction with no values covers every value


class DomainError(ValueError):
    """An invalid domain, or an operation whose result a domain cannot express."""


@dataclass(frozen=True, order=True)
class TimeRange:
    begin: dt.datetime
    end: dt.datetime

    def __post_init__(self):
        if self.begin.tzinfo is None or self.end.tzinfo is None:
            raise DomainError("time range bounds must be timezone-aware")
        if not self.begin < self.end:
            raise DomainError(f"time range {fmt_range(self)} is empty (begin must be before end)")

    @property
    def seconds(self) -> float:
        return (self.end - self.begin).total_seconds()

    def covers(self, other: TimeRange) -> bool:
        return self.begin <= other.begin and other.end <= self.end


@dataclass(frozen=True)
class Domain:
    continuous: dict[int, TimeRange] = field(default_factory=dict)
    discrete: dict[int, frozenset[str]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not self.continuous and not self.discrete

    def indices(self) -> set[int]:
        return set(self.continuous) | set(self.discrete)

    def time(self) -> TimeRange | None:
        return self.continuous.get(TIME)

    def values(self, index: int) -> frozenset[str] | None:
        """The values of a discrete restriction (ALL = every value), None when unrestricted."""
        return self.discrete.get(index)


def utc(value: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken as UTC (ngen's convention)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def time_range(begin: dt.datetime | str, end: dt.datetime | str) -> TimeRange:
    def parse(v):
        return utc(dt.datetime.fromisoformat(v) if isinstance(v, str) else v)
    return TimeRange(parse(begin), parse(end))


def domain(time: TimeRange | None = None, **discrete: object) -> Domain:
    """Convenience: domain(time_range(...), CATCHMENT_ID=["cat-1"], LENGTH=["4"])."""
    by_name = {v: k for k, v in INDEX_NAMES.items()}
    disc = {}
    for name, values in discrete.items():
        if name not in by_name:
            raise DomainError(f"unknown index {name}")
        disc[by_name[name]] = frozenset(str(v) for v in values)  # type: ignore[union-attr]
    return Domain({TIME: time} if time else {}, disc)


# ---- set algebra -----------------------------------------------------------------------------

def _values_contain(outer: frozenset[str], inner: frozenset[str]) -> bool:
    if outer == ALL:
        return True
    return inner != ALL and inner <= outer


def contains(outer: Domain, inner: Domain) -> bool:
    """True when `outer` covers all of `inner` on every index `inner` restricts."""
    return not shortfalls(outer, inner)


def merge(a: Domain, b: Domain) -> Domain:
    """Union, index by index. Ranges must overlap or touch; an index restricted by only one side
    keeps that side's restriction (the other side said nothing about it)."""
    continuous = dict(a.continuous)
    for index, rb in b.continuous.items():
        ra = continuous.get(index)
        if ra is None:
            continuous[index] = rb
        elif rb.begin > ra.end or ra.begin > rb.end:
            raise DomainError(f"cannot merge disjoint {INDEX_NAMES.get(index, index)} ranges "
                              f"{fmt_range(ra)} and {fmt_range(rb)}")
        else:
            continuous[index] = TimeRange(min(ra.begin, rb.begin), max(ra.end, rb.end))
    discrete = dict(a.discrete)
    for index, vb in b.discrete.items():
        va = discrete.get(index)
        discrete[index] = vb if va is None else (ALL if ALL in (va, vb) else va | vb)
    return Domain(continuous, discrete)


def subtract(a: Domain, b: Domain) -> Domain:
    """What `a` covers that `b` does not, index by index (indices fully covered by `b` drop out;
    indices `b` does not restrict stay as in `a`)."""
    continuous = {}
    for index, ra in a.continuous.items():
        rb = b.continuous.get(index)
        if rb is None:
            continuous[index] = ra
            continue
        pieces = range_difference(ra, rb)
        if len(pieces) > 1:
            raise DomainError(f"{fmt_range(ra)} minus {fmt_range(rb)} is two ranges")
        if pieces:
            continuous[index] = pieces[0]
    discrete = {}
    for index, va in a.discrete.items():
        vb = b.discrete.get(index)
        if vb is None:
            discrete[index] = va
        elif vb == ALL:
            continue
        elif va == ALL:
            raise DomainError(f"all {INDEX_NAMES.get(index, index)} values minus {len(vb)} values is not expressible")
        elif va - vb:
            discrete[index] = va - vb
    return Domain(continuous, discrete)


def range_difference(a: TimeRange, b: TimeRange) -> list[TimeRange]:
    """Parts of `a` outside `b` (0, 1 or 2 ranges, in order)."""
    out = []
    if a.begin < b.begin:
        out.append(TimeRange(a.begin, min(a.end, b.begin)))
    if b.end < a.end:
        out.append(TimeRange(max(a.begin, b.end), a.end))
    return out


def intersect_ranges(ranges: list[TimeRange]) -> TimeRange | None:
    """The range every one of `ranges` covers, None if they share no instant."""
    if not ranges:
        return None
    begin, end = max(r.begin for r in ranges), min(r.end for r in ranges)
    return TimeRange(begin, end) if begin < end else None


# ---- explanations ----------------------------------------------------------------------------

def shortfalls(outer: Domain, inner: Domain) -> list[str]:
    """Human-readable reasons why `outer` does not cover `inner` (empty when it does)."""
    reasons = []
    for index, need in sorted(inner.continuous.items()):
        have = outer.continuous.get(index)
        label = "time range" if index == TIME else f"{INDEX_NAMES.get(index, index)} range"
        if have is None:
            reasons.append(f"no {INDEX_NAMES.get(index, index)} restriction in the dataset domain (coverage unknown)")
        elif not have.covers(need):
            reasons.append(f"{label} {fmt_range(have)} does not cover {fmt_range(need)}")
    for index, need in sorted(inner.discrete.items()):
        have = outer.discrete.get(index)
        name = INDEX_NAMES.get(index, str(index))
        if have is None:
            reasons.append(f"no {name} restriction in the dataset domain (coverage unknown)")
        elif _values_contain(have, need):
            continue
        elif need == ALL:
            reasons.append(f"covers only {len(have)} {_NOUNS.get(index, name)}, all are required")
        elif index == LENGTH:
            reasons.append(f"LENGTH {fmt_values(need - have)} required, dataset has {fmt_values(have)}")
        elif index == HYDROFABRIC_ID:
            reasons.append(f"hydrofabric {fmt_values(need - have, shorten=True)} required, dataset is for "
                           f"{fmt_values(have, shorten=True)}")
        else:
            reasons.append(f"missing {_NOUNS.get(index, name)} {fmt_values(need - have)}")
    return reasons


def excess(outer: Domain, inner: Domain) -> float:
    """How much more than `inner` the containing `outer` covers (0 = exactly; larger = looser),
    summed over `inner`'s indices as relative excess; every value (ALL) counts as 1e6."""
    total = 0.0
    for index, need in inner.continuous.items():
        have = outer.continuous[index]
        total += (have.seconds - need.seconds) / max(need.seconds, 1.0)
    for index, need in inner.discrete.items():
        have = outer.discrete[index]
        if have == ALL:
            total += 0.0 if need == ALL else 1e6
        else:
            total += (len(have) - len(need)) / max(len(need), 1)
    return total


_NUM = re.compile(r"(\d+)")


def natural_key(value: str) -> tuple:
    """cat-9 before cat-10."""
    return tuple(int(p) if p.isdigit() else p for p in _NUM.split(value))


def fmt_time(value: dt.datetime) -> str:
    value = utc(value)
    if value.time() == dt.time(0):
        return value.strftime("%Y-%m-%d")
    return value.strftime("%Y-%m-%d %H:%M:%S")


def fmt_range(r: TimeRange) -> str:
    return f"{fmt_time(r.begin)}..{fmt_time(r.end)}"


def fmt_values(values: frozenset[str] | set[str], limit: int = 5, shorten: bool = False) -> str:
    if not values:
        return "(all)"
    ordered = sorted(values, key=natural_key)
    shown = [v[:12] + "…" if shorten and len(v) > 16 else v for v in ordered[:limit]]
    text = ", ".join(shown)
    return text + (f" (+{len(ordered) - limit} more)" if len(ordered) > limit else "")
