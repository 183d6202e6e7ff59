import numpy as np
import pytest

from dmod.services.hydrofabric import load_network
from dmod.services.hydrofabric.hashing import hydrofabric_id

from .conftest import write_geojson, write_gpkg

GRAPH_FIELDS = ("catchment_ids", "nexus_ids", "cat_to_nex", "nex_to_cat", "area_sqkm")


def test_hand_graph_resolves_wb_to_cat(hand_net):
    n = hand_net
    assert n.catchment_ids.tolist() == [f"cat-{i}" for i in range(1, 9)]
    assert n.nexus_ids.tolist() == ["nex-10", "nex-11", "nex-12", "tnx-100", "tnx-101"]
    down = {n.catchment_ids[i]: n.nexus_ids[j] for i, j in enumerate(n.cat_to_nex)}
    assert down["cat-4"] == "nex-11" and down["cat-8"] == "tnx-101"
    to = {n.nexus_ids[j]: (n.catchment_ids[c] if c >= 0 else None) for j, c in enumerate(n.nex_to_cat)}
    assert to == {"nex-10": "cat-3", "nex-11": "cat-5", "nex-12": "cat-7", "tnx-100": None, "tnx-101": None}
    assert n.vpu == "01"
    assert n.area_sqkm.tolist() == [1.5, 2.0, 3.0, 1.0, 4.0, 2.5, 1.2, 0.8]


def test_geopackage_and_geojson_give_identical_graphs(hand_dir, synth_dir):
    a = load_network(hand_dir / "hand.gpkg")
    b = load_network(hand_dir / "catchments.geojson", hand_dir / "nexus.geojson")
    c = load_network(synth_dir / "hydrofabric.gpkg")
    d = load_network(synth_dir / "catchments.geojson", synth_dir / "nexus.geojson")
    for x, y in ((a, b), (c, d)):
        for f in GRAPH_FIELDS:
            assert np.array_equal(getattr(x, f), getattr(y, f)), f


def test_geojson_properties_id_and_cat_toids(tmp_path):
    nexes = [("nex-10", "cat-3"), ("nex-11", "cat-5"), ("nex-12", "cat-7"), ("tnx-100", "wb-0"), ("tnx-101", "wb-0")]
    cp, np_ = write_geojson(tmp_path, nexes=nexes, use_properties_id=True)
    n = load_network(cp, np_)
    assert n.catchment_ids[n.nex_to_cat[n.nexus_index["nex-11"]]] == "cat-5"


def test_attributes_from_divides_and_joined_layers(hand_gpkg):
    n = load_network(hand_gpkg, attributes=("slope", "n", "MusK", "rl_gages"))
    assert n.attributes["slope"][0] == pytest.approx(0.01)
    assert n.attributes["n"][-1] == pytest.approx(0.06)  # flowpath_attributes joined via wb-N
    assert n.attributes["rl_gages"][5] == "02020202"
    with pytest.raises(KeyError, match="nonexistent"):
        load_network(hand_gpkg, attributes=("nonexistent",))


def test_synth_attribute_layer(synth_dir):
    n = load_network(synth_dir / "hydrofabric.gpkg", attributes=("mean.impervious", "BtmWdth"))
    assert n.attributes["mean.impervious"].shape == (n.n_catchments,)
    assert not np.isnan(n.attributes["BtmWdth"]).any()


def test_hydrofabric_id_is_content_hash(hand_dir, tmp_path):
    gp = hand_dir / "hand.gpkg"
    h = hydrofabric_id(gp)
    assert len(h) == 64 and load_network(gp).hydrofabric_id == h
    copy = tmp_path / "copy.gpkg"
    copy.write_bytes(gp.read_bytes())
    assert hydrofabric_id(copy) == h
    # the same file as catchments and nexus counts once
    assert hydrofabric_id(gp, gp) == h
    pair = hydrofabric_id(hand_dir / "catchments.geojson", hand_dir / "nexus.geojson")
    assert pair != h


def test_summary_and_adjacency(hand_net):
    s = hand_net.summary()
    assert s["catchments"] == 8 and s["nexuses"] == 5 and s["terminal_nexuses"] == 2
    assert s["confluences"] == 3  # nex-10, nex-11, tnx-101
    indptr, cats = hand_net.nexus_upstream
    j = hand_net.nexus_index["nex-11"]
    assert hand_net.catchment_ids[cats[indptr[j]:indptr[j + 1]]].tolist() == ["cat-3", "cat-4"]
    assert sorted(hand_net.catchment_ids[hand_net.outlet_catchments()].tolist()) == ["cat-5", "cat-7", "cat-8"]


def test_gpkg_without_nexus_layer_uses_network_table(hand_net, tmp_path):
    n = load_network(write_gpkg(tmp_path / "nonexus.gpkg", nexus_layer=False))
    for f in GRAPH_FIELDS:
        assert np.array_equal(getattr(n, f), getattr(hand_net, f)), f
