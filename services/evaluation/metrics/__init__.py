"""Vectorised hydrologic metrics over (locations × time) arrays with pairwise missing-value masking."""
from .categorical import CATEGORICAL
from .engine import MetricTable, compute_metrics
from .registry import ALL_METRICS, CONTINUOUS, SCORE, select_metrics
from .scoring import DEFAULT_WEIGHTS, SKILL
from .thresholds import Threshold, parse_thresholds

__all__ = ["ALL_METRICS", "CATEGORICAL", "CONTINUOUS", "DEFAULT_WEIGHTS", "SCORE", "SKILL", "MetricTable",
           "Threshold", "compute_metrics", "parse_thresholds", "select_metrics"]
