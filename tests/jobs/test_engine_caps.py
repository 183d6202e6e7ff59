"""Engine capabilities (`ngen --info` of the real build and handcrafted outputs), the ELF reader
on the real BMI libraries, the engine choice, and the realization parser for ngen."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dmod.services.runtime.elf import NotElf, read_elf_file
from dmod.services.worker.engine.errors import ConfigError, UnsupportedFormulation
from dmod.services.worker.engine.realization import formulation_types, parse_realization
from dmod.services.worker.engine_caps import (
    EMBEDDED,
    EngineUnsupported,
    Needs,
    choose_engine,
    ngen_capabilities,
    parse_info,
)

from ..conftest import ngen_path

NGEN = ngen_path()
LIB = Path(NGEN).parent / "lib" if NGEN else None
needs_ngen = pytest.mark.skipif(NGEN is None, reason="no ngen binary (DMOD_NGEN_PATH or ../shared/ngen/ngen)")

MPI_OFF_PYTHON_ON = """NGen version: 0.4.1
Build configuration summary:
  Flags:
    NGEN_WITH_MPI: OFF
    NGEN_WITH_NETCDF: OFF
    NGEN_WITH_SQLITE: ON
    NGEN_WITH_BMI_FORTRAN: ON
    NGEN_WITH_BMI_C: ON
    NGEN_WITH_PYTHON: ON
    NGEN_WITH_ROUTING: ON
"""

MPICH = """NGen version: 0.3.0
  Flags:
    NGEN_WITH_MPI: ON
    NGEN_WITH_BMI_C: OFF
    NGEN_WITH_PYTHON: OFF
Environment summary:
  MPI (CXX):
    Version: 4.0
    Library: /usr/lib/x86_64-linux-gnu/libmpichcxx.so;/usr/lib/x86_64-linux-gnu/libmpich.so
    Include: /usr/include/x86_64-linux-gnu/mpich
