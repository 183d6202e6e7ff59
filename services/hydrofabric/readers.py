"""Read GeoPackage v2.x and GeoJSON hydrofabrics into raw `Topology` tables / a `Network`.

Only the id/toid/area columns (plus requested attributes) are read and geometry is skipped,
through pyogrio's arrow path, so a 1M-catchment GeoPackage loads in seconds.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .hashing import hydrofabric_id as content_id
from .ids import lookup, wb_to_cat
from .network import Network
from .ogr import pyogrio
from .topology import Topology, build_network


def is_geopackage(path: str | os.PathLike) -> bool:
    # ngen's rule: anything whose name ends in "gpkg" is a GeoPackage
    return os.fspath(path).endswith("gpkg")


def layer_names(path: str | os.PathLike) -> list[str]:
    return [str(n) for n in pyogrio.list_layers(os.fspath(path))[:, 0]]


def layer_fields(path: str | os.PathLike, layer: str) -> list[str]:
    return [str(f) for f in pyogrio.read_info(os.fspath(path), layer=layer)["fields"]]


def read_table(path, layer: str, columns: Sequence[str], max_features: int | None = None) -> pa.Table:
    """Attribute columns of one layer as an arrow table, no geometry."""
    _meta, table = pyogrio.read_arrow(
        os.fspath(path), layer=layer, columns=list(columns), read_geometry=False,
        max_features=max_features,
    )
    return table


def _col(table: pa.Table, name: str) -> pa.Array:
    return table.column(name).combine_chunks()


def _numeric(arr: pa.Array) -> np.ndarray:
    try:
        return arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # areas stored as text in hand-made files
        out = np.full(len(arr), np.nan)
        for i, v in enumerate(arr.to_pylist()):
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                pass
        return out


def _values(arr: pa.Array) -> np.ndarray:
    """Attribute column → numpy (float64 for numbers so nulls are NaN, object otherwise)."""
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type):
        return arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(arr.to_pylist(), dtype=object)


# ---- GeoPackage ---------------------------------------------------------------------------

def _gpkg_attributes(path, layers: list[str], cat_ids: pa.Array, div_fields: list[str],
                     div_table: pa.Table, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Requested per-catchment columns: from divides, else any layer keyed by divide_id, else
    a layer keyed by id (wb-N/cat-N, e.g. flowpath_attributes), joined onto catchments."""
    out: dict[str, np.ndarray] = {}
    todo = []
    for name in names:
        if name in div_fields:
            out[name] = _values(_col(div_table, name))
        else:
            todo.append(name)
    if not todo:
        return out
    candidates = [ly for ly in layers if ly not in ("divides", "nexus")]
    for ly in candidates:
        if not todo:
            break
        fields = layer_fields(path, ly)
        key = "divide_id" if "divide_id" in fields else ("id" if "id" in fields else None)
        have = [n for n in todo if n in fields]
        if key is None or not have:
            continue
        t = read_table(path, ly, [key, *have])
        keys = _col(t, key)
        if key == "id":
            keys = wb_to_cat(keys)
        row = lookup(keys, cat_ids)
        for n in have:
            vals = _values(_col(t, n))
            fill = np.nan if vals.dtype.kind == "f" else None
            res = np.full(len(row), fill, dtype=vals.dtype)
            ok = row >= 0
            res[ok] = vals[row[ok]]
            out[n] = res
            todo.remove(n)
    if todo:
        raise KeyError(f"attribute column(s) not found in any layer of {path}: {', '.join(todo)}")
    return out


def read_gpkg_nexuses(path) -> tuple[pa.Array, pa.Array]:
    """(ids, toids) from the `nexus` layer, or — for files without one — from the nexus rows
    (nex-/tnx-/cnx-/inx- ids) of the attribute-only `network` layer."""
    layers = layer_names(path)
    if "nexus" in layers:
        nex = read_table(path, "nexus", ["id", "toid"])
        return _col(nex, "id"), _col(nex, "toid")
    if "network" in layers and {"id", "toid"} <= set(layer_fields(path, "network")):
        net = read_table(path, "network", ["id", "toid"])
        ids = _col(net, "id")
        is_nex = pc.fill_null(pc.match_substring_regex(ids, r"^(nex|tnx|cnx|inx)-"), False)
        rows = pa.table({"id": ids, "toid": _col(net, "toid")}).filter(is_nex)
        # the network table repeats rows (one per flowpath it touches): keep distinct pairs
        rows = rows.group_by(["id", "toid"]).aggregate([])
        return _col(rows, "id"), _col(rows, "toid")
    raise ValueError(f"{path}: no 'nexus' layer (and no 'network' layer to derive one from)")


