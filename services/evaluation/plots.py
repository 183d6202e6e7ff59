"""Hydrograph PNGs: observed vs simulated flow, one file per location.

Uses the Agg backend (no display needed) and one reused figure, since creating a figure per
location dominates the cost when thousands of plots are written.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .result import EvaluationResult, LocationResult

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def plot_filename(loc: LocationResult) -> str:
    """File-system safe name: ``<gage>__<nexus>.png``."""
    return f"{_UNSAFE.sub('_', loc.gage_id)}__{_UNSAFE.sub('_', loc.nexus_id)}.png"


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.3f}"


def plot_title(loc: LocationResult) -> str:
    head = f"Gage {loc.gage_id} ↔ {loc.nexus_id}"
    if loc.error:
        return f"{head}\n{loc.error}"
    return f"{head}\nNSE {_fmt(loc.metrics.get('nse'))}   KGE {_fmt(loc.metrics.get('kge'))}   n = {loc.n_pairs}"


def write_hydrographs(result: EvaluationResult, out_dir, progress: Callable[[int, int], None] | None = None,
                      dpi: int = 100) -> list[Path]:
    """One PNG per location with any data; locations with neither series are skipped."""
    data = result.series
    if data is None:
        raise ValueError("result has no aligned series: call evaluate(..., keep_series=True) to plot")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 4))
    written = []
    total = len(result.locations)
    try:
        for i, loc in enumerate(result.locations):
            o, s = data.obs[i], data.sim[i]
            if np.isnan(o).all() and np.isnan(s).all():  # nothing to draw
                continue
            ax.clear()
            # NaN gaps break the lines, so missing data is visible rather than bridged.
            ax.plot(data.times, o, color="black", lw=1.0, label="observed")
            ax.plot(data.times, s, color="tab:blue", lw=1.0, alpha=0.85, label="simulated")
            ax.set_title(plot_title(loc), fontsize=10)
            ax.set_ylabel("flow (m³/s)")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper right", fontsize=8)
            fig.autofmt_xdate()
            path = out_dir / plot_filename(loc)
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
            written.append(path)
            if progress:
                progress(i + 1, total)
    finally:
        plt.close(fig)
    return written