"""


# ---- ngen --info ---------------------------------------------------------------------------------
@needs_ngen
def test_info_of_the_real_build():
    done = subprocess.run([NGEN, "--info"], capture_output=True, text=True, check=False)
    assert done.returncode == 1  # ngen's --info exits 1
    caps = parse_info(done.stdout, NGEN)
    assert caps.version == "0.3.0" and caps.commit.startswith("dd04bbcc")
    assert caps.mpi and caps.mpi_library == "Open MPI"
    assert caps.netcdf and caps.sqlite and caps.bmi_c
    assert not caps.python and not caps.fortran and not caps.routing
    assert caps.formulations == {"bmi_c", "bmi_c++", "bmi_multi"}
    assert caps.missing("bmi_python") == "NGEN_WITH_PYTHON=ON"
    assert caps.missing("bmi_fortran") == "NGEN_WITH_BMI_FORTRAN=ON"
    assert caps.missing("bmi_c++") is None


@needs_ngen
def test_capabilities_are_cached_per_binary(tmp_path):
    first = ngen_capabilities(NGEN)
    assert first is ngen_capabilities(NGEN)  # same (path, mtime, size): not run again
    assert "ngen 0.3.0" in first.describe() and "Open MPI" in first.describe()
    copy = tmp_path / "ngen"
    copy.write_bytes(Path(NGEN).read_bytes())
    copy.chmod(0o755)
    other = ngen_capabilities(str(copy))
    assert other is not first and other.version == first.version


def test_info_mpi_off_python_on():
    caps = parse_info(MPI_OFF_PYTHON_ON, "/opt/ngen")
    assert caps.version == "0.4.1"
    assert not caps.mpi and caps.mpi_library == ""
    assert caps.python and caps.fortran and caps.routing and not caps.netcdf
    assert caps.formulations == {"bmi_c", "bmi_c++", "bmi_fortran", "bmi_python", "bmi_multi"}
    assert "no MPI" in caps.describe()


def test_info_mpich_from_library_path():
    caps = parse_info(MPICH)
    assert caps.mpi and caps.mpi_library == "MPICH"
    assert "bmi_c" not in caps.formulations and caps.missing("bmi_c") == "NGEN_WITH_BMI_C=ON"


def test_info_mpi_flavour_from_dt_needed():
    text = "NGen version: 0.3.0\n  Flags:\n    NGEN_WITH_MPI: ON\n"
    assert parse_info(text, needed=("libmpi.so.40", "libc.so.6")).mpi_library == "Open MPI"
    assert parse_info(text, needed=("libmpi.so.12",)).mpi_library == "MPICH"


def test_info_garbage_and_missing_binary(tmp_path):
    assert parse_info("usage: ngen ...").error
    assert ngen_capabilities(str(tmp_path / "nope")).error
    script = tmp_path / "fake-ngen"
    script.write_text("#!/bin/sh\necho 'NGen version: 9.9'\necho '    NGEN_WITH_PYTHON: ON'\nexit 1\n")
    script.chmod(0o755)
    caps = ngen_capabilities(str(script))
    assert caps.version == "9.9" and caps.python and not caps.mpi


# ---- ELF -----------------------------------------------------------------------------------------
@needs_ngen
@pytest.mark.parametrize("name,functions", [
    ("libtestbmicppmodel.so", {"bmi_model_create", "bmi_model_destroy"}),
    ("libslothmodel.so", {"bmi_model_create", "bmi_model_destroy"}),
    ("libcfebmi.so", {"register_bmi_cfe"}),
    ("libpetbmi.so", {"register_bmi_pet"}),
])
def test_elf_of_real_bmi_libraries(name, functions):
    from dmod.services.datasets.detect.bmi_library import bmi_functions

    info = read_elf_file(str(LIB / name))
    assert info.bits == 64 and info.machine == "x86-64" and info.is_shared_object
    assert functions <= set(bmi_functions(info.functions))


@needs_ngen
def test_elf_needed_of_ngen():
    assert "libmpi.so.40" in read_elf_file(NGEN, symbols=False).needed


def test_elf_rejects_other_files(tmp_path):
    text = tmp_path / "config.ini"
    text.write_text("epoch_start_time=1448928000\n")
    with pytest.raises(NotElf):
        read_elf_file(str(text))


# ---- engine choice -------------------------------------------------------------------------------
CAPS_NO_PYTHON = parse_info("NGen version: 0.3.0\n    NGEN_WITH_MPI: ON\n    NGEN_WITH_BMI_C: ON\n"
                            "    NGEN_WITH_PYTHON: OFF\n", "/x/ngen")
CAPS_PYTHON = parse_info(MPI_OFF_PYTHON_ON, "/y/ngen")


def _needs(**kinds) -> Needs:
    return Needs({k.replace("_plus", "++"): f"realization.global.formulations[0].{k}" for k in kinds})


def test_auto_prefers_ngen_when_it_runs_everything():
    assert choose_engine("auto", _needs(bmi_c_plus=1), CAPS_NO_PYTHON).name == "ngen"
    assert choose_engine("auto", _needs(bmi_python=1), CAPS_PYTHON).name == "ngen"


def test_auto_falls_back_to_embedded_for_python_without_ngen_python():
    assert choose_engine("auto", _needs(bmi_python=1, bmi_multi=1), CAPS_NO_PYTHON) is EMBEDDED
    assert choose_engine("auto", _needs(bmi_python=1), None) is EMBEDDED


def test_no_engine_for_native_without_ngen():
    with pytest.raises(EngineUnsupported) as err:
        choose_engine("auto", _needs(bmi_c=1), None)
    assert "bmi_c" in str(err.value) and "compiled BMI libraries" in str(err.value)
    assert err.value.reason == "ENGINE_UNSUPPORTED" and err.value.field.endswith("bmi_c")
    with pytest.raises(EngineUnsupported) as err:
        choose_engine("auto", _needs(bmi_python=1, bmi_fortran=1), CAPS_NO_PYTHON)
    assert "NGEN_WITH_BMI_FORTRAN=ON" in str(err.value)


def test_explicit_engines():
    with pytest.raises(EngineUnsupported) as err:
        choose_engine("ngen", _needs(bmi_c=1), None)
    assert err.value.reason == "ENGINE_UNAVAILABLE"
    with pytest.raises(EngineUnsupported) as err:
        choose_engine("ngen", _needs(bmi_python=1), CAPS_NO_PYTHON)
    assert "bmi_python" in str(err.value) and "NGEN_WITH_PYTHON=ON" in str(err.value)
    with pytest.raises(EngineUnsupported) as err:
        choose_engine("ngen", Needs({"bmi_c": "f"}, ranks=4), CAPS_PYTHON)
    assert "NGEN_WITH_MPI=ON" in str(err.value) and err.value.field == "spec.cpu_count"
    with pytest.raises(EngineUnsupported) as err:
        choose_engine("embedded", _needs(bmi_c_plus=1), CAPS_PYTHON)
    assert "bmi_c++" in str(err.value)


# ---- realization for ngen ------------------------------------------------------------------------
def _native_doc(**params) -> dict:
    base = {"model_type_name": "test_bmi_cpp", "library_file": "./lib/libtestbmicppmodel.so",
            "init_config": "./config/test.ini", "main_output_variable": "OUTPUT_VAR_1", "uses_forcing_file": False,
            "create_function": "bmi_model_create", "destroy_function": "bmi_model_destroy"}
    base.update(params)
    return {"global": {"formulations": [{"name": "bmi_c++", "params": {k: v for k, v in base.items() if v is not None}}],
                       "forcing": {"path": "./forcing/", "file_pattern": "{{id}}.csv"}},
            "time": {"start_time": "2015-12-01 00:00:00", "end_time": "2015-12-01 23:00:00", "output_interval": 3600}}


def test_native_realization_parses_for_ngen_only():
    real = parse_realization(_native_doc(), engine="ngen")
    (module,) = real.global_formulation.modules
    assert module.kind == "bmi_c++" and module.library_file == "./lib/libtestbmicppmodel.so"
    with pytest.raises(UnsupportedFormulation):
        parse_realization(_native_doc())


@pytest.mark.parametrize("key", ["library_file", "model_type_name", "init_config", "main_output_variable",
                                 "uses_forcing_file"])
def test_ngen_required_params(key):
    with pytest.raises(ConfigError) as err:
        parse_realization(_native_doc(**{key: None}), engine="ngen")
    assert err.value.field == f"global.formulations[0].params.{key}"


@needs_ngen
def test_formulation_types_of_the_example():
    doc = json.loads((Path(NGEN).parent / "examples/gauge_01073000/realization_sloth_pet_cfe.json").read_text())
    kinds = formulation_types(doc)
    assert set(kinds) == {"bmi_multi", "bmi_c++", "bmi_c"}
    assert kinds["bmi_c"] == "global.formulations[0].params.modules[1].name"
    real = parse_realization(doc, engine="ngen")
    assert [m.library_file for m in real.global_formulation.modules] == [
        "./lib/libslothmodel.so", "./lib/libpetbmi.so", "./lib/libcfebmi.so"]


def test_env_points_the_stack_at_ngen():
    """tests/conftest.py passes the binary to the stack (when there is one)."""
    if NGEN:
        assert os.path.isabs(NGEN)
