"""What one rank simulates and which nexus flows it sums, sends and receives.

Deterministic summation (why serial and N-rank outputs are byte-identical): a nexus flow is
the sum of its contributing catchments' flows (main output [m/h] · area [m²] / 3600) taken in
ascending catchment-id order, starting from 0. Each contribution is computed by the rank that
simulates the catchment with the same elementwise expression, remote ones travel as exact
float64 values (one message per boundary nexus per step, tag = the nexus' integer id, carrying
that sender's contributors in id order), and the owning rank adds them in that same order.

Ownership: a nexus is summed and written by the rank simulating its downstream catchment; a
nexus without one in the run by the rank holding its `wb-TERMINAL_SENTINEL-<nex>` entry, or by
the only rank feeding it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError

SENTINEL_PREFIX = "wb-TERMINAL_SENTINEL-"


@dataclass
class Channel:
    """Per-step message about one boundary nexus between this rank and `peer`."""
    peer: int
    nexus: int  # network nexus index
    tag: int
    positions: np.ndarray  # send: local catchment positions, id order; recv: unused
    catchments: np.ndarray  # network catchment indices carried, id order


@dataclass
class Domain:
    rank: int
    size: int
    local_cats: np.ndarray  # network indices simulated here, ascending
    rank_of: np.ndarray  # per network catchment: simulating rank, -1 if not in the run
    out_nexus: np.ndarray  # network nexus indices written by this rank, ascending
    # slot d of owned nexus i: source kind 0 = local (value = local position), 1 = recv channel
    slot_kind: list[np.ndarray] = field(default_factory=list)
    slot_src: list[np.ndarray] = field(default_factory=list)  # local position or channel index
    slot_pos: list[np.ndarray] = field(default_factory=list)  # position inside the channel message
    degree: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sends: list[Channel] = field(default_factory=list)
    recvs: list[Channel] = field(default_factory=list)


# ---- partition file ----------------------------------------------------------------------------
def load_partitions(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read partition file: {exc.strerror}", field=path) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field=path) from None
    parts = doc.get("partitions") if isinstance(doc, dict) else None
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise ConfigError("needs a list `partitions` of objects", field=f"{path}: partitions")
    return parts


def assign_from_partitions(network, parts: list[dict], size: int) -> tuple[np.ndarray, dict[int, int]]:
    """(rank per catchment, {terminal nexus index: rank holding its sentinel})."""
    if len(parts) != size:
        raise ConfigError(f"partition file has {len(parts)} partitions for {size} MPI ranks", field="partitions")
    rank_of = np.full(network.n_catchments, -1, dtype=np.int64)
    sentinel: dict[int, int] = {}
    cat_index, nex_index = network.catchment_index, network.nexus_index
    for r, part in enumerate(parts):
        ids = part.get("cat-ids")
        if not isinstance(ids, list):
            raise ConfigError("missing list `cat-ids`", field=f"partitions[{r}]")
        for cid in ids:
            if isinstance(cid, str) and cid.startswith(SENTINEL_PREFIX):
                nid = cid[len(SENTINEL_PREFIX):]
                if nid not in nex_index:
                    raise ConfigError(f"sentinel {cid} names unknown nexus {nid}", field=f"partitions[{r}].cat-ids")
                sentinel[nex_index[nid]] = r
                continue
            c = cat_index.get(cid, -1)
            if c < 0:
                raise ConfigError(f"unknown catchment {cid!r}", field=f"partitions[{r}].cat-ids")
            if rank_of[c] >= 0:
                raise ConfigError(f"catchment {cid} is in partitions {rank_of[c]} and {r}",
                                  field=f"partitions[{r}].cat-ids")
            rank_of[c] = r
    return rank_of, sentinel


def assign_serial(network, cat_subset: tuple[str, ...] | None) -> np.ndarray:
    rank_of = np.full(network.n_catchments, -1, dtype=np.int64)
    if cat_subset is None:
        rank_of[:] = 0
        return rank_of
    index = network.catchment_index
    for cid in cat_subset:
        if cid not in index:
            raise ConfigError(f"catchment subset names {cid!r}, which is not in the hydrofabric",
                              field="command line: cat_subset")
        rank_of[index[cid]] = 0
    return rank_of


# ---- plan --------------------------------------------------------------------------------------
def _contributors(network, rank_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, cats) of simulated catchments per nexus, each list in catchment-id order."""
    sim = np.flatnonzero((rank_of >= 0) & (network.cat_to_nex >= 0))
    id_order = np.argsort(np.argsort(np.asarray(network.catchment_ids, dtype=str), kind="stable"), kind="stable")
    nex = network.cat_to_nex[sim]
    order = np.lexsort((id_order[sim], nex))
    cats = sim[order]
    indptr = np.zeros(network.n_nexuses + 1, dtype=np.int64)
    np.cumsum(np.bincount(nex, minlength=network.n_nexuses), out=indptr[1:])
    return indptr, cats


