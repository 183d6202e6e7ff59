"""ValidatePartitioning: check an ngen partition file against a network and a rank count.

ngen reads partition files without checking them. With the real binary (NOAA-OWP/ngen 0.3.0,
dd04bbcc, OpenMPI) these were observed: fewer partitions than ranks → segfault, more → MPI
abort; partitions out of order or a send entry missing → hang (no rank finishes); a receive
entry missing → the boundary nexus loses that inflow; a boundary nexus missing from nex-ids →
its output file missing; a catchment in two partitions → double-counted flow; a terminal nexus
fed from two ranks without a sentinel → partial sums; and NGEN_REMOTE_NEXUS_HANG (below).
Every issue names the partition (by file position = the MPI rank that runs it) and the
offending id.

NGEN_REMOTE_NEXUS_HANG, measured on hand-made hydrofabrics (tests/ngen/test_ngen_hang.py):

    boundary at nexus j (owner = rank of j's downstream catchment or sentinel)     ngen
    owner holds ≥ 2 contributors, ≥ 1 contributor on another rank                    hangs; outputs
        (2 local + 1 remote; 3 local + 1 remote; terminal sentinel with 2 local)     stop at 1/m of
                                                                                     the steps (m local)
    owner holds 1 contributor, others on 1 or 2 other ranks                          identical to serial
    owner holds no contributor (2–3 remote, one or two sending ranks; sentinel too)  identical to serial
    sending rank holds 2 or 3 contributors of a remote nexus                         identical to serial

`engine="ngen"` (default) reports it as an error; `engine="embedded"` as a warning: DMOD's
embedded engine exchanges one message per (rank, nexus) per step whatever the local count.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np

from .arrays import isin, unique
from .ids import TERMINAL_SENTINEL, split_id
from .network import Network
from .partition_file import RECV, SEND
from .validate import Issue, _Collector

_CONN_KEYS = ("mpi-rank", "nex-id", "cat-id", "cat-direction")


def _load(doc) -> object:
    if isinstance(doc, (str, os.PathLike)) and not (isinstance(doc, str) and doc.lstrip().startswith("{")):
        with open(doc) as f:
            return json.load(f)
    if isinstance(doc, (str, bytes)):
        return json.loads(doc)
    return doc


def _all_str(v: list) -> bool:
    return set(map(type, v)) <= {str}  # C-level loop; isinstance per element is 10× slower


def _index(table: dict[str, int], values: list[str]) -> np.ndarray:
    """Index of each id via the network's cached dict (faster than re-hashing 1M ids)."""
    get = table.get
    return np.fromiter(map(get, values, [-1] * len(values)), dtype=np.int64, count=len(values))


def _structure(doc, out: _Collector) -> list[dict] | None:
    """Shape checks; returns the partitions list when usable."""
    if not isinstance(doc, dict) or not isinstance(doc.get("partitions"), list):
        out.add("PARTITION_FORMAT", "", 'the file must be an object with a "partitions" list')
        return None
    parts = doc["partitions"]
    ok = True
    for r, p in enumerate(parts):
        if not isinstance(p, dict):
            out.add("PARTITION_FORMAT", "", f"partition #{r} is not an object")
            ok = False
            continue
        for key in ("id", "cat-ids", "nex-ids", "remote-connections"):
            if key not in p:
                out.add("PARTITION_FORMAT", "", f'partition #{r} lacks "{key}"')
                ok = False
        for key in ("cat-ids", "nex-ids"):
            v = p.get(key, [])
            if not isinstance(v, list) or not _all_str(v):
                out.add("PARTITION_FORMAT", "", f'partition #{r} "{key}" must be a list of strings')
                ok = False
        rc = p.get("remote-connections", [])
        if not isinstance(rc, list):
            out.add("PARTITION_FORMAT", "", f'partition #{r} "remote-connections" must be a list')
            ok = False
            continue
        for k, e in enumerate(rc):
            if not isinstance(e, dict) or any(x not in e for x in _CONN_KEYS):
                out.add("PARTITION_FORMAT", "", f"partition #{r} remote connection #{k} needs keys "
                        + ", ".join(_CONN_KEYS))
                ok = False
            elif e["cat-direction"] not in (SEND, RECV):
                out.add("PARTITION_FORMAT", str(e.get("nex-id", "")), f"partition #{r} remote connection #{k} "
                        f"cat-direction {e['cat-direction']!r} is neither {SEND} nor {RECV}")
                ok = False
            elif not isinstance(e["mpi-rank"], int) or isinstance(e["mpi-rank"], bool):
                out.add("PARTITION_FORMAT", str(e.get("nex-id", "")),
                        f"partition #{r} remote connection #{k} mpi-rank must be an integer")
                ok = False
    return parts if ok else None


ENGINES = ("ngen", "embedded")


