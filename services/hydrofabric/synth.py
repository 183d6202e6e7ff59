"""Synthetic hydrofabrics: a v2.2-shaped GeoPackage (+ optional GeoJSON pair), forcing and
gage observations, deterministic per seed, cheap enough for 1M catchments.

Geometry is deliberately simple (squares on a grid in EPSG:5070, laid out in depth-first
order so basins are spatially compact); topology and attributes are what matter.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from .gpkg_write import write_layer
from .synth_tree import random_forest, tree_metrics

CELL_M = 4000.0  # grid spacing of catchment squares
ORIGIN = (-2_000_000.0, 300_000.0)  # lower-left of the grid, inside CONUS Albers


@dataclass
class SynthNetwork:
    """In-memory synthetic network, before it is written."""
    cat_num: np.ndarray  # catchment integer N (ids cat-N / wb-N), pre-order DFS
    parent: np.ndarray  # downstream node index, -1 at basin outlets
    area: np.ndarray
    metrics: dict[str, np.ndarray]
    nex_of_node: np.ndarray  # index into nex_ids of each node's downstream nexus
    nex_ids: np.ndarray  # object
    nex_down: np.ndarray  # node index downstream of each nexus, -1 terminal
    gage_nodes: np.ndarray  # nodes whose outflow nexus carries a gage
    gage_ids: np.ndarray  # object, 8-digit USGS-like ids
    xy: np.ndarray  # (n, 2) square centres
    vpu: str = "synth"
    extra: dict = field(default_factory=dict)

    @property
    def cat_ids(self) -> np.ndarray:
        return np.asarray([f"cat-{k}" for k in self.cat_num.tolist()], dtype=object)

    @property
    def wb_ids(self) -> np.ndarray:
        return np.asarray([f"wb-{k}" for k in self.cat_num.tolist()], dtype=object)


def generate(catchments: int, seed: int = 0, outlets: int | None = None,
             gage_fraction: float = 0.02, area_median_sqkm: float = 6.0,
             area_sigma: float = 0.7) -> SynthNetwork:
    n = int(catchments)
    if n < 1:
        raise ValueError("catchments must be ≥ 1")
    rng = np.random.default_rng(seed)
    if outlets is None:
        outlets = max(1, round(np.sqrt(n) / 3))
    parent = random_forest(n, outlets, rng)
    area = np.round(rng.lognormal(np.log(area_median_sqkm), area_sigma, n), 4)
    metrics = tree_metrics(parent, area)
    # ids: random distinct integers so id order says nothing about topology
    cat_num = rng.choice(np.arange(1, 3 * n + 1), size=n, replace=False).astype(np.int64)

    # one nexus above every catchment that has upstream catchments: nex-<its number>;
    # one terminal nexus tnx-<k> per basin outlet, numbered past every catchment number
    has_up = np.zeros(n, dtype=bool)
    has_up[parent[parent >= 0]] = True
    up_nodes = np.flatnonzero(has_up)
    roots = np.flatnonzero(parent < 0)
    tnx_num = 3 * n + 1 + np.arange(len(roots))
    nex_ids = np.asarray([f"nex-{k}" for k in cat_num[up_nodes].tolist()]
                         + [f"tnx-{k}" for k in tnx_num.tolist()], dtype=object)
    nex_down = np.concatenate([up_nodes, np.full(len(roots), -1, dtype=np.int64)])
    nex_at_node = np.full(n, -1, dtype=np.int64)
    nex_at_node[up_nodes] = np.arange(len(up_nodes))
    nex_of_node = np.empty(n, dtype=np.int64)
    nonroot = parent >= 0
    nex_of_node[nonroot] = nex_at_node[parent[nonroot]]
    nex_of_node[roots] = len(up_nodes) + np.arange(len(roots))

    # gages: on larger rivers (weighted by drainage area), at most one per nexus
    k = round(gage_fraction * n)
    gage_nodes = np.empty(0, dtype=np.int64)
    if k > 0:
        w = metrics["tot_area"] ** 0.7
        cand = rng.choice(n, size=min(n, 3 * k), replace=False, p=w / w.sum())
        _, first = np.unique(nex_of_node[cand], return_index=True)
        gage_nodes = np.sort(cand[np.sort(first)][:k])
    gage_nums = rng.choice(np.arange(1_000_000, 99_999_999), size=len(gage_nodes), replace=False)
    gage_ids = np.asarray([f"{g:08d}" for g in gage_nums.tolist()], dtype=object)

    # serpentine grid in DFS order keeps each basin a compact block
    side = int(np.ceil(np.sqrt(n)))
    i = np.arange(n)
    row, col = i // side, i % side
    col = np.where(row % 2 == 1, side - 1 - col, col)
    xy = np.column_stack([ORIGIN[0] + (col + 0.5) * CELL_M, ORIGIN[1] + (row + 0.5) * CELL_M])
    return SynthNetwork(cat_num=cat_num, parent=parent, area=area, metrics=metrics,
                        nex_of_node=nex_of_node, nex_ids=nex_ids, nex_down=nex_down,
                        gage_nodes=gage_nodes, gage_ids=gage_ids, xy=xy,
                        extra={"seed": seed, "outlets": len(roots)})


# ---- layer tables -------------------------------------------------------------------------

def _squares(xy: np.ndarray, area: np.ndarray) -> list:
    half = np.minimum(np.sqrt(area) * 1000.0, CELL_M * 0.96) / 2.0
    return shapely.to_wkb(shapely.box(xy[:, 0] - half, xy[:, 1] - half, xy[:, 0] + half, xy[:, 1] + half))


def _nexus_points(sn: SynthNetwork) -> np.ndarray:
    """Nexus at the downstream catchment's square (or past the outlet for terminals)."""
    pts = np.empty((len(sn.nex_ids), 2))
    down = sn.nex_down
    internal = down >= 0
    pts[internal] = sn.xy[down[internal]] + CELL_M * 0.3
    # terminal nexus: just beyond its outlet catchment
    term = np.flatnonzero(~internal)
    outlet_nodes = np.flatnonzero(sn.parent < 0)
    pts[term] = sn.xy[outlet_nodes] + CELL_M * 0.45
    return pts


