"""DMOD's CFE-style conceptual rainfall-runoff model as a Python BMI class.

python_type: `dmod.services.worker.models.cfe.CFE`

Structure of the NOAA-OWP "Conceptual Functional Equivalent" of the National Water Model (Ogden
et al., NWM 3.0), written from its published equations (not ported code); each process is in
`cfe_physics.py` with its citation:

1. PET is met first from the step's rainfall (CFE convention).
2. Schaake et al. (1996) partitioning of the remaining rain into infiltration and surface runoff
   using the soil deficit and Kdt = refkdt · satdk / 2e-6 m s⁻¹.
3. Soil reservoir (S_max = smcmax · depth): ET with a linear stress factor between wilting point
   and field capacity, then two outlets above field capacity: percolation to groundwater
   (satdk · slope) and lateral flow (klf).
4. Nonlinear exponential groundwater bucket (NWM/WRF-Hydro, Gochis et al. 2020).
5. Surface runoff and lateral flow are each routed through a Nash (1957) cascade.

    Q_OUT [m h⁻¹] = (surface + lateral + groundwater outflow of the step) / Δt[h]

Mass balance per catchment (checked by the tests, float tolerance):
    Σ precipitation = Σ ACTUAL_ET + Σ Q_OUT·Δt[h] + TOTAL_STORAGE(end) − TOTAL_STORAGE(start)

Inputs (no unit conversion is done by the embedded engine, so forcing must match):
  atmosphere_water__liquid_equivalent_precipitation_rate   mm s⁻¹ (= kg m⁻² s⁻¹, AORC precip_rate)
  plus, by `pet_method`:
  - "priestley_taylor": land_surface_air__temperature [K] and
    land_surface_radiation~incoming~shortwave__energy_flux [W m⁻²] (see pet.py)
  - "input": water_potential_evaporation_flux [mm s⁻¹] (e.g. from PriestleyTaylorPET in bmi_multi)
  - "constant" (default): pet_constant_mm_day spread evenly over the day.

Init config (YAML, or JSON when the file name ends in .json), one per catchment; every key is
optional and unknown keys are refused:
  time_step_seconds: 3600     pet_method: constant | priestley_taylor | input
  soil_depth_m: 2.0           smcmax: 0.439 (porosity)   field_capacity: 0.30   wilting_point: 0.066
  satdk: 3.38e-6 (m s-1)      slope: 0.1 (0-1)           refkdt: 3.0            klf: 0.01 (m h-1)
  max_gw_storage_m: 0.25      cgw: 1.8e-5 (m h-1)        expon: 6.0
  nash_n: 2   nash_k: 0.3 (h-1, lateral)                 surface_n: 2   surface_k: 0.6 (h-1)
  soil_storage_init: 0.6 (fraction of S_max)             gw_storage_init: 0.3 (fraction of Gmax)
  pet_constant_mm_day: 3.0    pt_alpha: 1.26   albedo: 0.23   pressure_kpa: 101.3
Every numeric key is also a settable parameter (ngen `model_params`, e.g. slope from the
hydrofabric); setting one re-derives coefficients, and before the first update also re-initialises
the stores from their init fractions.

Real CFE configs: when the init config is a NOAA-OWP CFE `key=value` file
(`*_bmi_config_cfe_pass.txt`, read by `cfe_config.read_cfe_config`), the model runs the OWP CFE
structure instead (GIUH, explicit Nash cascade, field capacity from alpha_fc, ET before
partitioning, ...; see `cfe_owp.py`), with CFE's outputs (Q_OUT in m per hourly step) and CFE's
parameter names for `model_params` (maxsmc, satdk, slope, b, Klf, Kn, Cgw, expon, ...).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from . import cfe_physics as phys
from .array_bmi import ArrayBmi, ModelConfigError
from .cfe_config import looks_like_cfe_config, read_cfe_config
from .cfe_owp import OUTPUTS as OWP_OUTPUTS
from .cfe_owp import PARAMS as OWP_PARAMS
from .cfe_owp import STEP_SECONDS as OWP_STEP_SECONDS
from .cfe_owp import OwpCfe
from .pet import PET_FLUX, SHORTWAVE, TEMPERATURE, priestley_taylor_mm_s

PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
PET_METHODS = ("constant", "priestley_taylor", "input")

_OUTPUTS = {
    "Q_OUT": "m h-1",
    "SURFACE_RUNOFF": "m", "LATERAL_FLOW": "m", "GROUNDWATER_FLOW": "m",
    "INFILTRATION_EXCESS": "m", "INFILTRATION": "m", "PERCOLATION": "m",
    "ACTUAL_ET": "m", "POTENTIAL_ET": "m", "PRECIP_DEPTH": "m",
    "SOIL_STORAGE": "m", "GROUNDWATER_STORAGE": "m", "TOTAL_STORAGE": "m",
}

_PARAMS = {
    "soil_depth_m": ("m", 2.0), "smcmax": ("1", 0.439), "field_capacity": ("1", 0.30),
    "wilting_point": ("1", 0.066), "satdk": ("m s-1", 3.38e-6), "slope": ("1", 0.1),
    "refkdt": ("1", 3.0), "klf": ("m h-1", 0.01), "max_gw_storage_m": ("m", 0.25),
    "cgw": ("m h-1", 1.8e-5), "expon": ("1", 6.0), "nash_n": ("1", 2), "nash_k": ("h-1", 0.3),
    "surface_n": ("1", 2), "surface_k": ("h-1", 0.6), "soil_storage_init": ("1", 0.6),
    "gw_storage_init": ("1", 0.3), "pet_constant_mm_day": ("mm d-1", 3.0), "pt_alpha": ("1", 1.26),
    "albedo": ("1", 0.23), "pressure_kpa": ("kPa", 101.3),
}


class CFE(ArrayBmi):
    """CFE-style lumped runoff model over one catchment (or a batch of catchments)."""

    _component_name = "DMOD CFE-style conceptual runoff model"
    _outputs = _OUTPUTS
    _params = _PARAMS

    def __init__(self) -> None:
        super().__init__()
        self.pet_method = "constant"
        self._nash = np.zeros((0, 0))
        self._surf = np.zeros((0, 0))
        self._owp: OwpCfe | None = None

    def initialize_batch(self, config_files: Sequence[str]) -> None:
        paths = [os.fspath(p) for p in config_files]
        kinds = {looks_like_cfe_config(p) for p in paths}
        if True not in kinds:
            self._owp = None
            for name in ("_outputs", "_params"):
                self.__dict__.pop(name, None)
            super().initialize_batch(paths)
            return
        if kinds != {True}:
            raise ModelConfigError("init configs mix NOAA-OWP CFE key=value files with YAML/JSON configs")
        self._config_paths = paths
        self.n = len(paths)
        self._time = 0.0
        self._dt = OWP_STEP_SECONDS
        self.pet_method = "input"
        self._outputs = OWP_OUTPUTS
        self._params = {name: (units, None) for name, (units, _key) in OWP_PARAMS.items()}
        self._owp = OwpCfe(self, [read_cfe_config(p) for p in paths])

    def _inputs(self) -> dict[str, str]:
        if self._owp is not None:
            return self._owp.inputs()
        inputs = {PRECIP: "mm s-1"}
        if self.pet_method == "priestley_taylor":
            inputs |= {TEMPERATURE: "K", SHORTWAVE: "W m-2"}
        elif self.pet_method == "input":
            inputs[PET_FLUX] = "mm s-1"
        return inputs

    # ---- setup ---------------------------------------------------------------------------------
    def _configure(self, configs: list[dict]) -> None:
        self.check_keys(configs, {"time_step_seconds", "pet_method"})
        self.set_time_step(configs)
        methods = {str(c.get("pet_method", "constant")) for c in configs}
        if len(methods) != 1 or not methods <= set(PET_METHODS):
            raise ModelConfigError(
                f"pet_method must be one of {', '.join(PET_METHODS)} (and equal within a batch), got {sorted(methods)}")
        self.pet_method = methods.pop()
        n = self.n
        self._v = {name: self.param_array(configs, name) for name in _PARAMS}
        for name in _OUTPUTS:
            self._v[name] = np.zeros(n)
        for name in self._inputs():
            self._v[name] = np.zeros(n)
        if self.pet_method == "priestley_taylor":
            self._v[TEMPERATURE][:] = 288.15
        self._derive()
        self._reset_states()

    def _derive(self) -> None:
        """Coefficients per step from parameters; validates physical ranges."""
        v, dt = self._v, self._dt
        self._check_ranges()
        self.s_max = v["smcmax"] * v["soil_depth_m"]
        self.s_fc = v["field_capacity"] * v["soil_depth_m"]
        self.s_wp = v["wilting_point"] * v["soil_depth_m"]
        self.kdt = v["refkdt"] * v["satdk"] / phys.REF_SATDK
        self.capacity_fraction = phys.schaake_capacity_fraction(self.kdt, dt / 86400.0)
        self.perc_coeff = v["satdk"] * v["slope"] * dt
        self.lat_coeff = v["klf"] * (dt / 3600.0)
        self.cgw_step = v["cgw"] * (dt / 3600.0)
        self.nash_frac = 1.0 - np.exp(-v["nash_k"] * (dt / 3600.0))
        self.surf_frac = 1.0 - np.exp(-v["surface_k"] * (dt / 3600.0))
        self._nash = _resize_cascade(self._nash, self.n, v["nash_n"])
        self._surf = _resize_cascade(self._surf, self.n, v["surface_n"])
        self.nash_fracs = phys.cascade_fractions(self.nash_frac, v["nash_n"], self._nash.shape[1])
        self.surf_fracs = phys.cascade_fractions(self.surf_frac, v["surface_n"], self._surf.shape[1])

    def _check_ranges(self) -> None:
        v = self._v
        rules = [
            ("soil_depth_m", v["soil_depth_m"] > 0), ("smcmax", (v["smcmax"] > 0) & (v["smcmax"] <= 1)),
            ("field_capacity", (v["field_capacity"] > v["wilting_point"]) & (v["field_capacity"] < v["smcmax"])),
            ("wilting_point", v["wilting_point"] >= 0), ("satdk", v["satdk"] >= 0),
            ("slope", (v["slope"] >= 0) & (v["slope"] <= 1)), ("refkdt", v["refkdt"] >= 0),
            ("klf", v["klf"] >= 0), ("max_gw_storage_m", v["max_gw_storage_m"] > 0),
            ("cgw", v["cgw"] >= 0), ("expon", v["expon"] >= 0),
            ("nash_n", (v["nash_n"] >= 1) & (v["nash_n"] == np.round(v["nash_n"]))),
            ("surface_n", (v["surface_n"] >= 1) & (v["surface_n"] == np.round(v["surface_n"]))),
            ("nash_k", v["nash_k"] >= 0), ("surface_k", v["surface_k"] >= 0),
            ("soil_storage_init", (v["soil_storage_init"] >= 0) & (v["soil_storage_init"] <= 1)),
            ("gw_storage_init", (v["gw_storage_init"] >= 0) & (v["gw_storage_init"] <= 1)),
            ("pet_constant_mm_day", v["pet_constant_mm_day"] >= 0),
        ]
        for name, ok in rules:
            if not np.all(ok):
                i = int(np.flatnonzero(~ok)[0])
                where = self._config_paths[i] if i < len(self._config_paths) and self._config_paths[i] else f"catchment #{i}"
                raise ModelConfigError(f"{where}: parameter {name}={v[name][i]!r} is out of range")

    def _reset_states(self) -> None:
        v = self._v
        v["SOIL_STORAGE"][:] = v["soil_storage_init"] * self.s_max
        v["GROUNDWATER_STORAGE"][:] = v["gw_storage_init"] * v["max_gw_storage_m"]
        self._nash[:] = 0.0
        self._surf[:] = 0.0
        v["TOTAL_STORAGE"][:] = self.total_storage()

    def _on_params_changed(self, names: set[str]) -> None:
        if self._owp is not None:
            self._owp.derive()
            if self._time == 0.0:
                self._owp.reset()
            return
        self._derive()
        if self._time == 0.0:
            self._reset_states()

    def total_storage(self) -> np.ndarray:
        """Water held in soil, groundwater and both cascades (m)."""
        v = self._v
        total = v["SOIL_STORAGE"] + v["GROUNDWATER_STORAGE"]
        # column by column: a fixed summation order whatever the batch size
        for stores in (self._nash, self._surf):
            for j in range(stores.shape[1]):
                total = total + stores[:, j]
        return total

    # ---- one step ------------------------------------------------------------------------------
    def _pet_depth(self, dt: float) -> np.ndarray:
        v = self._v
        if self.pet_method == "priestley_taylor":
            rate = priestley_taylor_mm_s(v[TEMPERATURE], v[SHORTWAVE], v["pt_alpha"], v["albedo"], v["pressure_kpa"])
        elif self.pet_method == "input":
            rate = np.maximum(v[PET_FLUX], 0.0)
        else:
            rate = v["pet_constant_mm_day"] / 86400.0
        return rate * dt / 1000.0

    def _advance(self, dt: float) -> None:
        if self._owp is not None:
            self._owp.advance(dt)
            return
        v = self._v
        rain = np.maximum(v[PRECIP], 0.0) * dt / 1000.0
        pet = self._pet_depth(dt)
        e_rain, rain_left, pet_left = phys.rain_evaporation(rain, pet)

        soil = v["SOIL_STORAGE"]
        runoff, infil = phys.schaake_partition(rain_left, np.maximum(self.s_max - soil, 0.0), self.capacity_fraction)
        soil = soil + infil
        e_soil = phys.soil_evapotranspiration(soil, pet_left, self.s_fc, self.s_wp)
        soil = soil - e_soil
        perc, lat = phys.soil_outflows(soil, self.s_fc, self.s_max, self.perc_coeff, self.lat_coeff)
        soil = soil - perc - lat

        gw = v["GROUNDWATER_STORAGE"] + perc
        q_gw = phys.groundwater_outflow(gw, v["max_gw_storage_m"], self.cgw_step, v["expon"])
        gw = gw - q_gw

        q_lat = phys.nash_cascade(self._nash, self.nash_fracs, lat)
        q_surf = phys.nash_cascade(self._surf, self.surf_fracs, runoff)

        v["PRECIP_DEPTH"][:] = rain
        v["POTENTIAL_ET"][:] = pet
        v["ACTUAL_ET"][:] = e_rain + e_soil
        v["INFILTRATION_EXCESS"][:] = runoff
        v["INFILTRATION"][:] = infil
        v["PERCOLATION"][:] = perc
        v["SOIL_STORAGE"][:] = soil
        v["GROUNDWATER_STORAGE"][:] = gw
        v["SURFACE_RUNOFF"][:] = q_surf
        v["LATERAL_FLOW"][:] = q_lat
        v["GROUNDWATER_FLOW"][:] = q_gw
        v["Q_OUT"][:] = (q_surf + q_lat + q_gw) / (dt / 3600.0)
        v["TOTAL_STORAGE"][:] = self.total_storage()


def _resize_cascade(stores: np.ndarray, n: int, n_res: np.ndarray) -> np.ndarray:
    """Storage matrix with at least max(n_res) columns, keeping existing water."""
    width = int(n_res.max()) if n else 0
    if stores.shape == (n, width):
        return stores
    out = np.zeros((n, max(width, stores.shape[1] if stores.shape[0] == n else 0)))
    if stores.shape[0] == n:
        out[:, : stores.shape[1]] = stores
    return out
