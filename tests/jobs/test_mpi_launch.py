"""The MPI a model binary links, the launcher that matches it, and the rank guard: unit tests,
then the worker agent (`dmod worker run --spec`, no server) running the real ngen build on two
ranks, with the right launcher and with a mismatched one (DMOD_MPIEXEC = the venv's MPICH)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dmod.services.worker.agent import mpi

REPO = Path(__file__).resolve().parents[2]
VENV_MPIEXEC = Path(sys.executable).parent / "mpiexec"


def _ngen() -> Path | None:
    given = os.environ.get("DMOD_NGEN_PATH")
    path = Path(given) if given else REPO.parent / "shared" / "ngen" / "ngen"
    return path if path.is_file() and os.access(path, os.X_OK) else None


NGEN = _ngen()
needs_ngen = pytest.mark.skipif(NGEN is None, reason="no ngen binary (DMOD_NGEN_PATH or ../shared/ngen/ngen)")


# ---- detection ----------------------------------------------------------------------------------
def test_family_of_library_names():
    assert mpi.family_of_library("libmpi.so.40") == mpi.OPENMPI
    assert mpi.family_of_library("libmpi.so.40.30.4") == mpi.OPENMPI
    assert mpi.family_of_library("libopen-rte.so.40") == mpi.OPENMPI
    assert mpi.family_of_library("libmpi.so.12") == mpi.MPICH
    assert mpi.family_of_library("libmpich.so.12") == mpi.MPICH
    assert mpi.family_of_library("/opt/x/lib/libmpi.so.99") == "unknown"
    assert mpi.family_of_library("/usr/lib/openmpi/lib/libmpi.so.99") == mpi.OPENMPI
    assert mpi.family_of_library("libc.so.6") == ""
    assert mpi.family_of_library("libmpfr.so.6") == ""


def test_binary_mpi_of_system_files(tmp_path):
    assert mpi.binary_mpi("/bin/sh").family == ""
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert mpi.binary_mpi(text).family == "unknown"
    truncated = tmp_path / "trunc"
    truncated.write_bytes(Path("/bin/sh").read_bytes()[:40])
    assert mpi.binary_mpi(truncated).family == "unknown"


def test_mpi4py_builds_are_told_apart():
    import mpi4py

    found = {p.name.split(".")[1]: mpi.binary_mpi(p).family for p in Path(mpi4py.__file__).parent.glob("MPI.*.so")}
    if not found:
        pytest.skip("mpi4py has no per-MPI extension modules here")
    assert found.get("mpich", mpi.MPICH) == mpi.MPICH
    assert found.get("openmpi", mpi.OPENMPI) == mpi.OPENMPI


@needs_ngen
def test_ngen_binary_links_openmpi():
    linked = mpi.binary_mpi(NGEN)
    assert linked.family == mpi.OPENMPI and linked.library == "libmpi.so.40" and linked.how == "DT_NEEDED"


# ---- launcher choice and argv -------------------------------------------------------------------
def test_launcher_for_each_family(monkeypatch):
    monkeypatch.delenv("DMOD_MPIEXEC", raising=False)
    mpich = mpi.choose_launcher(mpi.BinaryMpi(mpi.MPICH, "libmpi.so.12", "DT_NEEDED"))
    assert mpich.family == mpi.MPICH and mpi.launcher_family(mpich.path) == mpi.MPICH
    if VENV_MPIEXEC.exists():
        assert mpich.path == str(VENV_MPIEXEC)
    try:
        ompi = mpi.choose_launcher(mpi.BinaryMpi(mpi.OPENMPI, "libmpi.so.40", "DT_NEEDED"))
    except mpi.LauncherNotFound:
        pytest.skip("no Open MPI launcher on this host")
    assert mpi.launcher_family(ompi.path) == mpi.OPENMPI
    with pytest.raises(mpi.LauncherNotFound):
        mpi.choose_launcher(mpi.BinaryMpi("", how="no MPI"))


def test_dmod_mpiexec_overrides(monkeypatch):
    monkeypatch.setenv("DMOD_MPIEXEC", str(VENV_MPIEXEC))
    chosen = mpi.choose_launcher(mpi.BinaryMpi(mpi.OPENMPI, "libmpi.so.40", "DT_NEEDED"))
    assert chosen.path == str(VENV_MPIEXEC) and chosen.how == "DMOD_MPIEXEC"


def test_launch_argv(tmp_path):
    assert mpi.launch_argv(None, 1) == ([], {})
    ompi = mpi.Launcher("/usr/bin/mpirun.openmpi", mpi.OPENMPI, "found")
    argv, env = mpi.launch_argv(ompi, 3, cores=2)
    assert argv == ["/usr/bin/mpirun.openmpi", "-n", "3", "--oversubscribe"]
    assert (env.get("OMPI_ALLOW_RUN_AS_ROOT") == "1") == (os.geteuid() == 0)
    argv, _ = mpi.launch_argv(ompi, 2, cores=2)
    assert "--oversubscribe" not in argv
    hosts = tmp_path / "hostfile"
    hosts.write_text("10.0.0.1:2\n10.0.0.2:3\n")
    argv, _ = mpi.launch_argv(ompi, 5, hosts, cores=2)
    converted = Path(argv[argv.index("--hostfile") + 1])
    assert converted.read_text() == "10.0.0.1 slots=2\n10.0.0.2 slots=3\n"
    hydra = mpi.Launcher(str(VENV_MPIEXEC), mpi.MPICH, "x")
    assert mpi.launch_argv(hydra, 5, hosts, cores=2) == ([str(VENV_MPIEXEC), "-n", "5", "-f", str(hosts)], {})


# ---- the rank wrapper and guard -----------------------------------------------------------------
def _wrapped(family: str, env: dict) -> str:
    argv = mpi.rank_wrapper(["echo", "model ran"], family)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_"))}
    out = subprocess.run(argv, capture_output=True, text=True, env={**clean, **env}, check=True)
    assert out.stdout == "model ran\n"
    return out.stderr.strip()


def test_rank_wrapper_reads_the_family_variables():
    assert _wrapped(mpi.OPENMPI, {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"}) == \
        "[dmod] rank 1 of 2 (Open MPI)"
    assert _wrapped(mpi.OPENMPI, {"PMI_RANK": "1", "PMI_SIZE": "2"}) == "[dmod] rank 0 of 1 (Open MPI)"
    assert _wrapped(mpi.MPICH, {"PMI_RANK": "3", "PMI_SIZE": "4"}) == "[dmod] rank 3 of 4 (MPICH)"
    assert _wrapped(mpi.MPICH, {}) == "[dmod] rank 0 of 1 (MPICH)"
    assert _wrapped("unknown", {"PMI_RANK": "1", "PMI_SIZE": "2"}) == "[dmod] rank 1 of 2 (unknown)"


def test_rank_guard():
    guard = mpi.RankGuard(2, "mpiexec", "ngen links Open MPI")
    assert not guard.feed("Running timestep 1 of 3")
    assert guard.feed("[dmod] rank 1 of 2 (Open MPI)") and not guard.problem
    assert guard.missing() == [0]
    assert guard.feed("[dmod] rank 0 of 2 (Open MPI)") and not guard.problem and guard.missing() == []
    singleton = mpi.RankGuard(2, "/venv/bin/mpiexec", "ngen links Open MPI")
    singleton.feed("[dmod] rank 0 of 1 (Open MPI)")
    assert "MPI singleton" in singleton.problem and "/venv/bin/mpiexec" in singleton.problem
    twice = mpi.RankGuard(2, "l", "b")
    twice.feed("[dmod] rank 0 of 2 (MPICH)")
    twice.feed("[dmod] rank 0 of 2 (MPICH)")
    assert "twice" in twice.problem


# ---- the worker agent running real ngen ---------------------------------------------------------
@pytest.fixture(scope="module")
def ngen_case(tmp_path_factory) -> Path:
    """A 30-catchment synthetic domain, the test BMI model realization, a METIS partition for 2."""
    base = tmp_path_factory.mktemp("mpi-case")
    dmod = [sys.executable, "-m", "dmod.cli.main"]
    subprocess.run([*dmod, "hydrofabric", "synth", str(base / "hf"), "-c", "30"], check=True, capture_output=True)
    gpkg = base / "hf" / "hydrofabric.gpkg"
    subprocess.run([*dmod, "hydrofabric", "partition", str(gpkg), "-k", "2", "-m", "metis", "-o",
                    str(base / "partitions.json")], check=True, capture_output=True)
    (base / "config").mkdir()
    (base / "config" / "test.ini").write_text("epoch_start_time=1448928000\nnum_time_steps=720\n"
                                              "time_step_size=3600\nmodel_end_time=1451516400\n")
    library = NGEN.parent / "lib" / "libtestbmicppmodel.so"
    (base / "realization.json").write_text(json.dumps({
        "global": {"formulations": [{"name": "bmi_c++", "params": {
            "model_type_name": "test_bmi_cpp", "library_file": str(library), "init_config": "./config/test.ini",
            "create_function": "bmi_model_create", "destroy_function": "bmi_model_destroy",
            "main_output_variable": "OUTPUT_VAR_1", "uses_forcing_file": False,
            "variables_names_map": {"INPUT_VAR_1": "precip_rate", "INPUT_VAR_2": "TMP_2maboveground"}}}],
            "forcing": {"provider": "CsvPerFeature", "path": "./forcing/", "file_pattern": "{{id}}.csv"}},
        "time": {"start_time": "2015-12-01 00:00:00", "end_time": "2015-12-02 23:00:00", "output_interval": 3600},
        "output": {"root": "./output/"}}))
    (base / "spec.json").write_text(json.dumps({
        "start_time": "2015-12-01 00:00:00", "end_time": "2015-12-02 23:00:00",
        "inputs": {"hydrofabric": str(gpkg), "realization": str(base / "realization.json"),
                   "forcing": str(base / "hf" / "forcing"), "partition": str(base / "partitions.json"),
                   "bmi_config": str(base / "config")}}))
    return base


def _worker(case: Path, workdir: Path, ranks: int, **env) -> tuple[int, str, dict]:
    run_env = {**os.environ, "DMOD_NGEN_PATH": str(NGEN), **env}
    if "DMOD_MPIEXEC" not in env:
        run_env.pop("DMOD_MPIEXEC", None)
    out = subprocess.run([sys.executable, "-m", "dmod.services.worker", "run", "--spec", str(case / "spec.json"),
                          "--engine", "ngen", "--ranks", str(ranks), "--workdir", str(workdir)],
                         check=False, capture_output=True, text=True, env=run_env, timeout=300)
    return out.returncode, out.stdout + out.stderr, json.loads((workdir / "exit.json").read_text())


def _outputs(workdir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((workdir / "run" / "output").iterdir())}


@needs_ngen
def test_two_ngen_ranks_under_the_matching_launcher(ngen_case, tmp_path):
    code, log, _ = _worker(ngen_case, tmp_path / "two", 2)
    assert code == 0, log[-3000:]
    assert "[dmod] rank 0 of 2 (Open MPI)" in log and "[dmod] rank 1 of 2 (Open MPI)" in log
    code, log1, _ = _worker(ngen_case, tmp_path / "one", 1)
    assert code == 0, log1[-3000:]
    assert "directly (one rank, no launcher)" in log1 and "[dmod] rank 0 of 1 (Open MPI)" in log1
    assert _outputs(tmp_path / "two") == _outputs(tmp_path / "one")


@needs_ngen
def test_mismatched_launcher_fails_with_mpi_mismatch(ngen_case, tmp_path):
    code, log, exit_ = _worker(ngen_case, tmp_path / "bad", 2, DMOD_MPIEXEC=str(VENV_MPIEXEC))
    assert code == 5, log[-3000:]
    assert exit_["reason"] == "MPI_MISMATCH"
    assert str(VENV_MPIEXEC) in exit_["message"] and "Open MPI" in exit_["message"]
    assert "rank 0 of 1" in exit_["message"]


@needs_ngen
def test_auto_engine_of_a_standalone_worker_follows_the_realization(ngen_case, tmp_path):
    """engine=auto with an ngen installed: a bmi_c++ realization runs on ngen, a bmi_python one on
    the embedded engine (this ngen has no Python) instead of ngen aborting."""
    doc = json.loads((ngen_case / "realization.json").read_text())
    python_doc = {**doc, "global": {**doc["global"], "formulations": [{"name": "bmi_python", "params": {
        "model_type_name": "PassThrough", "python_type": "dmod.services.worker.models.passthrough.PassThrough",
        "init_config": "", "main_output_variable": "Q_OUT", "uses_forcing_file": False,
        "variables_names_map": {"atmosphere_water__liquid_equivalent_precipitation_rate": "precip_rate"}}}]}}
    case = tmp_path / "case"
    case.mkdir()
    (case / "realization.json").write_text(json.dumps(python_doc))
    spec = json.loads((ngen_case / "spec.json").read_text())
    spec["inputs"]["realization"] = str(case / "realization.json")
    (case / "spec.json").write_text(json.dumps(spec))
    for folder, expected in ((ngen_case, "running ngen"), (case, "running embedded")):
        workdir = tmp_path / f"run-{expected.split()[-1]}"
        out = subprocess.run([sys.executable, "-m", "dmod.services.worker", "run", "--spec", str(folder / "spec.json"),
                              "--ranks", "2", "--workdir", str(workdir)], check=False, capture_output=True, text=True,
                             env={**os.environ, "DMOD_NGEN_PATH": str(NGEN)}, timeout=300)
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
        assert expected in out.stdout + out.stderr
