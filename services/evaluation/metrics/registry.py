"""Metric names, their order in outputs, and how names are selected."""
from __future__ import annotations

from collections.abc import Iterable

from .categorical import CATEGORICAL

# Output order. peak_timing_error is in hours; rmse/mae in m3/s; volume_error in m³; pbias in %.
CONTINUOUS = (
    "nse", "nnse", "kge", "kge_prime", "pearson_r", "kge_alpha", "kge_beta", "kge_gamma",
    "pbias", "rmse", "mae", "volume_error", "peak_flow_error", "peak_timing_error",
)
SCORE = "score"
ALL_METRICS = (*CONTINUOUS, *CATEGORICAL, SCORE)
ALIASES = {"r": "pearson_r", "kge'": "kge_prime", "kgeprime": "kge_prime", "percent_bias": "pbias",
           "bias": "frequency_bias", "fbias": "frequency_bias", "gss": "ets", "acc": "accuracy",
           "ve": "volume_error", "peak_timing_error_hours": "peak_timing_error"}


def select_metrics(metrics: Iterable[str] | None, have_thresholds: bool) -> list[str]:
    """Requested names → canonical names in output order. None = everything (categorical only when
    thresholds are given). Unknown names, or categorical names without thresholds, are errors."""
    if metrics is None:
        return [m for m in ALL_METRICS if have_thresholds or m not in CATEGORICAL]
    if isinstance(metrics, str):
        metrics = [metrics]
    wanted = set()
    for name in metrics:
        key = ALIASES.get(name.strip().lower(), name.strip().lower())
        if key not in ALL_METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(ALL_METRICS)}")
        wanted.add(key)
    if not have_thresholds and wanted & set(CATEGORICAL):
        raise ValueError(f"categorical metrics ({', '.join(sorted(wanted & set(CATEGORICAL)))}) need thresholds")
    if not wanted:
        raise ValueError("no metrics requested")
    return [m for m in ALL_METRICS if m in wanted]
