"""Readers: ngen nexus CSV / NetCDF, observation CSVs (units, missing values, layouts)."""
from __future__ import annotations

import netCDF4
import numpy as np
import pandas as pd
import pytest

from dmod.services.evaluation import (
    FT3_TO_M3,
    read_nexus_csv,
    read_nexus_csv_dir,
    read_nexus_netcdf,
    read_observations,
)
from dmod.services.evaluation.units import normalize_unit, to_m3s

pytestmark = pytest.mark.filterwarnings("error")

NGEN_ROWS = "0, 2015-12-01 00:00:00, 0.5\n1, 2015-12-01 01:00:00, 1.25\n2, 2015-12-01 02:00:00, 2\n"


def test_read_ngen_nexus_csv(tmp_path):
    p = tmp_path / "nex-11223_output.csv"
    p.write_text(NGEN_ROWS)
    s = read_nexus_csv(p)
    assert s.name == "nex-11223"
    assert list(s.index) == list(pd.date_range("2015-12-01", periods=3, freq="h"))
    assert s.tolist() == [0.5, 1.25, 2.0]


def test_ngen_csv_bad_rows(tmp_path):
    p = tmp_path / "nex-1_output.csv"
    p.write_text("0, 2015-12-01 00:00:00\n")
    with pytest.raises(ValueError, match="expected 3 columns"):
        read_nexus_csv(p)
    p.write_text("0, 12/01/2015, 1.0\n")
    with pytest.raises(ValueError, match="time column"):
        read_nexus_csv(p)
    # A non-numeric flow is a missing value, not a failure.
    p.write_text("0, 2015-12-01 00:00:00, -nan\n1, 2015-12-01 01:00:00, 3\n")
    assert read_nexus_csv(p).isna().tolist() == [True, False]
    p.write_text("0, 2015-12-01 00:00:00, -nan(ind)\n1, 2015-12-01 01:00:00, 3\n")  # MSVC-style text
    assert read_nexus_csv(p).tolist()[1] == 3.0 and read_nexus_csv(p).isna().tolist() == [True, False]


def test_read_output_directory_only_nexus_files(tmp_path):
    (tmp_path / "nex-1_output.csv").write_text(NGEN_ROWS)
    (tmp_path / "tnx-9_output.csv").write_text(NGEN_ROWS.replace("0.5", "7"))
    # Catchment output (header, other name) must be ignored.
    (tmp_path / "cat-1.csv").write_text("Time Step,Time,Q_OUT\n0,2015-12-01 00:00:00,0.1\n")
    # A file from a run starting an hour later: its own time column, not the cached one.
    (tmp_path / "nex-2_output.csv").write_text("0, 2015-12-01 01:00:00, 9\n")
    df = read_nexus_csv_dir(tmp_path)
    assert sorted(df.columns) == ["nex-1", "nex-2", "tnx-9"]
    assert df.loc["2015-12-01 00:00", "tnx-9"] == 7.0
    assert df["nex-2"].dropna().to_dict() == {pd.Timestamp("2015-12-01 01:00"): 9.0}
    only = read_nexus_csv_dir(tmp_path, nexus_ids=["nex-1", "nex-404"])
    assert list(only.columns) == ["nex-1"]


def _write_nc(path, ids, flow, units="m3 s-1", id_kind="int", order=("feature_id", "time")):
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("feature_id", len(ids))
        ds.createDimension("time", flow.shape[1])
        if id_kind == "int":
            v = ds.createVariable("feature_id", "i8", ("feature_id",))
            v[:] = np.array(ids)
        else:
            v = ds.createVariable("feature_id", str, ("feature_id",))
            for i, x in enumerate(ids):
                v[i] = x
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "hours since 2015-12-01 00:00:00"
        t[:] = np.arange(flow.shape[1])
        f = ds.createVariable("flow", "f8", order, fill_value=-9999.0)
        f.units = units
        f[:] = flow if order[0] == "feature_id" else flow.T


