"""Every hydrofabric validation class has a failing fixture."""

from dmod.services.hydrofabric.crosswalk import gage_crosswalk, read_gage_crosswalk
from dmod.services.hydrofabric.validate import errors_only, validate_hydrofabric, validate_network

from .conftest import CATS, NEXES, write_geojson, write_gpkg


def _issues(tmp_path, cats=CATS, nexes=NEXES):
    cp, np_ = write_geojson(tmp_path, cats, nexes)
    return validate_hydrofabric(cp, np_)


def _codes(issues, severity="error"):
    return {i.code for i in issues if i.severity == severity}


def _replace(rows, key, new):
    return [new if r[0] == key else r for r in rows]


def test_clean_fixtures_have_no_errors(hand_dir, hand_gpkg, synth_dir):
    assert errors_only(validate_hydrofabric(hand_gpkg)) == []
    assert errors_only(validate_hydrofabric(hand_dir / "catchments.geojson", hand_dir / "nexus.geojson")) == []
    assert validate_hydrofabric(synth_dir / "hydrofabric.gpkg") == []


def test_nexus_with_two_downstream_catchments(tmp_path):
    iss = _issues(tmp_path, nexes=NEXES + [("nex-10", "wb-4")])
    bad = [i for i in iss if i.code == "NON_DENDRITIC"]
    assert len(bad) == 1 and bad[0].id == "nex-10" and "wb-3" in bad[0].message and "wb-4" in bad[0].message


def test_catchment_with_two_downstream_nexuses(tmp_path):
    iss = _issues(tmp_path, cats=CATS + [("cat-1", "nex-11", 1.5)])
    bad = [i for i in iss if i.code == "NON_DENDRITIC"]
    assert [b.id for b in bad] == ["cat-1"]


def test_duplicate_identical_record_is_only_a_warning(tmp_path):
    iss = _issues(tmp_path, cats=CATS + [CATS[0]])
    assert "DUPLICATE_CATCHMENT" in _codes(iss, "warning") and not _codes(iss)


def test_dangling_and_missing_toid(tmp_path):
    iss = _issues(tmp_path / "a", cats=_replace(CATS, "cat-2", ("cat-2", "nex-999", 2.0)))
    assert [(i.code, i.id) for i in errors_only(iss)] == [("DANGLING_TOID", "cat-2")]
    iss = _issues(tmp_path / "b", cats=_replace(CATS, "cat-2", ("cat-2", "cat-3", 2.0)))
    assert "is a catchment" in errors_only(iss)[0].message
    iss = _issues(tmp_path / "c", cats=_replace(CATS, "cat-2", ("cat-2", None, 2.0)))
    assert [(i.code, i.id) for i in errors_only(iss)] == [("MISSING_TOID", "cat-2")]


def test_cycle(tmp_path):
    # nex-11 now drains back into cat-1: cat-1 → nex-10 → cat-3 → nex-11 → cat-1
    iss = _issues(tmp_path, nexes=_replace(NEXES, "nex-11", ("nex-11", "wb-1")))
    cyc = [i for i in iss if i.code == "CYCLE"]
    assert len(cyc) == 1 and "2 catchment" in cyc[0].message
    assert cyc[0].id in ("cat-1", "cat-3")


def test_missing_nan_and_nonpositive_area(tmp_path):
    cats = _replace(_replace(CATS, "cat-2", ("cat-2", "nex-10", None)), "cat-4", ("cat-4", "nex-11", 0.0))
    cats = _replace(cats, "cat-6", ("cat-6", "nex-12", -3.0))
    iss = _issues(tmp_path, cats=cats)
    got = {(i.code, i.id) for i in errors_only(iss)}
    assert got == {("MISSING_AREA", "cat-2"), ("NONPOSITIVE_AREA", "cat-4"), ("NONPOSITIVE_AREA", "cat-6")}


def test_bad_nexus_and_catchment_ids(tmp_path):
    cats = _replace(CATS, "cat-8", ("basin-8", "tnx-101", 0.8))
    cats = _replace(cats, "cat-6", ("cat-6", "junction-12", 2.5))
    nexes = _replace(NEXES, "nex-12", ("junction-12", "wb-7"))
    nexes = _replace(nexes, "nex-10", ("nex-A", "wb-3"))
    cats = [(c, "nex-A" if t == "nex-10" else t, a) for c, t, a in cats]
    iss = _issues(tmp_path, cats=cats, nexes=nexes)
    got = {(i.code, i.id) for i in errors_only(iss)}
    assert got == {("BAD_CATCHMENT_ID", "basin-8"), ("BAD_NEXUS_ID", "junction-12"), ("BAD_NEXUS_ID", "nex-A")}


def test_duplicate_nexus_tag(tmp_path):
    nexes = _replace(NEXES, "tnx-100", ("tnx-10", "wb-0"))
    cats = _replace(CATS, "cat-5", ("cat-5", "tnx-10", 4.0))
    iss = _issues(tmp_path, cats=cats, nexes=nexes)
    tag = [i for i in iss if i.code == "DUPLICATE_NEXUS_TAG"]
    assert len(tag) == 1 and "nex-10" in tag[0].message and "tnx-10" in tag[0].message


def test_nexus_terminal_warning_for_unknown_toid(tmp_path):
    iss = _issues(tmp_path, nexes=_replace(NEXES, "nex-12", ("nex-12", "wb-777")))
    assert [(i.code, i.id, i.severity) for i in iss] == [("NEXUS_TERMINAL", "nex-12", "warning")]


def test_validate_network_on_resolved_graph(hand_net):
    assert validate_network(hand_net) == []


def test_gage_crosswalk_from_both_sources(hand_gpkg, hand_net):
    cw = gage_crosswalk(hand_gpkg, hand_net)
    assert cw == {"01010101": "nex-11", "02020202": "nex-12"}  # DAM1 (NID) is not a gage


def test_gage_conflict_between_sources(tmp_path):
    path = write_gpkg(tmp_path / "g.gpkg")
    # re-write flowpath_attributes so gage 01010101 also sits on wb-1 (outflow nex-10)
    import numpy as np
    import pyogrio

    from dmod.services.hydrofabric.gpkg_write import write_layer
    write_layer(path, "flowpath_attributes2", {"x": np.array([1])})  # unrelated layer is ignored
    _meta, t = pyogrio.read_arrow(str(path), layer="flowpath_attributes")
    rl = t["rl_gages"].to_pylist()
    rl[0] = "01010101"
    path2 = write_gpkg(tmp_path / "h.gpkg")
    import pyarrow as pa
    t2 = t.set_column(t.schema.get_field_index("rl_gages"), "rl_gages", pa.array(rl, type=pa.string()))
    pyogrio.write_arrow(t2, str(path2), layer="flowpath_attributes", driver="GPKG", append=False,
                        layer_options={"OVERWRITE": "YES"})
    cw, issues = read_gage_crosswalk(path2)
    assert cw["01010101"] == "nex-11"  # hydrolocations win
    assert [(i.code, i.id) for i in issues] == [("GAGE_CONFLICT", "01010101")]
