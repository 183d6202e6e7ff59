"""`write_outputs`: the standard set of evaluation files in one directory."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .plots import write_hydrographs
from .result import EvaluationResult
from .writers import write_aggregate_csv, write_json, write_locations_csv


def write_outputs(result: EvaluationResult, out_dir, plots: bool = True,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, object]:
    """Write into `out_dir` (created if needed):

    evaluation.json   full result (result.to_dict())
    locations.csv     one row per location
    aggregate.csv     mean / median / count per metric
    plots/<gage>__<nexus>.png   hydrographs, when `plots` (needs result.series)

    Returns ``{"json": path, "locations_csv": path, "aggregate_csv": path, "plots": [paths]}``.
    `progress(done, total)` reports plot progress.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, object] = {
        "json": write_json(result, out / "evaluation.json"),
        "locations_csv": write_locations_csv(result, out / "locations.csv"),
        "aggregate_csv": write_aggregate_csv(result, out / "aggregate.csv"),
        "plots": write_hydrographs(result, out / "plots", progress=progress) if plots else [],
    }
    return written
