"""Output number formatting (C++ setprecision(9) / default ostream = printf %.9g / %.6g) and the
command line / realization parsing errors."""
from __future__ import annotations

import numpy as np
import pytest

from dmod.services.worker.engine import ConfigError, UnsupportedFormulation, parse_argv
from dmod.services.worker.engine.fastfmt import BlockFormatter, format_values
from dmod.services.worker.engine.realization import parse_realization


def _values() -> np.ndarray:
    rng = np.random.default_rng(0)
    powers = 10.0 ** np.arange(-12, 12)
    return np.concatenate([
        rng.random(40_000) * 10.0 ** rng.integers(-30, 30, 40_000),
        -rng.random(5_000) * 10.0 ** rng.integers(-8, 12, 5_000),
        np.round(rng.random(20_000) * 1e6) / 2.0 ** rng.integers(0, 12, 20_000),  # exact binary ties
        rng.random(10_000).astype(np.float32).astype(np.float64),
        np.nextafter(powers, 0), np.nextafter(powers, np.inf), powers,
        [0.0, -0.0, np.inf, -np.inf, np.nan, 0.00141766234, 1.5e-10, 999999999.5, 99999.95, 1e-300, 5e-324,
         1.7976931348623157e308, 1e100, -1e-100, 0.5, 2.5, 1234567890.0],
    ])


@pytest.mark.parametrize("precision", [9, 6])
def test_vectorised_format_matches_printf(precision):
    x = _values()
    cells = format_values(x, precision)
    got = [row[row != 0].tobytes().decode() for row in cells]
    want = [f"%.{precision}g" % v for v in x.tolist()]
    assert got == want
    assert got[-12:-10] == (["0.00141766234", "1.5e-10"] if precision == 9 else ["0.00141766", "1.5e-10"])


def test_block_formatter_builds_rows():
    fmt = BlockFormatter(["0,2015-12-01 00:00:00,", "1,2015-12-01 01:00:00,"], 2, 9)
    text = fmt(np.array([[0.00141766234, 1.0], [1.5e-10, -2.5]]))
    assert text == b"0,2015-12-01 00:00:00,0.00141766234,1\n1,2015-12-01 01:00:00,1.5e-10,-2.5\n"


def test_argv_parsing():
    a = parse_argv(["cat.gpkg", "all", "cat.gpkg", "", "real.json", "part.json"])
    assert a.cat_subset is None and a.nex_subset is None and a.partition_path == "part.json"
    a = parse_argv(["c.geojson", "cat-1,cat-2", "n.geojson", "all", "real.json"])
    assert a.cat_subset == ("cat-1", "cat-2") and a.partition_path is None
    with pytest.raises(ConfigError, match="expected 5 or 6 positional"):
        parse_argv(["c.gpkg", "all", "real.json"])


def _doc(**changes) -> dict:
    form = {"name": "bmi_python", "params": {"python_type": "a.b.C", "main_output_variable": "Q_OUT",
                                             "init_config": "x/{{id}}.yml"}}
    doc = {"global": {"formulations": [form], "forcing": {"path": "./f"}},
           "time": {"start_time": "2015-12-01 00:00:00", "end_time": "2015-12-01 05:00:00", "output_interval": 3600}}
    for key, value in changes.items():
        target, *path = key.split("__")
        node = doc
        for p in [target, *path][:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        last = [target, *path][-1]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return doc


@pytest.mark.parametrize("changes, field", [
    ({"time__end_time": None}, "time.end_time"),
    ({"time__output_interval": 0}, "time.output_interval"),
    ({"time__start_time": "2015-12-01T00:00"}, "time.start_time"),
    ({"time": None}, "realization.time"),
    ({"global__formulations__0__params__python_type": None}, "global.formulations[0].params.python_type"),
    ({"global__formulations__0__params__main_output_variable": None},
     "global.formulations[0].params.main_output_variable"),
    ({"global__forcing__provider": "Grib"}, "global.forcing.provider"),
    ({"output": {"nexus": {"format": "netcdf"}}}, "output.nexus.format"),
    ({"global__formulations__0__params__model_params": {"slope": {"source": "file"}}},
     "global.formulations[0].params.model_params.slope"),
])
def test_malformed_realization_names_the_field(changes, field):
    with pytest.raises(ConfigError) as err:
        parse_realization(_doc(**changes))
    assert field in str(err.value)


@pytest.mark.parametrize("kind", ["bmi_c", "bmi_c++", "bmi_fortran"])
def test_native_formulations_fail_fast(kind):
    doc = _doc(global__formulations__0__name=kind)
    with pytest.raises(UnsupportedFormulation, match="ngen binary"):
        parse_realization(doc)
    multi = _doc()
    multi["global"]["formulations"][0] = {"name": "bmi_multi", "params": {
        "main_output_variable": "Q_OUT", "modules": [{"name": kind, "params": {}}]}}
    with pytest.raises(UnsupportedFormulation, match=r"modules\[0\].name.*ngen binary"):
        parse_realization(multi)


def test_realization_steps_and_legacy_output():
    real = parse_realization(_doc(output_root="./legacy/", disable_catchment_output=True))
    assert real.time.n_steps == 6 and real.time.labels()[-1] == "2015-12-01 05:00:00"
    assert real.output.root == "./legacy/" and real.output.catchment_enabled is False


def test_precreation_is_skipped_on_memory_file_systems(tmp_path, monkeypatch):
    from dmod.services.worker.engine import precreate

    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n"
                      "tmpfs /mnt/my\\040runs tmpfs rw 0 0\n")
    assert precreate.file_system_type("/dev/shm/out", str(mounts)) == "tmpfs"
    assert precreate.file_system_type("/dev/shmx/out", str(mounts)) == "ext4"
    assert precreate.file_system_type("/mnt/my runs/a", str(mounts)) == "tmpfs"
    assert precreate.file_system_type("/x", str(tmp_path / "absent")) == ""
    monkeypatch.setenv("DMOD_ENGINE_PRECREATE", "1")
    assert precreate.worthwhile("/dev/shm")
    monkeypatch.setenv("DMOD_ENGINE_PRECREATE", "0")
    assert not precreate.worthwhile(str(tmp_path))
