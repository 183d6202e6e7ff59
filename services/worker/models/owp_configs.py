"""Write NOAA-OWP model init configs (CFE and PET `key=value` files) and the SLoTH + PET + CFE
`bmi_multi` realization, for a domain DMOD made itself (e.g. the demo's synthetic hydrofabric).

The files are in the formats the compiled C models read (`cfe_config.read_cfe_config` and
`pet_owp.read_pet_config` parse them back): `CFE/<id>_bmi_config_cfe_pass.txt` and
`PET/<id>_pet_config.txt`, one per catchment, so a realization says
`"init_config": "./CFE/{{id}}_bmi_config_cfe_pass.txt"`.

Parameter values are DMOD's own:

* CFE: the embedded CFE-style model's per-catchment draw (`init_configs.cfe_params`, seeded by the
  catchment id) mapped onto CFE keys — soil depth, porosity, wilting point, conductivity, slope
  factor, REFKDT, lateral flow, groundwater store, Nash cascade (at least 2 reservoirs, as CFE
  requires), initial storages; the GIUH ordinates are the unit response of the model's surface
  reservoir cascade (`surface_n` reservoirs of coefficient `surface_k`) over a few hours. The
  hydrofabric's soil attributes (`mode.bexp_soil_layers_stag=1`, `mean.smcmax_soil_layers_stag=1`)
  replace the Clapp-Hornberger b and the porosity where the file has them.
* PET: combination method (`pet_method=3`) on AORC forcing over a FAO-56 reference surface
  (grass 0.12 m, albedo 0.23); latitude, longitude (catchment centroid, reprojected to WGS 84)
  and elevation (`mean.elevation`, metres) from the hydrofabric where available.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .init_configs import cfe_params

CFE_DIR, PET_DIR = "CFE", "PET"
CFE_NAME, PET_NAME = "{id}_bmi_config_cfe_pass.txt", "{id}_pet_config.txt"
#: the compiled models a realization from `sloth_pet_cfe_realization` loads, by role
LIBRARIES = {"sloth": "libslothmodel.so", "pet": "libpetbmi.so", "cfe": "libcfebmi.so"}

# Fixed CFE values (loam-like) where the embedded model has no counterpart.
SATPSI_M = 0.141
DEFAULT_B = 5.0
ALPHA_FC = 0.33
GIUH_STEPS = 6


@dataclass
class Site:
    """Where a catchment is, for PET (NaN = unknown; the writer uses 0)."""
    latitude: float = math.nan
    longitude: float = math.nan
    elevation_m: float = math.nan
    bexp: float = math.nan
    smcmax: float = math.nan


def giuh_ordinates(n: int, k: float, steps: int = GIUH_STEPS) -> list[float]:
    """Unit response of `n` linear reservoirs (outflow k·S per step) to 1 unit at step 0, over
    `steps` steps, normalised to sum to 1 (the tail is folded into the last ordinate)."""
    n, k = max(1, int(n)), min(max(float(k), 1e-3), 1.0)
    stores = [0.0] * n
    stores[0] = 1.0
    out = []
    for _ in range(steps):
        carry = 0.0
        for i in range(n):
            stores[i] += carry
            carry = k * stores[i]
            stores[i] -= carry
        out.append(carry)
    out[-1] += max(0.0, 1.0 - sum(out))
    total = sum(out)
    return [round(o / total, 6) for o in out]


def cfe_values(catchment_id: str, site: Site | None = None, *, seed: int = 0, hours: int = 720,
               overrides: Mapping[str, object] | None = None) -> dict[str, object]:
    """CFE key -> value (lists for list keys) for one catchment."""
    p = cfe_params(catchment_id, seed)
    site = site or Site()
    smcmax = site.smcmax if math.isfinite(site.smcmax) and 0.2 < site.smcmax <= 0.6 else float(p["smcmax"])
    bexp = site.bexp if math.isfinite(site.bexp) and site.bexp > 1 else DEFAULT_B
    wltsmc = min(float(p["wilting_point"]), 0.5 * smcmax)
    values: dict[str, object] = {
        "forcing_file": "BMI",
        "surface_partitioning_scheme": "Schaake",
        "soil_params.depth": p["soil_depth_m"],
        "soil_params.b": round(bexp, 4),
        "soil_params.satdk": p["satdk"],
        "soil_params.satpsi": SATPSI_M,
        "soil_params.slop": p["slope"],
        "soil_params.smcmax": round(smcmax, 6),
        "soil_params.wltsmc": round(wltsmc, 6),
        "soil_params.expon": 1.0,
        "soil_params.expon_secondary": 1.0,
        "refkdt": p["refkdt"],
        "max_gw_storage": p["max_gw_storage_m"],
        "Cgw": p["cgw"],
        "expon": p["expon"],
        "gw_storage": p["gw_storage_init"],
        "alpha_fc": ALPHA_FC,
        "soil_storage": p["soil_storage_init"],
        "K_nash": p["nash_k"],
        "K_lf": p["klf"],
        "nash_storage": [0.0] * max(2, int(p["nash_n"])),
        "giuh_ordinates": giuh_ordinates(int(p["surface_n"]), float(p["surface_k"])),
        "num_timesteps": int(hours),
        "verbosity": 0,
        "DEBUG": 0,
    }
    values |= dict(overrides or {})
    return values


UNITS = {"soil_params.depth": "m", "soil_params.b": "", "soil_params.satdk": "m s-1", "soil_params.satpsi": "m",
         "soil_params.slop": "m/m", "soil_params.smcmax": "m/m", "soil_params.wltsmc": "m/m",
         "soil_params.expon": "", "soil_params.expon_secondary": "", "max_gw_storage": "m", "Cgw": "m h-1",
         "expon": "", "gw_storage": "m/m", "soil_storage": "m/m", "K_nash": "", "K_lf": ""}


def _format(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_format(v) for v in value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e15 else f"{value:.1f}"
    return str(value)


def render(values: Mapping[str, object], units: Mapping[str, str] | None = None) -> str:
    lines = []
    for key, value in values.items():
        unit = (units or {}).get(key)
        lines.append(f"{key}={_format(value)}" + (f"[{unit}]" if unit is not None else ""))
    return "\n".join(lines) + "\n"


def pet_values(site: Site | None = None, *, hours: int = 720, time_step_seconds: int = 3600,
               overrides: Mapping[str, object] | None = None) -> dict[str, object]:
    """PET key -> value for one catchment."""
    site = site or Site()

    def known(x: float) -> float:
        return round(float(x), 6) if math.isfinite(x) else 0.0

    values: dict[str, object] = {
        "verbose": 0, "pet_method": 3, "forcing_file": "BMI", "run_unit_tests": 0, "yes_aorc": 1, "yes_wrf": 0,
        "wind_speed_measurement_height_m": 10.0, "humidity_measurement_height_m": 2.0,
        "vegetation_height_m": 0.12, "zero_plane_displacement_height_m": 0.08,
        # 0 = the module's own roughness handling (as its published example configs)
        "momentum_transfer_roughness_length_m": 0.0, "heat_transfer_roughness_length_m": 0.0,
        "surface_longwave_emissivity": 1.0, "surface_shortwave_albedo": 0.23, "cloud_base_height_known": "FALSE",
        "latitude_degrees": known(site.latitude), "longitude_degrees": known(site.longitude),
        "site_elevation_m": known(site.elevation_m), "time_step_size_s": int(time_step_seconds),
        "num_timesteps": int(hours), "shortwave_radiation_provided": 1,
    }
    values |= dict(overrides or {})
    return values


def hydrofabric_sites(gpkg: str | os.PathLike, ids: Iterable[str] | None = None) -> dict[str, Site]:
    """Per-catchment centroid (WGS 84), `mean.elevation` and soil attributes from a GeoPackage
    hydrofabric (`divides` layer + any attribute layer keyed by divide_id); missing parts are NaN."""
    import numpy as np
    import shapely

    from dmod.services.hydrofabric.ogr import pyogrio
    from dmod.services.hydrofabric.readers import load_network

    gpkg = os.fspath(gpkg)
    meta, table = pyogrio.read_arrow(gpkg, layer="divides", columns=["divide_id"])
    cat = [str(c) for c in table.column("divide_id").to_pylist()]
    geom_col = meta.get("geometry_name") or "wkb_geometry"
    geoms = shapely.from_wkb(table.column(geom_col if geom_col in table.column_names else table.column_names[-1])
                             .to_numpy(zero_copy_only=False))
    cent = shapely.centroid(geoms)
    x, y = shapely.get_x(cent), shapely.get_y(cent)
    lon, lat = np.full(len(cat), np.nan), np.full(len(cat), np.nan)
    if meta.get("crs"):
        from pyproj import Transformer

        to_wgs84 = Transformer.from_crs(meta["crs"], "EPSG:4326", always_xy=True)
        lon, lat = to_wgs84.transform(x, y)
    attrs: dict[str, np.ndarray] = {}
    for name in ("mean.elevation", "mode.bexp_soil_layers_stag=1", "mean.smcmax_soil_layers_stag=1"):
        try:
            net = load_network(gpkg, attributes=[name])
        except KeyError:
            continue
        by_id = dict(zip(net.catchment_ids.tolist(), np.asarray(net.attributes[name], dtype=float).tolist()))
        attrs[name] = np.asarray([by_id.get(c, np.nan) for c in cat], dtype=float)
    nan = np.full(len(cat), np.nan)
    sites = {c: Site(latitude=float(lat[i]), longitude=float(lon[i]),
                     elevation_m=float(attrs.get("mean.elevation", nan)[i]),
                     bexp=float(attrs.get("mode.bexp_soil_layers_stag=1", nan)[i]),
                     smcmax=float(attrs.get("mean.smcmax_soil_layers_stag=1", nan)[i]))
             for i, c in enumerate(cat)}
    if ids is not None:
        sites = {c: sites.get(c, Site()) for c in ids}
    return sites


def write_owp_configs(ids: Iterable[str], out_dir: str | os.PathLike, *, sites: Mapping[str, Site] | None = None,
                      seed: int = 0, hours: int = 720, time_step_seconds: int = 3600) -> dict[str, dict[str, str]]:
    """`<out_dir>/CFE/<id>_bmi_config_cfe_pass.txt` and `<out_dir>/PET/<id>_pet_config.txt` for
    every catchment; returns {catchment id: {"cfe": path, "pet": path}}."""
    out = os.fspath(out_dir)
    os.makedirs(os.path.join(out, CFE_DIR), exist_ok=True)
    os.makedirs(os.path.join(out, PET_DIR), exist_ok=True)
    written: dict[str, dict[str, str]] = {}
    for cid in ids:
        site = (sites or {}).get(cid)
        cfe = os.path.join(out, CFE_DIR, CFE_NAME.format(id=cid))
        pet = os.path.join(out, PET_DIR, PET_NAME.format(id=cid))
        with open(cfe, "w", encoding="utf-8") as fh:
            fh.write(render(cfe_values(cid, site, seed=seed, hours=hours), UNITS))
        with open(pet, "w", encoding="utf-8") as fh:
            fh.write(render(pet_values(site, hours=hours, time_step_seconds=time_step_seconds)))
        written[cid] = {"cfe": cfe, "pet": pet}
    return written


def sloth_pet_cfe_realization(start: str, end: str, *, lib_dir: str = "./lib", output_interval: int = 3600,
                              forcing_path: str = "./forcing/", file_pattern: str = "{{id}}.csv") -> dict:
    """ngen realization: one `bmi_multi` of SLoTH (`bmi_c++`: CFE's ice fraction and soil moisture
    inputs, held at 0), PET (`bmi_c`) and CFE (`bmi_c`, taking PET's flux), CSV forcing per
    catchment, configs under ./CFE and ./PET, libraries under `lib_dir`."""
    lib = lib_dir.rstrip("/")
    sloth = {"name": "bmi_c++", "params": {
        "model_type_name": "bmi_c++_sloth", "library_file": f"{lib}/{LIBRARIES['sloth']}", "init_config": "/dev/null",
        "allow_exceed_end_time": True, "main_output_variable": "z", "uses_forcing_file": False,
        "model_params": {"sloth_ice_fraction_schaake(1,double,m,node)": 0.0,
                         "sloth_ice_fraction_xinanjiang(1,double,1,node)": 0.0,
                         "sloth_smp(1,double,1,node)": 0.0}}}
    pet = {"name": "bmi_c", "params": {
        "model_type_name": "bmi_c_pet", "library_file": f"{lib}/{LIBRARIES['pet']}", "forcing_file": "",
        "init_config": f"./{PET_DIR}/{PET_NAME.format(id='{{id}}')}", "allow_exceed_end_time": True,
        "main_output_variable": "water_potential_evaporation_flux", "registration_function": "register_bmi_pet",
        "uses_forcing_file": False}}
    cfe = {"name": "bmi_c", "params": {
        "model_type_name": "bmi_c_cfe", "library_file": f"{lib}/{LIBRARIES['cfe']}", "forcing_file": "",
        "init_config": f"./{CFE_DIR}/{CFE_NAME.format(id='{{id}}')}", "allow_exceed_end_time": True,
        "main_output_variable": "Q_OUT", "registration_function": "register_bmi_cfe", "uses_forcing_file": False,
        "variables_names_map": {"water_potential_evaporation_flux": "water_potential_evaporation_flux",
                                "ice_fraction_schaake": "sloth_ice_fraction_schaake",
                                "ice_fraction_xinanjiang": "sloth_ice_fraction_xinanjiang",
                                "soil_moisture_profile": "sloth_smp"}}}
    return {
        "global": {
            "formulations": [{"name": "bmi_multi", "params": {
                "model_type_name": "bmi_multi_sloth_pet_cfe", "forcing_file": "", "init_config": "",
                "allow_exceed_end_time": True, "main_output_variable": "Q_OUT", "uses_forcing_file": False,
                "modules": [sloth, pet, cfe]}}],
            "forcing": {"provider": "CsvPerFeature", "path": forcing_path, "file_pattern": file_pattern},
        },
        "time": {"start_time": start, "end_time": end, "output_interval": output_interval},
        "output": {"root": "./output/"},
    }


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=1)
