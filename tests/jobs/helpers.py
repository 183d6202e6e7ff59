"""Helpers for job tests: a small synthetic domain uploaded as DMOD datasets, and job RPCs."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from dmod.services.jobs.datasets import Datasets
from dmod.v1 import datasets_pb2, domain_pb2, jobs_pb2, jobs_pb2_grpc

START = "2015-12-01 00:00:00"
CFE = "dmod.services.worker.models.cfe.CFE"


def ts(text: str) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC))
    return out


def realization(start: str = START, end: str = "2015-12-02 23:00:00") -> dict:
    from dmod.cli.demo import realization as demo_realization

    return demo_realization(end, start)


def make_domain(folder: Path, catchments: int = 12, hours: int = 48, seed: int = 3) -> dict:
    """Synthetic hydrofabric, CSV forcing, CFE init configs and a realization on disk."""
    from dmod.services.hydrofabric import load_network, synth
    from dmod.services.worker.models.init_configs import write_init_configs

    manifest = synth(folder / "synth", catchments=catchments, seed=seed, hours=hours, forcing="csv",
                     start=START, name="hydrofabric")
    net = load_network(manifest["gpkg"])
    ids = [str(c) for c in net.catchment_ids.tolist()]
    write_init_configs(ids, folder / "config", "cfe")
    (folder / "realization.json").write_text(json.dumps(realization()))
    return {"gpkg": Path(manifest["gpkg"]), "forcing": folder / "synth" / "forcing", "config": folder / "config",
            "realization": folder / "realization.json", "catchments": ids,
            "nexuses": [str(n) for n in net.nexus_ids.tolist()]}


async def upload_dataset(channel, name: str, category: int, data_format: int, files: dict[str, bytes],
                         seal: bool = True) -> str:
    ds = Datasets(channel)
    dataset = await ds.create(datasets_pb2.Dataset(display_name=f"{name}-{uuid.uuid4().hex[:8]}", category=category,
                                                   data_format=data_format), request_id=uuid.uuid4().hex)
    sem = asyncio.Semaphore(8)

    async def put(path: str, data: bytes):
        async with sem:
            await ds.upload_bytes(dataset.name, path, data, "application/octet-stream")

    await asyncio.gather(*(put(p, d) for p, d in files.items()))
    if seal:
        await ds.seal(dataset.name)
    return dataset.name


def folder_files(folder: Path, prefix: str = "", skip: set[str] = frozenset()) -> dict[str, bytes]:
    return {prefix + p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip}


async def upload_domain(channel, domain: dict, drop_forcing: set[str] = frozenset()) -> dict[str, str]:
    C, F = domain_pb2, domain_pb2
    hf = await upload_dataset(channel, "hf", C.DATA_CATEGORY_HYDROFABRIC, F.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC,
                              {"hydrofabric.gpkg": domain["gpkg"].read_bytes()})
    forcing = await upload_dataset(channel, "forcing", C.DATA_CATEGORY_FORCING, F.DATA_FORMAT_AORC_CSV,
                                   folder_files(domain["forcing"], skip={f"{c}.csv" for c in drop_forcing}))
    real = await upload_dataset(channel, "realization", C.DATA_CATEGORY_CONFIG,
                                F.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                                {"realization.json": domain["realization"].read_bytes()})
    bmi = await upload_dataset(channel, "bmi", C.DATA_CATEGORY_CONFIG, F.DATA_FORMAT_BMI_CONFIG,
                               folder_files(domain["config"], prefix="config/"))
    return {"hydrofabric": hf, "forcing": forcing, "realization": real, "bmi_config": bmi}


def job_spec(names: dict[str, str], cpus: int = 1, start: str = START, end: str = "2015-12-02 23:00:00",
             **kw) -> jobs_pb2.JobSpec:
    spec = jobs_pb2.JobSpec(hydrofabric_dataset=names["hydrofabric"], forcing_dataset=names["forcing"],
                            realization_dataset=names["realization"], bmi_config_dataset=names["bmi_config"],
                            cpu_count=cpus, **{"engine": "embedded", **kw})
    spec.start_time.CopyFrom(ts(start))
    spec.end_time.CopyFrom(ts(end))
    return spec


async def wait_state(stub: jobs_pb2_grpc.JobServiceStub, name: str, wanted, timeout: float = 120.0) -> jobs_pb2.Job:
    """Poll until the job is in one of `wanted` states (a set of JobState values)."""
    wanted = {wanted} if isinstance(wanted, int) else set(wanted)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = (await stub.GetJob(jobs_pb2.GetJobRequest(name=name))).job
        if job.state in wanted:
            return job
        if loop.time() > deadline:
            raise AssertionError(f"{name} is {jobs_pb2.JobState.Name(job.state)} ({job.state_reason}: "
                                 f"{job.state_message}) after {timeout}s, wanted {wanted}")
        await asyncio.sleep(0.2)


async def events(stub, name: str, after: int = 0) -> list[jobs_pb2.JobEvent]:
    out = []
    call = stub.WatchJob(jobs_pb2.WatchJobRequest(name=name, after_seq=after))
    async for item in call:
        if item.HasField("event"):
            out.append(item.event)
    return out


def state_names(evts) -> list[str]:
    names = []
    for e in evts:
        n = jobs_pb2.JobState.Name(e.state).removeprefix("JOB_STATE_")
        if not names or names[-1] != n:
            names.append(n)
    return names


__all__ = ["grpc"]


def slow_realization() -> dict:
    doc = realization()
    params = doc["global"]["formulations"][0]["params"]
    params.update({"model_type_name": "Slow", "python_type": "slowmodel.Slow", "init_config": ""})
    return doc


async def upload_slow_realization(channel) -> str:
    return await upload_dataset(channel, "slow-realization", domain_pb2.DATA_CATEGORY_CONFIG,
                                domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                                {"realization.json": json.dumps(slow_realization()).encode(),
                                 "slowmodel.py": (Path(__file__).parent / "slowmodel.py").read_bytes()})


async def wait_running(stub: jobs_pb2_grpc.JobServiceStub, name: str, timeout: float = 120.0) -> jobs_pb2.Job:
    """Until the job RUNS and has taken a model step (fails if it ends first)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = (await stub.GetJob(jobs_pb2.GetJobRequest(name=name))).job
        assert job.state not in (jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_SUCCEEDED), (job.state_reason,
                                                                                          job.state_message)
        if job.state == jobs_pb2.JOB_STATE_RUNNING and job.progress.step > 0:
            return job
        assert loop.time() < deadline, "the job never ran"
        await asyncio.sleep(0.2)


def job_processes(job_id: str) -> list:
    """Live processes belonging to a job (its worker, mpiexec, ranks)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if job_id in text:
            found.append(proc)
    return found


async def no_job_processes(job_id: str, timeout: float = 10.0) -> list:
    """Wait until nothing of the job runs (a worker that reported its exit may take a moment to end)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = job_processes(job_id)
        if not left or loop.time() > deadline:
            return left
        await asyncio.sleep(0.2)
