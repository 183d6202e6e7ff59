"""`dmod demo --engine ngen`: the compiled SLoTH + PET + CFE models on the real ngen, with CFE/PET
configs DMOD writes itself (services/worker/models/owp_configs.py).

Config tests need no ngen; the direct run and the demo job skip only when no ngen binary is found.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from dmod.cli import demo
from dmod.services.hydrofabric import load_network, synth
from dmod.services.worker.models import owp_configs as owp
from dmod.services.worker.models.cfe_config import read_cfe_config
from dmod.services.worker.models.pet_owp import read_pet_config
from dmod.v1 import datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc

from . import ngenkit

needs_ngen = pytest.mark.skipif(ngenkit.ngen_binary() is None, reason="no ngen binary")
HOURS = 48


@pytest.fixture(scope="module")
def domain(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("owp")
    manifest = synth(base / "synth", catchments=14, seed=7, hours=HOURS, forcing="csv", start=demo.START,
                     gage_fraction=0.2)
    ids = [str(c) for c in load_network(manifest["gpkg"]).catchment_ids.tolist()]
    sites = owp.hydrofabric_sites(manifest["gpkg"], ids)
    written = owp.write_owp_configs(ids, base / "models", sites=sites, seed=7, hours=HOURS)
    return {"base": base, "manifest": manifest, "ids": ids, "sites": sites, "written": written}


def test_generated_cfe_and_pet_configs_parse_with_the_readers(domain):
    elevation = load_network(domain["manifest"]["gpkg"], attributes=["mean.elevation"])
    elev = dict(zip(elevation.catchment_ids.tolist(), elevation.attributes["mean.elevation"].tolist()))
    assert set(domain["written"]) == set(domain["ids"])
    for cid, paths in domain["written"].items():
        assert paths["cfe"].endswith(f"CFE/{cid}_bmi_config_cfe_pass.txt")
        assert paths["pet"].endswith(f"PET/{cid}_pet_config.txt")
        cfe = read_cfe_config(paths["cfe"])
        assert cfe.scheme == 1 and cfe.get("forcing_file") == "BMI"
        assert cfe.get("N_nash") >= 2 and math.isclose(sum(cfe.get("giuh_ordinates")), 1.0, abs_tol=1e-5)
        assert cfe.get("soil_params.wltsmc") < cfe.get("soil_params.smcmax")
        assert cfe.get("num_timesteps") == HOURS
        pet = read_pet_config(paths["pet"])
        assert pet["pet_method"] == 3 and pet["yes_aorc"] == 1 and pet["num_timesteps"] == HOURS
        # per-catchment site from the hydrofabric: centroid in WGS 84, elevation from mean.elevation
        assert -90 <= pet["latitude_degrees"] <= 90 and -180 <= pet["longitude_degrees"] <= 180
        assert pet["latitude_degrees"] != 0 and pet["longitude_degrees"] != 0
        assert pet["site_elevation_m"] == pytest.approx(elev[cid], abs=1e-3)
    lats = {read_pet_config(p["pet"])["latitude_degrees"] for p in domain["written"].values()}
    assert len(lats) > 1  # not one site for the whole domain
    # the draw is seeded by the catchment id: same id, same file
    again = owp.write_owp_configs(domain["ids"][:1], domain["base"] / "again", sites=domain["sites"], seed=7,
                                  hours=HOURS)
    cid = domain["ids"][0]
    assert Path(again[cid]["cfe"]).read_text() == Path(domain["written"][cid]["cfe"]).read_text()


def test_configs_without_hydrofabric_sites_still_parse(tmp_path):
    written = owp.write_owp_configs(["cat-1"], tmp_path, hours=24)
    read_cfe_config(written["cat-1"]["cfe"])
    pet = read_pet_config(written["cat-1"]["pet"])
    assert pet["latitude_degrees"] == 0.0 and pet["site_elevation_m"] == 0.0


def test_realization_is_a_sloth_pet_cfe_bmi_multi():
    doc = owp.sloth_pet_cfe_realization(demo.START, "2015-12-02 23:00:00")
    multi = doc["global"]["formulations"][0]
    assert multi["name"] == "bmi_multi"
    sloth, pet, cfe = multi["params"]["modules"]
    assert (sloth["name"], pet["name"], cfe["name"]) == ("bmi_c++", "bmi_c", "bmi_c")
    assert sloth["params"]["library_file"] == "./lib/libslothmodel.so"
    assert pet["params"]["library_file"] == "./lib/libpetbmi.so"
    assert pet["params"]["registration_function"] == "register_bmi_pet"
    assert pet["params"]["init_config"] == "./PET/{{id}}_pet_config.txt"
    assert cfe["params"]["library_file"] == "./lib/libcfebmi.so"
    assert cfe["params"]["registration_function"] == "register_bmi_cfe"
    assert cfe["params"]["init_config"] == "./CFE/{{id}}_bmi_config_cfe_pass.txt"
    assert cfe["params"]["variables_names_map"]["ice_fraction_schaake"] == "sloth_ice_fraction_schaake"
    assert multi["params"]["main_output_variable"] == "Q_OUT"


def test_missing_model_library_names_it_and_the_flag(tmp_path):
    (tmp_path / "libslothmodel.so").write_bytes(b"not used")
    with pytest.raises(demo.DemoError) as err:
        demo.find_models(tmp_path)
    text = str(err.value)
    assert "libpetbmi.so" in text and "libcfebmi.so" in text and "--models" in text
    assert "libslothmodel.so (" not in text  # the one present is not reported missing


def test_models_option_needs_engine_ngen():
    run = subprocess.run([sys.executable, "-m", "dmod.cli.main", "demo", "--models", "/nonexistent"],
                         check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--engine ngen" in run.stdout


@needs_ngen
def test_models_default_to_lib_next_to_the_ngen_binary(monkeypatch):
    binary = ngenkit.ngen_binary()
    monkeypatch.setenv("DMOD_NGEN_PATH", str(binary))
    assert demo.find_models() == binary.parent / "lib"


@needs_ngen
def test_ngen_runs_the_generated_configs_directly(domain, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    models = domain["base"] / "models"
    (run / "lib").symlink_to(ngenkit.ngen_binary().parent / "lib", target_is_directory=True)
    (run / "CFE").symlink_to(models / "CFE", target_is_directory=True)
    (run / "PET").symlink_to(models / "PET", target_is_directory=True)
    (run / "forcing").symlink_to(Path(domain["manifest"]["forcing_csv"]["path"]), target_is_directory=True)
    (run / "hf.gpkg").symlink_to(domain["manifest"]["gpkg"])
    (run / "output").mkdir()
    end = domain["manifest"]["forcing_time"]["end_time"]
    (run / "realization.json").write_text(json.dumps(owp.sloth_pet_cfe_realization(demo.START, end)))
    done = subprocess.run([str(ngenkit.ngen_binary()), "hf.gpkg", "all", "hf.gpkg", "all", "realization.json"],
                          check=False, cwd=run, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for cid in domain["ids"]:
        lines = (run / "output" / f"{cid}.csv").read_text().splitlines()
        assert len(lines) == HOURS + 1 and "Q_OUT" in lines[0]
        assert all("nan" not in line.lower() for line in lines[1:])
    assert list((run / "output").glob("nex-*_output.csv"))


@needs_ngen
async def test_demo_engine_ngen_runs_on_the_stack(stack):
    env = dict(os.environ, COLUMNS="200")  # DMOD_GATEWAY/DMOD_HOME/DMOD_NGEN_PATH: the session stack's
    argv = [sys.executable, "-m", "dmod.cli.main", "demo", "--engine", "ngen", "--catchments", "20", "--seed", "5"]
    done = await asyncio.to_thread(subprocess.run, argv, check=False, capture_output=True, text=True, timeout=900,
                                   env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    name = re.search(r"jobs/[0-9a-f]{32}", done.stdout).group(0)
    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        job = (await jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(name=name))).job
        assert job.state == jobs_pb2.JOB_STATE_SUCCEEDED, (job.state_reason, job.state_message)
        assert job.engine == "ngen"
        assert job.spec.engine == "ngen" and job.spec.bmi_library_dataset and not job.spec.bmi_config_dataset
        datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
        objects = (await datasets.ListObjects(datasets_pb2.ListObjectsRequest(
            parent=job.spec.bmi_library_dataset, page_size=1000))).objects
        library = {o.path for o in objects}
        outputs = set()
        token = ""
        while True:
            reply = await datasets.ListObjects(datasets_pb2.ListObjectsRequest(parent=job.output_dataset,
                                                                               page_size=1000, page_token=token))
            outputs |= {o.path for o in reply.objects}
            token = reply.next_page_token
            if not token:
                break
    assert {"lib/libslothmodel.so", "lib/libpetbmi.so", "lib/libcfebmi.so"} <= library
    folder = Path(os.environ["DMOD_HOME"]) / "demo" / job.labels["demo"]  # what the demo wrote locally
    ids = sorted(p.name.removesuffix("_pet_config.txt") for p in (folder / "models" / "PET").iterdir())
    assert len(ids) == 20
    assert {f"CFE/{c}_bmi_config_cfe_pass.txt" for c in ids} | {f"PET/{c}_pet_config.txt" for c in ids} <= library
    names = {p.rsplit("/", 1)[-1] for p in outputs}
    assert {f"{c}.csv" for c in ids} <= names  # one CFE output per catchment
    assert any(re.fullmatch(r"(nex|tnx)-\d+_output\.csv", n) for n in names)
