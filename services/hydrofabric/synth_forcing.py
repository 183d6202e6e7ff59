"""Synthetic AORC-like forcing and gage observations for a synthetic network.

Rain comes from moving storm cells (Poisson arrivals, gamma durations, Gaussian footprints,
hourly intermittency), so catchments see intermittent, spatially correlated events; the other
AORC variables follow diurnal cycles coupled to cloudiness. Gage flow is upstream runoff
(area-weighted) routed through a linear reservoir, so observations respond to the same storms.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

AORC_VARS = ("APCP_surface", "DLWRF_surface", "DSWRF_surface", "PRES_surface", "SPFH_2maboveground",
             "TMP_2maboveground", "UGRD_10maboveground", "VGRD_10maboveground", "precip_rate")
TIME_FMT = "%Y-%m-%d %H:%M:%S"


def time_axis(start: str, hours: int) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(start), periods=hours, freq="h")


def storm_precip(xy: np.ndarray, hours: int, rng: np.random.Generator) -> np.ndarray:
    """(n, hours) precipitation in mm/h (= kg m-2 per hour, AORC APCP)."""
    n = len(xy)
    p = np.zeros((n, hours), dtype=np.float64)
    t = np.arange(hours, dtype=np.float64)
    lo, hi = xy.min(axis=0) - 50_000.0, xy.max(axis=0) + 50_000.0
    n_storms = rng.poisson(max(1.0, hours / 60.0))
    for _ in range(n_storms):
        t0 = rng.uniform(-12.0, hours)
        dur = rng.gamma(2.0, 5.0) + 2.0
        peak = min(rng.exponential(3.0) + 0.5, 40.0)
        c = rng.uniform(lo, hi)
        radius = rng.lognormal(np.log(120_000.0), 0.5)
        ang = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(5.0, 15.0) * 3600.0  # m per hour
        d = xy - c
        foot = np.exp(-((d ** 2).sum(axis=1)) / radius ** 2)
        hit = foot > 0.02
        if not hit.any():
            continue
        lag = (d[hit] @ np.array([np.cos(ang), np.sin(ang)])) / speed  # hours: storm moves across
        mult = rng.lognormal(0.0, 0.4, hit.sum())
        onset = t0 + lag
        phase = (t[None, :] - onset[:, None]) / dur  # 0..1 inside the event
        shape = np.clip(1.0 - np.abs(2.0 * phase - 1.0), 0.0, None) ** 1.5  # rise then recede
        wet = rng.random(shape.shape) > 0.2  # hourly intermittency inside the event
        p[hit] += (peak * foot[hit] * mult)[:, None] * shape * wet
    p[p < 0.01] = 0.0  # below AORC's effective trace
    return np.round(p, 3)


def met_fields(xy: np.ndarray, times: pd.DatetimeIndex, precip: np.ndarray, elev: np.ndarray,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, hours = precip.shape
    hod = np.asarray(times.hour, dtype=np.float64)[None, :]
    doy = np.asarray(times.day_of_year, dtype=np.float64)[None, :]
    cloud = np.clip(precip / 2.0, 0.0, 1.0)
    cloud = np.maximum(cloud, np.clip(np.convolve(cloud.mean(axis=0), np.ones(6) / 6, "same"), 0, 1)[None, :] * 0.7)
    lat_term = (xy[:, 1:2] - xy[:, 1].min()) / 1e6  # colder to the north (per 1000 km)
    season = 10.0 * np.cos(2 * np.pi * (doy - 200.0) / 365.0)
    tmp = (273.15 + 12.0 + season - 8.0 * lat_term - 0.0065 * elev[:, None]
           + 6.0 * np.sin(2 * np.pi * (hod - 9.0) / 24.0) * (1.0 - 0.6 * cloud)
           - 2.0 * cloud + rng.normal(0, 0.4, (n, hours)))
    solar = np.clip(np.sin(np.pi * (hod - 6.0) / 12.0), 0.0, None) * (650.0 + 250.0 * np.cos(2 * np.pi * (doy - 172.0) / 365.0))
    dswrf = solar * (1.0 - 0.75 * cloud)
    dlwrf = 5.67e-8 * tmp ** 4 * (0.7 + 0.25 * cloud)
    pres = 101325.0 * np.exp(-elev[:, None] / 8434.0) + rng.normal(0, 60.0, (n, hours))
    rh = np.clip(0.55 + 0.4 * cloud + rng.normal(0, 0.05, (n, hours)), 0.1, 1.0)
    es = 611.2 * np.exp(17.67 * (tmp - 273.15) / (tmp - 29.65))
    spfh = 0.622 * rh * es / pres
    u = 3.0 + 2.0 * np.sin(2 * np.pi * np.arange(hours) / 97.0)[None, :] + rng.normal(0, 1.0, (n, hours))
    v = -1.0 + 2.0 * np.cos(2 * np.pi * np.arange(hours) / 131.0)[None, :] + rng.normal(0, 1.0, (n, hours))
    return {
        "APCP_surface": precip,
        "DLWRF_surface": np.round(dlwrf, 2),
        "DSWRF_surface": np.round(dswrf, 2),
        "PRES_surface": np.round(pres, 1),
        "SPFH_2maboveground": np.round(spfh, 6),
        "TMP_2maboveground": np.round(tmp, 2),
        "UGRD_10maboveground": np.round(u, 2),
        "VGRD_10maboveground": np.round(v, 2),
        "precip_rate": precip / 3600.0,  # mm/s
    }


def gage_flows(sn, precip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(gages, hours) flow in m3/s at each gage's outflow nexus."""
    n, hours = precip.shape
    runoff = precip * 0.35 * sn.area[:, None] / 3.6  # mm/h × km2 → m3/s
    acc = runoff.copy()
    par = sn.parent
    for i in range(n - 1, -1, -1):  # pre-order numbering: children after parents
        p = par[i]
        if p >= 0:
            acc[p] += acc[i]
    out = np.empty((len(sn.gage_nodes), hours))
    for g, node in enumerate(sn.gage_nodes.tolist()):
        area = sn.metrics["tot_area"][node]
        k = 3.0 + 2.0 * np.sqrt(area) / 5.0  # reservoir constant (h) grows with basin size
        a = np.exp(-1.0 / k)
        q = np.empty(hours)
        s = 0.004 * area  # start at baseflow
        base = 0.004 * area
        for t in range(hours):
            s = a * s + (1 - a) * acc[node, t]
            q[t] = s
        out[g] = (q + base) * rng.lognormal(0.0, 0.05, hours)
    return np.round(out, 4)


