"""Every failure class ngen silently accepts has a failing fixture."""
import copy
import json

import numpy as np
import pytest

from dmod.services.hydrofabric.network import Network
from dmod.services.hydrofabric.partition import partition
from dmod.services.hydrofabric.partition_file import Assignment, build_document
from dmod.services.hydrofabric.partition_validate import validate_partitioning

S101 = "wb-TERMINAL_SENTINEL-tnx-101"


@pytest.fixture(scope="module")
def doc2(hand_net):
    return partition(hand_net, 2, "DFS_CHUNK").document


@pytest.fixture(scope="module")
def doc3(hand_net):
    # [S100 5 3 1] [2 4 S101] [7 6 8]
    return partition(hand_net, 3, "DFS_CHUNK").document


def codes(issues, severity="error"):
    return [(i.code, i.id) for i in issues if i.severity == severity]


def mutate(doc, fn):
    d = copy.deepcopy(doc)
    fn(d["partitions"])
    return d


def test_valid_documents_from_path_text_and_dict(hand_net, doc2, tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps(doc2))
    assert validate_partitioning(hand_net, doc2, 2) == []
    assert validate_partitioning(hand_net, p, 2) == []
    assert validate_partitioning(hand_net, str(p), 2) == []
    assert validate_partitioning(hand_net, json.dumps(doc2), 2) == []


@pytest.mark.parametrize("ranks", [1, 3])
def test_partition_count_differs_from_ranks(hand_net, doc2, ranks):
    iss = validate_partitioning(hand_net, doc2, ranks)
    assert codes(iss) == [("PARTITION_COUNT", "")]
    assert f"2 partitions for {ranks} MPI ranks" in iss[0].message


def test_ids_not_in_order(hand_net, doc2):
    d = mutate(doc2, lambda p: p.reverse())
    assert ("PARTITION_ID", "1") in codes(validate_partitioning(hand_net, d, 2))
    d = mutate(doc2, lambda p: p[1].update(id=7))
    assert codes(validate_partitioning(hand_net, d, 2)) == [("PARTITION_ID", "7")]


def test_missing_catchment(hand_net, doc2):
    d = mutate(doc2, lambda p: p[0]["cat-ids"].remove("cat-2"))
    c = codes(validate_partitioning(hand_net, d, 2))
    assert ("MISSING_CATCHMENT", "cat-2") in c


def test_duplicated_catchment(hand_net, doc2):
    d = mutate(doc2, lambda p: p[0]["cat-ids"].append("cat-6"))
    iss = validate_partitioning(hand_net, d, 2)
    dup = [i for i in iss if i.code == "DUPLICATE_CATCHMENT"]
    assert [i.id for i in dup] == ["cat-6"] and "partition 0 and partition 1" in dup[0].message


def test_unknown_ids(hand_net, doc2):
    def f(p):
        p[0]["cat-ids"].append("cat-99")
        p[1]["nex-ids"].append("nex-99")
    c = codes(validate_partitioning(hand_net, mutate(doc2, f), 2))
    assert ("UNKNOWN_CATCHMENT", "cat-99") in c and ("UNKNOWN_NEXUS", "nex-99") in c


def test_nex_ids_missing_upstream_or_downstream_nexus(hand_net, doc2):
    d = mutate(doc2, lambda p: p[1]["nex-ids"].remove("nex-11"))  # cat-4's downstream nexus
    assert codes(validate_partitioning(hand_net, d, 2)) == [("MISSING_NEXUS", "nex-11")]
    d = mutate(doc2, lambda p: p[0]["nex-ids"].remove("nex-10"))  # upstream nexus of cat-3
    iss = validate_partitioning(hand_net, d, 2)
    assert codes(iss) == [("MISSING_NEXUS", "nex-10")] and "partition 0" in iss[0].message


def test_missing_send_side(hand_net, doc2):
    d = mutate(doc2, lambda p: p[1]["remote-connections"].clear())
    c = codes(validate_partitioning(hand_net, d, 2))
    assert ("MISSING_SEND", "nex-11") in c and ("ASYMMETRIC_CONNECTION", "nex-11") in c


def test_missing_receive_side(hand_net, doc2):
    d = mutate(doc2, lambda p: p[0]["remote-connections"].clear())
    c = codes(validate_partitioning(hand_net, d, 2))
    assert ("MISSING_RECEIVE", "nex-11") in c and ("ASYMMETRIC_CONNECTION", "nex-11") in c