def read_geopackage_topology(catchment_path, nexus_path=None, attributes: Sequence[str] = ()) -> Topology:
    layers = layer_names(catchment_path)
    if "divides" not in layers:
        raise ValueError(f"{catchment_path}: no 'divides' layer (layers: {', '.join(layers)})")
    div_fields = layer_fields(catchment_path, "divides")
    missing = [c for c in ("divide_id", "toid") if c not in div_fields]
    if missing:
        raise ValueError(f"{catchment_path}: layer 'divides' lacks column(s) {', '.join(missing)}")
    want = ["divide_id", "toid"] + [c for c in ("areasqkm", "id", "vpuid") if c in div_fields]
    want += [a for a in attributes if a in div_fields and a not in want]
    div = read_table(catchment_path, "divides", want)
    cat_ids = _col(div, "divide_id")

    nex_src = nexus_path or catchment_path
    if is_geopackage(nex_src):
        nex_ids, nex_toids = read_gpkg_nexuses(nex_src)
    else:
        nex_ids, nex_toids, _ = _geojson_rows(nex_src, ())

    vpu = ""
    if "vpuid" in div_fields and div.num_rows:
        vpu = str(_col(div, "vpuid")[0].as_py() or "")
    elif "network" in layers and "vpu" in layer_fields(catchment_path, "network"):
        t = read_table(catchment_path, "network", ["vpu"], max_features=1)
        vpu = str(t.column("vpu")[0].as_py() or "") if t.num_rows else ""

    return Topology(
        cat_ids=cat_ids,
        cat_toids=_col(div, "toid"),
        cat_area=_numeric(_col(div, "areasqkm")) if "areasqkm" in div_fields else np.full(div.num_rows, np.nan),
        nex_ids=nex_ids,
        nex_toids=nex_toids,
        cat_alt_ids=_col(div, "id") if "id" in div_fields else None,
        attributes=_gpkg_attributes(catchment_path, layers, cat_ids, div_fields, div, attributes),
        vpu=vpu,
    )


# ---- GeoJSON ------------------------------------------------------------------------------

def _geojson_rows(path, attributes: Sequence[str]):
    """(ids, toids, {attr: values}) from a FeatureCollection; feature `id` or properties.id."""
    with open(path, "rb") as f:
        doc = json.load(f)
    feats = doc.get("features", []) if isinstance(doc, dict) else []
    ids, toids = [], []
    cols: dict[str, list] = {a: [] for a in attributes}
    for ft in feats:
        props = ft.get("properties") or {}
        fid = ft.get("id", props.get("id"))
        ids.append(None if fid is None else str(fid))
        t = props.get("toid")
        toids.append(None if t is None else str(t))
        for a in attributes:
            cols[a].append(props.get(a))
    return pa.array(ids, type=pa.string()), pa.array(toids, type=pa.string()), cols


def read_geojson_topology(catchment_path, nexus_path, attributes: Sequence[str] = ()) -> Topology:
    if nexus_path is None:
        raise ValueError("a GeoJSON hydrofabric needs both a catchment and a nexus file")
    want = ["areasqkm", *[a for a in attributes if a != "areasqkm"]]
    cat_ids, cat_toids, cols = _geojson_rows(catchment_path, want)
    if is_geopackage(nexus_path):
        nex_ids, nex_toids = read_gpkg_nexuses(nexus_path)
    else:
        nex_ids, nex_toids, _ = _geojson_rows(nexus_path, ())
    area = _numeric(pa.array([None if v is None else str(v) for v in cols["areasqkm"]], type=pa.string()))
    attrs = {}
    for a in attributes:
        vals = cols[a]
        if all(v is None for v in vals):
            raise KeyError(f"attribute column not found in {catchment_path}: {a}")
        attrs[a] = _values(pa.array(vals, from_pandas=True))
    return Topology(cat_ids=cat_ids, cat_toids=cat_toids, cat_area=area,
                    nex_ids=nex_ids, nex_toids=nex_toids, attributes=attrs)


# ---- public entry points ------------------------------------------------------------------

def read_topology(catchment_path, nexus_path=None, attributes: Sequence[str] = ()) -> Topology:
    """Raw tables, ngen's file rules: `gpkg` → GeoPackage (layers divides + nexus, the same
    file may be both), otherwise GeoJSON FeatureCollections."""
    if is_geopackage(catchment_path):
        return read_geopackage_topology(catchment_path, nexus_path, attributes)
    return read_geojson_topology(catchment_path, nexus_path, attributes)


def load_network(catchment_path, nexus_path=None, attributes: Sequence[str] = ()) -> Network:
    """Hydrofabric file(s) → `Network` with `hydrofabric_id` = content hash of the inputs."""
    topo = read_topology(catchment_path, nexus_path, tuple(attributes))
    return build_network(topo, content_id(catchment_path, nexus_path))