def validate_partitioning(network: Network, partition_json, n_ranks: int, engine: str = "ngen") -> list[Issue]:
    """All problems with running `partition_json` (path, JSON text or dict) on `n_ranks` MPI
    ranks over `network`. An empty list means the file is safe to hand to ngen.

    engine: "ngen" (default; the strict target) or "embedded" (DMOD's engine, which is not
    affected by ngen's receive-side hang, so NGEN_REMOTE_NEXUS_HANG is only a warning)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    out = _Collector()
    try:
        doc = _load(partition_json)
    except (OSError, ValueError) as e:
        out.add("PARTITION_FORMAT", "", f"cannot read the partition file: {e}")
        return out.finish()
    parts = _structure(doc, out)
    if parts is None:
        return out.finish()
    P = len(parts)
    if P != n_ranks:
        out.add("PARTITION_COUNT", "", f"{P} partitions for {n_ranks} MPI ranks (ngen: fewer → segfault, "
                "more → MPI abort)")
    for r, p in enumerate(parts):
        if p["id"] != r:
            out.add("PARTITION_ID", str(p["id"]), f"partition #{r} has id {p['id']!r}; ids must be 0..{P - 1} "
                    "in file order (ngen runs partitions by position)")

    cidx, nidx = network.catchment_index, network.nexus_index
    nx = network.n_nexuses
    owner = np.full(network.n_catchments, -1, dtype=np.int64)
    sent_owner = np.full(nx, -1, dtype=np.int64)
    sentinel_pref = TERMINAL_SENTINEL

    # ---- catchments: every one exactly once ----------------------------------------------
    flat = [cid for p in parts for cid in p["cat-ids"]]
    flat_rank = np.repeat(np.arange(P), [len(p["cat-ids"]) for p in parts])
    idx = _index(cidx, flat)
    known = np.flatnonzero(idx >= 0)
    o = known[np.argsort(idx[known], kind="stable")]  # grouped by catchment, file order inside
    ci, cr = idx[o], flat_rank[o]
    first = np.r_[True, ci[1:] != ci[:-1]] if len(ci) else np.empty(0, dtype=bool)
    owner[ci[first]] = cr[first]
    for k in np.flatnonzero(~first).tolist():
        i, r = int(ci[k]), int(cr[k])
        cid = network.catchment_ids[i]
        where = "twice in" if owner[i] == r else f"in partition {owner[i]} and"
        out.add("DUPLICATE_CATCHMENT", cid, f"catchment {cid} is {where} partition {r} "
                "(its flow would be counted twice)")
    for k in np.flatnonzero(idx < 0).tolist():
        cid, r = flat[k], int(flat_rank[k])
        if cid.startswith(sentinel_pref):
            nex = cid[len(sentinel_pref):]
            j = nidx.get(nex)
            if j is None:
                out.add("UNKNOWN_CATCHMENT", cid, f"partition {r}: sentinel {cid} names unknown nexus {nex}")
            elif network.nex_to_cat[j] >= 0:
                out.add("SENTINEL_NOT_TERMINAL", cid, f"partition {r}: sentinel {cid} but nexus {nex} flows "
                        f"into {network.catchment_ids[network.nex_to_cat[j]]}")
            elif sent_owner[j] >= 0:
                out.add("DUPLICATE_CATCHMENT", cid, f"sentinel {cid} is in partition {sent_owner[j]} and "
                        f"partition {r}")
            else:
                sent_owner[j] = r
            continue
        out.add("UNKNOWN_CATCHMENT", cid, f"partition {r}: catchment {cid} is not in the hydrofabric")
    for i in np.flatnonzero(owner < 0).tolist():
        cid = network.catchment_ids[i]
        out.add("MISSING_CATCHMENT", cid, f"catchment {cid} is in no partition (it would not be simulated)")

    # ---- nexuses: listed where they touch -------------------------------------------------
    nflat = [nid for p in parts for nid in p["nex-ids"]]
    nrank = np.repeat(np.arange(P), [len(p["nex-ids"]) for p in parts])
    jidx = _index(nidx, nflat)
    for k in np.flatnonzero(jidx < 0).tolist():
        out.add("UNKNOWN_NEXUS", nflat[k], f"partition {int(nrank[k])}: nexus {nflat[k]} is not in the hydrofabric")
    keys = nrank[jidx >= 0] * nx + jidx[jidx >= 0]
    ks = np.sort(keys)
    for k in unique(ks[1:][ks[1:] == ks[:-1]]).tolist():
        r, j = divmod(k, nx)
        out.add("DUPLICATE_NEXUS", network.nexus_ids[j], f"partition {r} lists nexus {network.nexus_ids[j]} twice",
                "warning")
    c_all = np.flatnonzero((network.cat_to_nex >= 0) & (owner >= 0))
    j_all = network.cat_to_nex[c_all]
    need_down = owner[c_all] * nx + j_all  # each catchment's downstream nexus
    jd = np.flatnonzero(network.nex_to_cat >= 0)
    od = owner[network.nex_to_cat[jd]]
    need_up = (od * nx + jd)[od >= 0]  # nexus feeding a catchment of the partition
    sj = np.flatnonzero(sent_owner >= 0)
    need = unique(np.concatenate([need_down, need_up, sent_owner[sj] * nx + sj]))
    have = unique(keys)
    for k in need[~isin(need, have)].tolist():
        r, j = divmod(k, nx)
        out.add("MISSING_NEXUS", network.nexus_ids[j], f"partition {r}: nexus {network.nexus_ids[j]} touches "
                "its catchments but is not in nex-ids (its output would be missing)")
    for k in have[~isin(have, need)].tolist():
        r, j = divmod(k, nx)
        out.add("EXTRA_NEXUS", network.nexus_ids[j], f"partition {r}: nexus {network.nexus_ids[j]} is listed "
                "but touches none of its catchments", "warning")

    # ---- expected remote connections from the ownership ------------------------------------
    d_all = network.nex_to_cat[j_all]
    nex_owner = np.where(d_all >= 0, owner[np.maximum(d_all, 0)], sent_owner[j_all])
    remote = (nex_owner >= 0) & (nex_owner != owner[c_all])
    exp_send: set[tuple[int, int, int]] = set()  # (rank, nexus, dest rank)
    exp_recv: set[tuple[int, int, int, int]] = set()  # (rank, nexus, src rank, contributor)
    for c, j, rc, ro in zip(c_all[remote].tolist(), j_all[remote].tolist(), owner[c_all][remote].tolist(),
                            nex_owner[remote].tolist()):
        exp_send.add((rc, j, ro))
        exp_recv.add((ro, j, rc, c))

    # terminal nexus fed from several ranks without a sentinel: each rank writes a partial sum
    term = (d_all < 0) & (sent_owner[j_all] < 0)
    ranks_at: dict[int, set[int]] = defaultdict(set)
    for j, rc in zip(j_all[term].tolist(), owner[c_all][term].tolist()):
        ranks_at[j].add(rc)
    for j, rs in ranks_at.items():
        if len(rs) > 1:
            nid = network.nexus_ids[j]
            out.add("TERMINAL_NO_SENTINEL", nid, f"terminal nexus {nid} is fed from partitions "
                    f"{', '.join(map(str, sorted(rs)))} but no partition holds {TERMINAL_SENTINEL}{nid} "
                    "(each rank would write a partial sum)")

    # ---- given remote connections ---------------------------------------------------------
    got_send: dict[tuple[int, int, int], str] = {}
    got_recv: dict[tuple[int, int, int, int], str] = {}
    seen = set()
    for r, p in enumerate(parts):
        for e in p["remote-connections"]:
            nid, cid, s, dirn = e["nex-id"], e["cat-id"], e["mpi-rank"], e["cat-direction"]
            key = (r, nid, cid, s, dirn)
            if key in seen:
                out.add("DUPLICATE_CONNECTION", nid, f"partition {r}: remote connection {dirn} {nid}/{cid} "
                        f"rank {s} is listed twice", "warning")
                continue
            seen.add(key)
            if not (0 <= s < P) or s == r:
                out.add("BAD_RANK", nid, f"partition {r}: remote connection for {nid} names mpi-rank {s} "
                        f"({'itself' if s == r else f'outside 0..{P - 1}'})")
                continue
            j = nidx.get(nid)
            if j is None:
                out.add("UNKNOWN_NEXUS", nid, f"partition {r}: remote connection names unknown nexus {nid}")
                continue
            if dirn == SEND:
                dest = network.nex_to_cat[j]
                dest_id = network.catchment_ids[dest] if dest >= 0 else f"{TERMINAL_SENTINEL}{nid}"
                if cid != dest_id:
                    out.add("WRONG_CONNECTION", nid, f"partition {r}: send entry for {nid} names {cid}, but "
                            f"{nid} flows into {dest_id}")
                    continue
                dest_owner = owner[dest] if dest >= 0 else sent_owner[j]
                if dest_owner != s:
                    out.add("WRONG_RANK", nid, f"partition {r}: send entry for {nid} targets rank {s}, but "
                            f"{dest_id} is in partition {dest_owner}")
                    continue
                got_send[(r, j, s)] = cid
            else:
                c = cidx.get(cid)
                if c is None or network.cat_to_nex[c] != j:
                    out.add("WRONG_CONNECTION", nid, f"partition {r}: receive entry for {nid} names {cid}, "
                            f"which does not drain into {nid}")
                    continue
                if owner[c] != s:
                    out.add("WRONG_RANK", cid, f"partition {r}: receive entry says {cid} (into {nid}) is on rank "
                            f"{s}, but it is in partition {owner[c]}")
                    continue
                got_recv[(r, j, s, c)] = cid

    for (r, j, s) in sorted(exp_send - set(got_send)):
        nid = network.nexus_ids[j]
        out.add("MISSING_SEND", nid, f"partition {r} feeds boundary nexus {nid} owned by partition {s} but has no "
                f"{SEND} entry for it (ngen was seen to hang)")
    for (r, j, s) in sorted(set(got_send) - exp_send):
        nid = network.nexus_ids[j]
        out.add("UNEXPECTED_SEND", nid, f"partition {r} sends {nid} to partition {s} but none of its "
                "catchments drains into it")
    for (r, j, s, c) in sorted(exp_recv - set(got_recv)):
        nid, cid = network.nexus_ids[j], network.catchment_ids[c]
        out.add("MISSING_RECEIVE", nid, f"partition {r} owns boundary nexus {nid} but has no {RECV} entry for "
                f"contributor {cid} on partition {s} (its inflow would be lost)")
    for (r, j, s, c) in sorted(set(got_recv) - exp_recv):
        nid, cid = network.nexus_ids[j], network.catchment_ids[c]
        out.add("UNEXPECTED_RECEIVE", nid, f"partition {r} expects {cid} via {nid} from partition {s}, but "
                f"partition {r} does not own {nid}'s downstream feature")
    # symmetry among the entries actually given (a send with no matching receive and vice versa)
    recv_pairs = {(r, j, s) for (r, j, s, _c) in got_recv}
    for (r, j, s) in sorted(got_send):
        if (s, j, r) not in recv_pairs and (r, j, s) in exp_send:
            nid = network.nexus_ids[j]
            out.add("ASYMMETRIC_CONNECTION", nid, f"partition {r} sends {nid} to partition {s}, which has no "
                    f"matching {RECV} entry from partition {r}")
    for (r, j, s) in sorted(recv_pairs):
        if (s, j, r) not in got_send and (s, j, r) in exp_send:
            nid = network.nexus_ids[j]
            out.add("ASYMMETRIC_CONNECTION", nid, f"partition {r} receives {nid} from partition {s}, which has no "
                    f"matching {SEND} entry to partition {r}")

    # ---- ngen's receive-side hang ---------------------------------------------------------
    _remote_nexus_hang(network, owner, sent_owner, out, "error" if engine == "ngen" else "warning")

    # ---- MPI tags --------------------------------------------------------------------------
    boundary = sorted({j for (_r, j, _s) in exp_send} | {j for (_r, j, _s) in got_send})
    tags: dict[int, str] = {}
    for j in boundary:
        nid = network.nexus_ids[j]
        sp = split_id(nid)
        if sp is None:
            rs = sorted({r for (r, jj, _s) in exp_send if jj == j})
            out.add("NEXUS_TAG", nid, f"boundary nexus {nid} (partitions {', '.join(map(str, rs))}) has no "
                    "integer tag; ngen uses <prefix>-<integer> as the MPI message tag")
        elif sp[1] in tags:
            out.add("NEXUS_TAG", nid, f"boundary nexuses {tags[sp[1]]} and {nid} share MPI tag {sp[1]}")
        else:
            tags[sp[1]] = nid
    return out.finish()


def _remote_nexus_hang(network: Network, owner: np.ndarray, sent_owner: np.ndarray, out: _Collector,
                       severity: str) -> None:
    from .partition_file import ngen_hang_hazards

    ptr, cats = network.nexus_upstream
    for j in ngen_hang_hazards(network, owner, sent_owner).tolist():
        nid = network.nexus_ids[j]
        d = network.nex_to_cat[j]
        r = int(owner[d]) if d >= 0 else int(sent_owner[j])
        dest = network.catchment_ids[d] if d >= 0 else f"{TERMINAL_SENTINEL}{nid}"
        up = cats[ptr[j]:ptr[j + 1]]
        up = up[owner[up] >= 0]
        local = [network.catchment_ids[c] for c in up[owner[up] == r].tolist()]
        remote = [f"{network.catchment_ids[c]} (partition {int(owner[c])})" for c in up[owner[up] != r].tolist()]
        out.add("NGEN_REMOTE_NEXUS_HANG", nid,
                f"partition {r} owns boundary nexus {nid} (via {dest}) together with {len(local)} of its "
                f"contributors ({', '.join(local)}) while {', '.join(remote)} feed it from other partitions: "
                f"ngen re-posts its receive for every local contribution and was seen to hang, its outputs "
                f"stopping at 1/{len(local)} of the time steps; keep at most one contributor on the owning "
                "partition or all of them (the embedded engine is not affected)", severity)
