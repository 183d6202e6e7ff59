"""Categorical (event / non-event) scores from a 2×2 contingency table per location.

Over the valid pairs of a location, with an event meaning ``value >= threshold``:

    a = hits            (observed event, simulated event)
    b = false alarms    (no observed event, simulated event)
    c = misses          (observed event, no simulated event)
    d = correct negatives,   n = a + b + c + d

    POD  = a / (a + c)                 probability of detection        (1 best)
    FAR  = b / (a + b)                 false alarm ratio               (0 best)
    POFD = b / (b + d)                 probability of false detection  (0 best)
    CSI  = a / (a + b + c)             critical success index          (1 best)
    ETS  = (a − aᵣ) / (a + b + c − aᵣ), aᵣ = (a + b)(a + c) / n
                                       equitable threat score, Gilbert skill score (1 best, 0 = chance)
    frequency_bias = (a + b) / (a + c) (1 best; > 1 too many simulated events)
    accuracy = (a + d) / n             fraction correct                (1 best)

A zero denominator gives NaN with a note (e.g. no observed events → POD undefined).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .continuous import Notes
from .stats import row_count

CATEGORICAL = ("pod", "far", "pofd", "csi", "ets", "frequency_bias", "accuracy")


@dataclass
class Contingency:
    a: np.ndarray  # hits
    b: np.ndarray  # false alarms
    c: np.ndarray  # misses
    d: np.ndarray  # correct negatives

    @property
    def n(self) -> np.ndarray:
        return self.a + self.b + self.c + self.d


def contingency(sim: np.ndarray, obs: np.ndarray, mask: np.ndarray, threshold: np.ndarray,
                buffers: tuple[np.ndarray, np.ndarray] | None = None) -> Contingency:
    """Counts for each row; `threshold` has one value per row (NaN → no events counted).
    `buffers`: two bool scratch arrays shaped like `sim` (avoids allocating per call)."""
    obs_event, sim_event = buffers or (np.empty(sim.shape, bool), np.empty(sim.shape, bool))
    t = threshold[:, None]
    np.greater_equal(obs, t, out=obs_event)  # NaN compares False, no warning
    obs_event &= mask
    np.greater_equal(sim, t, out=sim_event)
    sim_event &= mask
    n_obs_ev = row_count(obs_event)
    n_sim_ev = row_count(sim_event)
    np.logical_and(obs_event, sim_event, out=obs_event)
    a = row_count(obs_event)
    b, c = n_sim_ev - a, n_obs_ev - a
    d = row_count(mask) - a - b - c
    return Contingency(a, b, c, d)


def _ratio(num, den, reason: str, notes: Notes) -> np.ndarray:
    num, den = np.asarray(num, float), np.asarray(den, float)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    zero = den == 0
    if zero.any():
        notes.append((zero, reason))
    return out


def scores(ct: Contingency, wanted=CATEGORICAL) -> dict[str, tuple[np.ndarray, Notes]]:
    """The requested categorical scores (names from CATEGORICAL) with NaN notes."""
    a, b, c, d = ct.a, ct.b, ct.c, ct.d
    n = ct.n
    out: dict[str, tuple[np.ndarray, Notes]] = {}
    for name in wanted:
        notes: Notes = []
        if name == "pod":
            v = _ratio(a, a + c, "no observed events (a + c = 0)", notes)
        elif name == "far":
            v = _ratio(b, a + b, "no simulated events (a + b = 0)", notes)
        elif name == "pofd":
            v = _ratio(b, b + d, "no observed non-events (b + d = 0)", notes)
        elif name == "csi":
            v = _ratio(a, a + b + c, "no observed or simulated events (a + b + c = 0)", notes)
        elif name == "ets":
            a_r = _ratio((a + b) * (a + c), n, "no pairs", [])
            v = _ratio(a - a_r, a + b + c - a_r, "ETS denominator a + b + c − aᵣ = 0", notes)
        elif name == "frequency_bias":
            v = _ratio(a + b, a + c, "no observed events (a + c = 0)", notes)
        elif name == "accuracy":
            v = _ratio(a + d, n, "no pairs", notes)
        else:
            raise ValueError(f"unknown categorical score {name!r}")
        out[name] = (v, notes)
    return out
