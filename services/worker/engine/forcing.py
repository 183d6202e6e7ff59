"""Load the forcing every local catchment needs, on the run's time grid.

Result: {forcing variable: array (K steps, n local catchments)} so that step k of a variable is
one contiguous row. Catchments are grouped by (provider, path, pattern) so a shared NetCDF file
or single CSV file is read once. Entries a catchment does not need stay NaN.
"""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np

from .errors import ConfigError
from .forcing_csv import DEFAULT_PATTERN, DirectoryIndex, read_csv_forcing
from .forcing_netcdf import read_netcdf_forcing
from .realization import ForcingSpec, resolve
from .timegrid import TimeGrid


def load_forcing(catchment_ids: list[str], specs: list[ForcingSpec], needs: list[tuple[str, ...]],
                 grid: TimeGrid, cwd: str) -> dict[str, np.ndarray]:
    n, k = len(catchment_ids), grid.n_steps
    variables = sorted({v for need in needs for v in need})
    groups = _groups(catchment_ids, specs, needs, cwd)
    if len(groups) == 1:
        (provider, path, _), members = next(iter(groups.items()))
        if provider == "NetCDF" and members == list(range(n)):  # the whole domain from one file: no copy
            return read_netcdf_forcing(path, catchment_ids, variables, grid)
    out = {v: np.full((k, n), np.nan) for v in variables}
    labels = grid.labels() if any(key[0] == "CsvPerFeature" for key in groups) else []
    for (provider, path, pattern), members in groups.items():
        if provider == "NetCDF":
            _load_netcdf(out, path, members, catchment_ids, needs, grid)
        else:
            _load_csv(out, path, pattern, members, catchment_ids, needs, grid, labels)
    return out


def _groups(catchment_ids, specs, needs, cwd) -> dict[tuple, list[int]]:
    """Catchments by (provider, resolved path, pattern)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for j, spec in enumerate(specs):
        if not needs[j]:
            continue
        if spec.provider == "NullForcingProvider":
            raise ConfigError(f"NullForcingProvider supplies nothing but the model needs {', '.join(needs[j])}",
                              catchment=catchment_ids[j], field=f"{spec.field}.provider")
        groups[(spec.provider, resolve(spec.path, cwd), spec.file_pattern or DEFAULT_PATTERN)].append(j)
    return groups


def _load_netcdf(out, path, members, catchment_ids, needs, grid) -> None:
    group_vars = sorted({v for j in members for v in needs[j]})
    data = read_netcdf_forcing(path, [catchment_ids[j] for j in members], group_vars, grid)
    cols = np.asarray(members)
    for v, values in data.items():
        out[v][:, cols] = values


def _load_csv(out, path, pattern, members, catchment_ids, needs, grid, labels) -> None:
    if os.path.isfile(path):
        # one file for every catchment of the group: read it once
        group_vars = sorted({v for j in members for v in needs[j]})
        data = read_csv_forcing(path, group_vars, grid, labels, catchment_ids[members[0]])
        for j in members:
            for v in needs[j]:
                out[v][:, j] = data[v]
        return
    if not os.path.isdir(path):
        raise ConfigError(f"forcing path {path} does not exist", catchment=catchment_ids[members[0]],
                          field="forcing.path")
    index = DirectoryIndex(path)
    for j in members:
        cid = catchment_ids[j]
        file = index.match(cid, pattern)
        if file is None:
            raise ConfigError(f"no forcing file in {path} matches {pattern.replace('{{id}}', cid)!r}",
                              catchment=cid, field="forcing.file_pattern")
        data = read_csv_forcing(file, list(needs[j]), grid, labels, cid)
        for v, values in data.items():
            out[v][:, j] = values