def layer_tables(sn: SynthNetwork, rng: np.random.Generator) -> dict[str, tuple[dict, object, str | None]]:
    """Every v2.2 layer the readers use: name → (columns, wkb geometry or None, geom type)."""
    n = len(sn.cat_num)
    cat_ids, wb_ids = sn.cat_ids, sn.wb_ids
    nex_of = sn.nex_ids[sn.nex_of_node]
    m = sn.metrics
    length = np.round(np.sqrt(sn.area) * rng.uniform(0.8, 1.5, n), 4)
    hydroseq = np.arange(1, n + 1, dtype=np.int64)  # pre-order: downstream numbers are smaller
    slope = np.round(np.clip(rng.lognormal(np.log(0.01), 0.8, n) / np.sqrt(np.maximum(m["order"], 1)),
                             1e-5, 0.3), 6)
    tot = np.round(m["tot_area"], 4)
    # headwaters sit higher: elevation grows with distance (in catchments) from the outlet
    elev = np.round(200.0 + m["depth"] * 2.0 + rng.normal(0, 30, n), 2)

    gage_of = np.full(n, None, dtype=object)
    gage_of[sn.gage_nodes] = sn.gage_ids
    gage_nex = sn.nex_ids[sn.nex_of_node[sn.gage_nodes]]

    divides = {
        "divide_id": cat_ids, "toid": nex_of, "type": np.full(n, "network", dtype=object),
        "ds_id": np.full(n, np.nan), "areasqkm": sn.area, "id": wb_ids, "lengthkm": length,
        "tot_drainage_areasqkm": tot, "has_flowline": np.ones(n, dtype=bool),
        "vpuid": np.full(n, sn.vpu, dtype=object),
    }
    nx = len(sn.nex_ids)
    terminal = sn.nex_down < 0
    nex_toid = np.where(terminal, "wb-0", np.asarray([f"wb-{k}" for k in sn.cat_num[np.maximum(sn.nex_down, 0)].tolist()], dtype=object)).astype(object)
    nex_hl = np.full(nx, None, dtype=object)
    nex_hl_uri = np.full(nx, None, dtype=object)
    gage_nex_idx = sn.nex_of_node[sn.gage_nodes]
    nex_hl[gage_nex_idx] = [str(i + 1) for i in range(len(gage_nex_idx))]
    nex_hl_uri[gage_nex_idx] = [f"Gages-{g}" for g in sn.gage_ids.tolist()]
    nexus = {
        "id": sn.nex_ids, "toid": nex_toid, "hl_id": nex_hl, "hl_uri": nex_hl_uri,
        "type": np.where(terminal, "terminal", "nexus").astype(object),
        "vpuid": np.full(nx, sn.vpu, dtype=object),
    }
    npts = _nexus_points(sn)
    flowpaths = {
        "id": wb_ids, "toid": nex_of, "mainstem": m["mainstem"], "order": m["order"],
        "hydroseq": hydroseq, "lengthkm": length, "areasqkm": sn.area, "tot_drainage_areasqkm": tot,
        "has_divide": np.ones(n, dtype=bool), "divide_id": cat_ids, "vpuid": np.full(n, sn.vpu, dtype=object),
    }
    fp_geom = shapely.to_wkb(shapely.linestrings(
        np.stack([sn.xy, npts[sn.nex_of_node]], axis=1)))
    # network: one row per flowpath and one per nexus, as in v2.2
    net = {
        "id": np.concatenate([wb_ids, sn.nex_ids]),
        "toid": np.concatenate([nex_of, nex_toid]),
        "divide_id": np.concatenate([cat_ids, np.full(nx, None, dtype=object)]),
        "ds_id": np.full(n + nx, np.nan),
        "mainstem": np.concatenate([m["mainstem"].astype(float), np.full(nx, np.nan)]),
        "hl_id": np.concatenate([np.full(n, None, dtype=object), nex_hl]),
        "hydroseq": np.concatenate([hydroseq.astype(float), np.full(nx, np.nan)]),
        "hl_uri": np.concatenate([np.full(n, None, dtype=object), nex_hl_uri]),
        "hf_source": np.full(n + nx, "synth", dtype=object),
        "hf_id": np.concatenate([sn.cat_num.astype(float), np.full(nx, np.nan)]),
        "lengthkm": np.concatenate([length, np.full(nx, np.nan)]),
        "areasqkm": np.concatenate([sn.area, np.full(nx, np.nan)]),
        "tot_drainage_areasqkm": np.concatenate([tot, np.full(nx, np.nan)]),
        "type": np.concatenate([np.full(n, "network", dtype=object), nexus["type"]]),
        "vpu": np.full(n + nx, sn.vpu, dtype=object),
    }
    # channel geometry from drainage area (hydraulic-geometry power laws)
    bw = np.round(2.44 * tot ** 0.34, 3)
    fpa = {
        "id": wb_ids, "rl_Gages": None, "rl_gages": gage_of, "rl_NHDWaterbodyID": np.full(n, None, dtype=object),
        "Qi": np.zeros(n), "MusK": np.full(n, 3600.0), "MusX": np.full(n, 0.2),
        "n": np.round(rng.uniform(0.03, 0.08, n), 4), "So": slope, "ChSlp": np.round(rng.uniform(0.05, 0.8, n), 3),
        "BtmWdth": bw, "time": np.zeros(n), "Kchan": np.zeros(n),
        "nCC": np.round(rng.uniform(0.06, 0.12, n), 4), "TopWdth": np.round(bw * 1.4 + 1.0, 3),
        "TopWdthCC": np.round(bw * 4.0 + 3.0, 3), "length_m": np.round(length * 1000.0, 2),
        "vpuid": np.full(n, sn.vpu, dtype=object),
    }
    del fpa["rl_Gages"]
    # hydrolocations: gages, plus a few non-gage points (dams) that consumers must skip
    k = len(sn.gage_nodes)
    dams = np.flatnonzero(rng.random(nx) < 0.002)
    hl_id = np.arange(1, k + len(dams) + 1)
    hydrolocations = {
        "id": np.concatenate([gage_nex, sn.nex_ids[dams]]),
        "hl_id": hl_id,
        "hl_reference": np.asarray(["Gages"] * k + ["NID"] * len(dams), dtype=object),
        "hl_link": np.asarray(sn.gage_ids.tolist() + [f"DAM{d:06d}" for d in range(len(dams))], dtype=object),
        "hl_uri": np.asarray([f"Gages-{g}" for g in sn.gage_ids.tolist()] + [f"NID-DAM{d:06d}" for d in range(len(dams))], dtype=object),
        "hl_position": np.full(k + len(dams), "outflow", dtype=object),
        "vpuid": np.full(k + len(dams), sn.vpu, dtype=object),
    }
    hl_pts = np.concatenate([npts[sn.nex_of_node[sn.gage_nodes]], npts[dams]]) if k + len(dams) else np.empty((0, 2))
    attrs = {
        "divide_id": cat_ids,
        "mean.elevation": elev,
        "mean.slope": np.round(slope * 100.0, 4),
        "mean.impervious": np.round(np.clip(rng.beta(0.6, 8.0, n), 0, 1), 4),
        "mode.bexp_soil_layers_stag=1": np.round(rng.uniform(2.0, 12.0, n), 3),
        "mean.smcmax_soil_layers_stag=1": np.round(rng.uniform(0.35, 0.55, n), 4),
        "mean.Coeff": np.round(rng.uniform(0.01, 0.5, n), 4),
    }
    return {
        "divides": (divides, _squares(sn.xy, sn.area), "Polygon"),
        "nexus": (nexus, shapely.to_wkb(shapely.points(npts)), "Point"),
        "flowpaths": (flowpaths, fp_geom, "LineString"),
        "network": (net, None, None),
        "flowpath_attributes": (fpa, None, None),
        "hydrolocations": (hydrolocations, shapely.to_wkb(shapely.points(hl_pts)) if len(hl_pts) else [], "Point"),
        "divide-attributes": (attrs, None, None),
    }