def test_read_netcdf_integer_ids_and_fill_values(tmp_path):
    p = tmp_path / "out.nc"
    flow = np.array([[1.0, 2.0, 3.0], [4.0, -9999.0, 6.0]])
    _write_nc(p, [11, 12], flow)
    df = read_nexus_netcdf(p)
    assert list(df.columns) == ["nex-11", "nex-12"]
    assert df.index[0] == pd.Timestamp("2015-12-01 00:00") and df.index[2] == pd.Timestamp("2015-12-01 02:00")
    assert df["nex-11"].tolist() == [1.0, 2.0, 3.0]
    assert np.isnan(df["nex-12"].iloc[1])


def test_read_netcdf_string_ids_time_first_and_cfs(tmp_path):
    p = tmp_path / "out.nc"
    flow = np.array([[100.0, 200.0]])
    _write_nc(p, ["nex-5"], flow, units="ft3/s", id_kind="str", order=("time", "feature_id"))
    df = read_nexus_netcdf(p)
    assert list(df.columns) == ["nex-5"]
    assert df["nex-5"].tolist() == pytest.approx([100 * 0.0283168466, 200 * 0.0283168466])


def test_units():
    assert FT3_TO_M3 == pytest.approx(0.0283168466, rel=1e-9)
    assert to_m3s(np.array([1.0, 10.0]), "cfs") == pytest.approx([0.0283168466, 0.283168466])
    assert normalize_unit("ft^3/s") == "ft3/s" and normalize_unit(" CMS ") == "m3/s"
    with pytest.raises(ValueError, match="unknown flow unit"):
        normalize_unit("gallons/day")


def test_observations_per_gage_csv_in_cfs(tmp_path):
    p = tmp_path / "01013500.csv"
    # 100 ft3/s = 100 × 0.0283168466 = 2.83168466 m3/s; "Ice" (NWIS code) and -999999 are missing.
    p.write_text("time,value\n2015-12-01 00:00:00,100\n2015-12-01 01:00:00,Ice\n"
                 "2015-12-01 02:00:00,-999999\n2015-12-01 03:00:00,\n")
    df = read_observations(p, units="ft3/s")
    assert list(df.columns) == ["01013500"]  # leading zero kept
    col = df["01013500"]
    assert col.iloc[0] == pytest.approx(2.83168466)
    assert col.iloc[1:].isna().all()


def test_observations_long_csv_and_timezones(tmp_path):
    p = tmp_path / "obs.csv"
    p.write_text("gage_id,time,value\n"
                 "01013500,2015-12-01T00:00:00Z,1.5\n"
                 "01013500,2015-12-01T01:00:00Z,2.5\n"
                 "02,2015-11-30T19:00:00-05:00,7\n")  # = 00:00 UTC
    df = read_observations(p, units="m3/s")
    assert sorted(df.columns) == ["01013500", "02"]
    assert df.loc["2015-12-01 00:00", "02"] == 7.0
    assert df.loc["2015-12-01 01:00", "01013500"] == 2.5


def test_observations_directory_and_errors(tmp_path):
    (tmp_path / "0001.csv").write_text("time,value\n2015-12-01 00:00:00,1\n")
    (tmp_path / "0002.csv").write_text("Time,Value\n2015-12-01 00:00:00,2\n")
    df = read_observations(tmp_path, units="cms")
    assert df.loc["2015-12-01 00:00"].to_dict() == {"0001": 1.0, "0002": 2.0}
    dup = tmp_path / "dup.csv"
    dup.write_text("gage_id,time,value\n1,2015-12-01 00:00:00,1\n1,2015-12-01 00:00:00,2\n")
    with pytest.raises(ValueError, match="duplicate observation"):
        read_observations(dup, units="m3/s")
    bad = tmp_path / "sub"
    bad.mkdir()
    (bad / "x.csv").write_text("date,flow\n2015-12-01,1\n")
    with pytest.raises(ValueError, match="'time' and 'value'"):
        read_observations(bad / "x.csv", units="m3/s")
    with pytest.raises(ValueError, match="unknown flow unit"):
        read_observations(bad / "x.csv", units="furlongs")
