"""Evaluation library: compare ngen nexus output with observed streamflow.

Pure library (no gRPC): `evaluate(...)` → `EvaluationResult`, `write_outputs(result, out_dir)`.
Pieces, one job each: readers/ (ngen CSV + NetCDF, observations), crosswalk, units,
timeseries (window, resampling), align, metrics/ (vectorised engine), result, writers, plots.
"""
from .crosswalk import load_crosswalk
from .evaluate import evaluate
from .metrics import ALL_METRICS, DEFAULT_WEIGHTS, MetricTable, Threshold, compute_metrics
from .outputs import write_outputs
from .readers import (
                      load_observations,
                      load_simulation,
                      read_nexus_csv,
                      read_nexus_csv_dir,
                      read_nexus_netcdf,
                      read_observations,
)
from .result import EvaluationResult, LocationResult
from .units import FT3_TO_M3, to_m3s

__all__ = [
    "ALL_METRICS", "DEFAULT_WEIGHTS", "FT3_TO_M3", "EvaluationResult", "LocationResult", "MetricTable",
    "Threshold", "compute_metrics", "evaluate", "load_crosswalk", "load_observations", "load_simulation",
    "read_nexus_csv", "read_nexus_csv_dir", "read_nexus_netcdf", "read_observations", "to_m3s",
    "write_outputs",
]
