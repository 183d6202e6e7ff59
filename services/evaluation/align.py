"""Put simulation and observations for every crosswalk pair on one time grid as 2-D arrays.

Order of operations (each is explicit, nothing is filled in):
1. keep only the columns the crosswalk needs;
2. cut each frame to the time window (inclusive both ends);
3. resample each frame to interval means (a bin with no values stays NaN);
4. outer-join the two time indexes: pairs exist only where both have a finite value, and the
   metrics' pairwise deletion drops the rest (no interpolation, no gap filling);
5. gather one row per crosswalk entry: row i is gage i (crosswalk order) against its nexus.
Locations whose gage or nexus is absent get an all-NaN row and an error message.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .crosswalk import match_gages
from .timeseries import apply_window, resample_mean


@dataclass
class AlignedSeries:
    times: pd.DatetimeIndex      # common grid, UTC-naive
    gage_ids: list[str]          # row order
    nexus_ids: list[str]
    sim: np.ndarray              # (locations, time) m3/s, NaN missing
    obs: np.ndarray
    missing: dict[int, str] = field(default_factory=dict)  # row → why it has no data source


def _rows(frame: pd.DataFrame, ids: list[str], index: pd.DatetimeIndex) -> np.ndarray:
    """Rows of `frame` (time × id) for `ids` on `index`, as a C-contiguous (len(ids), len(index))
    array; ids without a column are all-NaN rows. A column used by several ids is repeated."""
    wanted = list(dict.fromkeys(i for i in ids if i in frame.columns))
    if not wanted:
        return np.full((len(ids), len(index)), np.nan)
    block = frame[wanted].reindex(index).to_numpy(dtype="float64").T  # (id, time)
    pos = {c: k for k, c in enumerate(wanted)}
    take = np.array([pos.get(i, 0) for i in ids], dtype=np.int64)
    if len(wanted) == len(ids) and np.array_equal(take, np.arange(len(ids))) and block.flags.c_contiguous:
        return block  # already one row per id in order: no copy (callers only read it)
    # np.take writes a fresh C-ordered array in one pass (much faster than fancy assignment).
    out = np.take(block, take, axis=0)
    absent = [k for k, i in enumerate(ids) if i not in pos]
    out[absent] = np.nan
    return out


def align(sim: pd.DataFrame, obs: pd.DataFrame, crosswalk: dict[str, str], window=None,
          resample: str | None = None) -> AlignedSeries:
    """Aligned arrays for every crosswalk pair (see module docstring)."""
    gages = list(crosswalk)
    nexuses = [crosswalk[g] for g in gages]
    sim = sim[[c for c in dict.fromkeys(nexuses) if c in sim.columns]]
    # Observation column for each crosswalk gage (tolerates "1013500" vs "01013500").
    found = match_gages(gages, obs.columns)
    cols = list(dict.fromkeys(found.values()))
    obs = obs[cols]
    obs_ids = {g: found[g] for g in gages if g in found}
    sim = resample_mean(apply_window(sim, window), resample)
    obs = resample_mean(apply_window(obs, window), resample)
    index = sim.index.union(obs.index)
    missing = {}
    for i, (g, n) in enumerate(zip(gages, nexuses)):
        why = []
        if g not in obs_ids:
            why.append("no observations for this gage")
        if n not in sim.columns:
            why.append(f"no simulation output for nexus {n}")
        if why:
            missing[i] = "; ".join(why)
    return AlignedSeries(times=index, gage_ids=gages, nexus_ids=nexuses, sim=_rows(sim, nexuses, index),
                         obs=_rows(obs, [obs_ids.get(g, "") for g in gages], index), missing=missing)
