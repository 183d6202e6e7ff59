"""Partitions: exact DFS_CHUNK/LOCAL_ONLY answers on the hand network; every method's output
passes validate_partitioning on generated networks."""
import numpy as np
import pytest

from dmod.services.hydrofabric.partition import dfs_sequence, partition
from dmod.services.hydrofabric.partition_file import Assignment, build_document, place_sentinels
from dmod.services.hydrofabric.partition_validate import validate_partitioning

S100, S101 = "wb-TERMINAL_SENTINEL-tnx-100", "wb-TERMINAL_SENTINEL-tnx-101"


def test_dfs_order_with_sentinels(hand_net):
    seq = dfs_sequence(hand_net)
    names = [hand_net.catchment_ids[x] if x >= 0 else "S:" + hand_net.nexus_ids[-x - 1] for x in seq.tolist()]
    assert names == ["S:tnx-100", "cat-5", "cat-3", "cat-1", "cat-2", "cat-4",
                     "S:tnx-101", "cat-7", "cat-6", "cat-8"]


def test_dfs_chunk_document_exact(hand_net):
    doc = partition(hand_net, 2, "DFS_CHUNK").document
    assert doc == {"partitions": [
        {"id": 0, "cat-ids": [S100, "cat-5", "cat-3", "cat-1", "cat-2"],
         "nex-ids": ["nex-10", "nex-11", "tnx-100"],
         "remote-connections": [
             {"mpi-rank": 1, "nex-id": "nex-11", "cat-id": "cat-4", "cat-direction": "orig_cat-to-nex"}]},
        {"id": 1, "cat-ids": ["cat-4", S101, "cat-7", "cat-6", "cat-8"],
         "nex-ids": ["nex-11", "nex-12", "tnx-101"],
         "remote-connections": [
             {"mpi-rank": 0, "nex-id": "nex-11", "cat-id": "cat-5", "cat-direction": "nex-to-dest_cat"}]},
    ]}


def test_dfs_chunk_three_parts_routes_to_sentinel(hand_net):
    # chunks of 4/3/3: [S100 5 3 1] [2 4 S101] [7 6 8]
    r = partition(hand_net, 3, "DFS_CHUNK")
    p = r.document["partitions"]
    assert p[1]["cat-ids"] == ["cat-2", "cat-4", S101]
    # cat-7 and cat-8 (rank 2) feed tnx-101 whose sentinel is on rank 1: one send, two receives
    sends = [c for c in p[2]["remote-connections"] if c["cat-direction"] == "nex-to-dest_cat"]
    assert sends == [{"mpi-rank": 1, "nex-id": "tnx-101", "cat-id": S101, "cat-direction": "nex-to-dest_cat"}]
    recv = {(c["nex-id"], c["cat-id"], c["mpi-rank"]) for c in p[1]["remote-connections"]
            if c["cat-direction"] == "orig_cat-to-nex"}
    assert recv == {("tnx-101", "cat-7", 2), ("tnx-101", "cat-8", 2)}
    assert r.stats["cut_nexuses"] == 3  # nex-10, nex-11, tnx-101
    assert validate_partitioning(hand_net, r.document, 3) == []


def test_local_only_keeps_basins_whole(hand_net):
    r = partition(hand_net, 2, "LOCAL_ONLY")
    parts = [set(p["cat-ids"]) for p in r.document["partitions"]]
    assert parts == [{"cat-1", "cat-2", "cat-3", "cat-4", "cat-5"}, {"cat-6", "cat-7", "cat-8"}]
    assert all(p["remote-connections"] == [] for p in r.document["partitions"])
    assert r.stats["remote_connections"] == 0 and r.stats["imbalance"] == pytest.approx(5 / 4)
    with pytest.raises(ValueError, match="independent basin"):
        partition(hand_net, 3, "LOCAL_ONLY")


def test_sentinel_added_only_when_needed(hand_net):
    part = np.array([0, 0, 0, 0, 0, 1, 1, 0])  # cat-8 on rank 0, cat-7 on rank 1: tnx-101 split
    sr = place_sentinels(hand_net, part, "needed")
    assert sr[hand_net.nexus_index["tnx-101"]] >= 0 and sr[hand_net.nexus_index["tnx-100"]] == -1
    doc = build_document(hand_net, Assignment(part, 2, sr))
    assert validate_partitioning(hand_net, doc, 2) == []


@pytest.mark.parametrize("method", ["DFS_CHUNK", "LOCAL_ONLY", "METIS"])
@pytest.mark.parametrize("k", [1, 2, 5, 13])
def test_every_method_validates_on_synth(synth_net, method, k):
    r = partition(synth_net, k, method)
    assert len(r.document["partitions"]) == k
    assert validate_partitioning(synth_net, r.document, k) == []
    assert r.stats["terminal_partial_sums"] == 0
    assert sum(len([c for c in p["cat-ids"] if c.startswith("cat-")]) for p in r.document["partitions"]) \
        == synth_net.n_catchments


@pytest.mark.parametrize("k", [4, 16])
def test_metis_balance_and_cut(synth_net, k):
    metis = partition(synth_net, k, "METIS").stats
    dfs = partition(synth_net, k, "DFS_CHUNK").stats
    sizes = metis["part_sizes"]
    # ≤ 3 % over the mean, or one catchment over when parts are too small for 3 % to be whole
    assert sizes["max"] <= max(1.03 * sizes["mean"], sizes["mean"] + 1)
    assert metis["cut_nexuses"] <= dfs["cut_nexuses"]


def test_metis_with_area_cost(synth_net):
    r = partition(synth_net, 6, "METIS", cost="area")
    load = np.bincount(r.assignment.part, weights=synth_net.area_sqkm, minlength=6)
    assert load.max() / load.mean() == pytest.approx(r.stats["imbalance"])
    assert validate_partitioning(synth_net, r.document, 6) == []


def test_bad_arguments(hand_net):
    with pytest.raises(ValueError):
        partition(hand_net, 2, "RANDOM")
    with pytest.raises(ValueError):
        partition(hand_net, 11, "DFS_CHUNK")  # 8 catchments + 2 sentinels
    with pytest.raises(ValueError):
        partition(hand_net, 2, "METIS", cost=np.zeros(3))
