"""Subsets on the hand network, checked against hand-derived closures."""
import json

import numpy as np
import pyogrio
import pytest

from dmod.services.hydrofabric import load_network
from dmod.services.hydrofabric.crosswalk import gage_crosswalk
from dmod.services.hydrofabric.subset import subset_network, upstream_closure, validate_ids
from dmod.services.hydrofabric.subset_write import subset_hydrofabric
from dmod.services.hydrofabric.validate import errors_only, validate_hydrofabric

from .conftest import ids_of


def cats(net, ids, **kw):
    return ids_of(net, subset_network(net, ids, **kw).catchments)


@pytest.mark.parametrize("ids,kw,expected", [
    (["cat-5"], {}, {"cat-1", "cat-2", "cat-3", "cat-4", "cat-5"}),
    (["cat-3"], {}, {"cat-1", "cat-2", "cat-3"}),
    (["wb-3"], {}, {"cat-1", "cat-2", "cat-3"}),
    (["nex-11"], {}, {"cat-1", "cat-2", "cat-3", "cat-4"}),  # everything draining into nex-11
    (["tnx-101"], {}, {"cat-6", "cat-7", "cat-8"}),
    (["cat-5"], {"depth": 1}, {"cat-3", "cat-4", "cat-5"}),
    (["cat-5"], {"depth": 0}, {"cat-5"}),
    (["cat-1"], {"upstream": False, "downstream": True}, {"cat-1", "cat-3", "cat-5"}),
    (["cat-1"], {"upstream": False, "downstream": True, "depth": 1}, {"cat-1", "cat-3"}),
    (["nex-10"], {"upstream": False, "downstream": True}, {"cat-3", "cat-5"}),
    (["cat-3"], {"upstream": True, "downstream": True}, {"cat-1", "cat-2", "cat-3", "cat-5"}),
    (["cat-1", "cat-6"], {"upstream": False, "downstream": True}, {"cat-1", "cat-3", "cat-5", "cat-6", "cat-7"}),
    (["cat-3", "cat-7"], {}, {"cat-1", "cat-2", "cat-3", "cat-6", "cat-7"}),
])
def test_closures(hand_net, ids, kw, expected):
    assert cats(hand_net, ids, **kw) == expected


def test_gage_seeds(hand_net, hand_gpkg):
    cw = gage_crosswalk(hand_gpkg, hand_net)
    assert cats(hand_net, ["01010101"], crosswalk=cw) == {"cat-1", "cat-2", "cat-3", "cat-4"}
    assert cats(hand_net, ["Gages-02020202"], crosswalk=cw) == {"cat-6"}


def test_subset_nexuses_are_downstream_nexuses_of_included(hand_net):
    s = subset_network(hand_net, ["cat-3"])
    assert s.nexus_ids(hand_net) == ["nex-10", "nex-11"]


def test_validate_ids_and_strict(hand_net, hand_gpkg):
    cw = gage_crosswalk(hand_gpkg, hand_net)
    assert validate_ids(hand_net, ["cat-1", "wb-2", "nex-12", "01010101", "cat-99", "bogus"], cw) == ["cat-99", "bogus"]
    with pytest.raises(KeyError, match="cat-99"):
        subset_network(hand_net, ["cat-1", "cat-99"])
    with pytest.raises(ValueError):
        subset_network(hand_net, ["cat-1"], upstream=False, downstream=False)


def test_multi_seed_depth_limit_on_synth(synth_net):
    t = synth_net.tour
    rng = np.random.default_rng(0)
    seeds = rng.choice(synth_net.n_catchments, 5, replace=False)
    got = set(upstream_closure(synth_net, seeds, depth=2).tolist())
    # brute force: nodes whose downstream walk hits a seed within 2 hops
    want = set()
    for c in range(synth_net.n_catchments):
        x, h = c, 0
        while x >= 0 and h <= 2:
            if x in set(seeds.tolist()):
                want.add(c)
                break
            x, h = t.down[x], h + 1
    assert got == want


def test_write_gpkg_subset_filters_every_layer(hand_gpkg, tmp_path):
    doc = subset_hydrofabric(hand_gpkg, ["cat-3"], tmp_path / "out")
    gp = tmp_path / "out" / "subset.gpkg"
    assert doc["layers"] == {"divides": 3, "nexus": 2, "flowpaths": 3, "network": 5,
                             "flowpath_attributes": 3, "hydrolocations": 2}
    _, hl = pyogrio.read_arrow(str(gp), layer="hydrolocations", read_geometry=False)
    assert sorted(hl["id"].to_pylist()) == ["nex-10", "nex-11"]
    sub = load_network(gp)
    assert sub.catchment_ids.tolist() == ["cat-1", "cat-2", "cat-3"]
    # nex-11 now drains out of the subset: terminal (a warning, not an error)
    assert sub.nex_to_cat[sub.nexus_index["nex-11"]] == -1
    assert errors_only(validate_hydrofabric(gp)) == []
    saved = json.loads((tmp_path / "out" / "subset.json").read_text())
    assert saved["ids"] == ["cat-3"] and saved["catchment_ids"] == ["cat-1", "cat-2", "cat-3"]
    assert saved["hydrofabric_id"] == sub.hydrofabric_id


def test_write_geojson_subset(hand_dir, tmp_path):
    doc = subset_hydrofabric(hand_dir / "catchments.geojson", ["tnx-101"], tmp_path,
                             nexus_path=hand_dir / "nexus.geojson")
    assert doc["layers"] == {"catchments": 3, "nexus": 2}
    sub = load_network(doc["files"]["catchments"], doc["files"]["nexus"])
    assert sorted(sub.catchment_ids.tolist()) == ["cat-6", "cat-7", "cat-8"]


def test_empty_subset_is_an_error(hand_gpkg, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        subset_hydrofabric(hand_gpkg, ["tnx-100"], tmp_path, upstream=False, downstream=True)


def test_bfs_and_tour_closures_agree(synth_dir):
    from dmod.services.hydrofabric.subset import _upstream_bfs
    net = load_network(synth_dir / "hydrofabric.gpkg")  # fresh: no tour cached yet
    rng = np.random.default_rng(3)
    cases = [(rng.choice(net.n_catchments, k, replace=False), d) for k in (1, 4) for d in (None, 0, 3)]
    bfs = [_upstream_bfs(net, s, d) for s, d in cases]
    assert "tour" not in net.__dict__
    for (s, d), b in zip(cases, bfs):
        assert np.array_equal(upstream_closure(net, s, d) if "tour" in net.__dict__ else b, b)
    assert net.tour is not None  # now the tour path
    for (s, d), b in zip(cases, bfs):
        assert np.array_equal(upstream_closure(net, s, d), b)
