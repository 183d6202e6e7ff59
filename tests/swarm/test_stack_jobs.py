"""A job through the whole local stack with DMOD_LAUNCHER=swarm: JobService starts the worker as a
Swarm service on the harness's engine; the worker reaches the gateway (127.0.0.1) through the
launcher's relay on the Swarm gateway bridge; the job ends SUCCEEDED with sealed outputs and the
service and its secret are removed afterwards."""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

import grpc
import pytest

from dmod.v1 import datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc

from .conftest import load_jobs_helpers

pytestmark = pytest.mark.docker
S = jobs_pb2


@pytest.fixture(scope="module")
def swarm_stack(swarm_env):
    from dmod.local.stack import Stack

    home = Path(tempfile.mkdtemp(prefix="dmod-swarm-stack-"))
    env = {**swarm_env, "DMOD_LAUNCHER": "swarm", "DMOD_SWARM_LINGER_SECONDS": "1", "DMOD_SWARM_STOP_GRACE": "3"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the stack's service process inherits it
    stack = Stack(home, fixed_ports=False, log=lambda *a: None)
    try:
        state = stack.up()
    except BaseException:
        stack.purge()
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield state
    finally:
        stack.purge()


def _objects(engine, job: str) -> dict[str, list]:
    label = json.dumps({"label": [f"dmod.job={job}"]})
    return {"services": engine.api.call("GET", "/services", params={"filters": label}),
            "secrets": engine.api.call("GET", "/secrets", params={"filters": label})}


async def test_two_rank_job_succeeds_as_a_swarm_service(swarm_stack, docker_engine, tmp_path):
    helpers = load_jobs_helpers()
    files = helpers.make_domain(tmp_path / "domain")
    async with grpc.aio.insecure_channel(swarm_stack.gateway) as channel:
        names = await helpers.upload_domain(channel, files)
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        created = (await jobs.CreateJob(S.CreateJobRequest(spec=helpers.job_spec(names, cpus=2)))).job
        seen_service = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 300
        while loop.time() < deadline:
            job = (await jobs.GetJob(S.GetJobRequest(name=created.name))).job
            if seen_service is None:
                services = _objects(docker_engine, created.name)["services"]
                if services:
                    seen_service = services[0]
            if job.state in (S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED):
                break
            await asyncio.sleep(0.5)
        log = Path(swarm_stack.home, "logs/services.log").read_text(errors="replace")[-3000:]
        assert job.state == S.JOB_STATE_SUCCEEDED, (S.JobState.Name(job.state), job.state_reason,
                                                    job.state_message, log)
        history = helpers.state_names(await helpers.events(jobs, created.name))
        assert history[-4:] == ["STARTING", "RUNNING", "FINALIZING", "SUCCEEDED"], history
        assert seen_service is not None, "the worker never appeared as a Swarm service"
        spec = seen_service["Spec"]
        assert spec["Name"].startswith("dmod-job-") and spec["Labels"]["dmod.attempt"] == "1"
        assert spec["TaskTemplate"]["ContainerSpec"]["Image"].startswith("sha256:")
        assert spec["TaskTemplate"]["Resources"]["Reservations"]["NanoCPUs"] == 2 * 10**9
        ds = datasets_pb2_grpc.DatasetServiceStub(channel)
        output = (await ds.GetDataset(datasets_pb2.GetDatasetRequest(name=job.output_dataset))).dataset
        assert output.state == datasets_pb2.DATASET_STATE_SEALED
        objects = (await ds.ListObjects(datasets_pb2.ListObjectsRequest(parent=job.output_dataset,
                                                                        page_size=1000))).objects
        assert {f"{c}.csv" for c in files["catchments"]} <= {o.path for o in objects}
    for _ in range(60):  # the launcher removes a finished attempt after DMOD_SWARM_LINGER_SECONDS
        left = _objects(docker_engine, created.name)
        if not left["services"] and not left["secrets"]:
            break
        await asyncio.sleep(0.5)
    assert left == {"services": [], "secrets": []}
