"""DMOD jobs on the real ngen binary: outputs byte-identical to a direct ngen run of the same inputs.

The session stack runs with DMOD_NGEN_PATH pointing at the real build (tests/conftest.py), so
these jobs go through pre-flight, partitioning, the worker's OpenMPI launch and the output upload
exactly as a user's would.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import pytest

from dmod.services.jobs.datasets import Datasets
from dmod.v1 import datasets_pb2, domain_pb2, jobs_pb2, jobs_pb2_grpc, partitioner_pb2

from . import ngenkit

pytestmark = pytest.mark.skipif(ngenkit.ngen_binary() is None, reason="no ngen binary")

C, F, S = domain_pb2, domain_pb2, jobs_pb2
GAUGE = ngenkit.SHARED_NGEN / "examples" / "gauge_01073000"
HOURS = 240


async def upload(channel, role: str, category: int, data_format: int, files: dict[str, Path]) -> str:
    ds = Datasets(channel)
    dataset = await ds.create(datasets_pb2.Dataset(display_name=f"ngen-{role}-{uuid.uuid4().hex[:8]}",
                                                   category=category, data_format=data_format), uuid.uuid4().hex)
    sem = asyncio.Semaphore(8)

    async def put(path: str, src: Path) -> None:
        async with sem:
            await ds.upload_bytes(dataset.name, path, src.read_bytes(), "application/octet-stream")

    await asyncio.gather(*(put(p, s) for p, s in files.items()))
    await ds.seal(dataset.name)
    return dataset.name


async def upload_inputs(channel, hydrofabric: dict[str, Path], forcing: dict[str, Path], realization: Path,
                        library: dict[str, Path]) -> dict[str, str]:
    """The four input datasets of an ngen job (role -> datasets/{id})."""
    return {
        "hydrofabric": await upload(channel, "hf", C.DATA_CATEGORY_HYDROFABRIC,
                                    F.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC, hydrofabric),
        "forcing": await upload(channel, "forcing", C.DATA_CATEGORY_FORCING, F.DATA_FORMAT_AORC_CSV, forcing),
        "realization": await upload(channel, "realization", C.DATA_CATEGORY_CONFIG,
                                    F.DATA_FORMAT_NGEN_REALIZATION_CONFIG, {"realization.json": realization}),
        "bmi_library": await upload(channel, "models", C.DATA_CATEGORY_CONFIG, F.DATA_FORMAT_BMI_LIBRARY, library),
    }


def tree(folder: Path, prefix: str = "") -> dict[str, Path]:
    return {prefix + p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


async def run_job(channel, spec: jobs_pb2.JobSpec, out: Path, timeout: float = 300) -> jobs_pb2.Job:
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    job = (await stub.CreateJob(S.CreateJobRequest(spec=spec, request_id=uuid.uuid4().hex))).job
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while job.state not in (S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED):
        assert loop.time() < deadline, f"{job.name} still {S.JobState.Name(job.state)} after {timeout}s"
        await asyncio.sleep(0.3)
        job = (await stub.GetJob(S.GetJobRequest(name=job.name))).job
    assert job.state == S.JOB_STATE_SUCCEEDED, (job.state_reason, job.state_message)
    ds = Datasets(channel)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for obj in await ds.objects(job.output_dataset):
        await ds.download(obj, out / obj.path)
    return job


def spec_for(names: dict[str, str], ranks: int, start: str, end: str, method: int = 0) -> jobs_pb2.JobSpec:
    from dmod.jobs_client import parse_time

    spec = S.JobSpec(hydrofabric_dataset=names["hydrofabric"], realization_dataset=names["realization"],
                     forcing_dataset=names["forcing"], bmi_library_dataset=names["bmi_library"], cpu_count=ranks,
                     engine="ngen", partition_method=method)
    spec.start_time.FromDatetime(parse_time(start))
    spec.end_time.FromDatetime(parse_time(end))
    return spec


# ---- a synthetic hydrofabric with ngen's test BMI model ------------------------------------------
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    """~60 catchments, CSV forcing, the test BMI model; a direct serial ngen run's outputs."""
    from dmod.services.hydrofabric import synth

    base = tmp_path_factory.mktemp("ngen-synth")
    manifest = synth(base / "hf", catchments=60, seed=5, hours=HOURS, forcing="csv")
    run = ngenkit.make_run_dir(base / "direct", Path(manifest["gpkg"]), base / "hf" / "forcing", hours=HOURS)
    (run / "lib").mkdir()
    shutil.copyfile(ngenkit.test_model_library(), run / "lib" / "libtestbmicppmodel.so")
    doc = ngenkit.test_model_realization(hours=HOURS, library="./lib/libtestbmicppmodel.so")
    (run / "realization.json").write_text(json.dumps(doc, indent=1))
    proc = ngenkit.run_ngen(run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"run": run, "expected": ngenkit.read_outputs(run), "realization": doc}


