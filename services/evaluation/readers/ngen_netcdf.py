"""Nexus (or routed) flow output in NetCDF.

Accepted layout (t-route / NWM style; we read only what is listed here):

* dimensions ``feature_id`` and ``time``, in either order;
* ids: variable ``feature_id(feature_id)`` (or ``ids(feature_id)``). Strings are used as-is
  ("nex-12"); integers get `id_prefix` ("nex-" by default → 12 becomes "nex-12");
* times: variable ``time(time)``, either CF numeric (``units = "seconds since 2015-12-01 00:00:00"``,
  any CF unit/calendar decodable to real dates) or strings ``YYYY-MM-DD HH:MM:SS``; UTC assumed;
* flow: variable `variable`, else the first of ``flow, streamflow, Q_OUT, q_out, discharge``
  dimensioned (feature_id, time) or (time, feature_id), else the only such 2-D variable.
  ``_FillValue``/``missing_value`` cells become NaN. Its ``units`` attribute (m3/s, m3 s-1,
  ft3/s, cfs, ...) is honoured; `units=` overrides it; no attribute means m3/s.
"""
from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd

from ..timeseries import normalize_frame, to_utc_naive
from ..units import to_m3s

FLOW_NAMES = ("flow", "streamflow", "Q_OUT", "q_out", "discharge")
ID_VARS = ("feature_id", "ids")


def _ids(ds: netCDF4.Dataset, path: Path, id_prefix: str) -> list[str]:
    name = next((n for n in ID_VARS if n in ds.variables), None)
    if name is None:
        raise ValueError(f"{path}: no id variable ({' or '.join(ID_VARS)}) along feature_id")
    var = ds.variables[name]
    values = var[:]
    if var.dtype == "S1" or getattr(values, "dtype", None) == np.dtype("S1"):
        values = netCDF4.chartostring(np.asarray(values))  # char array (feature_id, strlen)
    values = np.ma.filled(values, 0) if np.ma.isMaskedArray(values) else np.asarray(values)
    if np.issubdtype(values.dtype, np.integer):
        return [f"{id_prefix}{int(v)}" for v in values]
    return [v.decode() if isinstance(v, bytes) else str(v).strip() for v in values]


def _times(ds: netCDF4.Dataset, path: Path) -> pd.DatetimeIndex:
    if "time" not in ds.variables:
        raise ValueError(f"{path}: no 'time' variable")
    var = ds.variables["time"]
    values = var[:]
    if np.issubdtype(np.asarray(values).dtype, np.number):
        units = getattr(var, "units", None)
        if not units:
            raise ValueError(f"{path}: numeric 'time' variable without CF 'units'")
        dates = netCDF4.num2date(np.ma.filled(values, np.nan), units, getattr(var, "calendar", "standard"),
                                 only_use_cftime_datetimes=False, only_use_python_datetimes=True)
        return to_utc_naive(list(dates))
    if var.dtype == "S1":
        values = netCDF4.chartostring(np.asarray(values))
    return to_utc_naive([v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values)])


def _flow_var(ds: netCDF4.Dataset, path: Path, variable: str | None):
    if variable is not None:
        if variable not in ds.variables:
            raise ValueError(f"{path}: no variable {variable!r}")
        return ds.variables[variable]
    candidates = [v for v in ds.variables.values() if set(v.dimensions) == {"feature_id", "time"}]
    for name in FLOW_NAMES:
        for var in candidates:
            if var.name == name:
                return var
    if len(candidates) == 1:
        return candidates[0]
    names = ", ".join(v.name for v in candidates) or "none"
    raise ValueError(f"{path}: cannot tell which (feature_id, time) variable is flow ({names}); pass variable=")


def read_nexus_netcdf(path, variable: str | None = None, id_prefix: str = "nex-",
                      units: str | None = None) -> pd.DataFrame:
    """NetCDF flow output → frame (time × id), float64 m3/s. See module docstring for the layout."""
    path = Path(path)
    with netCDF4.Dataset(path) as ds:
        missing = {"feature_id", "time"} - set(ds.dimensions)
        if missing:
            raise ValueError(f"{path}: missing dimension(s) {', '.join(sorted(missing))}")
        var = _flow_var(ds, path, variable)
        if set(var.dimensions) != {"feature_id", "time"}:
            raise ValueError(f"{path}: variable {var.name} has dimensions {var.dimensions}, "
                             "expected (feature_id, time)")
        var.set_auto_maskandscale(True)
        data = np.ma.filled(np.ma.asarray(var[:]).astype("float64"), np.nan)
        if var.dimensions[0] == "feature_id":
            data = data.T  # → (time, feature_id)
        unit = units or getattr(var, "units", None) or "m3/s"
        frame = pd.DataFrame(to_m3s(data, unit), index=_times(ds, path), columns=_ids(ds, path, id_prefix))
    return normalize_frame(frame)
