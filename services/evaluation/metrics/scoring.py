"""Weighted overall score in [0, 1] (1 = perfect) combining several metrics per location.

Each metric is first mapped to a skill in [0, 1], higher better:

    nse, kge, kge_prime          x ↦ 1 / (2 − x)          (NNSE form: 1 → 1, 0 → 0.5, −∞ → 0)
    nnse, pod, csi, accuracy     x ↦ x
    pearson_r, ets               x ↦ max(x, 0)            (no credit for worse than chance / anti-correlation)
    far, pofd                    x ↦ 1 − x
    pbias                        x ↦ max(0, 1 − |x| / 100)
    peak_flow_error              x ↦ max(0, 1 − |x|)
    peak_timing_error (hours)    x ↦ 1 / (1 + |x| / 24)  (a day late → 0.5)
    kge_alpha, kge_beta,
    kge_gamma, frequency_bias    x ↦ min(x, 1/x) for x > 0, else 0   (ratio, 1 best, 2× or ½× → 0.5)

rmse, mae and volume_error carry units and have no scale-free mapping, so they cannot be weighted.

score = Σ wᵢ·skillᵢ / Σ wᵢ over the metrics that are finite for that location (weights are
renormalised per location, so an undefined KGE does not drag the score to 0; the score is NaN
only when none of the weighted metrics is defined). A categorical weight is shared equally by
all thresholds, so adding thresholds does not change the categorical share.

DEFAULT_WEIGHTS (sum 1): kge 0.25, nse 0.15, pbias 0.15, csi 0.15, pearson_r 0.10,
peak_flow_error 0.10, peak_timing_error 0.10. Without thresholds the csi share is renormalised away.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .categorical import CATEGORICAL

DEFAULT_WEIGHTS: dict[str, float] = {
    "kge": 0.25, "nse": 0.15, "pbias": 0.15, "csi": 0.15,
    "pearson_r": 0.10, "peak_flow_error": 0.10, "peak_timing_error": 0.10,
}


def _ratio_skill(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.minimum(x, 1.0 / x), np.where(np.isnan(x), np.nan, 0.0))


SKILL = {
    "nse": lambda x: 1.0 / (2.0 - x),
    "kge": lambda x: 1.0 / (2.0 - x),
    "kge_prime": lambda x: 1.0 / (2.0 - x),
    "nnse": lambda x: x, "pod": lambda x: x, "csi": lambda x: x, "accuracy": lambda x: x,
    "pearson_r": lambda x: np.maximum(x, 0.0), "ets": lambda x: np.maximum(x, 0.0),
    "far": lambda x: 1.0 - x, "pofd": lambda x: 1.0 - x,
    "pbias": lambda x: np.maximum(0.0, 1.0 - np.abs(x) / 100.0),
    "peak_flow_error": lambda x: np.maximum(0.0, 1.0 - np.abs(x)),
    "peak_timing_error": lambda x: 1.0 / (1.0 + np.abs(x) / 24.0),
    "kge_alpha": _ratio_skill, "kge_beta": _ratio_skill, "kge_gamma": _ratio_skill,
    "frequency_bias": _ratio_skill,
}


def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Check names and signs; zero weights are dropped."""
    out = {}
    for name, w in weights.items():
        if name not in SKILL:
            raise ValueError(f"metric {name!r} cannot be weighted in the score "
                             f"(weightable: {', '.join(sorted(SKILL))})")
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"weight for {name} must be a finite number >= 0, got {w}")
        if w > 0:
            out[name] = float(w)
    if not out:
        raise ValueError("score weights are all zero")
    return out


def weighted_score(values: Mapping[str, np.ndarray], weights: Mapping[str, float],
                   labels: list[str], n_rows: int) -> np.ndarray:
    """Per-row score from computed metric arrays. `values` keys are metric names, categorical ones
    as ``"<name>@<threshold label>"``; `labels` lists the thresholds in use."""
    num = np.zeros(n_rows)
    den = np.zeros(n_rows)
    for name, w in weights.items():
        keys = [f"{name}@{lab}" for lab in labels] if name in CATEGORICAL else [name]
        for key in keys:
            skill = SKILL[name](values[key])
            ok = np.isfinite(skill)
            share = w / len(keys)
            num += np.where(ok, skill, 0.0) * share
            den += ok * share
    out = np.full(n_rows, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out
