"""Potential evapotranspiration (PET) from air temperature and incoming shortwave radiation.

Priestley & Taylor (1972), "On the assessment of surface heat flux and evaporation using
large-scale parameters", Mon. Weather Rev. 100(2):81-92:

    λE = α · Δ / (Δ + γ) · (Rn − G)

with the FAO-56 auxiliary relations (Allen et al. 1998, FAO Irrigation and Drainage Paper 56):

    Δ = 4098 · 0.6108 · exp(17.27 T / (T + 237.3)) / (T + 237.3)²   [kPa °C⁻¹]   (eq. 13)
    γ = 0.665e-3 · p                                                   [kPa °C⁻¹]   (eq. 8)
    λ = 2.45e6 J kg⁻¹                                                  (FAO-56, p. 31)

Simplifications, chosen because hourly AORC forcing has no surface energy balance: net
radiation Rn = (1 − albedo) · SW↓ (shortwave only, no net longwave), soil heat flux G = 0.
The result is a water flux in kg m⁻² s⁻¹ = mm s⁻¹, clipped at 0 (no dew).

`PriestleyTaylorPET` exposes this as a BMI model (python_type
`dmod.services.worker.models.pet.PriestleyTaylorPET`) so a `bmi_multi` formulation can feed its
output `water_potential_evaporation_flux` [mm s-1] to the runoff model.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from .array_bmi import ArrayBmi

LATENT_HEAT_J_PER_KG = 2.45e6
KELVIN = 273.15

TEMPERATURE = "land_surface_air__temperature"  # K (AORC TMP_2maboveground)
SHORTWAVE = "land_surface_radiation~incoming~shortwave__energy_flux"  # W m-2 (AORC DSWRF_surface)
PET_FLUX = "water_potential_evaporation_flux"  # mm s-1


def priestley_taylor_mm_s(temp_k: np.ndarray, sw_down: np.ndarray, alpha: np.ndarray,
                          albedo: np.ndarray, pressure_kpa: np.ndarray) -> np.ndarray:
    """PET rate in mm s⁻¹ (elementwise)."""
    t_c = temp_k - KELVIN
    es = 0.6108 * np.exp(17.27 * t_c / (t_c + 237.3))
    delta = 4098.0 * es / ((t_c + 237.3) * (t_c + 237.3))
    gamma = 0.665e-3 * pressure_kpa
    net_rad = (1.0 - albedo) * np.maximum(sw_down, 0.0)
    return np.maximum(alpha * delta / (delta + gamma) * net_rad / LATENT_HEAT_J_PER_KG, 0.0)


class PriestleyTaylorPET(ArrayBmi):
    """BMI PET model. Init config keys (all optional): pt_alpha (1.26), albedo (0.23),
    pressure_kpa (101.3), time_step_seconds (3600)."""

    _component_name = "DMOD Priestley-Taylor PET"
    _outputs: ClassVar[dict[str, str]] = {PET_FLUX: "mm s-1"}
    _params: ClassVar[dict[str, tuple[str, object]]] = {
        "pt_alpha": ("1", 1.26),
        "albedo": ("1", 0.23),
        "pressure_kpa": ("kPa", 101.3),
    }

    def _inputs(self) -> dict[str, str]:
        return {TEMPERATURE: "K", SHORTWAVE: "W m-2"}

    def _configure(self, configs: list[dict]) -> None:
        self.check_keys(configs, {"time_step_seconds"})
        self.set_time_step(configs)
        n = self.n
        self._v = {name: self.param_array(configs, name) for name in self._params}
        self._v[TEMPERATURE] = np.full(n, KELVIN + 15.0)
        self._v[SHORTWAVE] = np.zeros(n)
        self._v[PET_FLUX] = np.zeros(n)

    def _advance(self, dt: float) -> None:
        v = self._v
        v[PET_FLUX][:] = priestley_taylor_mm_s(v[TEMPERATURE], v[SHORTWAVE], v["pt_alpha"], v["albedo"],
                                               v["pressure_kpa"])
