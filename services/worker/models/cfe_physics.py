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


# ---- the NOAA-OWP CFE structure (used when the init config is a CFE `key=value` file) ---------
# Written from the method as published in NOAA-OWP/cfe (Ogden's CFE, state-space form): the same
# processes in the same order, per hourly step, with every depth in metres per step.

#: constants of CFE's field-capacity storage integral
STANDARD_ATMOSPHERE_PA = 101325.0
WATER_SPECIFIC_WEIGHT = 9810.0  # N m-3


def cfe_field_capacity_storage(smcmax, bb, satpsi, depth, alpha_fc):
    """Soil storage (m) at field capacity: the water held in a column of depth D whose water content
    follows the Clapp-Hornberger retention curve hydrostatically above a point at field-capacity
    suction (alpha_fc atmospheres of head, measured 0.5 m above the bottom). Integrating
    θ(h) = smcmax · (h/satpsi)^(−1/b) over the head range [Ω, Ω + D], Ω = alpha_fc·p_atm/γ_w − 0.5:

        S_fc = smcmax · satpsi^(1/b) · [(Ω + D)^(1 − 1/b) − Ω^(1 − 1/b)] / (1 − 1/b)
    """
    omega = alpha_fc * STANDARD_ATMOSPHERE_PA / WATER_SPECIFIC_WEIGHT - 0.5
    p = 1.0 - 1.0 / bb
    integral = np.power(omega + depth, p) / p - np.power(omega, p) / p
    return smcmax * np.power(1.0 / satpsi, -1.0 / bb) * integral


def cfe_et_from_rain(rain, pet):
    """Wet canopy first: rain of the step evaporates up to PET.
    Returns (evaporated, rain left, PET left)."""
    et = np.where(rain > 0.0, np.minimum(rain, pet), 0.0)
    return et, rain - et, np.where(rain > 0.0, pet - et, pet)


def cfe_et_from_soil(storage, pet_left, s_fc, s_wp):
    """Soil AET: the remaining PET above field capacity; a linear (Budyko-type) reduction between
    wilting point and field capacity; nothing at or below wilting point."""
    beta = np.where(storage >= s_fc, 1.0, (storage - s_wp) / np.where(s_fc > s_wp, s_fc - s_wp, 1.0))
    et = np.minimum(beta * pet_left, storage)
    return np.where((storage > s_wp) & (pet_left > 0.0), et, 0.0)


def cfe_schaake(water, deficit, kdt_per_day, dt_hours):
    """Schaake et al. (1996) partition as CFE applies it: Ic = deficit·(1 − exp(−Kdt·Δt[d])),
    I = P·Ic/(P + Ic), R = P − I (clipped at 0); all runoff when the deficit is negative.
    Returns (runoff, infiltration); zero where P ≤ 0."""
    ic = deficit * (1.0 - np.exp(-kdt_per_day * (dt_hours / 24.0)))
    denom = water + ic
    infil = water * (ic / np.where(denom != 0.0, denom, 1.0))
    runoff = np.maximum(water - infil, 0.0)
    runoff = np.where(deficit < 0.0, water, runoff)
    runoff = np.where(water > 0.0, runoff, 0.0)
    return runoff, np.where(water > 0.0, water - runoff, 0.0)


def cfe_schaake_frozen_factor(ice_fraction, s_fc, depth, smcmax, ice_threshold):
    """Koren et al. (1999) frozen-ground reduction of infiltration used with Schaake (NOAH-MP's
    FRZX/ACRT form with CVFRZ = 3); 1 where the ice fraction is ≤ 0.01."""
    cv = 3
    frz_fact = smcmax / (s_fc / depth) * (0.412 / 0.468)
    acrt = cv * (ice_threshold * frz_fact) / np.where(ice_fraction > 0.0, ice_fraction, 1.0)
    total = np.ones_like(acrt)
    for i1 in range(1, cv):
        k = 1
        for i2 in range(i1 + 1, cv):
            k *= i2
        total = total + np.power(acrt, cv - i1) / k
    return np.where(ice_fraction > 1.0e-2, 1.0 - np.exp(-acrt) * total, 1.0)


