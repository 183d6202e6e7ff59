"""Flow unit names and conversion to m3/s, the unit every evaluation runs in."""
from __future__ import annotations

import numpy as np

# Exact: 1 ft = 0.3048 m, so 1 ft3 = 0.3048**3 m3 = 0.028316846592 m3 (0.0283168466 rounded).
FT3_TO_M3 = 0.3048**3

_ALIASES = {
    "m3/s": "m3/s", "m^3/s": "m3/s", "m3s-1": "m3/s", "m3.s-1": "m3/s", "cms": "m3/s", "cumecs": "m3/s",
    "ft3/s": "ft3/s", "ft^3/s": "ft3/s", "ft3s-1": "ft3/s", "ft3.s-1": "ft3/s", "cfs": "ft3/s",
}
_FACTORS = {"m3/s": 1.0, "ft3/s": FT3_TO_M3}


def normalize_unit(unit: str) -> str:
    """Canonical name ("m3/s" or "ft3/s") for a declared flow unit; ValueError if unknown.

    Spaces and case are ignored, so "ft3 s-1", "CFS" and "m^3/s" are all accepted.
    """
    key = str(unit).strip().lower().replace(" ", "")
    if key not in _ALIASES:
        raise ValueError(f"unknown flow unit {unit!r}; use one of m3/s (cms) or ft3/s (cfs)")
    return _ALIASES[key]


def to_m3s(values, unit: str):
    """Values converted from `unit` to m3/s (numpy array, pandas object or scalar; NaN stays NaN)."""
    factor = _FACTORS[normalize_unit(unit)]
    if factor == 1.0:
        return values
    return values * factor if not isinstance(values, list) else np.asarray(values, float) * factor
