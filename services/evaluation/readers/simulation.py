"""Pick the right reader for a simulation source and return frame (time × nexus id) in m3/s."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from ..timeseries import frame_from_series, normalize_frame
from .ngen_csv import read_nexus_csv, read_nexus_csv_dir
from .ngen_netcdf import read_nexus_netcdf


def load_simulation(source, nexus_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """`source`: a DataFrame (time × nexus), ``{nexus: Series}``, a directory of ngen
    ``<nex-id>_output.csv`` files, one such file, or a NetCDF file (``.nc``/``.nc4``/``.netcdf``).
    `nexus_ids` limits what a directory read touches (ignored for the other sources)."""
    if isinstance(source, pd.DataFrame):
        return normalize_frame(source)
    if isinstance(source, Mapping):
        return frame_from_series(source)
    path = Path(source)
    if path.is_dir():
        return read_nexus_csv_dir(path, nexus_ids)
    if not path.is_file():
        raise FileNotFoundError(f"simulation output not found: {path}")
    if path.suffix.lower() in (".nc", ".nc4", ".netcdf", ".cdf"):
        return read_nexus_netcdf(path)
    series = read_nexus_csv(path)
    return normalize_frame(series.to_frame())