def _owners(network, rank_of, sentinel, indptr, cats, size) -> np.ndarray:
    owner = np.full(network.n_nexuses, -1, dtype=np.int64)
    down = network.nex_to_cat
    has_down = down >= 0
    owner[has_down] = rank_of[down[has_down]]
    for n in np.flatnonzero(owner < 0).tolist():
        feeders = np.unique(rank_of[cats[indptr[n]: indptr[n + 1]]])
        if n in sentinel:
            owner[n] = sentinel[n]
        elif feeders.size == 1:
            owner[n] = int(feeders[0])
        elif feeders.size > 1:
            raise ConfigError(f"nexus {network.nexus_ids[n]} has no downstream catchment in the run and is fed "
                              f"from ranks {feeders.tolist()}: it needs a {SENTINEL_PREFIX}{network.nexus_ids[n]} "
                              f"entry", field="partitions")
    return owner


def _tag(network, n: int, tag_ub: int) -> int:
    from dmod.services.hydrofabric.ids import id_number

    nid = str(network.nexus_ids[n])
    num = id_number(nid)
    if num is None or num > tag_ub:
        raise ConfigError(f"boundary nexus {nid} needs an id '<prefix>-<integer>' with integer <= {tag_ub} "
                          f"(it is the MPI message tag)", field="partitions")
    return num


def build_domain(network, rank: int, size: int, rank_of: np.ndarray, sentinel: dict[int, int],
                 nex_subset: tuple[str, ...] | None = None, tag_ub: int = 2**31 - 1) -> Domain:
    indptr, cats = _contributors(network, rank_of)
    owner = _owners(network, rank_of, sentinel, indptr, cats, size)
    has_contrib = np.diff(indptr) > 0
    wanted = has_contrib.copy()
    if nex_subset is not None and size == 1:
        index = network.nexus_index
        wanted[:] = False
        for nid in nex_subset:
            if nid not in index:
                raise ConfigError(f"nexus subset names {nid!r}, which is not in the hydrofabric",
                                  field="command line: nex_subset")
            wanted[index[nid]] = True
        owner[wanted & (owner < 0)] = 0
    local = np.flatnonzero(rank_of == rank)
    local_pos = np.full(network.n_catchments, -1, dtype=np.int64)
    local_pos[local] = np.arange(len(local))
    out = np.flatnonzero(wanted & (owner == rank))
    dom = Domain(rank=rank, size=size, local_cats=local, rank_of=rank_of, out_nexus=out)

    # receive channels + slots for owned nexuses
    recv_key: dict[tuple[int, int], int] = {}
    kinds, srcs, poss, degree = [], [], [], np.diff(indptr)[out]
    for n in out.tolist():
        contrib = cats[indptr[n]: indptr[n + 1]]
        k = np.zeros(len(contrib), np.int64)
        s = np.zeros(len(contrib), np.int64)
        p = np.zeros(len(contrib), np.int64)
        for d, c in enumerate(contrib.tolist()):
            r = int(rank_of[c])
            if r == rank:
                s[d] = local_pos[c]
                continue
            key = (r, n)
            if key not in recv_key:
                recv_key[key] = len(dom.recvs)
                dom.recvs.append(Channel(peer=r, nexus=n, tag=_tag(network, n, tag_ub),
                                         positions=np.zeros(0, np.int64), catchments=np.zeros(0, np.int64)))
            ch = dom.recvs[recv_key[key]]
            k[d], s[d], p[d] = 1, recv_key[key], len(ch.catchments)
            ch.catchments = np.append(ch.catchments, c)
        kinds.append(k)
        srcs.append(s)
        poss.append(p)
    dom.degree = degree.astype(np.int64)
    _to_slot_columns(dom, kinds, srcs, poss)

    # send channels: nexuses fed from here but summed elsewhere
    for n in np.flatnonzero(has_contrib & (owner != rank) & (owner >= 0)).tolist():
        contrib = cats[indptr[n]: indptr[n + 1]]
        mine = contrib[rank_of[contrib] == rank]
        if mine.size:
            dom.sends.append(Channel(peer=int(owner[n]), nexus=n, tag=_tag(network, n, tag_ub),
                                     positions=local_pos[mine], catchments=mine))
    _check_tags(network, dom)
    return dom


