"""DMOD's partitions on the real ngen binary (OpenMPI): every method's file runs byte-identical
to serial ngen, including files the hang repair changed, and a file with ngen's hang pattern is
refused by the validator — and, as evidence, really hangs ngen.

Measured with this binary (NOAA-OWP/ngen 0.3.0, dd04bbcc) on hand-made hydrofabrics, 720 steps
(owner = the rank of the nexus' downstream catchment or terminal sentinel):

    boundary configuration at nexus j                                    result
    owner has 2 contributors, 1 on another rank                          hang; nexus files stop at 360/720
    owner has 3 contributors, 1 on another rank                          hang; stop at 1/3 of the steps
    terminal sentinel rank has 2 contributors, 1 on another rank         hang; stop at 360/720
    owner has 1 contributor, 2 on another rank / on two other ranks      identical to serial
    owner has 0 contributors, 3 remote (1 or 2 sending ranks)            identical to serial
    sentinel rank has 1 or 0 contributors, the rest remote               identical to serial
    sending rank has 2 or 3 contributors of a remote nexus               identical to serial
    terminal nexus fed from 2 ranks, no sentinel                         finishes; partial sums (wrong)
    send entry missing / partitions out of order                         hang
    receive entry missing                                                finishes; that inflow lost
    boundary nexus missing from nex-ids                                  finishes; its output file missing
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmod.services.hydrofabric import load_network, synth
from dmod.services.hydrofabric.network import Network
from dmod.services.hydrofabric.partition import partition
from dmod.services.hydrofabric.partition_file import Assignment, build_document
from dmod.services.hydrofabric.partition_validate import validate_partitioning

from . import handmade, ngenkit

pytestmark = pytest.mark.skipif(ngenkit.ngen_binary() is None, reason="no ngen binary")


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("ngen-part")
    m = synth(base / "hf", catchments=60, seed=3, outlets=4, hours=720)
    run = ngenkit.make_run_dir(base / "run", Path(m["gpkg"]), base / "hf" / "forcing", hours=720)
    proc = ngenkit.run_ngen(run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    serial = ngenkit.read_outputs(run)
    assert len(serial) > 60
    return run, load_network(run / "hydrofabric.gpkg"), serial


@pytest.mark.parametrize("method", ["DFS_CHUNK", "LOCAL_ONLY", "METIS"])
@pytest.mark.parametrize("k", [2, 3])
def test_every_method_runs_identical_to_serial(synth_run, method, k):
    run, net, serial = synth_run
    r = partition(net, k, method)
    assert [i for i in validate_partitioning(net, r.document, k) if i.severity == "error"] == []
    path = run / f"part-{method}-{k}.json"
    path.write_text(json.dumps(r.document))
    proc = ngenkit.run_ngen(run, ranks=k, partition=path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = ngenkit.read_outputs(run)
    assert got.keys() == serial.keys()
    assert [name for name in serial if got[name] != serial[name]] == []


def fan_in_network(n: int, seed: int) -> Network:
    """Uniform-attachment forest: many 3+-way confluences, so raw partitions do have the pattern."""
    rng = np.random.default_rng(seed)
    parent = np.full(n, -1, dtype=np.int64)
    for i in range(1, n):
        if rng.random() >= 0.03:
            parent[i] = rng.integers(0, i) if rng.random() < 0.5 else i - 1
    up = np.flatnonzero(np.isin(np.arange(n), parent[parent >= 0]))
    at = np.full(n, -1, dtype=np.int64)
    at[up] = np.arange(len(up))
    cat_to_nex = np.where(parent >= 0, at[np.maximum(parent, 0)], len(up))  # all outlets → tnx
    return Network(catchment_ids=np.asarray([f"cat-{i + 1}" for i in range(n)], dtype=object),
                   nexus_ids=np.asarray([f"nex-{i + 1}" for i in up.tolist()] + [f"tnx-{n + 1}"], dtype=object),
                   cat_to_nex=cat_to_nex, nex_to_cat=np.append(up, -1), area_sqkm=np.ones(n))


@pytest.fixture(scope="module")
def fan_in_run(tmp_path_factory):
    net = fan_in_network(50, 3)
    run = handmade.write_case(tmp_path_factory.mktemp("fan-in"), *handmade.network_dicts(net), hours=240)
    proc = handmade.run_case(run, timeout=120)
    assert proc is not None and proc.returncode == 0, proc and proc.stderr[-2000:]
    net = load_network(run / "catchments.geojson", run / "nexus.geojson")
    return run, net, ngenkit.read_outputs(run)


@pytest.mark.parametrize("method, k", [("DFS_CHUNK", 2), ("DFS_CHUNK", 3), ("METIS", 2), ("METIS", 3)])
def test_repaired_partitions_run_identical_to_serial(fan_in_run, method, k):
    run, net, serial = fan_in_run
    raw = partition(net, k, method, repair=False)
    fixed = partition(net, k, method)
    assert raw.stats["ngen_hang_hazards"] > 0 and fixed.stats["hang_repairs"] > 0  # the repair did work here
    assert fixed.stats["ngen_hang_hazards"] == 0
    assert [i for i in validate_partitioning(net, fixed.document, k) if i.severity == "error"] == []
    path = run / f"part-{method}-{k}.json"
    path.write_text(json.dumps(fixed.document))
    proc = handmade.run_case(run, k, path, timeout=120)
    assert proc is not None and proc.returncode == 0, proc and proc.stderr[-2000:]
    got = ngenkit.read_outputs(run)
    assert got.keys() == serial.keys()
    assert [name for name in serial if got[name] != serial[name]] == []


def test_hazardous_partition_is_refused_and_really_hangs_ngen(tmp_path):
    # cat-1, cat-2, cat-3 → nex-10 → cat-4 → tnx-1; rank 0: cat-1, cat-2, cat-4; rank 1: cat-3
    cats = {"cat-1": "nex-10", "cat-2": "nex-10", "cat-3": "nex-10", "cat-4": "tnx-1"}
    run = handmade.write_case(tmp_path, cats, {"nex-10": "cat-4", "tnx-1": None}, hours=720)
    net = load_network(run / "catchments.geojson", run / "nexus.geojson")
    part = np.asarray([{"cat-1": 0, "cat-2": 0, "cat-3": 1, "cat-4": 0}[c] for c in net.catchment_ids.tolist()])
    doc = build_document(net, Assignment(part=part, n_parts=2, sentinel_rank=np.full(net.n_nexuses, -1)))
    errors = [i for i in validate_partitioning(net, doc, 2) if i.severity == "error"]
    assert [(i.code, i.id) for i in errors] == [("NGEN_REMOTE_NEXUS_HANG", "nex-10")]
    path = run / "partition.json"
    path.write_text(json.dumps(doc))
    assert handmade.run_case(run, 2, path, timeout=20) is None  # did not finish: killed after 20 s
    rows = (run / "output" / "nex-10_output.csv").read_bytes().count(b"\n")
    assert rows < 720  # measured: stops at 360 of 720 steps
