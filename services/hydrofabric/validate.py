"""Hydrofabric validation: every problem as a record (code, id, message, severity).

ngen checks almost nothing, so this is where a bad hydrofabric is stopped before a job runs.
Raw-table checks (duplicates, dangling toids, non-dendritic records) work on `Topology`;
graph checks (cycles, areas, id formats, MPI tags) on the resolved `Network`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import unique
from .ids import CATCHMENT_PREFIXES, NEXUS_PREFIXES, lookup, parse_ids, to_arrow_str
from .network import Network
from .topology import Topology, build_network

MAX_PER_CODE = 1000  # keep reports of badly broken files readable


@dataclass(frozen=True)
class Issue:
    code: str  # UPPER_SNAKE class of problem
    id: str  # the offending catchment/nexus/gage id ("" when global)
    message: str
    severity: str = "error"  # "error" blocks a job, "warning" does not

    def to_dict(self) -> dict:
        return asdict(self)


def errors_only(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "error"]


class _Collector:
    def __init__(self) -> None:
        self.items: list[Issue] = []
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, code: str, id_: str, message: str, severity: str = "error") -> None:
        self.counts[code] += 1
        if self.counts[code] <= MAX_PER_CODE:
            self.items.append(Issue(code, str(id_), message, severity))

    def finish(self) -> list[Issue]:
        for code, c in self.counts.items():
            if c > MAX_PER_CODE:
                sev = next(i.severity for i in self.items if i.code == code)
                self.items.append(Issue(code, "", f"{c - MAX_PER_CODE} more {code} issues not listed", sev))
        return self.items


# ---- raw-table checks ---------------------------------------------------------------------

def _duplicates(ids: pa.Array, toids: pa.Array, kind: str, out: _Collector) -> None:
    """Same id on several records: harmless when every record names the same toid, otherwise
    the feature has two downstream features (not dendritic)."""
    ids = to_arrow_str(ids)
    toids = to_arrow_str(toids)
    t = pa.table({"id": ids, "toid": pc.fill_null(toids, "")})
    counts = t.group_by("id").aggregate([("toid", "count_distinct"), ("toid", "count")])
    multi = counts.filter(pc.greater(counts["toid_count"], 1))
    if multi.num_rows == 0:
        return
    grouped = {}
    rows = t.filter(pc.is_in(t["id"], value_set=multi["id"]))
    for i, d in zip(rows["id"].to_pylist(), rows["toid"].to_pylist()):
        grouped.setdefault(i, [])
        if d not in grouped[i]:
            grouped[i].append(d)
    for i, downs in grouped.items():
        if len(downs) > 1:
            what = "downstream nexuses" if kind == "catchment" else "downstream catchments"
            out.add("NON_DENDRITIC", i, f"{kind} {i} has {len(downs)} {what}: {', '.join(map(str, downs))}"
                    " (a dendritic network allows one)")
        else:
            out.add(f"DUPLICATE_{kind.upper()}", i, f"{kind} {i} is listed more than once", "warning")


def check_topology(topo: Topology, out: _Collector) -> None:
    if len(topo.cat_ids) == 0:
        out.add("EMPTY_NETWORK", "", "the hydrofabric has no catchments")
    nulls = int(pc.sum(pc.is_null(to_arrow_str(topo.cat_ids))).as_py() or 0)
    if nulls:
        out.add("MISSING_ID", "", f"{nulls} catchment record(s) without an id")
    nulls = int(pc.sum(pc.is_null(to_arrow_str(topo.nex_ids))).as_py() or 0)
    if nulls:
        out.add("MISSING_ID", "", f"{nulls} nexus record(s) without an id")
    _duplicates(topo.cat_ids, topo.cat_toids, "catchment", out)
    _duplicates(topo.nex_ids, topo.nex_toids, "nexus", out)

    # catchment toid must name a nexus
    cat_ids, cat_toids = to_arrow_str(topo.cat_ids), to_arrow_str(topo.cat_toids)
    to_nex = lookup(topo.nex_ids, cat_toids)
    bad = np.flatnonzero(to_nex < 0)
    if len(bad):
        ids = cat_ids.take(pa.array(bad)).to_pylist()
        tos = cat_toids.take(pa.array(bad)).to_pylist()
        is_cat = lookup(cat_ids, cat_toids.take(pa.array(bad))) >= 0
        for c, d, ic in zip(ids, tos, is_cat.tolist()):
            if d is None or d == "":
                out.add("MISSING_TOID", c, f"catchment {c} has no toid (downstream nexus)")
            elif ic:
                out.add("DANGLING_TOID", c, f"catchment {c} toid {d} is a catchment, not a nexus "
                        "(catchments must drain into a nexus)")
            else:
                out.add("DANGLING_TOID", c, f"catchment {c} toid {d} is not a nexus in the hydrofabric")


# ---- graph checks -------------------------------------------------------------------------

def find_cycles(net: Network) -> list[list[int]]:
    """Catchment cycles (cat → nex → cat ...), as lists of catchment indices."""
    return find_cycles_in(net.downstream_catchment)


def find_cycles_in(down: np.ndarray) -> list[list[int]]:
    """Kahn's peel on the functional graph `down`; what survives lies on a cycle because
    every node has at most one downstream edge."""
    n = len(down)
    indeg = np.bincount(down[down >= 0], minlength=n)
    alive = np.ones(n, dtype=bool)
    frontier = np.flatnonzero(indeg == 0)
    while len(frontier):
        alive[frontier] = False
        d = down[frontier]
        d = d[d >= 0]
        np.subtract.at(indeg, d, 1)
        cand = unique(d)
        frontier = cand[(indeg[cand] == 0) & alive[cand]]
    cycles: list[list[int]] = []
    seen = np.zeros(n, dtype=bool)
    for start in np.flatnonzero(alive).tolist():
        if seen[start]:
            continue
        cyc, c = [], start
        while not seen[c]:
            seen[c] = True
            cyc.append(c)
            c = int(down[c])
        cycles.append(cyc)
    return cycles


def _check_ids(ids: np.ndarray, prefixes: tuple[str, ...], kind: str, code: str, out: _Collector) -> np.ndarray:
    prefix, nums = parse_ids(ids)
    ok = (nums >= 0) & np.isin(prefix.astype(str), list(prefixes))
    for i in np.flatnonzero(~ok).tolist():
        out.add(code, ids[i], f"{kind} id {ids[i]!r} is not <prefix>-<integer> with prefix in "
                f"{'/'.join(prefixes)}" + (" (the integer is the MPI message tag)" if kind == "nexus" else ""))
    return nums


def check_network(net: Network, out: _Collector) -> None:
    # ids
    _check_ids(net.catchment_ids, CATCHMENT_PREFIXES, "catchment", "BAD_CATCHMENT_ID", out)
    nums = _check_ids(net.nexus_ids, NEXUS_PREFIXES, "nexus", "BAD_NEXUS_ID", out)
    valid = nums >= 0
    if valid.any():
        _u, inv, cnt = np.unique(nums[valid], return_inverse=True, return_counts=True)
        dup = np.flatnonzero(cnt[inv] > 1)
        idx = np.flatnonzero(valid)[dup]
        by_tag: dict[int, list[str]] = defaultdict(list)
        for i in idx.tolist():
            by_tag[int(nums[i])].append(net.nexus_ids[i])
        for tag, names in by_tag.items():
            out.add("DUPLICATE_NEXUS_TAG", names[0], f"nexuses {', '.join(names)} share MPI tag {tag}")
    # areas
    a = net.area_sqkm
    for i in np.flatnonzero(np.isnan(a)).tolist():
        out.add("MISSING_AREA", net.catchment_ids[i], f"catchment {net.catchment_ids[i]} has no areasqkm")
    for i in np.flatnonzero(a <= 0).tolist():
        out.add("NONPOSITIVE_AREA", net.catchment_ids[i],
                f"catchment {net.catchment_ids[i]} areasqkm is {a[i]:g} (must be > 0)")
    for i in np.flatnonzero(np.isinf(a)).tolist():
        out.add("NONPOSITIVE_AREA", net.catchment_ids[i], f"catchment {net.catchment_ids[i]} areasqkm is infinite")
    # cycles
    for cyc in find_cycles(net):
        names = [net.catchment_ids[c] for c in cyc]
        shown = " → ".join(names[:8]) + (" → …" if len(names) > 8 else "") + f" → {names[0]}"
        out.add("CYCLE", names[0], f"cycle of {len(names)} catchment(s): {shown}")
    # nexuses nobody drains into are harmless but usually a subsetting mistake
    up = np.bincount(net.cat_to_nex[net.cat_to_nex >= 0], minlength=net.n_nexuses)
    for j in np.flatnonzero(up == 0).tolist():
        out.add("NEXUS_NO_UPSTREAM", net.nexus_ids[j], f"no catchment drains into nexus {net.nexus_ids[j]}",
                "warning")


def check_nexus_toids(topo: Topology, net: Network, out: _Collector) -> None:
    """A nexus toid that names no catchment makes the nexus terminal (ngen's rule). Expected
    for tnx-* and subset outlets; reported as a warning so surprises are visible."""
    prefix, _ = parse_ids(net.nexus_ids)
    term = np.flatnonzero((net.nex_to_cat < 0) & (prefix.astype(str) != "tnx"))
    if not len(term):
        return
    rows = lookup(topo.nex_ids, net.nexus_ids[term])
    toids = to_arrow_str(topo.nex_toids).take(pa.array(rows)).to_pylist()
    for j, t in zip(term.tolist(), toids):
        if t:
            out.add("NEXUS_TERMINAL", net.nexus_ids[j],
                    f"nexus {net.nexus_ids[j]} toid {t} is not in the hydrofabric; treated as terminal", "warning")


# ---- entry points -------------------------------------------------------------------------

def validate_topology(topo: Topology, network: Network | None = None) -> list[Issue]:
    out = _Collector()
    check_topology(topo, out)
    net = network if network is not None else build_network(topo)
    check_network(net, out)
    check_nexus_toids(topo, net, out)
    return out.finish()


def validate_network(net: Network) -> list[Issue]:
    """Graph-level checks for an already resolved network (no raw tables)."""
    out = _Collector()
    if net.n_catchments == 0:
        out.add("EMPTY_NETWORK", "", "the network has no catchments")
    missing = np.flatnonzero(net.cat_to_nex < 0)
    for i in missing.tolist():
        out.add("DANGLING_TOID", net.catchment_ids[i],
                f"catchment {net.catchment_ids[i]} does not drain into a known nexus")
    check_network(net, out)
    return out.finish()


def validate_hydrofabric(catchment_path, nexus_path=None, gages: bool = True) -> list[Issue]:
    """Read and validate a hydrofabric file (pair); GeoPackages also get their gage crosswalk
    checked."""
    from .crosswalk import read_gage_crosswalk
    from .readers import is_geopackage, read_topology

    topo = read_topology(catchment_path, nexus_path)
    net = build_network(topo)
    issues = validate_topology(topo, net)
    if gages and is_geopackage(catchment_path):
        _, cw_issues = read_gage_crosswalk(catchment_path, net)
        issues.extend(cw_issues)
    return issues
