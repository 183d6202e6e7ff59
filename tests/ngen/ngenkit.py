"""Run the real ngen binary directly (no DMOD in between) for tests and benchmarks.

The binary is `DMOD_NGEN_PATH` or the shared test build at `../shared/ngen/ngen` next to the
repository. Runs use ngen's own C++ test BMI model (`libtestbmicppmodel.so`, shipped beside that
build in `lib/`), CSV forcing per catchment and a GeoPackage hydrofabric: everything a job needs
and nothing DMOD-specific, so a DMOD job's outputs can be compared byte for byte.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_NGEN = REPO.parent / "shared" / "ngen"
START = "2015-12-01 00:00:00"
_TIME = "%Y-%m-%d %H:%M:%S"


def ngen_binary() -> Path | None:
    given = os.environ.get("DMOD_NGEN_PATH")
    path = Path(given) if given else SHARED_NGEN / "ngen"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def test_model_library() -> Path:
    """ngen's C++ test BMI model next to the binary (`lib/libtestbmicppmodel.so`)."""
    binary = ngen_binary()
    base = binary.parent if binary is not None else SHARED_NGEN
    return base / "lib" / "libtestbmicppmodel.so"


def openmpi_run() -> list[str]:
    """argv prefix of OpenMPI's launcher (the build links OpenMPI), allowed to run as root and to
    place more ranks than cores."""
    launcher = shutil.which("mpirun.openmpi") or "/usr/bin/mpirun"
    argv = [launcher, "--oversubscribe"]
    if os.geteuid() == 0:
        argv.append("--allow-run-as-root")
    return argv


def test_model_config(start: str = START, hours: int = 720) -> str:
    """Init config of the test BMI model (key=value, no spaces; ngen's test_bmi_c_config.ini)."""
    epoch = int(dt.datetime.strptime(start, _TIME).replace(tzinfo=dt.UTC).timestamp())
    return (f"epoch_start_time={epoch}\nnum_time_steps={hours}\ntime_step_size=3600\n"
            f"model_end_time={epoch + 3600 * hours}\n")


def test_model_realization(start: str = START, hours: int = 720, library: str | None = None,
                           init_config: str = "./config/test.ini") -> dict:
    end = dt.datetime.strptime(start, _TIME) + dt.timedelta(hours=hours - 1)
    return {
        "global": {
            "formulations": [{"name": "bmi_c++", "params": {
                "model_type_name": "test_bmi_cpp", "library_file": library or str(test_model_library()),
                "init_config": init_config, "main_output_variable": "OUTPUT_VAR_1",
                "create_function": "bmi_model_create", "destroy_function": "bmi_model_destroy",
                "uses_forcing_file": False,
                "variables_names_map": {"INPUT_VAR_1": "precip_rate", "INPUT_VAR_2": "TMP_2maboveground"}}}],
            "forcing": {"provider": "CsvPerFeature", "path": "./forcing/", "file_pattern": "{{id}}.csv"},
        },
        "time": {"start_time": start, "end_time": end.strftime(_TIME), "output_interval": 3600},
        "output": {"root": "./output/"},
    }


def make_run_dir(dest: Path, gpkg: Path, forcing_dir: Path, hours: int = 720, start: str = START) -> Path:
    """A folder ngen runs in: hydrofabric.gpkg, forcing/ (symlink), config/test.ini,
    realization.json (test BMI model), empty output/."""
    dest.mkdir(parents=True, exist_ok=True)
    hf = dest / "hydrofabric.gpkg"
    if not hf.exists():
        shutil.copyfile(gpkg, hf)
    forcing = dest / "forcing"
    if not forcing.exists():
        forcing.symlink_to(Path(forcing_dir).resolve(), target_is_directory=True)
    (dest / "config").mkdir(exist_ok=True)
    (dest / "config" / "test.ini").write_text(test_model_config(start, hours))
    (dest / "realization.json").write_text(json.dumps(test_model_realization(start, hours), indent=1))
    out = dest / "output"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return dest


def ngen_argv(run_dir: Path, ranks: int = 1, partition: Path | None = None) -> list[str]:
    binary = ngen_binary()
    if binary is None:
        raise FileNotFoundError("no ngen binary (DMOD_NGEN_PATH or ../shared/ngen/ngen)")
    model = [str(binary), "hydrofabric.gpkg", "all", "hydrofabric.gpkg", "all", "realization.json"]
    if ranks > 1:
        if partition is None:
            raise ValueError("more than one rank needs a partition file")
        return [*openmpi_run(), "-n", str(ranks), *model, str(Path(partition).resolve())]
    return model


def run_ngen(run_dir: Path, ranks: int = 1, partition: Path | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """ngen in `run_dir` (serial, or `ranks` ranks under OpenMPI's mpirun); output/ emptied first.
    Raises subprocess.TimeoutExpired when it does not finish in `timeout` seconds."""
    out = run_dir / "output"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return subprocess.run(ngen_argv(run_dir, ranks, partition), check=False, cwd=run_dir, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def read_outputs(run_dir: Path) -> dict[str, bytes]:
    """file name -> bytes of every file ngen wrote into output/."""
    out = run_dir / "output" if (run_dir / "output").is_dir() else run_dir
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}
