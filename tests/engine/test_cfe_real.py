"""The embedded CFE and PET held against the real NOAA-OWP C libraries run by a real ngen.

`bench/cfe_vs_real.py` runs ngen's gauge_01073000 example (bmi_multi SLoTH + PET + CFE, the real
C libraries) and the embedded engine (bmi_multi of `pet_owp.OwpPET` + `cfe.CFE`, bmi_python) on
the same hydrofabric, forcing and config files. Measured: every output column of every catchment
and every nexus file is identical as written (9 significant digits), for the example's own files
and for a stress variant (rain x20, wet stores, Xinanjiang, 3 Nash reservoirs, energy-balance PET).
The asserts allow one unit in the 9th digit. Skipped only when no ngen binary is found.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from dmod.services.worker.models.array_bmi import ModelConfigError
from dmod.services.worker.models.cfe import CFE
from dmod.services.worker.models.cfe_config import KNOWN_KEYS, looks_like_cfe_config, read_cfe_config
from dmod.services.worker.models.pet_owp import read_pet_config

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("cfe_vs_real", ROOT / "bench" / "cfe_vs_real.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["cfe_vs_real"] = mod
    spec.loader.exec_module(mod)
    return mod


BENCH = _bench()
NGEN = BENCH.find_ngen()
EXAMPLE = BENCH.find_example(NGEN) if NGEN else None
needs_ngen = pytest.mark.skipif(EXAMPLE is None, reason="no ngen binary (DMOD_NGEN_PATH or ../shared/ngen/ngen)")


@needs_ngen
@pytest.mark.parametrize("variant", ["as_is", "stress"])
def test_embedded_cfe_matches_real_cfe(tmp_path, variant):
    result = BENCH.compare(NGEN, tmp_path, variant)
    assert len(result["catchments"]) == 5 and len(result["nexuses"]) == 3
    for cid, c in result["catchments"].items():
        assert c["steps"] == 720, cid
        assert not c["columns_missing"], (cid, c["columns_missing"])
        assert c["nse"] >= 0.999999, (cid, c["nse"])
        assert c["max_abs_diff_m"] <= 1e-9 * max(1.0, np.abs(c["volume_real_m"])), (cid, c["max_abs_diff_m"])
        assert abs(c["volume_diff_rel"]) <= 1e-7, (cid, c["volume_diff_rel"])
        for col, diff in c["columns_max_abs_diff"].items():
            assert diff <= 1e-8, (cid, col, diff)
    for nid, x in result["nexuses"].items():
        assert x["nse"] >= 0.999999, (nid, x)
        assert abs(x["volume_diff_rel"]) <= 1e-7, (nid, x)


# ---- config readers (need only the example's files, which come with the ngen build) -------------
def _example_dir() -> Path:
    if EXAMPLE is None:
        pytest.skip("no ngen example folder")
    return EXAMPLE


def _keys_of(path: Path) -> set[str]:
    return {line.split("=", 1)[0].strip() for line in path.read_text().splitlines() if "=" in line}


@needs_ngen
def test_every_key_of_the_real_cfe_configs_is_parsed():
    files = sorted((_example_dir() / "CFE").glob("*_bmi_config_cfe_pass.txt"))
    assert len(files) == 5
    for path in files:
        assert looks_like_cfe_config(path)
        cfg = read_cfe_config(path)
        keys = _keys_of(path)
        assert keys <= KNOWN_KEYS, keys - KNOWN_KEYS
        assert keys - {"DEBUG"} <= set(cfg.values), keys - set(cfg.values)
        text = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        assert cfg.get("soil_params.satdk") == float(text["soil_params.satdk"].split("[")[0])
        assert cfg.get("giuh_ordinates") == [float(x) for x in text["giuh_ordinates"].split(",")]
        assert cfg.get("nash_storage") == [0.0, 0.0] and cfg.get("N_nash") == 2
        assert cfg.scheme == 1 and cfg.get("forcing_file") == "BMI" and cfg.get("verbosity") == 1


@needs_ngen
def test_every_key_of_the_real_pet_configs_is_parsed():
    for path in sorted((_example_dir() / "PET").glob("*_pet_config.txt")):
        cfg = read_pet_config(path)
        assert _keys_of(path) - {"momentum_transfer_roughness_length"} <= set(cfg)
        assert cfg["pet_method"] == 3 and cfg["zero_plane_displacement_height_m"] == 0.0003


BASE = """forcing_file=BMI
surface_partitioning_scheme=Schaake
soil_params.depth=2.0[m]
soil_params.b=6.0[]
soil_params.satdk=4.698e-06[m s-1]
soil_params.satpsi=0.141000003[m]
soil_params.slop=0.028126024[m/m]
soil_params.smcmax=0.444680541[m/m]
soil_params.wltsmc=0.046999998[m/m]
soil_params.expon=1.0[]
soil_params.expon_secondary=1.0[]
refkdt=1.0992179
max_gw_storage=0.012863189697[m]
Cgw=1.8e-05[m h-1]
expon=7.0[]
gw_storage=0.35[m/m]
alpha_fc=0.33
soil_storage=0.35[m/m]
K_nash=0.03[]
K_lf=0.01[]
nash_storage=0.0,0.0
num_timesteps=1
verbosity=1
DEBUG=0
giuh_ordinates=0.63,0.37
"""


def _write(tmp_path, text: str, name: str = "cat-1_bmi_config_cfe_pass.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _replace(key: str, value: str | None) -> str:
    lines = [ln for ln in BASE.splitlines() if ln.split("=", 1)[0] != key]
    if value is not None:
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def test_reader_parses_the_full_key_set_and_aliases(tmp_path):
    cfg = read_cfe_config(_write(tmp_path, BASE))
    assert cfg.get("soil_params.b") == 6.0 and cfg.get("Cgw") == 1.8e-05 and cfg.get("refkdt") == 1.0992179
    alias = BASE.replace("soil_params.b=", "soil_params.bb=").replace("soil_params.slop=", "soil_params.slope=")
    alias = alias.replace("soil_params.smcmax=", "soil_params.maxsmc=").replace("soil_params.depth=", "soil_params.D=")
    cfg2 = read_cfe_config(_write(tmp_path, alias, "b.txt"))
    assert cfg2.values == cfg.values
    nash3 = read_cfe_config(_write(tmp_path, _replace("nash_storage", "0.1,0.2,0.3"), "n.txt"))
    assert nash3.get("N_nash") == 3
    assert read_cfe_config(_write(tmp_path, _replace("refkdt", None), "r.txt")).get("refkdt", 3.0) == 3.0


@pytest.mark.parametrize("key,value", [
    ("soil_params.satdk", "abc"), ("Cgw", "1.8e-05x[m h-1]"), ("K_nash", "nan"), ("giuh_ordinates", "0.5,,0.5"),
    ("giuh_ordinates", "0.5,x"), ("num_timesteps", "1.5"), ("verbosity", "one"), ("soil_params.smcmax", "1.5"),
    ("gw_storage", "2.0"), ("K_nash", "1.5"), ("nash_storage", "0,0,0,0"), ("soil_params.b", "0.5"),
    ("surface_partitioning_scheme", "Horton"), ("soil_params.wltsmc", "0.9"), ("max_gw_storage", "0"),
])
def test_bad_values_name_the_key(tmp_path, key, value):
    with pytest.raises(ModelConfigError, match=key.replace(".", r"\.")):
        read_cfe_config(_write(tmp_path, _replace(key, value)))


@pytest.mark.parametrize("key", ["soil_params.satdk", "giuh_ordinates", "Cgw", "verbosity", "forcing_file"])
def test_missing_required_key_is_named(tmp_path, key):
    with pytest.raises(ModelConfigError, match=f"missing key.*{key.replace('.', '[.]')}"):
        read_cfe_config(_write(tmp_path, _replace(key, None)))


def test_unknown_key_unsupported_options_and_malformed_lines(tmp_path):
    with pytest.raises(ModelConfigError, match="unknown key 'K_nsh'"):
        read_cfe_config(_write(tmp_path, BASE + "K_nsh=0.1\n"))
    with pytest.raises(ModelConfigError, match="forcing_file must be BMI"):
        read_cfe_config(_write(tmp_path, _replace("forcing_file", "forcing.csv")))
    with pytest.raises(ModelConfigError, match="Xinanjiang needs a_Xinanjiang"):
        read_cfe_config(_write(tmp_path, _replace("surface_partitioning_scheme", "Xinanjiang")))
    with pytest.raises(ModelConfigError, match="aet_rootzone"):
        read_cfe_config(_write(tmp_path, BASE + "aet_rootzone=true\n"))
    with pytest.raises(ModelConfigError, match="line 26: expected key=value"):
        read_cfe_config(_write(tmp_path, BASE + "just words\n"))
    with pytest.raises(ModelConfigError, match="not closed"):
        read_cfe_config(_write(tmp_path, _replace("Cgw", "1.8e-05[m h-1")))


def test_pet_reader_errors_name_the_key(tmp_path):
    good = ("pet_method=3\nforcing_file=BMI\nyes_aorc=1\nzero_plane_displacement_height_m=0.0003\n"
            "surface_shortwave_albedo=0.17\nshortwave_radiation_provided=1\n")
    assert read_pet_config(_write(tmp_path, good, "p.txt"))["pet_method"] == 3
    with pytest.raises(ModelConfigError, match="surface_shortwave_albedo"):
        read_pet_config(_write(tmp_path, good.replace("0.17", "x"), "p.txt"))
    with pytest.raises(ModelConfigError, match="pet_method 5 is not supported"):
        read_pet_config(_write(tmp_path, good.replace("pet_method=3", "pet_method=5"), "p.txt"))
    with pytest.raises(ModelConfigError, match="missing key zero_plane_displacement_height_m"):
        read_pet_config(_write(tmp_path, good.replace("zero_plane_displacement_height_m=0.0003\n", ""), "p.txt"))


def test_cfe_model_with_real_config_batch_equals_single_and_keeps_mass(tmp_path):
    """OWP structure: batch of catchments = single instances bit for bit; CFE's water balance holds
    (outside the soil-full branch, which CFE itself does not balance)."""
    texts = [BASE, _replace("giuh_ordinates", "0.2,0.5,0.3"), _replace("nash_storage", "0.001,0.0,0.002")]
    paths = [str(_write(tmp_path, t, f"c{i}.txt")) for i, t in enumerate(texts)]
    rng = np.random.default_rng(1)
    rain = rng.exponential(2e-4, (200, 3)) * (rng.random((200, 3)) < 0.2)
    pet = np.abs(rng.normal(3e-5, 2e-5, (200, 3)))
    batch = CFE()
    batch.initialize_batch(paths)
    singles = []
    for p in paths:
        m = CFE()
        m.initialize(p)
        singles.append(m)
    assert batch.get_output_var_names()[6] == "Q_OUT" and batch.get_time_step() == 3600.0
    start = batch.get_value_ptr("SOIL_STORAGE") + batch.get_value_ptr("GW_STORAGE")
    nash0 = batch._owp.nash.sum(axis=1).copy()
    q_total = np.zeros(3)
    et_total = np.zeros(3)
    for k in range(200):
        batch.set_value("atmosphere_water__liquid_equivalent_precipitation_rate", rain[k])
        batch.set_value("water_potential_evaporation_flux", pet[k])
        batch.update()
        q_total += batch.get_value_ptr("Q_OUT")
        et_total += batch.get_value_ptr("ACTUAL_ET")
        for i, m in enumerate(singles):
            m.set_value("atmosphere_water__liquid_equivalent_precipitation_rate", rain[k, i:i + 1])
            m.set_value("water_potential_evaporation_flux", pet[k, i:i + 1])
            m.update()
            for name in m.get_output_var_names():
                assert m.get_value_ptr(name)[0] == batch.get_value_ptr(name)[i], (k, i, name)
    end = (batch.get_value_ptr("SOIL_STORAGE") + batch.get_value_ptr("GW_STORAGE") + batch._owp.nash.sum(axis=1)
           + batch._owp.queue.sum(axis=1))
    precip = rain.sum(axis=0) * 3.6
    np.testing.assert_allclose(precip, q_total + et_total + end - start - nash0, rtol=0, atol=1e-12)