def write_forcing_and_observations(out: Path, sn, seed: int, start: str, hours: int, kind: str) -> dict:
    rng = np.random.default_rng([seed, 2])
    times = time_axis(start, hours)
    tstr = times.strftime(TIME_FMT).to_numpy(dtype=object)
    precip = storm_precip(sn.xy, hours, rng)
    elev = np.clip(200.0 + sn.metrics["depth"] * 2.0, 0, 4000)
    fields = met_fields(sn.xy, times, precip, elev, rng)
    cat_ids = sn.cat_ids
    fdir = out / "forcing"
    fdir.mkdir(exist_ok=True)
    info: dict = {"forcing_time": {"start_time": tstr[0], "end_time": tstr[-1], "output_interval": 3600}}
    if kind in ("csv", "both"):
        header = "time," + ",".join(AORC_VARS) + "\n"
        fmts = ["%.3f", "%.2f", "%.2f", "%.1f", "%.6g", "%.2f", "%.2f", "%.2f", "%.6g"]
        stacked = np.stack([fields[v] for v in AORC_VARS], axis=2)  # (n, hours, vars)
        row_fmt = "%s," + ",".join(fmts) + "\n"
        for i, cid in enumerate(cat_ids.tolist()):
            rows = stacked[i]
            body = "".join(row_fmt % (tstr[t], *rows[t]) for t in range(hours))
            (fdir / f"{cid}.csv").write_text(header + body)
        info["forcing_csv"] = {"provider": "CsvPerFeature", "path": str(fdir), "file_pattern": "{{id}}.csv"}
    if kind in ("netcdf", "both"):
        nc_path = fdir / "forcing.nc"
        write_netcdf_forcing(nc_path, cat_ids, times, fields)
        info["forcing_netcdf"] = {"provider": "NetCDF", "path": str(nc_path)}
    flows = gage_flows(sn, precip, rng)
    odir = out / "observations"
    odir.mkdir(exist_ok=True)
    long_rows = []
    for g, gid in enumerate(sn.gage_ids.tolist()):
        body = "".join(f"{tstr[t]},{flows[g, t]:.4f}\n" for t in range(hours))
        (odir / f"{gid}.csv").write_text("time,value\n" + body)
        long_rows.append("".join(f"{gid},{tstr[t]},{flows[g, t]:.4f}\n" for t in range(hours)))
    (out / "observations.csv").write_text("gage_id,time,value\n" + "".join(long_rows))
    info["observations"] = {"dir": str(odir), "long_csv": str(out / "observations.csv"), "units": "m3 s-1"}
    return info


FORCING_CHUNK_CATCHMENTS = 512


def write_netcdf_forcing(path, cat_ids, times: pd.DatetimeIndex, fields: dict[str, np.ndarray]) -> None:
    """ngen NetCDF forcing: dims (catchment-id, time), ids(catchment-id), Time(catchment-id, time)."""
    import netCDF4

    n, hours = len(cat_ids), len(times)
    secs = np.asarray((times - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1), dtype=np.float64)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("catchment-id", n)
        ds.createDimension("time", hours)
        ids = ds.createVariable("ids", str, ("catchment-id",))
        ids[:] = np.asarray(cat_ids, dtype=object)
        tv = ds.createVariable("Time", "f8", ("catchment-id", "time"))
        tv.units = "seconds since 1970-01-01 00:00:00"
        tv[:] = np.broadcast_to(secs, (n, hours))
        units = {"APCP_surface": "kg m-2", "DLWRF_surface": "W m-2", "DSWRF_surface": "W m-2",
                 "PRES_surface": "Pa", "SPFH_2maboveground": "kg kg-1", "TMP_2maboveground": "K",
                 "UGRD_10maboveground": "m s-1", "VGRD_10maboveground": "m s-1", "precip_rate": "mm s-1"}
        # whole series of a modest block of catchments per chunk: a reader (one MPI rank) that
        # wants some catchments decompresses about their share, not the library's huge default
        chunks = (max(1, min(n, FORCING_CHUNK_CATCHMENTS)), max(1, hours))
        for name in AORC_VARS:
            var = ds.createVariable(name, "f4", ("catchment-id", "time"), zlib=True, complevel=1,
                                    chunksizes=chunks)
            var.units = units[name]
            var[:] = fields[name].astype(np.float32)
