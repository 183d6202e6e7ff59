"""PET of the NOAA-OWP `evapotranspiration` module, driven by its own `key=value` config files
(`PET/*_pet_config.txt`), as a Python BMI model for DMOD's embedded engine.

python_type: `dmod.services.worker.models.pet_owp.OwpPET`

Written from the published method (not ported code). Supported `pet_method` values:
  1  energy balance:  E = Rn / (ρw · λ)
  3  combination (Penman):  E = Δ/(Δ+γ) · Rn/(ρw·λ) + γ/(Δ+γ) · E_a,
     E_a = 0.622 · k² · ρa · (es − ea) · u / (p · ln(zm/d)²) / ρw
with, for hourly AORC forcing (yes_aorc=1, shortwave_radiation_provided=1):
  Rn = (1 − albedo)·SW↓ + (1 − α_lw)·LW↓ − ε·σ·(T_skin + 273.15)⁴, T_skin = 12 °C (α_lw = 0 when ε > 0.999,
       else 0.03);
  es = 611·exp(17.27 T/(237.3 + T)) Pa, ea = q·p/0.622 (0.65·es if that exceeds es), Δ = 4098·es/(237.3+T)²;
  ρa = p / (287·(1 + 0.608 q)·(T + 273.15)); water at 22 °C: λ = 2.501e6 − 2370·22 J kg⁻¹,
  ρw = 1/(0.0009998492 + 4.9716595e-9·22²) (≤ 1000);
  γ = cp·p·z_oh/(0.622·λ) with cp = 1006 J kg⁻¹ K⁻¹ and the heat-transfer roughness z_oh
  (1.0 when either roughness length is configured below 1e-6, as the module does);
  wind u = |(U, V)| at 10 m scaled to 2 m by ln(2/d)/ln(zm/d); as in the module, the measurement
  height is then 2 m for the rest of the run, so only the first step is rescaled.
PET < 0 is set to 0.

Inputs (no unit conversion in the embedded engine): LW↓, SW↓ [W m⁻²], air pressure [Pa],
specific humidity [kg kg⁻¹], air temperature [K], wind components [m s⁻¹] — the module's names.
Output `water_potential_evaporation_flux` in mm s⁻¹ (= kg m⁻² s⁻¹, DMOD's convention, what `cfe.CFE`
takes); the C module gives m s⁻¹ and ngen converts.
"""
from __future__ import annotations

import math
import os
from typing import ClassVar

import numpy as np

from .array_bmi import ArrayBmi, ModelConfigError
from .cfe_config import key_value_lines

LONGWAVE = "land_surface_radiation~incoming~longwave__energy_flux"
PRESSURE = "land_surface_air__pressure"
HUMIDITY = "atmosphere_air_water~vapor__relative_saturation"  # specific humidity, kg kg-1 (the module's name)
SHORTWAVE = "land_surface_radiation~incoming~shortwave__energy_flux"
TEMPERATURE = "land_surface_air__temperature"
WIND_U = "land_surface_wind__x_component_of_velocity"
WIND_V = "land_surface_wind__y_component_of_velocity"
PET_FLUX = "water_potential_evaporation_flux"

CP = 1.006e3
KV2 = 0.1681
TK = 273.15
SB = 5.67e-08
SKIN_TEMPERATURE_C = 12.0
WATER_TEMPERATURE_C = 22.0

#: key -> (kind, default or None when required)
PET_KEYS: dict[str, tuple[str, object]] = {
    "pet_method": ("int", None), "forcing_file": ("text", "BMI"), "verbose": ("int", 0),
    "run_unit_tests": ("int", 0), "yes_aorc": ("int", 1), "yes_wrf": ("int", 0),
    "wind_speed_measurement_height_m": ("float", 10.0), "humidity_measurement_height_m": ("float", 2.0),
    "vegetation_height_m": ("float", 0.0), "zero_plane_displacement_height_m": ("float", None),
    "momentum_transfer_roughness_length_m": ("float", 0.0), "heat_transfer_roughness_length_m": ("float", 0.0),
    "surface_longwave_emissivity": ("float", 1.0), "surface_shortwave_albedo": ("float", None),
    "cloud_base_height_known": ("text", "FALSE"), "latitude_degrees": ("float", 0.0),
    "longitude_degrees": ("float", 0.0), "site_elevation_m": ("float", 0.0), "time_step_size_s": ("float", 3600.0),
    "num_timesteps": ("int", 0), "shortwave_radiation_provided": ("int", 1),
}
#: keys the C reader does not read (e.g. the roughness key without its _m suffix): accepted, ignored
PET_IGNORED = {"momentum_transfer_roughness_length"}
SUPPORTED_METHODS = (1, 3)


