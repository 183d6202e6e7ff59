"""Crosswalk loading, time window and resampling."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dmod.services.evaluation import load_crosswalk
from dmod.services.evaluation.crosswalk import match_gages
from dmod.services.evaluation.timeseries import apply_window, resample_mean

pytestmark = pytest.mark.filterwarnings("error")


def test_crosswalk_sources(tmp_path):
    want = {"01013500": "nex-1", "02": "nex-2"}
    assert load_crosswalk(want) == want
    assert load_crosswalk([("01013500", "nex-1"), ("02", "nex-2_output.csv")]) == want
    j = tmp_path / "x.json"
    j.write_text(json.dumps(want))
    assert load_crosswalk(j) == want
    j.write_text(json.dumps([{"gage_id": "01013500", "nexus_id": "nex-1"}, {"gage": "02", "nexus": "nex-2"}]))
    assert load_crosswalk(j) == want
    c = tmp_path / "x.csv"
    c.write_text("site_no,nex_id\n01013500,nex-1\n02, nex-2\n")  # text: the leading zero survives
    assert load_crosswalk(c) == want
    # The hydrofabric's own hydrolocations naming (hl_link = gage, id = nexus) also works.
    assert load_crosswalk(pd.DataFrame({"hl_link": ["01013500"], "id": ["nex-1"]})) == {"01013500": "nex-1"}


def test_crosswalk_errors(tmp_path):
    with pytest.raises(ValueError, match="maps to both"):
        load_crosswalk([("1", "nex-1"), ("1", "nex-2")])
    with pytest.raises(ValueError, match="no nexus column"):
        load_crosswalk(pd.DataFrame({"gage_id": ["1"], "foo": ["nex-1"]}))
    with pytest.raises(ValueError, match="no gage/nexus pairs"):
        load_crosswalk({})
    with pytest.raises(FileNotFoundError):
        load_crosswalk(tmp_path / "missing.csv")


def test_gage_matching_tolerates_lost_leading_zeros():
    assert match_gages(["01013500", "USGS-02", "9"], ["1013500", "02", "09", "9"]) == {
        "01013500": "1013500", "USGS-02": "02", "9": "9"}
    # Ambiguous loose match ("2" could be "02" or "002") is not guessed.
    assert match_gages(["2"], ["02", "002"]) == {}


def _frame(values, start="2015-12-01 00:00", freq="h"):
    idx = pd.date_range(start, periods=len(values), freq=freq)
    return pd.DataFrame({"a": np.asarray(values, float)}, index=idx)


def test_window_is_inclusive():
    f = _frame(range(10))
    w = apply_window(f, ("2015-12-01 02:00:00", "2015-12-01 05:00:00"))
    assert w["a"].tolist() == [2, 3, 4, 5]
    assert apply_window(f, (None, "2015-12-01 01:00")).shape[0] == 2
    assert apply_window(f, {"start": "2015-12-01 08:00"})["a"].tolist() == [8, 9]
    with pytest.raises(ValueError, match="before start"):
        apply_window(f, ("2015-12-02", "2015-12-01"))


def test_daily_mean_keeps_gaps_as_gaps():
    # Day 1: 24 values 0..23 → mean 11.5; day 2: only NaN → NaN; day 3: [1, NaN, 3] → mean of available = 2
    vals = list(range(24)) + [np.nan] * 24 + [1, np.nan, 3]
    d = resample_mean(_frame(vals), "daily")
    assert d["a"].iloc[0] == 11.5
    assert np.isnan(d["a"].iloc[1])
    assert d["a"].iloc[2] == 2.0
    assert d.index[0] == pd.Timestamp("2015-12-01")


def test_hourly_mean_of_15_minute_data():
    # 15-min obs [1,2,3,4 | 5,6,7,8] → hourly means [2.5, 6.5], labelled at the hour start.
    h = resample_mean(_frame([1, 2, 3, 4, 5, 6, 7, 8], freq="15min"), "hourly")
    assert h["a"].tolist() == [2.5, 6.5]
    assert h.index[1] == pd.Timestamp("2015-12-01 01:00")
    with pytest.raises(ValueError, match="unknown resample"):
        resample_mean(h, "fortnightly-ish")