def write_geopackage(path, tables) -> None:
    path = Path(path)
    if path.exists():
        path.unlink()
    for name, (cols, geom, gtype) in tables.items():
        write_layer(path, name, cols, geom, gtype)


def write_geojson_pair(cat_path, nex_path, tables) -> None:
    """ngen-style GeoJSON: feature id = cat-N / nex-N, properties.toid; nexus toids use cat-N."""
    div, div_geom, _ = tables["divides"]
    nex, nex_geom, _ = tables["nexus"]
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::5070"}}
    polys = shapely.from_wkb(div_geom)
    pts = shapely.from_wkb(nex_geom)
    extra = [k for k in ("lengthkm", "tot_drainage_areasqkm") if k in div]
    with open(cat_path, "w") as f:
        f.write('{"type": "FeatureCollection", "crs": ' + json.dumps(crs) + ', "features": [\n')
        for i, cid in enumerate(div["divide_id"].tolist()):
            props = {"id": cid, "toid": div["toid"][i], "areasqkm": float(div["areasqkm"][i])}
            for k in extra:
                props[k] = float(div[k][i])
            geom = json.loads(shapely.to_geojson(polys[i]))
            f.write(("," if i else "") + json.dumps({"type": "Feature", "id": cid, "properties": props,
                                                     "geometry": geom}) + "\n")
        f.write("]}\n")
    with open(nex_path, "w") as f:
        f.write('{"type": "FeatureCollection", "crs": ' + json.dumps(crs) + ', "features": [\n')
        for i, nid in enumerate(nex["id"].tolist()):
            toid = nex["toid"][i]
            toid = "cat-" + toid[3:] if toid.startswith("wb-") else toid
            props = {"id": nid, "toid": toid, "type": nex["type"][i]}
            geom = json.loads(shapely.to_geojson(pts[i]))
            f.write(("," if i else "") + json.dumps({"type": "Feature", "id": nid, "properties": props,
                                                     "geometry": geom}) + "\n")
        f.write("]}\n")


