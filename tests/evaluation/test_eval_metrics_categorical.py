"""Categorical scores and thresholds against hand-computed contingency tables."""
from __future__ import annotations

import numpy as np
import pytest

from dmod.services.evaluation.metrics import Threshold, compute_metrics, parse_thresholds

pytestmark = pytest.mark.filterwarnings("error")

OBS = [1.0, 2.0, 3.0, 4.0, 5.0]
SIM = [2.0, 2.0, 4.0, 6.0, 4.0]


def rows(*series) -> np.ndarray:
    """Locations × time array from per-location lists."""
    return np.array(series, dtype=float)

#         idx  0  1  2  3  4  5  6  7
OBS_C = [1, 5, 2, 6, 3, 7, 1, 8]
SIM_C = [2, 6, 1, 1, 4, 8, 5, 9]
CAT = ["pod", "far", "pofd", "csi", "ets", "frequency_bias", "accuracy"]


def test_fixed_threshold_scores():
    # Event = value >= 5.  obs events at 1,3,5,7; sim events at 1,5,6,7.
    # a (both) = {1,5,7} = 3, b (sim only) = {6} = 1, c (obs only) = {3} = 1, d = {0,2,4} = 3, n = 8
    # aᵣ = (a+b)(a+c)/n = 4·4/8 = 2
    want = {
        "pod": 3 / 4,                  # a/(a+c)
        "far": 1 / 4,                  # b/(a+b)
        "pofd": 1 / 4,                 # b/(b+d) = 1/(1+3)
        "csi": 3 / 5,                  # a/(a+b+c)
        "ets": (3 - 2) / (5 - 2),      # (a−aᵣ)/(a+b+c−aᵣ) = 1/3
        "frequency_bias": 4 / 4,       # (a+b)/(a+c)
        "accuracy": 6 / 8,             # (a+d)/n
    }
    t = compute_metrics(rows(SIM_C), rows(OBS_C), metrics=CAT, thresholds=5)
    for name, v in want.items():
        assert t.values[f"{name}@5"][0] == pytest.approx(v), name
    assert t.thresholds["5"][0] == 5.0


def test_percentile_threshold_per_location():
    # sorted obs = [1,1,2,3,5,6,7,8]; p75 position (8−1)·0.75 = 5.25 → 6 + 0.25·(7 − 6) = 6.25
    # events ≥ 6.25: obs {5,7}, sim {5,7} → a=2, b=0, c=0, d=6; aᵣ = 2·2/8 = 0.5
    t = compute_metrics(rows(SIM_C), rows(OBS_C), metrics=CAT, thresholds="p75")
    assert t.thresholds["p75"][0] == pytest.approx(6.25)
    assert t.thresholds["p75"][0] == pytest.approx(np.percentile(OBS_C, 75))
    got = {n: t.values[f"{n}@p75"][0] for n in CAT}
    assert got == pytest.approx({"pod": 1, "far": 0, "pofd": 0, "csi": 1, "ets": 1, "frequency_bias": 1,
                                 "accuracy": 1})


def test_percentiles_use_only_valid_pairs_and_vary_by_location():
    obs = rows([1, 2, 3, 4, 100], [10, 20, 30, 40, 50], [5, 1, 4, 2, 3])
    sim = rows([1, 2, 3, 4, np.nan], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1])
    t = compute_metrics(sim, obs, metrics=["pod"], thresholds=["p50", "p100", "p0"])
    # row 0: the 100 has no simulated partner → median of [1,2,3,4] = 2.5
    assert t.thresholds["p50"].tolist() == pytest.approx([2.5, 30.0, 3.0])
    assert t.thresholds["p100"].tolist() == pytest.approx([4.0, 50.0, 5.0])
    assert t.thresholds["p0"].tolist() == pytest.approx([1.0, 10.0, 1.0])
    rng = np.random.default_rng(3)
    o = rng.gamma(2, 2, size=(20, 50))
    o[rng.random(o.shape) < 0.2] = np.nan
    big = compute_metrics(np.ones_like(o), o, metrics=["pod"], thresholds="p90", block_rows=6)
    assert big.thresholds["p90"] == pytest.approx([np.nanpercentile(r, 90) for r in o])


def test_zero_denominators_give_nan_with_reason():
    # Threshold above everything: a = b = c = 0, d = 8.
    t = compute_metrics(rows(SIM_C), rows(OBS_C), metrics=CAT, thresholds=100)
    v = {n: t.values[f"{n}@100"][0] for n in CAT}
    for n in ("pod", "far", "csi", "ets", "frequency_bias"):
        assert np.isnan(v[n]), n
    assert v["pofd"] == 0.0 and v["accuracy"] == 1.0
    assert "no observed events" in t.notes[0]["pod@100"]
    assert "no simulated events" in t.notes[0]["far@100"]


def test_per_location_threshold_values():
    thr = Threshold(values={"g1": 5.0}, name="flood")
    t = compute_metrics(rows(SIM_C, SIM_C), rows(OBS_C, OBS_C), metrics=["pod"], thresholds=thr, ids=["g1", "g2"])
    assert t.values["pod@flood"][0] == pytest.approx(0.75)
    assert np.isnan(t.values["pod@flood"][1])
    assert t.notes[1]["pod@flood"] == "no threshold flood for this location"


def test_threshold_parsing():
    ts = parse_thresholds(["p90", "95%", 10, "2.5", {"percentile": 50, "name": "median"}])
    assert [t.label for t in ts] == ["p90", "p95", "10", "2.5", "median"]
    assert ts[0].percentile == 90 and ts[2].value == 10.0 and ts[3].value == 2.5
    with pytest.raises(ValueError, match="duplicate"):
        parse_thresholds(["p90", 90.0, "p90"])
    with pytest.raises(ValueError, match="outside"):
        parse_thresholds("p150")
    with pytest.raises(ValueError, match="exactly one"):
        Threshold(value=1.0, percentile=50)


def test_weighted_score():
    # NSE = 0.3 → skill 1/(2 − 0.3) = 0.588235; PBIAS = 20 → skill 1 − 20/100 = 0.8
    # score = (1·0.588235 + 1·0.8) / 2 = 0.694118
    t = compute_metrics(rows(SIM), rows(OBS), metrics=["score"], weights={"nse": 1, "pbias": 1})
    assert t.values["score"][0] == pytest.approx((1 / 1.7 + 0.8) / 2)
    assert t.names == ["score"]
    # Constant observations: NSE undefined → weight renormalised onto pbias alone (25 % → 0.75).
    c = compute_metrics(rows([1, 2, 3, 4]), rows([2, 2, 2, 2]), metrics=["score"], weights={"nse": 3, "pbias": 1})
    assert c.values["score"][0] == pytest.approx(0.75)
    # Categorical weight is shared across thresholds: csi@5 = 0.6, csi@p75 = 1 → csi skill 0.8.
    k = compute_metrics(rows(SIM_C), rows(OBS_C), metrics=["score"], thresholds=[5, "p75"], weights={"csi": 1})
    assert k.values["score"][0] == pytest.approx(0.8)
