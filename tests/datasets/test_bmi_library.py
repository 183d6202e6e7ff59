"""BMI library datasets: ELF detection on the real compiled models (DetectDomain, seal, format
guessing) and clear errors for files that are not BMI libraries."""
from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from dmod.datasets_client import reason
from dmod.errors import error_details
from dmod.v1 import domain_pb2 as d

from ..conftest import ngen_path

NGEN = ngen_path()
LIB = Path(NGEN).parent / "lib" if NGEN else None
pytestmark = pytest.mark.skipif(NGEN is None, reason="no ngen build with BMI libraries next to the repository")


async def make(ds, files: dict[str, bytes], data_format: int = d.DATA_FORMAT_BMI_LIBRARY) -> str:
    created = await ds.create_dataset(f"lib-{uuid.uuid4().hex[:10]}", d.DATA_CATEGORY_CONFIG, data_format)
    for path, data in files.items():
        await ds.upload_bytes(created.name, path, data)
    return created.name


def data_ids(domain) -> list[str]:
    (found,) = [r for r in domain.discrete if r.index == d.STANDARD_INDEX_DATA_ID]
    return sorted(found.values)


async def test_detects_the_libraries_and_their_bmi_functions(ds):
    files = {f"lib/{n}": (LIB / n).read_bytes() for n in ("libtestbmicppmodel.so", "libcfebmi.so", "libpetbmi.so",
                                                          "libslothmodel.so")}
    files["config/test.ini"] = b"epoch_start_time=1448928000\n"  # init configs may ride along
    name = await make(ds, files)
    reply = await ds.detect_domain(name)
    assert reply.data_format == d.DATA_FORMAT_BMI_LIBRARY
    assert data_ids(reply.domain) == [
        "lib/libcfebmi.so: ELF64 x86-64; new_bmi_cfe, register_bmi_cfe",
        "lib/libpetbmi.so: ELF64 x86-64; new_bmi_pet, register_bmi_pet",
        "lib/libslothmodel.so: ELF64 x86-64; bmi_model_create, bmi_model_destroy",
        "lib/libtestbmicppmodel.so: ELF64 x86-64; bmi_model_create, bmi_model_destroy",
    ]
    sealed = await ds.seal_dataset(name)  # detected on seal, shown by `dmod dataset show`
    assert "lib/libtestbmicppmodel.so: ELF64 x86-64; bmi_model_create, bmi_model_destroy" in data_ids(sealed.domain)


async def test_format_is_guessed_from_elf_files(ds):
    name = await make(ds, {"lib/libtestbmicppmodel.so": (LIB / "libtestbmicppmodel.so").read_bytes()},
                      data_format=d.DATA_FORMAT_UNSPECIFIED)
    reply = await ds.detect_domain(name)
    assert reply.data_format == d.DATA_FORMAT_BMI_LIBRARY
    assert data_ids(reply.domain) == ["lib/libtestbmicppmodel.so: ELF64 x86-64; bmi_model_create, bmi_model_destroy"]


async def test_no_elf_file_is_invalid_argument(ds):
    name = await make(ds, {"lib/libfake.so": b"not an ELF file at all\n", "config/a.ini": b"x=1\n"})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.detect_domain(name)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(err.value) == "UNREADABLE_DATA"
    (violation,) = error_details(err.value)["BadRequest"].field_violations
    assert "no ELF shared library" in violation.description


async def test_elf_without_bmi_functions_names_the_file(ds):
    ngen = Path(NGEN).read_bytes()  # an ELF file, but not a BMI model
    name = await make(ds, {"bin/libngen.so": ngen})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.detect_domain(name)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = error_details(err.value)["BadRequest"].field_violations
    assert violation.field == "objects/bin/libngen.so" and "exports no BMI" in violation.description


def test_cli_create_upload_show(stack, tmp_path):
    """`dmod dataset create --format bmi_library`, upload a folder with lib/, `show` lists the
    detected functions."""
    from typer.testing import CliRunner

    from dmod.cli.main import app

    runner = CliRunner()
    src = tmp_path / "models"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "libtestbmicppmodel.so").write_bytes((LIB / "libtestbmicppmodel.so").read_bytes())
    out = runner.invoke(app, ["dataset", "create", f"cli-lib-{uuid.uuid4().hex[:8]}", "--format", "bmi_library",
                              "--json"])
    assert out.exit_code == 0, out.output
    import json

    name = json.loads(out.output)["name"]
    out = runner.invoke(app, ["dataset", "upload", name, str(src / "lib"), "--prefix", "lib/", "--seal"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["dataset", "show", name])
    assert out.exit_code == 0, out.output
    assert "bmi_library" in out.output and "bmi_model_create" in out.output
