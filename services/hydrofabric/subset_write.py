"""Write a subset as a new hydrofabric: every GeoPackage layer filtered consistently (or the
GeoJSON pair), plus a `subset.json` definition next to it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .hashing import hydrofabric_id
from .ids import parse_ids
from .network import Network
from .ogr import pyogrio
from .readers import is_geopackage, layer_fields, layer_names
from .subset import Subset

FID_READ_FRACTION = 0.25  # below this share of rows, fetch by fid instead of a full scan


def _key_sets(net: Network, sub: Subset, alt_ids: dict[str, str] | None) -> dict[str, set[str]]:
    cats = set(sub.catchment_ids(net))
    _prefix, nums = parse_ids(net.catchment_ids[sub.catchments])
    wbs = {f"wb-{k}" for k in nums[nums >= 0].tolist()}
    if alt_ids:
        wbs |= {alt_ids[c] for c in cats if c in alt_ids}
    nexes = set(sub.nexus_ids(net))
    return {"cats": cats, "wbs": wbs, "nexes": nexes, "all": cats | wbs | nexes}


def _rule(layer: str, fields: list[str]) -> list[tuple[str, str]] | None:
    """(column, key set) pairs: a row is kept when any pair matches; None = no usable key."""
    if layer == "divides":
        return [("divide_id", "cats")]
    if layer == "nexus":
        return [("id", "nexes")]
    if layer == "hydrolocations" and "id" in fields:
        return [("id", "nexes")]
    if layer == "flowpath_attributes" and "id" in fields:
        return [("id", "wbs")]
    rules = []
    if "divide_id" in fields:
        rules.append(("divide_id", "cats"))
    if "id" in fields:
        rules.append(("id", "all"))
    for c in ("wb_id", "flowpath_id"):
        if c in fields:
            rules.append((c, "wbs"))
    return rules or None


def _filter_layer(src: str, dst: str, layer: str, rules, keys: dict[str, set[str]]) -> int:
    cols = sorted({c for c, _ in rules})
    meta, t = pyogrio.read_arrow(src, layer=layer, columns=cols, read_geometry=False, return_fids=True)
    keep = np.zeros(t.num_rows, dtype=bool)
    for col, ks in rules:
        keep |= pc.fill_null(pc.is_in(t[col], value_set=pa.array(sorted(keys[ks]), type=pa.string())),
                             False).to_numpy(zero_copy_only=False)
    fids = t["fid"].to_numpy()[keep] if "fid" in t.column_names else None
    if fids is not None and len(fids) and len(fids) <= FID_READ_FRACTION * t.num_rows:
        meta, data = pyogrio.read_arrow(src, layer=layer, fids=fids)
    else:
        meta, data = pyogrio.read_arrow(src, layer=layer)
        data = data.filter(pa.array(keep))
    if "fid" in data.column_names:
        data = data.drop_columns(["fid"])
    kwargs = {}
    if meta.get("geometry_type"):
        gname = meta.get("geometry_name") or "wkb_geometry"
        kwargs = {"geometry_name": gname, "geometry_type": meta["geometry_type"], "crs": meta.get("crs")}
    pyogrio.write_arrow(data, dst, layer=layer, driver="GPKG", **kwargs)
    return data.num_rows


def _alt_ids(src: str, cats: set[str]) -> dict[str, str] | None:
    """divides.id (the wb-N alternate name) of the subset's catchments."""
    if "id" not in layer_fields(src, "divides"):
        return None
    _, t = pyogrio.read_arrow(src, layer="divides", columns=["divide_id", "id"], read_geometry=False)
    t = t.filter(pc.fill_null(pc.is_in(t["divide_id"], value_set=pa.array(sorted(cats), type=pa.string())), False))
    return dict(zip(t["divide_id"].to_pylist(), t["id"].to_pylist()))


