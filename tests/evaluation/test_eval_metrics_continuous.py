"""Continuous metrics against hand-computed values.

Base pair (5 hourly steps):   o = [1, 2, 3, 4, 5]   s = [2, 2, 4, 6, 4]
    μo = 15/5 = 3             μs = 18/5 = 3.6
    o − μo = [−2, −1, 0, 1, 2]          Σ(o − μo)² = 4+1+0+1+4 = 10      σo² = 10/5 = 2
    s − μs = [−1.6, −1.6, 0.4, 2.4, 0.4] Σ(s − μs)² = 2.56+2.56+0.16+5.76+0.16 = 11.2  σs² = 2.24
    Σ(s − μs)(o − μo) = 3.2 + 1.6 + 0 + 2.4 + 0.8 = 8                    cov = 8/5 = 1.6
    s − o = [1, 0, 1, 2, −1]             Σ(s − o)² = 1+0+1+4+1 = 7        Σ|s − o| = 5
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from dmod.services.evaluation.metrics import compute_metrics

pytestmark = pytest.mark.filterwarnings("error")

OBS = [1.0, 2.0, 3.0, 4.0, 5.0]
SIM = [2.0, 2.0, 4.0, 6.0, 4.0]


def rows(*series) -> np.ndarray:
    """Locations × time array from per-location lists."""
    return np.array(series, dtype=float)

R = 1.6 / math.sqrt(2.24 * 2.0)          # r = cov / (σs σo) = 1.6 / √4.48 = 0.755929
ALPHA = math.sqrt(2.24 / 2.0)            # α = σs/σo = √1.12 = 1.058301
BETA = 3.6 / 3.0                         # β = μs/μo = 1.2
GAMMA = (math.sqrt(2.24) / 3.6) / (math.sqrt(2.0) / 3.0)  # CVs/CVo = 0.415740/0.471405 = 0.881917

EXPECTED = {
    "nse": 1 - 7 / 10,                                    # 0.3
    "nnse": 1 / (2 - 0.3),                                # 1/1.7 = 0.588235
    "pearson_r": R,
    "kge_alpha": ALPHA,
    "kge_beta": BETA,
    "kge_gamma": GAMMA,
    "kge": 1 - math.sqrt((R - 1) ** 2 + (ALPHA - 1) ** 2 + (BETA - 1) ** 2),   # 0.679111
    "kge_prime": 1 - math.sqrt((R - 1) ** 2 + (GAMMA - 1) ** 2 + (BETA - 1) ** 2),  # 0.663081
    "pbias": 100 * (18 - 15) / 15,                        # 20 %
    "rmse": math.sqrt(7 / 5),                             # √1.4 = 1.183216
    "mae": 5 / 5,                                         # 1.0
    "volume_error": (18 - 15) * 3600.0,                   # 3 m3/s·h = 10 800 m³
    "peak_flow_error": (6 - 5) / 5,                       # 0.2
    "peak_timing_error": 3 - 4,                           # sim peak at hour 3, obs at hour 4 → −1 h
}


def test_hand_computed_values():
    t = compute_metrics(rows(SIM), rows(OBS), metrics=list(EXPECTED))
    for name, want in EXPECTED.items():
        assert t.values[name][0] == pytest.approx(want, rel=1e-12), name
    assert t.n_pairs[0] == 5
    assert t.errors == {} and t.notes == {}


def test_kge_numbers_written_out():
    # (r−1)² = 0.244071² = 0.059571, (α−1)² = 0.058301² = 0.003399, (β−1)² = 0.2² = 0.04
    # → √0.102970 = 0.320889 → KGE = 0.679111
    t = compute_metrics(rows(SIM), rows(OBS), metrics=["kge", "kge_prime"])
    assert t.values["kge"][0] == pytest.approx(0.679111, abs=1e-6)
    # (γ−1)² = 0.118083² = 0.013944 → √(0.059571 + 0.013944 + 0.04) = √0.113514 = 0.336919 → KGE' = 0.663081
    assert t.values["kge_prime"][0] == pytest.approx(0.663081, abs=1e-6)


def test_pairwise_deletion_ignores_unpaired_steps():
    # Two extra steps, each with one side missing; the 100s would be the peaks if not masked.
    o = [*OBS, np.nan, 100.0]
    s = [*SIM, 100.0, np.nan]
    t = compute_metrics(rows(s), rows(o), metrics=list(EXPECTED))
    assert t.n_pairs[0] == 5
    for name, want in EXPECTED.items():
        assert t.values[name][0] == pytest.approx(want, rel=1e-12), name


def test_perfect_simulation():
    t = compute_metrics(rows(OBS), rows(OBS))
    v = {k: a[0] for k, a in t.values.items()}
    assert v["nse"] == pytest.approx(1.0) and v["kge"] == pytest.approx(1.0)
    assert v["kge_prime"] == pytest.approx(1.0) and v["pearson_r"] == pytest.approx(1.0)
    assert v["pbias"] == 0 and v["rmse"] == 0 and v["mae"] == 0 and v["volume_error"] == 0
    assert v["peak_flow_error"] == 0 and v["peak_timing_error"] == 0
    assert v["score"] == pytest.approx(1.0)


def test_many_locations_match_a_naive_reference():
    # Vectorised engine (several blocks, two threads) vs a plain per-row numpy reference.
    rng = np.random.default_rng(7)
    n_loc, n_t = 37, 200
    obs = rng.gamma(2.0, 3.0, size=(n_loc, n_t)) + 1e4 * (np.arange(n_loc) % 3 == 0)[:, None]
    sim = obs * rng.normal(1.0, 0.3, size=(n_loc, n_t))
    obs[rng.random((n_loc, n_t)) < 0.1] = np.nan
    sim[rng.random((n_loc, n_t)) < 0.05] = np.nan
    t = compute_metrics(sim, obs, block_rows=8, workers=2, metrics=["nse", "kge", "pbias", "rmse", "pearson_r"])
    for i in range(n_loc):
        m = np.isfinite(sim[i]) & np.isfinite(obs[i])
        s, o = sim[i][m], obs[i][m]
        nse = 1 - ((s - o) ** 2).sum() / ((o - o.mean()) ** 2).sum()
        r = np.corrcoef(s, o)[0, 1]
        kge = 1 - math.sqrt((r - 1) ** 2 + (s.std() / o.std() - 1) ** 2 + (s.mean() / o.mean() - 1) ** 2)
        assert t.values["nse"][i] == pytest.approx(nse, rel=1e-9)
        assert t.values["pearson_r"][i] == pytest.approx(r, rel=1e-9)
        assert t.values["kge"][i] == pytest.approx(kge, rel=1e-9)
        assert t.values["pbias"][i] == pytest.approx(100 * (s.sum() - o.sum()) / o.sum(), rel=1e-9)
        assert t.values["rmse"][i] == pytest.approx(math.sqrt(((s - o) ** 2).mean()), rel=1e-9)


def test_peak_timing_uses_the_time_axis():
    # Daily steps: sim peak one step (24 h) after the obs peak.
    times = np.array(["2015-01-01", "2015-01-02", "2015-01-03"], dtype="datetime64[ns]")
    t = compute_metrics(rows([1, 2, 9]), rows([1, 9, 2]), times, metrics=["peak_timing_error", "volume_error"])
    assert t.values["peak_timing_error"][0] == 24.0
    # Volume: (12 − 12) m3/s-days → 0 m³.
    assert t.values["volume_error"][0] == 0.0


def test_large_offsets_keep_precision():
    # Flows around 1e7 with unit-scale variation: the one-pass moments must not lose the variance.
    base = 1e7
    t = compute_metrics(rows(np.array(SIM) + base), rows(np.array(OBS) + base), metrics=["nse", "pearson_r"])
    assert t.values["nse"][0] == pytest.approx(0.3, rel=1e-9)
    assert t.values["pearson_r"][0] == pytest.approx(R, rel=1e-9)
