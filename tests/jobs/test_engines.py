"""Pre-flight picks and validates the engine against the real stack: a bmi_c++ realization (ngen's
test BMI model, a BMI library dataset) with engine ngen/auto, a bmi_python one with auto, and the
failures naming the missing library_file / init_config / capability."""
from __future__ import annotations

import json

import grpc
import pytest

from dmod.errors import error_details
from dmod.v1 import domain_pb2, jobs_pb2

from ..conftest import ngen_path
from .helpers import job_spec, upload_dataset, wait_state

NGEN = ngen_path()
needs_ngen = pytest.mark.skipif(NGEN is None, reason="no ngen binary (DMOD_NGEN_PATH or ../shared/ngen/ngen)")
S = jobs_pb2
AFTER_VALIDATING = {S.JOB_STATE_STAGING, S.JOB_STATE_PARTITIONING, S.JOB_STATE_QUEUED, S.JOB_STATE_STARTING,
                    S.JOB_STATE_RUNNING, S.JOB_STATE_FINALIZING, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED,
                    S.JOB_STATE_CANCELLED, S.JOB_STATE_CANCELLING}
END = "2015-12-01 23:00:00"
CONFIG = "epoch_start_time=1448928000\nnum_time_steps=24\ntime_step_size=3600\nmodel_end_time=1449014400\n"


def cpp_realization(library: str = "./lib/libtestbmicppmodel.so", init_config: str = "./config/test.ini",
                    name: str = "bmi_c++") -> dict:
    params = {"model_type_name": "test_bmi_cpp", "library_file": library, "init_config": init_config,
              "main_output_variable": "OUTPUT_VAR_1", "uses_forcing_file": False,
              "variables_names_map": {"INPUT_VAR_1": "precip_rate", "INPUT_VAR_2": "TMP_2maboveground"}}
    if name == "bmi_c++":
        params.update(create_function="bmi_model_create", destroy_function="bmi_model_destroy")
    else:
        params["registration_function"] = "register_bmi"
    return {"global": {"formulations": [{"name": name, "params": params}],
                       "forcing": {"provider": "CsvPerFeature", "path": "./forcing/", "file_pattern": "{{id}}.csv"}},
            "time": {"start_time": "2015-12-01 00:00:00", "end_time": END, "output_interval": 3600},
            "output": {"root": "./output/"}}


async def _config(channel, doc: dict, extra: dict[str, bytes] | None = None) -> str:
    return await upload_dataset(channel, "cpp-realization", domain_pb2.DATA_CATEGORY_CONFIG,
                                domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                                {"realization.json": json.dumps(doc).encode(), **(extra or {})})


@pytest.fixture(scope="module")
async def cpp(stack):
    """A BMI library dataset (lib/libtestbmicppmodel.so) and a BMI config dataset (config/test.ini)."""
    if NGEN is None:
        pytest.skip("no ngen binary")
    from pathlib import Path

    lib = (Path(NGEN).parent / "lib" / "libtestbmicppmodel.so").read_bytes()
    async with grpc.aio.insecure_channel(stack.gateway) as ch:
        library = await upload_dataset(ch, "bmi-lib", domain_pb2.DATA_CATEGORY_CONFIG,
                                       domain_pb2.DATA_FORMAT_BMI_LIBRARY, {"lib/libtestbmicppmodel.so": lib})
        config = await upload_dataset(ch, "bmi-ini", domain_pb2.DATA_CATEGORY_CONFIG,
                                      domain_pb2.DATA_FORMAT_BMI_CONFIG, {"config/test.ini": CONFIG.encode()})
    return {"library": library, "config": config}


def _spec(domain, realization: str, cpp=None, engine: str = "ngen", **kw) -> jobs_pb2.JobSpec:
    names = {**domain, "realization": realization}
    if cpp is not None:
        names["bmi_config"] = cpp["config"]
    spec = job_spec(names, end=END, engine=engine, **kw)
    if cpp is not None:
        spec.bmi_library_dataset = cpp["library"]
    return spec


async def _submit(jobs, spec) -> jobs_pb2.Job:
    job = (await jobs.CreateJob(jobs_pb2.CreateJobRequest(spec=spec))).job
    return await wait_state(jobs, job.name, AFTER_VALIDATING)


async def _cancel(jobs, job) -> None:
    if job.state not in (S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED):
        try:
            await jobs.CancelJob(jobs_pb2.CancelJobRequest(name=job.name))
        except grpc.aio.AioRpcError:
            pass  # finished meanwhile


@needs_ngen
async def test_bmi_cpp_with_engine_ngen_passes_validating(jobs, channel, domain, cpp):
    real = await _config(channel, cpp_realization())
    job = await _submit(jobs, _spec(domain, real, cpp))
    assert job.state != S.JOB_STATE_FAILED or job.state_reason not in (
        "VALIDATION_FAILED", "BMI_LIBRARY_MISSING", "BMI_CONFIG_MISSING", "ENGINE_UNSUPPORTED"), job.state_message
    assert job.engine == "ngen" and "ngen 0.3.0" in job.engine_detail and "Open MPI" in job.engine_detail
    assert job.resolved_datasets["bmi_library"] == cpp["library"]
    events = [e async for e in _events(jobs, job.name)]
    validated = [e for e in events if e.reason == "VALIDATED"]
    assert validated and "engine ngen" in validated[0].message
    await _cancel(jobs, job)


