"""A lost worker (killed -9) is retried per the job's policy: a new attempt, history kept."""
from __future__ import annotations

import asyncio
import signal

from dmod.v1 import jobs_pb2

from .helpers import events, job_processes, job_spec, no_job_processes, upload_slow_realization, wait_state

S = jobs_pb2
TERMINAL = {S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED}


async def test_lost_worker_is_retried_then_succeeds(jobs, channel, domain):
    names = dict(domain, realization=await upload_slow_realization(channel))
    spec = job_spec(names)
    spec.retry_policy.max_attempts = 2
    spec.retry_policy.initial_backoff.FromMilliseconds(200)
    job = (await jobs.CreateJob(S.CreateJobRequest(spec=spec))).job
    job_id = job.name.removeprefix("jobs/")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while True:
        job = (await jobs.GetJob(S.GetJobRequest(name=job.name))).job
        if job.state == S.JOB_STATE_RUNNING and job.progress.step > 0:
            break
        assert job.state not in TERMINAL and loop.time() < deadline, (job.state_reason, job.state_message)
        await asyncio.sleep(0.2)
    for proc in job_processes(job_id):  # the worker agent and its MPI run, as a crash would
        try:
            proc.send_signal(signal.SIGKILL)
        except Exception:  # noqa: BLE001, S110 - already gone
            pass
    job = await wait_state(jobs, job.name, TERMINAL, timeout=180)
    assert job.state == S.JOB_STATE_SUCCEEDED, (job.state_reason, job.state_message)
    assert job.attempt == 2
    history = await events(jobs, job.name)
    retry = [e for e in history if e.reason == "WORKER_LOST"]
    assert len(retry) == 1 and retry[0].state == S.JOB_STATE_QUEUED and "retry 2 of 2" in retry[0].message
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert not await no_job_processes(job_id)
