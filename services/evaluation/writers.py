"""Write an `EvaluationResult` as JSON and CSV tables (NaN → null in JSON, empty cell in CSV)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .result import EvaluationResult


def write_json(result: EvaluationResult, path) -> Path:
    """Everything (config, summary, aggregate, per-location metrics/notes/errors) as one JSON file."""
    path = Path(path)
    path.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False, default=str))
    return path


def write_locations_csv(result: EvaluationResult, path) -> Path:
    """One row per location: gage_id, nexus_id, n_pairs, error, <metrics...>, thr:<label>..."""
    path = Path(path)
    frame = result.to_frame()
    labels = sorted({lab for loc in result.locations for lab in loc.thresholds})
    for lab in labels:
        frame[f"threshold@{lab}"] = [loc.thresholds.get(lab, math.nan) for loc in result.locations]
    frame.to_csv(path, index=False, float_format="%.6g", na_rep="")
    return path


def write_aggregate_csv(result: EvaluationResult, path) -> Path:
    """Rows mean / median / count, one column per metric."""
    path = Path(path)
    frame = pd.DataFrame(result.aggregate).T.reindex(columns=result.metric_names)
    frame.index.name = "statistic"
    frame.to_csv(path, float_format="%.6g", na_rep="")
    return path