def _to_slot_columns(dom: Domain, kinds, srcs, poss) -> None:
    """Store slots column-wise: column d holds slot d of every owned nexus (padding where the
    nexus has fewer contributors), so the sum is one vector add per column."""
    width = int(dom.degree.max()) if dom.degree.size else 0
    for d in range(width):
        dom.slot_kind.append(np.array([k[d] if d < len(k) else 0 for k in kinds], np.int64))
        dom.slot_src.append(np.array([s[d] if d < len(s) else 0 for s in srcs], np.int64))
        dom.slot_pos.append(np.array([p[d] if d < len(p) else 0 for p in poss], np.int64))


def _check_tags(network, dom: Domain) -> None:
    for chans, what in ((dom.sends, "send"), (dom.recvs, "receive")):
        seen: dict[tuple[int, int], int] = {}
        for ch in chans:
            key = (ch.peer, ch.tag)
            if key in seen and seen[key] != ch.nexus:
                raise ConfigError(f"nexuses {network.nexus_ids[seen[key]]} and {network.nexus_ids[ch.nexus]} share MPI "
                                  f"tag {ch.tag} on the same {what} path to rank {ch.peer}", field="partitions")
            seen[key] = ch.nexus


def check_remote_connections(network, dom: Domain, part: dict) -> None:
    """The partition's `remote-connections` must name exactly the exchanges the hydrofabric
    implies for this rank (with a missing send entry the real ngen hangs; a missing receive
    entry loses that inflow)."""
    where = f"partitions[{dom.rank}].remote-connections"
    conns = part.get("remote-connections", [])
    if not isinstance(conns, list):
        raise ConfigError("must be a list", field=where)
    sends, recvs = set(), set()
    for i, c in enumerate(conns):
        if not isinstance(c, dict) or not {"mpi-rank", "nex-id", "cat-id", "cat-direction"} <= set(c):
            raise ConfigError("needs mpi-rank, nex-id, cat-id and cat-direction", field=f"{where}[{i}]")
        if c["cat-direction"] == "nex-to-dest_cat":
            sends.add((int(c["mpi-rank"]), str(c["nex-id"])))
        elif c["cat-direction"] == "orig_cat-to-nex":
            recvs.add((int(c["mpi-rank"]), str(c["nex-id"]), str(c["cat-id"])))
        else:
            raise ConfigError(f"unknown cat-direction {c['cat-direction']!r}", field=f"{where}[{i}]")
    ids, cids = network.nexus_ids, network.catchment_ids
    need_sends = {(ch.peer, str(ids[ch.nexus])) for ch in dom.sends}
    need_recvs = {(ch.peer, str(ids[ch.nexus]), str(cids[c])) for ch in dom.recvs for c in ch.catchments.tolist()}
    for r, nid in sorted(need_sends - sends):
        raise ConfigError(f"missing nex-to-dest_cat entry: nexus {nid} must be sent to rank {r}", field=where)
    for r, nid, cid in sorted(need_recvs - recvs):
        raise ConfigError(f"missing orig_cat-to-nex entry: catchment {cid} on rank {r} feeds nexus {nid}",
                          field=where)
    for r, nid in sorted(sends - need_sends):
        raise ConfigError(f"entry sends nexus {nid} to rank {r}, which does not sum it", field=where)
    for r, nid, cid in sorted(recvs - need_recvs):
        raise ConfigError(f"entry expects catchment {cid} from rank {r} into nexus {nid}, but the hydrofabric "
                          f"and partitions disagree", field=where)