def synth(out_dir, catchments: int = 1000, seed: int = 0, outlets: int | None = None,
          geojson: bool = False, forcing: str | None = "csv", start: str = "2015-12-01 00:00:00",
          hours: int = 720, gage_fraction: float = 0.02, forcing_limit: int = 20_000,
          name: str = "hydrofabric") -> dict:
    """Write a synthetic hydrofabric (and forcing/observations) into `out_dir`.

    forcing: "csv" (one CSV per catchment), "netcdf", "both" or None. Forcing and gage
    observations are skipped (and the manifest says why) when catchments > forcing_limit.
    Returns the manifest, also written to `<out_dir>/synth.json`.
    """
    from .synth_forcing import write_forcing_and_observations

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sn = generate(catchments, seed=seed, outlets=outlets, gage_fraction=gage_fraction)
    rng = np.random.default_rng([seed, 1])
    tables = layer_tables(sn, rng)
    gpkg = out / f"{name}.gpkg"
    write_geopackage(gpkg, tables)
    manifest: dict = {
        "seed": seed, "catchments": int(catchments), "nexuses": len(sn.nex_ids),
        "outlets": sn.extra["outlets"], "gages": len(sn.gage_ids),
        "gpkg": str(gpkg), "crs": "EPSG:5070",
    }
    if geojson:
        cat_path, nex_path = out / "catchments.geojson", out / "nexus.geojson"
        write_geojson_pair(cat_path, nex_path, tables)
        manifest["geojson"] = {"catchments": str(cat_path), "nexus": str(nex_path)}
    crosswalk = {g: n for g, n in zip(sn.gage_ids.tolist(), sn.nex_ids[sn.nex_of_node[sn.gage_nodes]].tolist())}
    (out / "crosswalk.json").write_text(json.dumps(crosswalk, indent=1, sort_keys=True))
    manifest["crosswalk"] = str(out / "crosswalk.json")
    if forcing:
        if catchments > forcing_limit:
            manifest["forcing_skipped"] = f"catchments ({catchments}) > forcing_limit ({forcing_limit})"
        else:
            manifest.update(write_forcing_and_observations(out, sn, seed=seed, start=start, hours=hours,
                                                           kind=forcing))
    (out / "synth.json").write_text(json.dumps(manifest, indent=2))
    return manifest
