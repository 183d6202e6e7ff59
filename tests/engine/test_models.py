"""The BMI models: mass balance, batch == single instance, configuration errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmod.services.worker.models.array_bmi import ModelConfigError
from dmod.services.worker.models.cfe import CFE, PRECIP
from dmod.services.worker.models.init_configs import cfe_params, write_init_configs
from dmod.services.worker.models.passthrough import PassThrough
from dmod.services.worker.models.pet import PET_FLUX, SHORTWAVE, TEMPERATURE, PriestleyTaylorPET

K = 400


def _forcing(n: int, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    hours = np.arange(K)[:, None]
    storms = (rng.random((K, n)) < 0.15) * rng.exponential(0.003, (K, n))  # mm/s bursts
    return {PRECIP: storms,
            TEMPERATURE: 283.0 + 8 * np.sin(2 * np.pi * (hours - 9) / 24) + rng.normal(0, 1, (K, n)),
            SHORTWAVE: np.clip(700 * np.sin(np.pi * (hours % 24 - 6) / 12), 0, None) * np.ones((1, n))}


def _run(model, forcing: dict[str, np.ndarray], cols=slice(None)) -> dict[str, np.ndarray]:
    names = ["Q_OUT", "ACTUAL_ET", "PRECIP_DEPTH", "TOTAL_STORAGE"]
    out = {v: [] for v in names}
    for k in range(K):
        for var in model.get_input_var_names():
            model.set_value(var, forcing[var][k, cols])
        model.update()
        for v in names:
            out[v].append(model.get_value_ptr(v).copy())
    return {v: np.array(a) for v, a in out.items()}


@pytest.mark.parametrize("pet_method", ["constant", "priestley_taylor"])
def test_cfe_mass_balance(tmp_path, pet_method):
    ids = [f"cat-{i}" for i in range(25)]
    paths = write_init_configs(ids, tmp_path, overrides={"pet_method": pet_method})
    model = CFE()
    model.initialize_batch([paths[i] for i in ids])
    s0 = model.get_value_ptr("TOTAL_STORAGE").copy()
    out = _run(model, _forcing(len(ids)))
    rain = out["PRECIP_DEPTH"].sum(axis=0)
    et = out["ACTUAL_ET"].sum(axis=0)
    runoff = (out["Q_OUT"] * 1.0).sum(axis=0)  # m/h over 1 h steps
    storage_change = out["TOTAL_STORAGE"][-1] - s0
    residual = rain - et - runoff - storage_change
    assert rain.min() > 0.05 and runoff.min() > 0 and et.min() > 0  # every term exercised
    assert np.abs(residual).max() < 1e-12 * max(1.0, rain.max())


def test_cfe_batch_equals_single_instances(tmp_path):
    ids = [f"cat-{i}" for i in range(12)]
    paths = write_init_configs(ids, tmp_path, overrides={"pet_method": "priestley_taylor"})
    forcing = _forcing(len(ids), seed=9)
    batch = CFE()
    batch.initialize_batch([paths[i] for i in ids])
    together = _run(batch, forcing)
    for j in (0, 5, 11):
        single = CFE()
        single.initialize(paths[ids[j]])
        alone = _run(single, forcing, cols=slice(j, j + 1))
        for v in together:
            assert np.array_equal(alone[v][:, 0], together[v][:, j]), v  # bit-for-bit


def test_cfe_bmi_metadata_and_params(tmp_path):
    path = write_init_configs(["cat-1"], tmp_path, overrides={"pet_method": "input"})["cat-1"]
    m = CFE()
    m.initialize(path)
    assert set(m.get_input_var_names()) == {PRECIP, PET_FLUX}
    assert m.get_var_units("Q_OUT") == "m h-1" and m.get_var_units(PRECIP) == "mm s-1"
    assert m.get_time_step() == 3600 and m.get_time_units() == "s" and m.get_grid_size(0) == 1
    before = m.get_value_ptr("SOIL_STORAGE").copy()
    m.set_value("soil_depth_m", np.array([3.0]))  # model_params before the first update re-initialise
    assert m.get_value_ptr("SOIL_STORAGE")[0] == pytest.approx(before[0] * 3.0 / cfe_params("cat-1")["soil_depth_m"])


def test_cfe_config_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"soil_dept_m": 2.0}))
    with pytest.raises(ModelConfigError, match="unknown key.*soil_dept_m"):
        CFE().initialize(str(bad))
    bad.write_text(json.dumps({"field_capacity": 0.6, "smcmax": 0.4}))
    with pytest.raises(ModelConfigError, match="field_capacity"):
        CFE().initialize(str(bad))
    with pytest.raises(ModelConfigError, match="cannot read"):
        CFE().initialize(str(tmp_path / "missing.yml"))


def test_passthrough_and_pet():
    p = PassThrough()
    p.initialize("")
    p.set_value(PRECIP, np.array([0.001]))  # 1e-3 mm/s = 3.6e-3 m/h
    p.update()
    assert p.get_value_ptr("Q_OUT")[0] == pytest.approx(0.0036)
    pet = PriestleyTaylorPET()
    pet.initialize_batch(["", ""])
    pet.set_value(TEMPERATURE, np.array([293.15, 293.15]))
    pet.set_value(SHORTWAVE, np.array([0.0, 600.0]))
    pet.update()
    flux = pet.get_value_ptr(PET_FLUX)
    assert flux[0] == 0.0 and 0.5 / 3600 < flux[1] < 2.0 / 3600  # ~0.5-2 mm/h at midday


def test_init_configs_are_deterministic_per_catchment(tmp_path):
    a = write_init_configs(["cat-7", "cat-8"], tmp_path / "a")
    b = write_init_configs(["cat-8"], tmp_path / "b", fmt="yaml")
    assert json.loads(Path(a["cat-8"]).read_text()) == cfe_params("cat-8") | {"time_step_seconds": 3600}
    m1, m2 = CFE(), CFE()
    m1.initialize(a["cat-8"])
    m2.initialize(b["cat-8"])
    assert all(np.array_equal(m1.get_value_ptr(k), m2.get_value_ptr(k)) for k in ("smcmax", "nash_n", "cgw"))