def cfe_xinanjiang(water, storage, s_fc, s_max, a, b, x, urban_fraction, ice_fraction):
    """Xinanjiang partition (Knoben et al. 2019 form, as in CFE): tension water up to field
    capacity, free water above; impervious share = 0.95·urban + ice on the rest.
    Returns (runoff, infiltration); zero where P ≤ 0."""
    free = storage - s_fc
    tension = np.where(free > 0.0, s_fc, storage)
    free = np.maximum(free, 0.0)
    max_free = s_max - s_fc
    max_tension = s_fc
    ok = (max_free > 0.0) & (max_tension > 0.0)
    free = np.minimum(free, np.where(ok, max_free, free))
    tension = np.minimum(tension, np.where(ok, max_tension, tension))
    imperv = urban_fraction * 0.95 + (1.0 - urban_fraction) * ice_fraction
    ratio = tension / np.where(ok, max_tension, 1.0)
    dry = np.maximum(1.0 - ratio, 0.0)
    low = np.power(0.5 - a, 1.0 - b) * np.power(dry, b)
    high = 1.0 - np.power(0.5 + a, 1.0 - b) * np.power(dry, b)
    pervious = (1.0 - imperv) * water * np.where(ratio <= 0.5 - a, low, high)
    fdry = np.maximum(1.0 - free / np.where(ok, max_free, 1.0), 0.0)
    runoff = pervious * (1.0 - np.power(fdry, x)) + imperv * water
    runoff = np.where(ok, runoff, 0.95 * water)
    runoff = np.clip(runoff, 0.0, water)
    runoff = np.where(water > 0.0, runoff, 0.0)
    return runoff, np.where(water > 0.0, water - runoff, 0.0)


def cfe_soil_outlets(storage, threshold, s_max, coeff_primary, expon_primary, coeff_secondary, expon_secondary):
    """Two-outlet nonlinear soil reservoir, both outlets activated above field capacity:

        primary   = c1 · ((S − S_fc)/(S_max − S_fc))^e1, at most S − S_fc      (percolation)
        secondary = c2 · ((S − S_fc)/(S_max − S_fc))^e2, at most S − S_fc − primary (lateral)

    Returns (primary, secondary)."""
    above = storage - threshold
    x = np.maximum(above, 0.0) / (s_max - threshold)
    primary = np.where(above > 0.0, np.minimum(coeff_primary * np.power(x, expon_primary), above), 0.0)
    secondary = np.where(above > 0.0,
                         np.minimum(coeff_secondary * np.power(x, expon_secondary), above - primary), 0.0)
    return primary, secondary


def cfe_groundwater(storage, g_max, coeff, expon):
    """NWM exponential groundwater store: Q = Cgw·(exp(expon·G/Gmax) − 1), at most G."""
    q = coeff * (np.exp(expon * storage / g_max) - 1.0)
    return np.minimum(q, storage)


def giuh_convolution(queue, ordinates, runoff):
    """Discrete convolution with the GIUH: the runoff of the step is spread over the coming steps
    by the ordinates (queue[:, i] holds what leaves i steps from now). Updates `queue` (n, width)
    in place and returns what leaves this step."""
    queue += ordinates * runoff[:, None]
    out = queue[:, 0].copy()
    queue[:, :-1] = queue[:, 1:]
    queue[:, -1] = 0.0
    return out


def nash_cascade_explicit(stores, k, n_res, inflow):
    """Nash cascade in CFE's explicit form: each reservoir releases k·S of its storage at the start
    of the step, then receives the inflow (reservoir 1) or the release of the one above. Columns
    at or past a catchment's reservoir count stay untouched. Returns the last reservoir's release."""
    q_prev = inflow
    out = np.zeros_like(inflow)
    for j in range(stores.shape[1]):
        active = j < n_res
        q = np.where(active, k * stores[:, j], 0.0)
        stores[:, j] = np.where(active, stores[:, j] - q + q_prev, stores[:, j])
        out = np.where(j == n_res - 1, q, out)
        q_prev = q
    return out
