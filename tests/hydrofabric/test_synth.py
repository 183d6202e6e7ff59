"""Synthetic generator: determinism, structure, forcing and observation formats."""
import csv
import json

import netCDF4
import numpy as np
import pyogrio
import pytest

from dmod.services.hydrofabric import load_network, synth
from dmod.services.hydrofabric.crosswalk import gage_crosswalk
from dmod.services.hydrofabric.synth import generate
from dmod.services.hydrofabric.synth_forcing import AORC_VARS
from dmod.services.hydrofabric.validate import validate_hydrofabric

LAYERS = {"divides", "nexus", "flowpaths", "network", "flowpath_attributes", "hydrolocations", "divide-attributes"}


def test_generate_is_deterministic_per_seed():
    a, b, c = generate(3000, seed=11), generate(3000, seed=11), generate(3000, seed=12)
    for f in ("cat_num", "parent", "area", "nex_of_node", "gage_nodes"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.parent, c.parent)


def test_synth_files_are_deterministic(tmp_path):
    m1 = synth(tmp_path / "a", catchments=150, seed=5, forcing="csv", hours=24)
    m2 = synth(tmp_path / "b", catchments=150, seed=5, forcing="csv", hours=24)
    n1, n2 = load_network(m1["gpkg"]), load_network(m2["gpkg"])
    for f in ("catchment_ids", "nexus_ids", "cat_to_nex", "nex_to_cat", "area_sqkm"):
        assert np.array_equal(getattr(n1, f), getattr(n2, f))
    for cid in n1.catchment_ids[:5]:
        assert (tmp_path / "a" / "forcing" / f"{cid}.csv").read_bytes() == \
            (tmp_path / "b" / "forcing" / f"{cid}.csv").read_bytes()
    assert (tmp_path / "a" / "observations.csv").read_bytes() == (tmp_path / "b" / "observations.csv").read_bytes()


def test_network_shape_is_realistic():
    sn = generate(20000, seed=3, outlets=12)
    n = len(sn.parent)
    kids = np.bincount(sn.parent[sn.parent >= 0], minlength=n)
    assert (sn.parent < 0).sum() == 12  # several outlets
    assert (kids == 0).mean() > 0.3  # headwater-heavy
    assert (kids >= 2).sum() > 0.2 * n  # plenty of confluences
    assert sn.metrics["order"].max() >= 5 and sn.metrics["depth"].max() > 50
    assert np.all(sn.parent < np.arange(n))  # pre-order numbering
    # log-normal areas
    assert 3.0 < np.median(sn.area) < 12.0 and sn.area.min() > 0


def test_layers_validate_and_gages(synth_dir, synth_net):
    names = set(pyogrio.list_layers(str(synth_dir / "hydrofabric.gpkg"))[:, 0])
    assert LAYERS <= names
    assert validate_hydrofabric(synth_dir / "hydrofabric.gpkg") == []
    assert pyogrio.read_info(str(synth_dir / "hydrofabric.gpkg"), layer="divides")["crs"] == "EPSG:5070"
    cw = gage_crosswalk(synth_dir / "hydrofabric.gpkg", synth_net)
    assert cw == json.loads((synth_dir / "crosswalk.json").read_text())
    assert len(cw) == 8 and all(n in synth_net.nexus_index for n in cw.values())
    assert any(x.startswith("tnx-") for x in synth_net.nexus_ids)


def test_csv_forcing_format(synth_dir, synth_net):
    cid = synth_net.catchment_ids[0]
    with open(synth_dir / "forcing" / f"{cid}.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time", *AORC_VARS]
    assert rows[1][0] == "2015-12-01 00:00:00" and len(rows) == 49
    vals = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    apcp, rate = vals[:, 0], vals[:, -1]
    assert np.allclose(rate, apcp / 3600.0, rtol=1e-3, atol=1e-9)  # mm/s
    assert 200 < vals[:, 5].mean() < 320  # temperature in K


def test_storms_are_intermittent():
    from dmod.services.hydrofabric.synth_forcing import storm_precip
    xy = np.column_stack([np.linspace(0, 400_000, 200), np.zeros(200)])
    p = storm_precip(xy, 24 * 60, np.random.default_rng(1))
    wet = (p > 0).mean()
    assert 0.02 < wet < 0.6 and p.max() > 1.0  # mostly dry, with real events


def test_netcdf_forcing_layout(synth_dir, synth_net):
    with netCDF4.Dataset(synth_dir / "forcing" / "forcing.nc") as ds:
        assert ds.dimensions["catchment-id"].size == synth_net.n_catchments
        assert ds.dimensions["time"].size == 48
        assert list(ds["ids"][:3]) == synth_net.catchment_ids[:3].tolist()
        assert ds["Time"].dimensions == ("catchment-id", "time")
        assert ds["Time"].units == "seconds since 1970-01-01 00:00:00"
        assert ds["Time"][0, 0] == pytest.approx(1448928000.0)  # 2015-12-01 00:00:00 UTC
        for v in AORC_VARS:
            assert ds[v].dimensions == ("catchment-id", "time")


def test_observations(synth_dir):
    cw = json.loads((synth_dir / "crosswalk.json").read_text())
    g = min(cw)
    with open(synth_dir / "observations" / f"{g}.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time", "value"] and len(rows) == 49
    q = np.array([float(r[1]) for r in rows[1:]])
    assert (q > 0).all()
    with open(synth_dir / "observations.csv") as f:
        long = list(csv.reader(f))
    assert long[0] == ["gage_id", "time", "value"] and len(long) == 1 + 48 * len(cw)


def test_forcing_skipped_above_limit(tmp_path):
    m = synth(tmp_path, catchments=120, seed=1, forcing="csv", forcing_limit=100)
    assert "forcing_skipped" in m and not (tmp_path / "forcing").exists()
