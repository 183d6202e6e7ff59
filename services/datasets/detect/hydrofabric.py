"""Hydrofabric datasets (GeoPackage v2.x or a GeoJSON catchment/nexus pair): catchment ids, the
content-hash hydrofabric id and the VPU, read with `dmod.services.hydrofabric.load_network`."""
from __future__ import annotations

import json

from dmod.services.datasets.detect.context import DATASET, BadFile, DetectionContext, Obj
from dmod.services.datasets.domains import CATCHMENT_ID, HYDROFABRIC_ID, VPU, Domain

CATCHMENT_PREFIXES = ("cat-", "wb-", "agg-")
NEXUS_PREFIXES = ("nex-", "tnx-", "cnx-", "inx-")


def _network_domain(network) -> Domain:
    discrete = {CATCHMENT_ID: frozenset(str(c) for c in network.catchment_ids.tolist()),
                HYDROFABRIC_ID: frozenset({network.hydrofabric_id})}
    if network.vpu:
        discrete[VPU] = frozenset({str(network.vpu)})
    return Domain({}, discrete)


def _load(obj: Obj, *paths):
    from dmod.services.hydrofabric import load_network

    try:
        network = load_network(*paths)
    except (ValueError, KeyError, OSError) as exc:
        raise BadFile(obj.path, f"not a readable hydrofabric: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - pyogrio/GDAL raise their own types
        raise BadFile(obj.path, f"not a readable hydrofabric: {exc.__class__.__name__}: {exc}") from None
    if network.n_catchments == 0:
        raise BadFile(obj.path, "has no catchments")
    return network


def detect_geopackage(ctx: DetectionContext) -> Domain:
    files = [o for o in ctx.objects if o.path.endswith("gpkg")]
    if not files:
        raise BadFile(DATASET, "no GeoPackage (.gpkg) file")
    if len(files) > 1:
        raise BadFile(DATASET, f"{len(files)} GeoPackages ({', '.join(o.path for o in files[:3])}); a hydrofabric "
                               "dataset holds one")
    obj = files[0]
    return _network_domain(_load(obj, ctx.fetch(obj)))


def _role(ctx: DetectionContext, obj: Obj) -> str:
    """'catchments' or 'nexus', from the ids of the features."""
    try:
        doc = json.loads(ctx.fetch(obj).read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadFile(obj.path, f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise BadFile(obj.path, "not a GeoJSON FeatureCollection")
    for feature in doc.get("features") or []:
        fid = str(feature.get("id", (feature.get("properties") or {}).get("id", "")))
        if fid.startswith(CATCHMENT_PREFIXES):
            return "catchments"
        if fid.startswith(NEXUS_PREFIXES):
            return "nexus"
    raise BadFile(obj.path, "no feature id starts with a catchment (cat-, wb-, agg-) or nexus (nex-, tnx-) prefix")


def detect_geojson(ctx: DetectionContext) -> Domain:
    files = ctx.with_suffix(".geojson", ".json")
    if not files:
        raise BadFile(DATASET, "no GeoJSON files")
    roles: dict[str, list[Obj]] = {"catchments": [], "nexus": []}
    for obj in files:
        roles[_role(ctx, obj)].append(obj)
    for role, found in roles.items():
        if len(found) != 1:
            listed = ", ".join(o.path for o in found) or "none"
            raise BadFile(DATASET, f"a GeoJSON hydrofabric needs exactly one {role} file (found: {listed})")
    cat, nex = roles["catchments"][0], roles["nexus"][0]
    return _network_domain(_load(cat, ctx.fetch(cat), ctx.fetch(nex)))
