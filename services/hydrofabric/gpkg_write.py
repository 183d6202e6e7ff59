"""Write attribute tables (+ optional WKB geometry) as GeoPackage layers via pyogrio/arrow."""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

CRS = "EPSG:5070"


def as_arrow_column(values) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    arr = np.asarray(values)
    if arr.dtype == object or arr.dtype.kind in "US":
        return pa.array(arr.astype(object), type=pa.string(), from_pandas=True)
    return pa.array(arr)


def write_layer(path, layer: str, columns: dict, geometry=None, geometry_type: str | None = None,
                crs: str = CRS) -> None:
    """Add `layer` to the GeoPackage at `path` (created when absent). `geometry` is a sequence
    of WKB bytes (or an arrow binary array); None writes an attribute-only table."""
    data = {k: as_arrow_column(v) for k, v in columns.items()}
    kwargs = {}
    if geometry is not None:
        data["geom"] = geometry if isinstance(geometry, (pa.Array, pa.ChunkedArray)) else pa.array(geometry, type=pa.binary())
        kwargs = {"geometry_name": "geom", "geometry_type": geometry_type, "crs": crs}
    table = pa.table(data)
    from .ogr import pyogrio  # here: importers of the package (each engine rank) need no writer

    pyogrio.write_arrow(table, os.fspath(path), layer=layer, driver="GPKG", **kwargs)
