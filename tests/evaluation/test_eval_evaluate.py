"""evaluate() end to end (files and frames) and write_outputs()."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from dmod.services.evaluation import evaluate, write_outputs

pytestmark = pytest.mark.filterwarnings("error")

OBS = [1.0, 2.0, 3.0, 4.0, 5.0]   # see test_eval_metrics_continuous: NSE = 0.3, PBIAS = 20 %
SIM = [2.0, 2.0, 4.0, 6.0, 4.0]
START = pd.Timestamp("2015-12-01 00:00:00")


def _ngen_csv(path, values, start=START):
    lines = [f"{i}, {(start + pd.Timedelta(hours=i)):%Y-%m-%d %H:%M:%S}, {v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def run_dir(tmp_path):
    """An ngen output dir (2 nexuses), a long observation CSV in ft3/s, and a crosswalk CSV."""
    out = tmp_path / "output"
    out.mkdir()
    _ngen_csv(out / "nex-1_output.csv", SIM)
    _ngen_csv(out / "nex-2_output.csv", [1.0, 1.0, 1.0, 1.0, 1.0])
    (out / "cat-1.csv").write_text("Time Step,Time,Q_OUT\n0,2015-12-01 00:00:00,0.1\n")
    cfs = 1 / 0.0283168466  # so that converted observations are exactly OBS (to rounding)
    obs = tmp_path / "obs.csv"
    rows = ["gage_id,time,value"]
    rows += [f"01013500,{START + pd.Timedelta(hours=i)},{v * cfs!r}" for i, v in enumerate(OBS)]
    rows += [f"02,{START + pd.Timedelta(hours=i)},{v * cfs!r}" for i, v in enumerate([2.0, np.nan, 3.0])]
    obs.write_text("\n".join(rows).replace("nan", "") + "\n")
    xwalk = tmp_path / "crosswalk.csv"
    xwalk.write_text("gage_id,nexus_id\n01013500,nex-1\n02,nex-2\n03,nex-1\n04,nex-404\n")
    return out, obs, xwalk


def test_evaluate_from_ngen_files(run_dir):
    out, obs, xwalk = run_dir
    seen = []
    r = evaluate(out, obs, xwalk, min_pairs=3, thresholds="p50", obs_units="ft3/s",
                 progress=lambda done, total: seen.append((done, total)))
    assert [loc.gage_id for loc in r.locations] == ["01013500", "02", "03", "04"]
    g1 = r.location("01013500")
    assert g1.ok and g1.nexus_id == "nex-1" and g1.n_pairs == 5
    assert g1.metrics["nse"] == pytest.approx(0.3)         # ft3/s converted back to OBS
    assert g1.metrics["pbias"] == pytest.approx(20.0)
    assert g1.thresholds["p50"] == pytest.approx(3.0)
    # Gage 02 has 2 valid observations: a clear per-location error, metrics NaN.
    assert r.location("02").error == "gage 02: 2 valid pairs < minimum 3"
    assert math.isnan(r.location("02").metrics["nse"])
    assert r.location("03").error == "gage 03: no observations for this gage"
    assert r.location("04").error == ("gage 04: no observations for this gage; "
                                      "no simulation output for nexus nex-404")
    assert r.summary() == {"locations": 4, "evaluated": 1, "failed": 3}
    # Aggregates cover evaluated locations only.
    assert r.aggregate["mean"]["nse"] == pytest.approx(0.3) and r.aggregate["count"]["nse"] == 1
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))


def test_window_and_daily_resampling():
    idx = pd.date_range("2015-12-01", periods=24 * 4, freq="h")
    # Daily means: obs days = [1, 2, 3, 4], sim days = [1, 2, 3, 5]
    obs = pd.DataFrame({"g": np.repeat([1.0, 2.0, 3.0, 4.0], 24)}, index=idx)
    sim = pd.DataFrame({"nex-1": np.repeat([1.0, 2.0, 3.0, 5.0], 24)}, index=idx)
    r = evaluate(sim, obs, {"g": "nex-1"}, resample="daily", min_pairs=2, metrics=["nse", "rmse"])
    loc = r.locations[0]
    assert loc.n_pairs == 4
    # NSE = 1 − (0+0+0+1)/Σ(o−2.5)² = 1 − 1/5 = 0.8; RMSE = √(1/4) = 0.5
    assert loc.metrics["nse"] == pytest.approx(0.8)
    assert loc.metrics["rmse"] == pytest.approx(0.5)
    # Window (inclusive) drops day 4 → perfect.
    w = evaluate(sim, obs, {"g": "nex-1"}, window=("2015-12-01", "2015-12-03 23:00"), resample="daily",
                 min_pairs=2, metrics=["nse", "rmse"])
    assert w.locations[0].n_pairs == 3 and w.locations[0].metrics["rmse"] == 0.0
    assert w.config["window"] == ["2015-12-01 00:00:00", "2015-12-03 23:00:00"]


def test_subhourly_obs_against_hourly_sim():
    # 15-min observations averaged to hourly means line up with hourly ngen output.
    obs = pd.Series([1, 1, 1, 1, 2, 2, 4, 4, 3, 3, 3, 3.0], index=pd.date_range(START, periods=12, freq="15min"))
    sim = pd.Series([1.0, 3.0, 3.0], index=pd.date_range(START, periods=3, freq="h"))
    r = evaluate({"nex-1": sim}, {"g": obs}, {"g": "nex-1"}, resample="hourly", min_pairs=3, metrics=["rmse"])
    assert r.locations[0].n_pairs == 3 and r.locations[0].metrics["rmse"] == 0.0
    # Without resampling only the on-the-hour observations pair up: (1,1), (3,2), (3,3)
    raw = evaluate({"nex-1": sim}, {"g": obs}, {"g": "nex-1"}, min_pairs=3, metrics=["rmse"])
    assert raw.locations[0].n_pairs == 3 and raw.locations[0].metrics["rmse"] == pytest.approx(math.sqrt(1 / 3))


def test_constant_observations_end_to_end_note():
    idx = pd.date_range(START, periods=12, freq="h")
    r = evaluate(pd.DataFrame({"nex-1": np.arange(12.0)}, index=idx), pd.DataFrame({"g": 5.0}, index=idx),
                 {"g": "nex-1"}, min_pairs=10)
    loc = r.locations[0]
    assert loc.ok and math.isnan(loc.metrics["nse"])
    assert loc.notes["nse"] == "constant observations (σo = 0)"


def test_bad_arguments_fail_before_reading(tmp_path):
    with pytest.raises(ValueError, match="min_pairs"):
        evaluate(tmp_path / "nope", tmp_path / "nope", {"g": "nex-1"}, min_pairs=0)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(tmp_path / "nope", tmp_path / "nope", {"g": "nex-1"}, metrics=["nsee"])
    with pytest.raises(ValueError, match="unknown flow unit"):
        evaluate(tmp_path / "nope", tmp_path / "nope", {"g": "nex-1"}, obs_units="acre-ft")
    with pytest.raises(FileNotFoundError):
        evaluate(tmp_path / "nope", tmp_path / "nope", {"g": "nex-1"})


def test_write_outputs(run_dir, tmp_path):
    out, obs, xwalk = run_dir
    r = evaluate(out, obs, xwalk, min_pairs=3, thresholds=["p50", 2.0], obs_units="cfs")
    files = write_outputs(r, tmp_path / "eval")
    doc = json.loads(files["json"].read_text())
    assert doc["summary"] == {"locations": 4, "evaluated": 1, "failed": 3}
    assert doc["metrics"] == r.metric_names and "pod@p50" in doc["metrics"] and "csi@2" in doc["metrics"]
    first = doc["locations"][0]
    assert first["gage_id"] == "01013500" and first["metrics"]["nse"] == pytest.approx(0.3)
    assert doc["locations"][1]["metrics"]["nse"] is None  # NaN → null
    assert doc["config"]["obs_units"] == "ft3/s" and doc["config"]["weights"]["kge"] == 0.25
    table = pd.read_csv(files["locations_csv"], dtype={"gage_id": str})
    assert table["gage_id"].tolist() == ["01013500", "02", "03", "04"]
    assert table.loc[0, "nse"] == pytest.approx(0.3) and "threshold@p50" in table.columns
    assert table.loc[1, "error"] == "gage 02: 2 valid pairs < minimum 3"
    agg = pd.read_csv(files["aggregate_csv"], index_col=0)
    assert list(agg.index) == ["mean", "median", "count"] and agg.loc["mean", "nse"] == pytest.approx(0.3)
    # One PNG per location that has any data (04 has neither series).
    names = sorted(p.name for p in files["plots"])
    assert names == ["01013500__nex-1.png", "02__nex-2.png", "03__nex-1.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in files["plots"])
    none = write_outputs(r, tmp_path / "noplots", plots=False)
    assert none["plots"] == [] and not (tmp_path / "noplots" / "plots").exists()


def test_plot_title_has_ids_and_scores(run_dir):
    from dmod.services.evaluation.plots import plot_title
    out, obs, xwalk = run_dir
    r = evaluate(out, obs, xwalk, min_pairs=3, obs_units="cfs", metrics=["nse", "kge"])
    assert plot_title(r.locations[0]) == "Gage 01013500 ↔ nex-1\nNSE 0.300   KGE 0.679   n = 5"
    assert "2 valid pairs < minimum 3" in plot_title(r.locations[1])
