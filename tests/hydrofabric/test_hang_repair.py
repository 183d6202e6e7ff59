"""ngen's receive-side hang pattern: the validator names it, every partition method avoids it.

The pattern (measured with the real binary, see tests/ngen/test_ngen_hang.py): the rank owning a
boundary nexus (its downstream catchment or terminal sentinel) holds ≥ 2 of the nexus'
contributors while ≥ 1 contributor is on another rank.
"""
from __future__ import annotations

import numpy as np
import pytest

from dmod.services.hydrofabric.network import Network
from dmod.services.hydrofabric.partition import METHODS, partition
from dmod.services.hydrofabric.partition_file import Assignment, build_document, ngen_hang_hazards
from dmod.services.hydrofabric.partition_validate import validate_partitioning
from dmod.services.hydrofabric.synth import generate


def network(cats: dict[str, str], nexus: dict[str, str | None]) -> Network:
    cids, nids = list(cats), list(nexus)
    return Network(catchment_ids=np.asarray(cids, dtype=object), nexus_ids=np.asarray(nids, dtype=object),
                   cat_to_nex=np.asarray([nids.index(cats[c]) for c in cids], dtype=np.int64),
                   nex_to_cat=np.asarray([cids.index(d) if d else -1 for d in nexus.values()], dtype=np.int64),
                   area_sqkm=np.ones(len(cids)))


# cat-1, cat-2, cat-3 → nex-10 → cat-4 → tnx-1;  cat-5, cat-6, cat-7 → tnx-2 (terminal)
Y = network({"cat-1": "nex-10", "cat-2": "nex-10", "cat-3": "nex-10", "cat-4": "tnx-1",
             "cat-5": "tnx-2", "cat-6": "tnx-2", "cat-7": "tnx-2"},
            {"nex-10": "cat-4", "tnx-1": None, "tnx-2": None})


def doc_of(net: Network, ranks: list[int], sentinels: dict[str, int] | None = None) -> dict:
    part = np.asarray(ranks, dtype=np.int64)
    sr = np.full(net.n_nexuses, -1, dtype=np.int64)
    for nid, r in (sentinels or {}).items():
        sr[net.nexus_index[nid]] = r
    return build_document(net, Assignment(part=part, n_parts=int(part.max()) + 1, sentinel_rank=sr))


def hang_issues(issues):
    return [i for i in issues if i.code == "NGEN_REMOTE_NEXUS_HANG"]


def test_validator_names_nexus_rank_and_catchments():
    doc = doc_of(Y, [0, 0, 1, 0, 0, 0, 0])  # nex-10 on rank 0 with cat-1, cat-2; cat-3 on rank 1
    issues = validate_partitioning(Y, doc, 2)
    [hang] = hang_issues(issues)
    assert hang.severity == "error" and hang.id == "nex-10"
    assert "partition 0 owns boundary nexus nex-10" in hang.message
    assert "cat-1, cat-2" in hang.message and "cat-3 (partition 1)" in hang.message
    assert [i for i in issues if i.severity == "error"] == [hang]
    # the embedded engine is not affected: a warning only
    [soft] = hang_issues(validate_partitioning(Y, doc, 2, engine="embedded"))
    assert soft.severity == "warning"
    with pytest.raises(ValueError):
        validate_partitioning(Y, doc, 2, engine="other")


@pytest.mark.parametrize("ranks, sentinels, hazard", [
    ([0, 1, 1, 0, 0, 0, 0], {}, False),            # owner keeps 1 contributor, 2 remote
    ([1, 1, 1, 0, 0, 0, 0], {}, False),            # owner keeps none
    ([1, 1, 0, 0, 0, 0, 0], {}, False),            # 2 contributors on the *sending* rank
    ([0, 1, 2, 0, 0, 0, 0], {}, False),            # one contributor per rank
    ([0, 0, 2, 1, 1, 1, 1], {}, False),            # nex-10 owned by rank 1: ranks 0 and 2 send
    ([0, 0, 0, 0, 0, 0, 1], {"tnx-2": 0}, True),   # terminal: sentinel rank holds cat-5, cat-6
    ([0, 0, 0, 0, 0, 0, 1], {"tnx-2": 1}, False),  # sentinel with the single remote contributor
])
def test_hazard_cases(ranks, sentinels, hazard):
    doc = doc_of(Y, ranks, sentinels)
    issues = validate_partitioning(Y, doc, max(ranks) + 1)
    assert bool(hang_issues(issues)) == hazard
    assert [i for i in issues if i.severity == "error" and i.code != "NGEN_REMOTE_NEXUS_HANG"] == []