def test_wrong_rank(hand_net, doc3):
    def f(p):
        for c in p[1]["remote-connections"]:
            if c["nex-id"] == "nex-10" and c["cat-direction"] == "nex-to-dest_cat":
                c["mpi-rank"] = 2
    c = codes(validate_partitioning(hand_net, mutate(doc3, f), 3))
    assert ("WRONG_RANK", "nex-10") in c and ("MISSING_SEND", "nex-10") in c


def test_wrong_receive_rank_and_self_rank(hand_net, doc3):
    def f(p):
        for c in p[1]["remote-connections"]:
            if c["cat-direction"] == "orig_cat-to-nex":
                c["mpi-rank"] = 0  # cat-7/cat-8 are on rank 2
    c = codes(validate_partitioning(hand_net, mutate(doc3, f), 3))
    assert ("WRONG_RANK", "cat-7") in c and ("WRONG_RANK", "cat-8") in c
    d = mutate(doc3, lambda p: p[2]["remote-connections"][0].update({"mpi-rank": 2}))
    assert ("BAD_RANK", "tnx-101") in codes(validate_partitioning(hand_net, d, 3))


def test_unexpected_connection(hand_net, doc2):
    extra = {"mpi-rank": 1, "nex-id": "nex-10", "cat-id": "cat-3", "cat-direction": "nex-to-dest_cat"}
    d = mutate(doc2, lambda p: p[0]["remote-connections"].append(extra))
    assert ("UNEXPECTED_SEND", "nex-10") in codes(validate_partitioning(hand_net, d, 2)) or \
        ("WRONG_RANK", "nex-10") in codes(validate_partitioning(hand_net, d, 2))
    wrong = {"mpi-rank": 1, "nex-id": "nex-11", "cat-id": "cat-6", "cat-direction": "orig_cat-to-nex"}
    d = mutate(doc2, lambda p: p[0]["remote-connections"].append(wrong))
    assert ("WRONG_CONNECTION", "nex-11") in codes(validate_partitioning(hand_net, d, 2))


def test_terminal_nexus_from_several_ranks_without_sentinel(hand_net):
    part = np.array([0, 0, 0, 0, 0, 1, 1, 0])  # cat-7 rank 1, cat-8 rank 0, both into tnx-101
    doc = build_document(hand_net, Assignment(part, 2, np.full(hand_net.n_nexuses, -1)))
    iss = validate_partitioning(hand_net, doc, 2)
    assert codes(iss) == [("TERMINAL_NO_SENTINEL", "tnx-101")]
    assert "partitions 0, 1" in iss[0].message


def test_sentinel_for_non_terminal_nexus(hand_net, doc2):
    d = mutate(doc2, lambda p: p[0]["cat-ids"].append("wb-TERMINAL_SENTINEL-nex-10"))
    assert ("SENTINEL_NOT_TERMINAL", "wb-TERMINAL_SENTINEL-nex-10") in codes(validate_partitioning(hand_net, d, 2))
    d = mutate(doc2, lambda p: p[0]["cat-ids"].append(S101))
    assert ("DUPLICATE_CATCHMENT", S101) in codes(validate_partitioning(hand_net, d, 2))


def test_boundary_nexus_without_integer_tag():
    net = Network(catchment_ids=np.array(["cat-1", "cat-2"], dtype=object),
                  nexus_ids=np.array(["nex-up", "tnx-9"], dtype=object),
                  cat_to_nex=np.array([0, 1]), nex_to_cat=np.array([1, -1]), area_sqkm=np.array([1.0, 1.0]))
    doc = build_document(net, Assignment(np.array([0, 1]), 2, np.full(2, -1)))
    iss = validate_partitioning(net, doc, 2)
    assert codes(iss) == [("NEXUS_TAG", "nex-up")] and "partitions 0" in iss[0].message


def test_format_errors(hand_net, doc2):
    assert codes(validate_partitioning(hand_net, {"parts": []}, 2)) == [("PARTITION_FORMAT", "")]
    d = mutate(doc2, lambda p: p[0].pop("nex-ids"))
    assert codes(validate_partitioning(hand_net, d, 2)) == [("PARTITION_FORMAT", "")]
    d = mutate(doc2, lambda p: p[0]["remote-connections"][0].update({"cat-direction": "sideways"}))
    assert codes(validate_partitioning(hand_net, d, 2)) == [("PARTITION_FORMAT", "nex-11")]
    d = mutate(doc2, lambda p: p[0]["cat-ids"].append(5))
    assert codes(validate_partitioning(hand_net, d, 2)) == [("PARTITION_FORMAT", "")]
    assert codes(validate_partitioning(hand_net, "{not json", 2)) == [("PARTITION_FORMAT", "")]
