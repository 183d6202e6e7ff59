"""Engine test fixtures: one small synthetic domain (hydrofabric + forcing + model configs) per
session, and helpers to write realizations and run the engine in-process or as a process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import netCDF4
import numpy as np
import pytest

from dmod.services.hydrofabric import load_network, synth
from dmod.services.worker.models.init_configs import write_init_configs

VENV_BIN = Path(sys.executable).parent
HOURS = 48
START, END = "2015-12-01 00:00:00", "2015-12-02 23:00:00"
CFE = "dmod.services.worker.models.cfe.CFE"
PET = "dmod.services.worker.models.pet.PriestleyTaylorPET"
PASS = "dmod.services.worker.models.passthrough.PassThrough"
PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
TEMP = "land_surface_air__temperature"
SW = "land_surface_radiation~incoming~shortwave__energy_flux"
AORC_MAP = {PRECIP: "precip_rate", TEMP: "TMP_2maboveground", SW: "DSWRF_surface"}


@dataclass
class Domain:
    root: Path
    gpkg: str
    cat_geojson: str
    nex_geojson: str
    netcdf: str
    csv_dir: str
    network: object

    @property
    def ids(self) -> list[str]:
        return [str(c) for c in self.network.catchment_ids.tolist()]

    def argv(self, realization: str, partitions: str | None = None, geojson: bool = False) -> list[str]:
        cat, nex = (self.cat_geojson, self.nex_geojson) if geojson else (self.gpkg, self.gpkg)
        return [cat, "all", nex, "all", realization] + ([partitions] if partitions else [])


def _csv_from_netcdf(nc_path: str, out_dir: Path) -> None:
    """Per-catchment CSV forcing holding exactly the NetCDF values (repr round-trips float64)."""
    out_dir.mkdir(exist_ok=True)
    with netCDF4.Dataset(nc_path) as ds:
        ids = [str(i) for i in ds["ids"][:].tolist()]
        secs = np.asarray(ds["Time"][0, :], dtype=np.int64)
        labels = [str(t).replace("T", " ") for t in secs.astype("datetime64[s]")]
        names = ["precip_rate", "TMP_2maboveground", "DSWRF_surface", "APCP_surface"]
        data = {v: np.asarray(ds[v][:, :], dtype=np.float64) for v in names}
    for i, cid in enumerate(ids):
        rows = [f"{labels[t]}," + ",".join(repr(float(data[v][i, t])) for v in names) for t in range(len(labels))]
        (out_dir / f"{cid}.csv").write_text("time," + ",".join(names) + "\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="session")
def domain(tmp_path_factory) -> Domain:
    root = tmp_path_factory.mktemp("engine")
    m = synth(root / "hf", catchments=60, seed=11, outlets=1, forcing="netcdf", hours=HOURS, geojson=True,
              start=START)  # one basin: every partition cuts through confluences
    net = load_network(m["gpkg"])
    csv_dir = root / "forcing_csv"
    _csv_from_netcdf(m["forcing_netcdf"]["path"], csv_dir)
    ids = [str(c) for c in net.catchment_ids.tolist()]
    write_init_configs(ids, root / "cfe_pt", overrides={"pet_method": "priestley_taylor"})
    write_init_configs(ids, root / "cfe_in", fmt="yaml", overrides={"pet_method": "input"})
    write_init_configs(ids, root / "pet", model="pet")
    return Domain(root=root, gpkg=m["gpkg"], cat_geojson=m["geojson"]["catchments"],
                  nex_geojson=m["geojson"]["nexus"], netcdf=m["forcing_netcdf"]["path"], csv_dir=str(csv_dir),
                  network=net)


def cfe_formulation(init: str = "./cfe_pt/{{id}}.json", outputs=("Q_OUT", "ACTUAL_ET"), **params) -> dict:
    return {"name": "bmi_python", "params": {
        "model_type_name": "CFE", "python_type": CFE, "init_config": init,
        "main_output_variable": "Q_OUT", "variables_names_map": dict(AORC_MAP), "uses_forcing_file": False,
        "output_variables": list(outputs), **params}}


def realization(formulation: dict, forcing: dict, out: str = "./out/", **extra) -> dict:
    doc = {"global": {"formulations": [formulation], "forcing": forcing},
           "time": {"start_time": START, "end_time": END, "output_interval": 3600},
           "output": {"root": out, "catchment": {"enable": True}, "nexus": {"format": "csv"}}}
    doc.update(extra)
    return doc


def netcdf_forcing(d: Domain) -> dict:
    return {"provider": "NetCDF", "path": d.netcdf}


def csv_forcing(d: Domain) -> dict:
    return {"provider": "CsvPerFeature", "path": d.csv_dir, "file_pattern": ".*{{id}}.*\\.csv"}


def write_json(path: Path, doc: dict) -> str:
    path.write_text(json.dumps(doc, indent=1))
    return str(path)


def read_outputs(out_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}


def run_cli(args: list[str], cwd: Path, ranks: int = 1, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dmod.services.worker.engine", *args]
    if ranks > 1:
        cmd = [str(VENV_BIN / "mpiexec"), "-n", str(ranks), *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_"))}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture
def workdir(domain: Domain, tmp_path: Path) -> Path:
    """A job directory with links to the shared init configs (relative paths resolve here)."""
    for name in ("cfe_pt", "cfe_in", "pet"):
        (tmp_path / name).symlink_to(domain.root / name)
    return tmp_path


@pytest.fixture(scope="session")
def eng() -> SimpleNamespace:
    """Helpers for the tests (importlib import mode: tests cannot import conftest by name)."""
    return SimpleNamespace(cfe_formulation=cfe_formulation, realization=realization, netcdf_forcing=netcdf_forcing,
                           csv_forcing=csv_forcing, write_json=write_json, read_outputs=read_outputs, run_cli=run_cli,
                           CFE=CFE, PET=PET, PASS=PASS, PRECIP=PRECIP, TEMP=TEMP, SW=SW, AORC_MAP=AORC_MAP,
                           HOURS=HOURS, START=START, END=END)