def write_subset_geopackage(src, dst, net: Network, sub: Subset) -> dict[str, int | str]:
    """Filter every layer of `src` into a new GeoPackage `dst`; returns rows per layer
    (layers without a usable key column are dropped and reported as "dropped")."""
    src, dst = os.fspath(src), os.fspath(dst)
    if os.path.exists(dst):
        os.unlink(dst)
    keys = _key_sets(net, sub, _alt_ids(src, set(sub.catchment_ids(net))))
    report: dict[str, int | str] = {}
    for layer in layer_names(src):
        rules = _rule(layer, layer_fields(src, layer))
        if rules is None:
            report[layer] = "dropped"
            continue
        report[layer] = _filter_layer(src, dst, layer, rules, keys)
    return report


def write_subset_geojson(cat_src, nex_src, cat_dst, nex_dst, net: Network, sub: Subset) -> dict[str, int]:
    cats, nexes = set(sub.catchment_ids(net)), set(sub.nexus_ids(net))
    out = {}
    for src, dst, keep, name in ((cat_src, cat_dst, cats, "catchments"), (nex_src, nex_dst, nexes, "nexus")):
        with open(src, "rb") as f:
            doc = json.load(f)
        feats = [ft for ft in doc.get("features", [])
                 if str(ft.get("id", (ft.get("properties") or {}).get("id"))) in keep]
        doc["features"] = feats
        with open(dst, "w") as f:
            json.dump(doc, f)
        out[name] = len(feats)
    return out


def write_subset(net: Network, sub: Subset, out_dir, catchment_path, nexus_path=None,
                 definition: dict | None = None, name: str = "subset") -> dict:
    """Write the subset hydrofabric into `out_dir` (GeoPackage for a GeoPackage source, else a
    GeoJSON pair) and `subset.json`; returns that definition."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = dict(definition or {})
    doc.update({"source": {"catchments": str(catchment_path), "nexus": str(nexus_path) if nexus_path else None,
                           "hydrofabric_id": net.hydrofabric_id},
                "catchments": len(sub.catchments), "nexuses": len(sub.nexuses)})
    if is_geopackage(catchment_path):
        dst = out / f"{name}.gpkg"
        doc["layers"] = write_subset_geopackage(catchment_path, dst, net, sub)
        doc["files"] = {"gpkg": str(dst)}
        doc["hydrofabric_id"] = hydrofabric_id(dst)
    else:
        cdst, ndst = out / f"{name}_catchments.geojson", out / f"{name}_nexus.geojson"
        nsrc = nexus_path or catchment_path
        doc["layers"] = write_subset_geojson(catchment_path, nsrc, cdst, ndst, net, sub)
        doc["files"] = {"catchments": str(cdst), "nexus": str(ndst)}
        doc["hydrofabric_id"] = hydrofabric_id(cdst, ndst)
    doc["catchment_ids"] = sub.catchment_ids(net)
    doc["nexus_ids"] = sub.nexus_ids(net)
    (out / "subset.json").write_text(json.dumps(doc, indent=1))
    return doc


def subset_hydrofabric(catchment_path, ids, out_dir, nexus_path=None, upstream: bool = True,
                       downstream: bool = False, depth: int | None = None, name: str = "subset",
                       network: Network | None = None) -> dict:
    """File → file: load, resolve ids (gages via the GeoPackage crosswalk), write the subset."""
    from .crosswalk import gage_crosswalk
    from .readers import load_network
    from .subset import subset_network

    net = network or load_network(catchment_path, nexus_path)
    cw = gage_crosswalk(catchment_path, net) if is_geopackage(catchment_path) else None
    ids = list(ids)
    sub = subset_network(net, ids, upstream=upstream, downstream=downstream, depth=depth, crosswalk=cw)
    if len(sub.catchments) == 0:
        raise ValueError("the subset is empty (no catchment upstream/downstream of the given ids)")
    definition = {"ids": ids, "upstream": upstream, "downstream": downstream, "depth": depth,
                  "id_kinds": sub.kinds}
    return write_subset(net, sub, out_dir, catchment_path, nexus_path, definition, name)