@pytest.fixture(scope="module")
async def synthetic_datasets(stack, synthetic) -> dict[str, str]:
    import grpc

    run = synthetic["run"]
    async with grpc.aio.insecure_channel(stack.gateway) as ch:
        return await upload_inputs(ch, {"hydrofabric.gpkg": run / "hydrofabric.gpkg"}, tree(run / "forcing"),
                                   run / "realization.json", {**tree(run / "lib", "lib/"), **tree(run / "config", "config/")})


@pytest.mark.parametrize("ranks", [2, 3])
async def test_multi_rank_job_matches_a_direct_serial_run(channel, synthetic, synthetic_datasets, ranks, tmp_path):
    doc = synthetic["realization"]
    spec = spec_for(synthetic_datasets, ranks, doc["time"]["start_time"], doc["time"]["end_time"])
    job = await run_job(channel, spec, tmp_path / "out")
    assert job.engine == "ngen", job.engine
    got = ngenkit.read_outputs(tmp_path / "out")
    expected = synthetic["expected"]
    assert sorted(got) == sorted(expected)
    differ = [name for name in expected if got[name] != expected[name]]
    assert not differ, f"{len(differ)} of {len(expected)} files differ from serial ngen, e.g. {differ[:5]}"


# ---- ngen's gauge_01073000 example: SLoTH + PET + CFE (bmi_multi of bmi_c++ and bmi_c) ------------
@pytest.fixture(scope="module")
def gauge(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("gauge")
    run = base / "direct"
    shutil.copytree(GAUGE, run)
    (run / "lib").symlink_to(ngenkit.test_model_library().parent, target_is_directory=True)
    (run / "output").mkdir(exist_ok=True)
    proc = subprocess_run(run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((run / "realization_sloth_pet_cfe.json").read_text())
    return {"run": run, "expected": ngenkit.read_outputs(run), "realization": doc}


def subprocess_run(run: Path):
    import subprocess

    return subprocess.run([str(ngenkit.ngen_binary()), "gauge_01073000.gpkg", "all", "gauge_01073000.gpkg", "all",
                           "realization_sloth_pet_cfe.json"], check=False, cwd=run, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
async def gauge_datasets(stack, gauge) -> dict[str, str]:
    import grpc

    libs = ngenkit.test_model_library().parent
    library_files = {f"lib/{name}": libs / name for name in ("libslothmodel.so", "libpetbmi.so", "libcfebmi.so")}
    async with grpc.aio.insecure_channel(stack.gateway) as ch:
        return await upload_inputs(ch, {"gauge_01073000.gpkg": GAUGE / "gauge_01073000.gpkg"}, tree(GAUGE / "forcing"),
                                   GAUGE / "realization_sloth_pet_cfe.json",
                                   {**library_files, **tree(GAUGE / "CFE", "CFE/"), **tree(GAUGE / "PET", "PET/")})


@pytest.mark.parametrize("ranks", [1, 2])
async def test_gauge_example_job_matches_a_direct_ngen_run(channel, gauge, gauge_datasets, ranks, tmp_path):
    doc = gauge["realization"]
    spec = spec_for(gauge_datasets, ranks, doc["time"]["start_time"], doc["time"]["end_time"],
                    method=partitioner_pb2.PARTITION_METHOD_DFS_CHUNK)
    job = await run_job(channel, spec, tmp_path / "out")
    got = ngenkit.read_outputs(tmp_path / "out")
    expected = gauge["expected"]
    assert sorted(got) == sorted(expected) and len(expected) == 8
    differ = [name for name in expected if got[name] != expected[name]]
    assert not differ, f"{differ} differ from the direct ngen run ({job.name})"
