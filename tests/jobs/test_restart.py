"""kill -9 of the scheduler mid-run, then a restart: the job finishes, exactly once."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dmod.local.procs import free_port
from dmod.v1 import datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc

from .helpers import (
    events,
    job_processes,
    job_spec,
    no_job_processes,
    state_names,
    upload_slow_realization,
    wait_state,
)

S = jobs_pb2
TERMINAL = {S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED}


def start_scheduler(stack, port: int, log) -> subprocess.Popen:
    env = {**os.environ, **stack.service_env(), "DMOD_LISTEN": f"127.0.0.1:{port}", "DMOD_JOBS_POOL": "killtest",
           "DMOD_NODE_CPUS": "4", "DMOD_JOBS_LEASE_SECONDS": "3",
           "DMOD_SERVICES_TARGET": f"127.0.0.1:{stack.ports['services']}"}
    return subprocess.Popen([sys.executable, "-m", "dmod.cli.main", "serve", "jobs", "monitor"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


async def serving(target: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with grpc.aio.insecure_channel(target) as ch:
        while True:
            try:
                reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            assert loop.time() < deadline, f"{target} not serving"
            await asyncio.sleep(0.2)


async def test_scheduler_killed_mid_run_finishes_job_exactly_once(stack, jobs, channel, domain, settings, tmp_path):
    log = open(tmp_path / "scheduler.log", "ab")
    port = free_port()
    proc = start_scheduler(stack, port, log)
    procs = [proc]
    try:
        await serving(f"127.0.0.1:{port}")
        names = dict(domain, realization=await upload_slow_realization(channel))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as direct:
            created = (await jobs_pb2_grpc.JobServiceStub(direct).CreateJob(
                S.CreateJobRequest(spec=job_spec(names, cpus=2)))).job
        job_id = created.name.removeprefix("jobs/")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while True:
            job = (await jobs.GetJob(S.GetJobRequest(name=created.name))).job
            if job.state == S.JOB_STATE_RUNNING and job.progress.step > 0:
                break
            assert job.state not in TERMINAL, (job.state_reason, job.state_message)
            assert loop.time() < deadline
            await asyncio.sleep(0.2)

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert job_processes(job_id), "the worker must survive its scheduler"
        await asyncio.sleep(1.0)
        proc = start_scheduler(stack, free_port(), log)
        procs.append(proc)

        job = await wait_state(jobs, created.name, TERMINAL, timeout=120)
        assert job.state == S.JOB_STATE_SUCCEEDED, (job.state_reason, job.state_message, (tmp_path / "scheduler.log"))
        assert job.attempt == 1
        history = await events(jobs, created.name)
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        assert [s for s in state_names(history) if s != "PARTITIONING"] == ["PENDING", "VALIDATING", "STAGING", "QUEUED", "STARTING",
                                        "RUNNING", "FINALIZING", "SUCCEEDED"]
        assert sum(e.reason == "WORKER_STARTED" for e in history) == 1
        conn = await asyncpg.connect(settings.database_url)
        try:
            attempts = await conn.fetch("SELECT * FROM job_attempts WHERE job_id = $1", job_id)
            allocations = await conn.fetch("SELECT * FROM job_allocations WHERE job_id = $1", job_id)
        finally:
            await conn.close()
        assert len(attempts) == 1 and attempts[0]["exit_code"] == 0
        assert allocations and all(a["release_time"] is not None for a in allocations)
        ds = datasets_pb2_grpc.DatasetServiceStub(channel)
        output = (await ds.GetDataset(datasets_pb2.GetDatasetRequest(name=job.output_dataset))).dataset
        assert output.state == datasets_pb2.DATASET_STATE_SEALED
        assert not await no_job_processes(job_id)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
        log.close()
