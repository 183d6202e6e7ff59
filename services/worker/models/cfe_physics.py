"""Elementwise process equations of DMOD's CFE-style runoff model (see `cfe.py`).

All depths are metres of water over the catchment, per model time step. Every function works on
numpy arrays (one element per catchment) with elementwise operations only, so results do not
depend on how catchments are batched.
"""
from __future__ import annotations

import numpy as np

#: Schaake et al. (1996) reference saturated conductivity used to scale REFKDT (m s-1), as in NWM.
REF_SATDK = 2.0e-6


def rain_evaporation(rain: np.ndarray, pet: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PET is met first from rainfall of the step (CFE convention).

    Returns (evaporated, remaining rain, remaining PET)."""
    evap = np.minimum(rain, pet)
    return evap, rain - evap, pet - evap


def schaake_capacity_fraction(kdt_per_day: np.ndarray, dt_days: float) -> np.ndarray:
    """1 − exp(−Kdt · Δt): the part of the soil deficit that can infiltrate in one step."""
    return 1.0 - np.exp(-kdt_per_day * dt_days)


def schaake_partition(water_in: np.ndarray, deficit: np.ndarray, capacity_fraction: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Schaake et al. (1996), J. Geophys. Res. 101(D3):7461-7475, "Simple water balance model for
    estimating runoff at different spatial and temporal scales":

        Ic = D · (1 − exp(−Kdt · Δt))      infiltration capacity of the step (D = soil deficit)
        I  = P · Ic / (P + Ic)              infiltration
        R  = P − I                          surface (infiltration-excess) runoff

    `capacity_fraction` is 1 − exp(−Kdt·Δt) (constant per catchment, see
    schaake_capacity_fraction). Returns (runoff, infiltration)."""
    ic = deficit * capacity_fraction
    denom = water_in + ic
    safe = np.where(denom > 0.0, denom, 1.0)
    infil = np.where(denom > 0.0, water_in * ic / safe, 0.0)
    return water_in - infil, infil


def soil_evapotranspiration(storage: np.ndarray, pet: np.ndarray, s_fc: np.ndarray,
                            s_wp: np.ndarray) -> np.ndarray:
    """Actual ET from the soil: PET scaled by a linear moisture-stress factor
    β = (S − S_wp)/(S_fc − S_wp) clipped to [0, 1] (the Budyko/NWM-style reduction), never
    taking the soil below wilting point."""
    beta = np.clip((storage - s_wp) / (s_fc - s_wp), 0.0, 1.0)
    return np.minimum(pet * beta, np.maximum(storage - s_wp, 0.0))


def soil_outflows(storage: np.ndarray, s_fc: np.ndarray, s_max: np.ndarray, perc_coeff: np.ndarray,
                  lat_coeff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CFE's conceptual soil reservoir with two outlets above field capacity (Ogden et al.,
    NWM 3.0 "Conceptual Functional Equivalent"): with x = (S − S_fc)/(S_max − S_fc) in [0, 1],

        percolation = satdk · slope · Δt · x          (primary outlet, to groundwater)
        lateral     = Klf · Δt · x                    (secondary outlet, to the Nash cascade)

    both scaled down together if they would draw the store below field capacity.
    Returns (percolation, lateral)."""
    x = np.clip((storage - s_fc) / (s_max - s_fc), 0.0, 1.0)
    perc = perc_coeff * x
    lat = lat_coeff * x
    avail = np.maximum(storage - s_fc, 0.0)
    demand = perc + lat
    scale = np.where(demand > avail, avail / np.where(demand > 0.0, demand, 1.0), 1.0)
    return perc * scale, lat * scale


def groundwater_outflow(storage: np.ndarray, g_max: np.ndarray, cgw_step: np.ndarray,
                        expon: np.ndarray) -> np.ndarray:
    """Nonlinear (exponential) groundwater bucket of the NWM / WRF-Hydro (Gochis et al. 2020,
    WRF-Hydro Technical Description, baseflow bucket):

        Q = Cgw · Δt · (exp(expon · G / Gmax) − 1),  at most G; storage above Gmax spills.

    `storage` already includes this step's recharge. Returns the outflow."""
    q = cgw_step * (np.exp(expon * np.minimum(storage / g_max, 1.0)) - 1.0)
    q = np.minimum(q, storage)
    return q + np.maximum(storage - q - g_max, 0.0)


def cascade_fractions(frac: np.ndarray, n_res: np.ndarray, width: int) -> np.ndarray:
    """(n, width) per-reservoir release fractions; columns past a catchment's own reservoir
    count release everything (fraction 1), which passes flow through exactly: s − 1·s = 0."""
    cols = np.arange(width)[None, :]
    return np.where(cols < n_res[:, None], frac[:, None], 1.0)


def nash_cascade(stores: np.ndarray, fractions: np.ndarray, inflow: np.ndarray) -> np.ndarray:
    """Nash (1957) cascade of linear reservoirs, "The form of the instantaneous unit hydrograph",
    IAHS Publ. 45(3):114-121. Inflow enters reservoir 1; reservoir j releases the fraction
    1 − exp(−k·Δt) of its storage (exact step solution of dS/dt = −kS) into j+1; the last one's
    release leaves the catchment. `fractions` comes from `cascade_fractions`. Updates `stores`
    in place and returns the outflow."""
    q = inflow
    for j in range(stores.shape[1]):
        s = stores[:, j] + q
        q = fractions[:, j] * s
        stores[:, j] = s - q
    return q
