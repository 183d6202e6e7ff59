"""The NOAA-OWP CFE structure of DMOD's `cfe.CFE`, used when the init config is a real CFE
`key=value` file (`*_bmi_config_cfe_pass.txt`, read by `cfe_config.read_cfe_config`).

Processes per hourly step, in CFE's order (equations in `cfe_physics`, written from the published
method, not ported code):

1. PET is met from the step's rain first, then from the soil (full rate above field capacity,
   linear reduction down to wilting point), before the rain is partitioned.
2. Rain left is split into direct runoff and infiltration by Schaake (Kdt = refkdt·satdk/2e-6)
   or Xinanjiang, against the soil deficit S_max − S after ET. Infiltration that does not fit
   becomes runoff; like CFE, the previous step's percolation is also checked against the deficit.
3. The soil store (S_max = smcmax·D, field capacity from the Clapp-Hornberger integral with
   alpha_fc) drains through two nonlinear outlets above field capacity: percolation
   satdk·slop·Δt·x^expon to groundwater (limited by the groundwater deficit) and lateral flow
   K_lf·x^expon_secondary to a Nash cascade (K_nash, N_nash reservoirs, explicit form).
4. Groundwater: Q = Cgw·(exp(expon·G/Gmax) − 1) per step.
5. Direct runoff is convolved with the GIUH ordinates.

    Q_OUT [m per step] = GIUH runoff + Nash lateral runoff + groundwater flux

Time step: 3600 s (fixed, as in CFE). Units of the inputs follow DMOD's embedded engine, which does
not convert units: precipitation in mm s⁻¹ (AORC precip_rate) and PET
`water_potential_evaporation_flux` in mm s⁻¹ (kg m⁻² s⁻¹) as DMOD's PET models give it. Outputs
are CFE's, with CFE's units (RAIN_RATE in mm h⁻¹, the rest in m per step).
"""
from __future__ import annotations

import numpy as np

from . import cfe_physics as phys
from .array_bmi import ModelConfigError
from .cfe_config import MAX_NASH, CfeConfig

PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
PET_FLUX = "water_potential_evaporation_flux"
ICE_SCHAAKE = "ice_fraction_schaake"
ICE_XINANJIANG = "ice_fraction_xinanjiang"
STEP_SECONDS = 3600.0

OUTPUTS = {
    "RAIN_RATE": "mm h-1", "DIRECT_RUNOFF": "m", "GIUH_RUNOFF": "m", "NASH_LATERAL_RUNOFF": "m",
    "DEEP_GW_TO_CHANNEL_FLUX": "m", "SOIL_TO_GW_FLUX": "m", "Q_OUT": "m", "POTENTIAL_ET": "m",
    "ACTUAL_ET": "m", "GW_STORAGE": "m", "SOIL_STORAGE": "m", "SOIL_STORAGE_CHANGE": "m",
    "SURF_RUNOFF_SCHEME": "1",
}

#: settable parameter (CFE's BMI parameter names) -> (units, config key)
PARAMS = {
    "maxsmc": ("m m-1", "soil_params.smcmax"), "satdk": ("m s-1", "soil_params.satdk"),
    "slope": ("1", "soil_params.slop"), "b": ("1", "soil_params.b"), "Klf": ("m", "K_lf"),
    "Kn": ("1", "K_nash"), "Cgw": ("m", "Cgw"), "expon": ("1", "expon"), "max_gw_storage": ("m", "max_gw_storage"),
    "satpsi": ("m", "soil_params.satpsi"), "wltsmc": ("m m-1", "soil_params.wltsmc"), "alpha_fc": ("1", "alpha_fc"),
    "refkdt": ("1", "refkdt"),
    "a_Xinanjiang_inflection_point_parameter": ("1", "a_Xinanjiang_inflection_point_parameter"),
    "b_Xinanjiang_shape_parameter": ("1", "b_Xinanjiang_shape_parameter"),
    "x_Xinanjiang_shape_parameter": ("1", "x_Xinanjiang_shape_parameter"),
}
#: further per-catchment values from the config -> default
_FIXED = {"soil_params.depth": None, "soil_params.expon": 1.0, "soil_params.expon_secondary": 1.0,
          "soil_storage": None, "gw_storage": None, "urban_decimal_fraction": 0.0, "ice_content_threshold": 0.0}