def test_sentinel_is_moved_not_catchments():
    from dmod.services.hydrofabric.hang_repair import repair_hang_hazards

    part = np.asarray([0, 0, 0, 0, 0, 0, 1])
    sr = np.full(Y.n_nexuses, -1)
    sr[Y.nexus_index["tnx-2"]] = 0
    fixed, stats = repair_hang_hazards(Y, Assignment(part=part, n_parts=2, sentinel_rank=sr))
    assert stats["hang_hazards"] == 1 and stats["hang_moved_sentinels"] == 1 and stats["hang_moved_catchments"] == 0
    assert fixed.sentinel_rank[Y.nexus_index["tnx-2"]] == 1 and (fixed.part == part).all()
    assert validate_partitioning(Y, build_document(Y, fixed), 2) == []


def random_network(n: int, seed: int, fan: float = 0.5, p_root: float = 0.03) -> Network:
    """Uniform-attachment forest: many 3- to 6-way confluences (real hydrofabrics have them;
    the synthetic generator rarely makes them), outlets grouped onto shared terminal nexuses."""
    rng = np.random.default_rng(seed)
    parent = np.full(n, -1, dtype=np.int64)
    for i in range(1, n):
        if rng.random() >= p_root:
            parent[i] = rng.integers(0, i) if rng.random() < fan else i - 1
    has_up = np.zeros(n, dtype=bool)
    has_up[parent[parent >= 0]] = True
    up = np.flatnonzero(has_up)
    roots = np.flatnonzero(parent < 0)
    n_term = max(1, len(roots) // 3)
    at = np.full(n, -1, dtype=np.int64)
    at[up] = np.arange(len(up))
    cat_to_nex = np.where(parent >= 0, at[np.maximum(parent, 0)], -1)
    cat_to_nex[roots] = len(up) + rng.integers(0, n_term, len(roots))
    return Network(catchment_ids=np.asarray([f"cat-{i + 1}" for i in range(n)], dtype=object),
                   nexus_ids=np.asarray([f"nex-{i + 1}" for i in up.tolist()]
                                        + [f"tnx-{n + 1 + t}" for t in range(n_term)], dtype=object),
                   cat_to_nex=cat_to_nex, nex_to_cat=np.concatenate([up, np.full(n_term, -1, dtype=np.int64)]),
                   area_sqkm=np.round(rng.lognormal(np.log(6.0), 0.7, n), 4))


def synth_network(n: int, seed: int) -> Network:
    sn = generate(n, seed=seed)
    return Network(catchment_ids=sn.cat_ids, nexus_ids=np.asarray(sn.nex_ids, dtype=object),
                   cat_to_nex=np.asarray(sn.nex_of_node, dtype=np.int64),
                   nex_to_cat=np.asarray(sn.nex_down, dtype=np.int64), area_sqkm=sn.area)


NETWORKS = [("random", n, s) for n, s in [(40, 1), (60, 2), (90, 3), (150, 4), (300, 5), (800, 6)]] + \
           [("synth", n, s) for n, s in [(40, 7), (80, 8), (200, 9), (500, 10)]]


@pytest.mark.parametrize("kind, n, seed", NETWORKS)
def test_no_method_produces_the_hang_pattern(kind, n, seed):
    net = random_network(n, seed) if kind == "random" else synth_network(n, seed)
    raw_hazards = 0
    for method in METHODS:
        for k in range(2, 17):
            for cost in (None, "area"):
                try:
                    r = partition(net, k, method, cost=cost)
                except ValueError:  # LOCAL_ONLY: fewer basins than k; DFS_CHUNK: k > items
                    continue
                a = r.assignment
                assert len(ngen_hang_hazards(net, a.part, a.sentinel_rank)) == 0, (method, k, cost)
                assert r.stats["ngen_hang_hazards"] == 0
                issues = validate_partitioning(net, r.document, k)
                assert [i for i in issues if i.severity == "error"] == [], (method, k, cost, issues[:3])
                assert np.bincount(a.part, minlength=k).sum() == n
                raw_hazards += r.stats.get("hang_hazards", 0)
    if kind == "random" and n >= 90:
        assert raw_hazards > 0  # the networks do exercise the repair


def test_repair_opt_out_keeps_dfs_chunk_raw():
    net = random_network(800, 6)
    hazards = [partition(net, k, "DFS_CHUNK", repair=False).stats["ngen_hang_hazards"] for k in range(2, 17)]
    assert sum(hazards) > 0
    raw = partition(net, 8, "DFS_CHUNK", repair=False)
    assert "hang_hazards" not in raw.stats
    fixed = partition(net, 8, "DFS_CHUNK")
    assert fixed.stats["hang_hazards"] == raw.stats["ngen_hang_hazards"]
    # the repair moves single catchments: balance stays within a few catchments of the raw chunks
    assert fixed.stats["part_sizes"]["max"] <= raw.stats["part_sizes"]["max"] + fixed.stats["hang_moved_catchments"]