async def _events(jobs, name):
    async for item in jobs.WatchJob(jobs_pb2.WatchJobRequest(name=name)):
        if item.HasField("event"):
            yield item.event
            if item.event.reason == "VALIDATED":
                return


@needs_ngen
async def test_library_in_the_realization_dataset_also_resolves(jobs, channel, domain, cpp):
    from pathlib import Path

    lib = (Path(NGEN).parent / "lib" / "libtestbmicppmodel.so").read_bytes()
    real = await _config(channel, cpp_realization(library="models/libx.so"), {"models/libx.so": lib})
    job = await _submit(jobs, _spec(domain, real, {"config": cpp["config"], "library": ""}))
    assert job.engine == "ngen", job.state_message
    await _cancel(jobs, job)


@needs_ngen
async def test_missing_library_file_fails_naming_it(jobs, channel, domain, cpp):
    real = await _config(channel, cpp_realization(library="./lib/libnothere.so"))
    job = await _submit(jobs, _spec(domain, real, cpp))
    assert job.state == S.JOB_STATE_FAILED and job.state_reason == "BMI_LIBRARY_MISSING", job.state_message
    assert "library_file ./lib/libnothere.so" in job.state_message
    assert "[realization.global.formulations[0].params.library_file]" in job.state_message


@needs_ngen
async def test_missing_init_config_fails_naming_catchment_and_field(jobs, channel, domain, cpp):
    real = await _config(channel, cpp_realization(init_config="./config/{{id}}.ini"))
    job = await _submit(jobs, _spec(domain, real, cpp))
    assert job.state == S.JOB_STATE_FAILED and job.state_reason == "BMI_CONFIG_MISSING", job.state_message
    assert "catchment cat-" in job.state_message and "init_config ./config/cat-" in job.state_message
    assert "params.init_config]" in job.state_message


@needs_ngen
async def test_absolute_library_path_is_a_warning(jobs, channel, domain, cpp):
    real = await _config(channel, cpp_realization(library=str(Path_lib())))
    job = await _submit(jobs, _spec(domain, real, cpp))
    assert job.engine == "ngen", job.state_message
    validated = [e async for e in _events(jobs, job.name) if e.reason == "VALIDATED"]
    assert "only the worker can check" in validated[0].message
    await _cancel(jobs, job)


def Path_lib():  # noqa: N802 - the shared test model next to the binary
    from pathlib import Path

    return Path(NGEN).parent / "lib" / "libtestbmicppmodel.so"


@needs_ngen
async def test_auto_sends_bmi_cpp_to_ngen(jobs, channel, domain, cpp):
    real = await _config(channel, cpp_realization())
    job = await _submit(jobs, _spec(domain, real, cpp, engine="auto"))
    assert job.engine == "ngen", job.state_message
    await _cancel(jobs, job)


async def test_auto_sends_bmi_python_to_embedded(jobs, domain):
    """The shared build has NGEN_WITH_PYTHON=OFF: the CFE bmi_python realization runs embedded."""
    job = await _submit(jobs, job_spec(domain, engine="auto", end=END))
    assert job.engine == "embedded", job.state_message
    assert "embedded engine" in job.engine_detail
    final = await wait_state(jobs, job.name, {S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED})
    assert final.state == S.JOB_STATE_SUCCEEDED, final.state_message


async def test_embedded_job_with_bmi_c_fails_naming_formulation_and_capability(jobs, channel, domain):
    real = await _config(channel, cpp_realization(name="bmi_c"))
    job = await _submit(jobs, _spec(domain, real, engine="embedded"))
    assert job.state == S.JOB_STATE_FAILED and job.state_reason == "ENGINE_UNSUPPORTED", job.state_message
    assert "formulation bmi_c" in job.state_message and "compiled BMI libraries" in job.state_message
    assert "[realization.global.formulations[0].name]" in job.state_message
    assert job.engine == ""


@needs_ngen
async def test_engine_ngen_with_bmi_python_fails_naming_the_flag(jobs, domain):
    job = await _submit(jobs, job_spec(domain, engine="ngen", end=END))
    assert job.state == S.JOB_STATE_FAILED and job.state_reason == "ENGINE_UNSUPPORTED", job.state_message
    assert "bmi_python" in job.state_message and "NGEN_WITH_PYTHON=ON" in job.state_message


async def test_bmi_library_dataset_is_validated_in_create_job(jobs, domain):
    spec = job_spec(domain, engine="auto")
    spec.bmi_library_dataset = "not-a-dataset"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await jobs.CreateJob(jobs_pb2.CreateJobRequest(spec=spec))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in error_details(err.value)["BadRequest"].field_violations}
    assert "spec.bmi_library_dataset" in fields
    spec.bmi_library_dataset = domain["bmi_config"]
    spec.engine = "embedded"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await jobs.CreateJob(jobs_pb2.CreateJobRequest(spec=spec))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "only under ngen" in str(error_details(err.value)["BadRequest"])