def read_pet_config(path: str | os.PathLike) -> dict[str, object]:
    """Parse a PET `key=value[units]` config; ModelConfigError names the key of any problem."""
    path = os.fspath(path)
    out: dict[str, object] = {}
    for where, key, text in key_value_lines(path, "PET"):
        if key in PET_IGNORED:
            continue
        if key not in PET_KEYS:
            raise ModelConfigError(f"{where}: unknown key {key!r}")
        kind = PET_KEYS[key][0]
        try:
            if kind == "float":
                value: object = float(text)
                if not math.isfinite(value):  # type: ignore[arg-type]
                    raise ValueError("not finite")
            elif kind == "int":
                f = float(text)
                if f != int(f):
                    raise ValueError("not an integer")
                value = int(f)
            else:
                value = text
        except ValueError as exc:
            raise ModelConfigError(f"{where}: bad value {text!r} for key {key}: {exc}") from None
        out[key] = value
    for key, (_kind, default) in PET_KEYS.items():
        if key not in out:
            if default is None:
                raise ModelConfigError(f"PET config {path}: missing key {key}")
            out[key] = default
    where = f"PET config {path}"
    if out["pet_method"] not in SUPPORTED_METHODS:
        raise ModelConfigError(f"{where}: pet_method {out['pet_method']} is not supported by the embedded PET "
                               f"(supported: {', '.join(map(str, SUPPORTED_METHODS))})")
    if out["forcing_file"] != "BMI":
        raise ModelConfigError(f"{where}: forcing_file must be BMI, got {out['forcing_file']!r}")
    if out["yes_aorc"] != 1:
        raise ModelConfigError(f"{where}: yes_aorc must be 1 (AORC forcing with incoming longwave)")
    if out["shortwave_radiation_provided"] != 1:
        raise ModelConfigError(f"{where}: shortwave_radiation_provided must be 1 (solar geometry is not modelled)")
    if out["time_step_size_s"] <= 0:  # type: ignore[operator]
        raise ModelConfigError(f"{where}: value {out['time_step_size_s']!r} of key time_step_size_s is out of range")
    if out["zero_plane_displacement_height_m"] <= 0:  # type: ignore[operator]
        raise ModelConfigError(f"{where}: value {out['zero_plane_displacement_height_m']!r} of key "
                               "zero_plane_displacement_height_m is out of range")
    return out


def _sat_vapor_pressure_pa(t_c):
    return 611.0 * np.exp(17.27 * t_c / (237.3 + t_c))


class OwpPET(ArrayBmi):
    """The OWP evapotranspiration module's PET (methods 1 and 3) over n catchments."""

    _component_name = "DMOD OWP-method PET"
    _outputs: ClassVar[dict[str, str]] = {PET_FLUX: "mm s-1"}
    _params: ClassVar[dict[str, tuple[str, object]]] = {
        "surface_shortwave_albedo": ("1", 0.17), "surface_longwave_emissivity": ("1", 1.0),
        "zero_plane_displacement_height_m": ("m", 0.0003),
    }
    _INPUTS: ClassVar[dict[str, str]] = {LONGWAVE: "W m-2", PRESSURE: "Pa", HUMIDITY: "kg kg-1", SHORTWAVE: "W m-2",
                                         TEMPERATURE: "K", WIND_U: "m s-1", WIND_V: "m s-1"}

    def _inputs(self) -> dict[str, str]:
        return dict(self._INPUTS)

    def initialize_batch(self, config_files) -> None:
        self._config_paths = [os.fspath(p) for p in config_files]
        configs = [read_pet_config(p) for p in self._config_paths]
        self.n = len(configs)
        self._time = 0.0
        steps = {float(c["time_step_size_s"]) for c in configs}  # type: ignore[arg-type]
        if len(steps) != 1:
            raise ModelConfigError("time_step_size_s must be equal within a batch")
        self._dt = steps.pop()

        def col(key):
            return np.array([float(c[key]) for c in configs])  # type: ignore[arg-type]

        self._v = {name: col(name) for name in self._params}
        self.method = np.array([int(c["pet_method"]) for c in configs])  # type: ignore[arg-type]
        self.zm = col("wind_speed_measurement_height_m")
        z_oh = col("heat_transfer_roughness_length_m")
        z_om = col("momentum_transfer_roughness_length_m")
        small = (z_oh < 1.0e-6) | (z_om < 1.0e-6)
        self.z_oh = np.where(small, 1.0, z_oh)
        for name in self._INPUTS:
            self._v[name] = np.zeros(self.n)
        self._v[PRESSURE][:] = 101325.0
        self._v[TEMPERATURE][:] = TK + 15.0
        self._v[PET_FLUX] = np.zeros(self.n)

    def _advance(self, dt: float) -> None:
        v = self._v
        d = v["zero_plane_displacement_height_m"]
        t_c = v[TEMPERATURE] - TK
        p = v[PRESSURE]
        q = v[HUMIDITY]
        wind = np.hypot(v[WIND_U], v[WIND_V]) * (np.log(2.0 / d) / np.log(self.zm / d))
        self.zm = np.full(self.n, 2.0)  # the module keeps the 2 m height after its first step

        emissivity = v["surface_longwave_emissivity"]
        lw_albedo = np.where(emissivity > 0.999, 0.0, 0.03)
        outgoing = emissivity * SB * (SKIN_TEMPERATURE_C + TK) ** 4.0
        net_rad = (1.0 - v["surface_shortwave_albedo"]) * v[SHORTWAVE] + (1.0 - lw_albedo) * v[LONGWAVE] - outgoing

        rho_w = min(1.0 / (0.0009998492 + 4.9716595e-09 * WATER_TEMPERATURE_C * WATER_TEMPERATURE_C), 1000.0)
        latent = 2.501e06 - 2370.0 * WATER_TEMPERATURE_C
        rad_rate = net_rad / (rho_w * latent)

        es = _sat_vapor_pressure_pa(t_c)
        ea = q * p / 0.622
        ea = np.where(ea > es, 0.65 * es, ea)
        vpd = es - ea
        rho_a = p / (287.0 * (1.0 + 0.608 * q) * (t_c + TK))
        delta = 4098.0 * es / np.power(237.3 + t_c, 2.0)
        gamma = CP * p * self.z_oh / (0.622 * latent)
        mass_flux = 0.622 * KV2 * rho_a * vpd * wind / (p * np.power(np.log(self.zm / d), 2.0))
        aero_rate = mass_flux / rho_w
        combination = delta / (delta + gamma) * rad_rate + gamma / (delta + gamma) * aero_rate
        pet_m_s = np.where(self.method == 3, combination, rad_rate)
        v[PET_FLUX][:] = np.maximum(pet_m_s, 0.0) * 1000.0
