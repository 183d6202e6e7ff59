"""Undefined metrics and failing locations: NaN with a reason, per-location errors, never a warning."""
from __future__ import annotations

import numpy as np
import pytest

from dmod.services.evaluation.metrics import compute_metrics

pytestmark = pytest.mark.filterwarnings("error")


def rows(*series) -> np.ndarray:
    """Locations × time array from per-location lists."""
    return np.array(series, dtype=float)


def test_constant_observations_give_nan_with_reason():
    t = compute_metrics(rows([1, 2, 3, 4]), rows([2, 2, 2, 2]))
    for name in ("nse", "nnse", "kge", "kge_prime", "pearson_r", "kge_alpha", "kge_gamma"):
        assert np.isnan(t.values[name][0]), name
        assert "constant observations" in t.notes[0][name]
    # Still defined: β = 2.5/2, pbias = 100·(10 − 8)/8 = 25, rmse = √((1+0+1+4)/4) = √1.5
    assert t.values["kge_beta"][0] == pytest.approx(1.25)
    assert t.values["pbias"][0] == pytest.approx(25.0)
    assert t.values["rmse"][0] == pytest.approx(np.sqrt(1.5))
    assert 0 not in t.errors


def test_constant_observations_with_ulp_noise_in_the_mean():
    # 0.1 is not exact in binary: the mean of [0.1]*7 differs from 0.1 by rounding; still constant.
    t = compute_metrics(rows([0.1, 0.2, 0.3, 0.1, 0.1, 0.2, 0.3]), rows([0.1] * 7), metrics=["nse"])
    assert np.isnan(t.values["nse"][0]) and "constant" in t.notes[0]["nse"]


def test_constant_simulation_makes_correlation_undefined():
    t = compute_metrics(rows([3, 3, 3, 3]), rows([1, 2, 3, 4]), metrics=["pearson_r", "kge", "nse"])
    assert np.isnan(t.values["pearson_r"][0]) and "constant simulation" in t.notes[0]["pearson_r"]
    assert np.isnan(t.values["kge"][0]) and "constant simulation" in t.notes[0]["kge"]
    # NSE is defined: 1 − (4+1+0+1)/5 = −0.2
    assert t.values["nse"][0] == pytest.approx(-0.2)


def test_zero_mean_observations():
    t = compute_metrics(rows([1, 0, 0]), rows([0, 0, 0]), metrics=["kge_beta", "pbias", "peak_flow_error"])
    assert "mean observation is 0" in t.notes[0]["kge_beta"]
    assert "sum of observations is 0" in t.notes[0]["pbias"]
    assert "observed peak is 0" in t.notes[0]["peak_flow_error"]


def test_all_missing_location_is_a_per_location_error():
    sim = rows([1, 2, 3], [1, 2, 3], [np.nan] * 3)
    obs = rows([1, 2, 4], [np.nan] * 3, [1, 2, 3])
    t = compute_metrics(sim, obs, min_pairs=1)
    assert 0 not in t.errors
    assert t.errors[1] == "no valid observations"
    assert t.errors[2] == "no simulated values"
    for v in t.values.values():
        assert np.isnan(v[1]) and np.isnan(v[2])
    assert 1 not in t.notes and 2 not in t.notes


def test_minimum_pair_count():
    # 3 valid pairs (the NaN step is dropped) < minimum 4.
    t = compute_metrics(rows([1, 2, 3, 4]), rows([1, np.nan, 2, 3]), min_pairs=4)
    assert t.errors[0] == "3 valid pairs < minimum 4"
    assert np.isnan(t.values["nse"][0])
    ok = compute_metrics(rows([1, 2, 3, 4]), rows([1, np.nan, 2, 3]), min_pairs=3)
    assert ok.errors == {} and np.isfinite(ok.values["nse"][0])


def test_pairs_that_never_coincide():
    t = compute_metrics(rows([1, np.nan, 3, np.nan]), rows([np.nan, 2, np.nan, 4]))
    assert t.errors[0].startswith("no time step with both values (2 observed, 2 simulated")


def test_no_time_steps_at_all():
    t = compute_metrics(np.empty((2, 0)), np.empty((2, 0)))
    assert t.errors == {0: "no valid observations", 1: "no valid observations"}


def test_infinite_values_count_as_missing():
    t = compute_metrics(rows([1, 2, np.inf, 4]), rows([1, 2, 3, -np.inf]), metrics=["rmse"])
    assert t.n_pairs[0] == 2 and t.values["rmse"][0] == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(rows([1, 2]), rows([1, 2]), metrics=["nope"])
    with pytest.raises(ValueError, match="need thresholds"):
        compute_metrics(rows([1, 2]), rows([1, 2]), metrics=["pod"])
    with pytest.raises(ValueError, match="equal 2-D"):
        compute_metrics(rows([1, 2]), rows([1, 2, 3]))
    with pytest.raises(ValueError, match="cannot be weighted"):
        compute_metrics(rows([1, 2]), rows([1, 2]), weights={"rmse": 1.0})


def test_metric_aliases_and_order():
    t = compute_metrics(rows([1, 2, 3]), rows([1, 2, 4]), metrics=["r", "KGE'", "nse"])
    assert t.names == ["nse", "kge_prime", "pearson_r"]


def test_progress_reports_blocks_and_can_abort():
    sim = np.ones((10, 4)) * np.arange(4)
    obs = sim + 1
    seen = []
    compute_metrics(sim, obs, block_rows=3, workers=1, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 10), (3, 10), (6, 10), (9, 10), (10, 10)]

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        if done >= 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        compute_metrics(sim, obs, block_rows=3, workers=1, progress=cancel)
