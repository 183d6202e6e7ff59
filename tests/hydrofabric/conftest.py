"""Fixtures: a hand-built 8-catchment hydrofabric (GeoJSON + GeoPackage) with answers
derived by hand, plus writers for deliberately broken variants.

    cat-1 ─┐                      cat-6 → nex-12 → cat-7 ─┐
    cat-2 ─┴→ nex-10 → cat-3 ─┐                           ├→ tnx-101 (terminal)
                      cat-4 ─┴→ nex-11 → cat-5 → tnx-100  cat-8 ──┘

gage 01010101 sits at nex-11 (hydrolocations); gage 02020202 on flowpath wb-6 (rl_gages),
so at nex-12.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely

from dmod.services.hydrofabric.gpkg_write import write_layer

CATS = [  # id, toid, areasqkm
    ("cat-1", "nex-10", 1.5), ("cat-2", "nex-10", 2.0), ("cat-3", "nex-11", 3.0), ("cat-4", "nex-11", 1.0),
    ("cat-5", "tnx-100", 4.0), ("cat-6", "nex-12", 2.5), ("cat-7", "tnx-101", 1.2), ("cat-8", "tnx-101", 0.8),
]
NEXES = [("nex-10", "wb-3"), ("nex-11", "wb-5"), ("nex-12", "wb-7"), ("tnx-100", "wb-0"), ("tnx-101", "wb-0")]


def write_geojson(dirpath: Path, cats=CATS, nexes=NEXES, use_properties_id: bool = False,
                  extra: dict | None = None) -> tuple[Path, Path]:
    """GeoJSON pair; rows with toid/area None omit the property."""
    dirpath.mkdir(parents=True, exist_ok=True)

    def feat(fid, props, geom):
        f = {"type": "Feature", "properties": {k: v for k, v in props.items() if v is not None}, "geometry": geom}
        if use_properties_id:
            f["properties"]["id"] = fid
        else:
            f["id"] = fid
        return f

    cf = []
    for i, (cid, toid, area) in enumerate(cats):
        props = {"toid": toid, "areasqkm": area}
        props.update((extra or {}).get(cid, {}))
        cf.append(feat(cid, props, json.loads(shapely.to_geojson(shapely.box(i, 0, i + 0.9, 0.9)))))
    nf = [feat(nid, {"toid": toid}, {"type": "Point", "coordinates": [i, 1.0]}) for i, (nid, toid) in enumerate(nexes)]
    cp, np_ = dirpath / "catchments.geojson", dirpath / "nexus.geojson"
    cp.write_text(json.dumps({"type": "FeatureCollection", "features": cf}))
    np_.write_text(json.dumps({"type": "FeatureCollection", "features": nf}))
    return cp, np_


def write_gpkg(path: Path, cats=CATS, nexes=NEXES, gages=True, nexus_layer=True) -> Path:
    """Minimal v2.2-shaped GeoPackage with every layer the library reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    ids = [c[0] for c in cats]
    wbs = ["wb-" + c.split("-")[1] for c in ids]
    n = len(cats)
    boxes = shapely.to_wkb(shapely.box(np.arange(n), 0, np.arange(n) + 0.9, 0.9))
    write_layer(path, "divides", {
        "divide_id": np.array(ids, dtype=object), "toid": np.array([c[1] for c in cats], dtype=object),
        "type": np.array(["network"] * n, dtype=object), "areasqkm": np.array([c[2] for c in cats], dtype=float),
        "id": np.array(wbs, dtype=object), "vpuid": np.array(["01"] * n, dtype=object),
        "slope": np.linspace(0.01, 0.08, n)}, boxes, "Polygon")
    m = len(nexes)
    if nexus_layer:
        write_layer(path, "nexus", {"id": np.array([x[0] for x in nexes], dtype=object),
                                    "toid": np.array([x[1] for x in nexes], dtype=object)},
                    shapely.to_wkb(shapely.points(np.arange(m), np.ones(m))), "Point")
    write_layer(path, "flowpaths", {"id": np.array(wbs, dtype=object), "toid": np.array([c[1] for c in cats], dtype=object),
                                    "divide_id": np.array(ids, dtype=object)},
                shapely.to_wkb(shapely.linestrings([[(i, 0), (i, 1)] for i in range(n)])), "LineString")
    write_layer(path, "network", {"id": np.array(wbs + [x[0] for x in nexes], dtype=object),
                                  "toid": np.array([c[1] for c in cats] + [x[1] for x in nexes], dtype=object),
                                  "divide_id": np.array(ids + [None] * m, dtype=object),
                                  "vpu": np.array(["01"] * (n + m), dtype=object)})
    rl = [None] * n
    if gages and "wb-6" in wbs:
        rl[wbs.index("wb-6")] = "02020202"
    write_layer(path, "flowpath_attributes", {"id": np.array(wbs, dtype=object), "rl_gages": np.array(rl, dtype=object),
                                              "n": np.linspace(0.03, 0.06, n), "MusK": np.full(n, 3600.0)})
    hl_ids = ["nex-11", "nex-12"] if gages else []
    write_layer(path, "hydrolocations", {
        "id": np.array(hl_ids + ["nex-10"], dtype=object),
        "hl_reference": np.array(["Gages"] * len(hl_ids) + ["NID"], dtype=object),
        "hl_link": np.array((["01010101", "02020202"] if gages else []) + ["DAM1"], dtype=object)},
        shapely.to_wkb(shapely.points(np.zeros(len(hl_ids) + 1), np.ones(len(hl_ids) + 1))), "Point")
    return path


@pytest.fixture(scope="session")
def hand_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hand")
    write_geojson(d)
    write_gpkg(d / "hand.gpkg")
    return d


@pytest.fixture(scope="session")
def hand_gpkg(hand_dir) -> Path:
    return hand_dir / "hand.gpkg"


@pytest.fixture(scope="session")
def hand_net(hand_gpkg):
    from dmod.services.hydrofabric import load_network
    return load_network(hand_gpkg)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    from dmod.services.hydrofabric import synth
    d = tmp_path_factory.mktemp("synth")
    synth(d, catchments=400, seed=7, outlets=20, geojson=True, forcing="both", hours=48)
    return d


@pytest.fixture(scope="session")
def synth_net(synth_dir):
    from dmod.services.hydrofabric import load_network
    return load_network(synth_dir / "hydrofabric.gpkg")


def ids_of(net, idx) -> set[str]:
    return set(net.catchment_ids[np.asarray(idx, dtype=int)].tolist())