_DEFAULTS = {"refkdt": 3.0, "a_Xinanjiang_inflection_point_parameter": 0.0, "b_Xinanjiang_shape_parameter": 1.0,
             "x_Xinanjiang_shape_parameter": 1.0}


class OwpCfe:
    """State and step of the CFE structure for the n catchments of one `cfe.CFE` instance."""

    def __init__(self, model, configs: list[CfeConfig]) -> None:
        self.model = model
        n = len(configs)
        v = model._v = {}

        def column(key: str, default) -> np.ndarray:
            return np.array([float(c.get(key, default)) for c in configs], dtype=np.float64)

        for name, (_units, key) in PARAMS.items():
            v[name] = column(key, _DEFAULTS.get(key))
        self.fixed = {key: column(key, default) for key, default in _FIXED.items()}
        self.scheme = np.array([c.scheme for c in configs])
        self.coupled = np.array([bool(c.get("is_sft_coupled", False)) for c in configs])
        self.n_nash = np.array([int(c.get("N_nash")) for c in configs])
        self.nash_init = np.zeros((n, MAX_NASH))
        for i, c in enumerate(configs):
            init = c.get("nash_storage")
            if init:
                self.nash_init[i, : len(init)] = init
        width = max(len(c.get("giuh_ordinates")) for c in configs)
        self.giuh = np.zeros((n, width))
        for i, c in enumerate(configs):
            self.giuh[i, : len(c.get("giuh_ordinates"))] = c.get("giuh_ordinates")
        self.queue = np.zeros((n, width))
        self.nash = np.zeros((n, MAX_NASH))
        self.prev_perc = np.zeros(n)
        for name in OUTPUTS:
            v[name] = np.zeros(n)
        for name in self.inputs():
            v[name] = np.zeros(n)
        v["SURF_RUNOFF_SCHEME"][:] = self.scheme
        self.paths = [c.path for c in configs]
        self.derive()
        self.reset()

    def inputs(self) -> dict[str, str]:
        out = {PRECIP: "mm s-1", PET_FLUX: "mm s-1"}
        if self.coupled.any():
            out |= {ICE_SCHAAKE: "m", ICE_XINANJIANG: "1"}
        return out

    # ---- setup ---------------------------------------------------------------------------------
    def derive(self) -> None:
        v, f = self.model._v, self.fixed
        self._check()
        depth = f["soil_params.depth"]
        self.s_max = v["maxsmc"] * depth
        self.s_wp = v["wltsmc"] * depth
        self.s_fc = phys.cfe_field_capacity_storage(v["maxsmc"], v["b"], v["satpsi"], depth, v["alpha_fc"])
        self.coeff_primary = v["satdk"] * v["slope"] * STEP_SECONDS
        self.kdt = v["refkdt"] * v["satdk"] / phys.REF_SATDK

    def _check(self) -> None:
        v = self.model._v
        rules = [("maxsmc", (v["maxsmc"] > 0) & (v["maxsmc"] <= 1)), ("satdk", v["satdk"] >= 0),
                 ("slope", v["slope"] >= 0), ("b", v["b"] > 1), ("Klf", v["Klf"] >= 0),
                 ("Kn", (v["Kn"] >= 0) & (v["Kn"] <= 1)), ("Cgw", v["Cgw"] >= 0), ("expon", v["expon"] >= 0),
                 ("max_gw_storage", v["max_gw_storage"] > 0), ("satpsi", v["satpsi"] > 0),
                 ("wltsmc", (v["wltsmc"] >= 0) & (v["wltsmc"] < v["maxsmc"])), ("alpha_fc", v["alpha_fc"] > 0),
                 ("refkdt", v["refkdt"] >= 0)]
        for name, ok in rules:
            if not np.all(ok):
                i = int(np.flatnonzero(~ok)[0])
                raise ModelConfigError(f"{self.paths[i]}: parameter {name}={v[name][i]!r} is out of range")

    def reset(self) -> None:
        v, f = self.model._v, self.fixed
        v["SOIL_STORAGE"][:] = np.maximum(f["soil_storage"], 0.0) * v["maxsmc"] * f["soil_params.depth"]
        v["GW_STORAGE"][:] = f["gw_storage"] * v["max_gw_storage"]
        self.nash[:] = self.nash_init
        self.queue[:] = 0.0
        self.prev_perc[:] = 0.0

    # ---- one step ------------------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        v, f = self.model._v, self.fixed
        precip_mm_h = np.maximum(v[PRECIP], 0.0) * 3600.0
        rain = precip_mm_h / 1000.0 * (dt / 3600.0)
        pet = np.maximum(v[PET_FLUX], 0.0) / 1000.0 * dt

        soil0 = v["SOIL_STORAGE"].copy()
        et_rain, rain, pet_left = phys.cfe_et_from_rain(rain, pet)
        et_soil = phys.cfe_et_from_soil(soil0, pet_left, self.s_fc, self.s_wp)
        soil = soil0 - et_soil
        deficit = self.s_max - soil

        runoff, infil = phys.cfe_schaake(rain, deficit, self.kdt, dt / 3600.0)
        if self.coupled.any():
            ice_s = np.where(self.coupled, v[ICE_SCHAAKE], 0.0)
            factor = phys.cfe_schaake_frozen_factor(ice_s, self.s_fc, f["soil_params.depth"], v["maxsmc"],
                                                    f["ice_content_threshold"])
            infil = np.where(rain > 0.0, factor * infil, 0.0)
            runoff = np.where(rain > 0.0, rain - infil, 0.0)
            ice_x = np.where(self.coupled, v[ICE_XINANJIANG], 0.0)
        else:
            ice_x = np.zeros_like(rain)
        if (self.scheme == 2).any():
            xr, xi = phys.cfe_xinanjiang(rain, soil, self.s_fc, self.s_max,
                                         v["a_Xinanjiang_inflection_point_parameter"],
                                         v["b_Xinanjiang_shape_parameter"], v["x_Xinanjiang_shape_parameter"],
                                         f["urban_decimal_fraction"], ice_x)
            runoff = np.where(self.scheme == 2, xr, runoff)
            infil = np.where(self.scheme == 2, xi, infil)

        # infiltration that does not fit in the soil runs off (CFE then marks the soil full)
        over = deficit < infil
        runoff = np.where(over, runoff + (infil - deficit), runoff)
        infil = np.where(over, deficit, infil)
        soil = np.where(over, self.s_max, soil)
        deficit = np.where(over, 0.0, deficit)
        # CFE checks the previous step's percolation against the deficit too
        late = self.prev_perc > deficit
        runoff = np.where(late, runoff + (self.prev_perc - deficit), runoff)
        infil = np.where(late, deficit, infil)

        soil = soil + infil
        perc, lat = phys.cfe_soil_outlets(soil, self.s_fc, self.s_max, self.coeff_primary,
                                          f["soil_params.expon"], v["Klf"], f["soil_params.expon_secondary"])
        gw = v["GW_STORAGE"]
        perc = np.minimum(perc, v["max_gw_storage"] - gw)
        gw = gw + perc
        soil = soil - perc
        soil = soil - lat
        q_gw = phys.cfe_groundwater(gw, v["max_gw_storage"], v["Cgw"], v["expon"])
        gw = gw - q_gw

        giuh = phys.giuh_convolution(self.queue, self.giuh, runoff)
        nash = phys.nash_cascade_explicit(self.nash, v["Kn"], self.n_nash, lat)
        self.prev_perc = perc

        v["RAIN_RATE"][:] = precip_mm_h
        v["DIRECT_RUNOFF"][:] = runoff
        v["GIUH_RUNOFF"][:] = giuh
        v["NASH_LATERAL_RUNOFF"][:] = nash
        v["DEEP_GW_TO_CHANNEL_FLUX"][:] = q_gw
        v["SOIL_TO_GW_FLUX"][:] = perc
        v["Q_OUT"][:] = giuh + nash + q_gw
        v["POTENTIAL_ET"][:] = pet
        v["ACTUAL_ET"][:] = et_rain + et_soil
        v["GW_STORAGE"][:] = gw
        v["SOIL_STORAGE"][:] = soil
        v["SOIL_STORAGE_CHANGE"][:] = soil - soil0
