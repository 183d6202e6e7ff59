"""A job that runs past its timeout ends FAILED(TIMEOUT), with an event naming the limit, and
leaves no process behind (the worker's own exit report, "stopped by SIGTERM", must not win)."""
from __future__ import annotations

from dmod.v1 import jobs_pb2

from .helpers import events, job_spec, no_job_processes, state_names, upload_slow_realization, wait_state

S = jobs_pb2
TERMINAL = {S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED}


async def test_timeout_fails_the_job_with_reason_timeout(jobs, channel, domain):
    names = dict(domain, realization=await upload_slow_realization(channel))
    spec = job_spec(names, cpus=1)
    spec.timeout.FromSeconds(3)
    job = (await jobs.CreateJob(S.CreateJobRequest(spec=spec))).job
    job = await wait_state(jobs, job.name, TERMINAL, timeout=120)
    assert job.state == S.JOB_STATE_FAILED, (S.JobState.Name(job.state), job.state_reason, job.state_message)
    assert job.state_reason == "TIMEOUT", job.state_message
    assert "3s" in job.state_message
    history = await events(jobs, job.name)
    assert state_names(history)[-3:] == ["RUNNING", "CANCELLING", "FAILED"]
    assert history[-2].reason == "TIMEOUT" and "stopping the worker" in history[-2].message
    last = history[-1]
    assert last.state == S.JOB_STATE_FAILED and last.reason == "TIMEOUT" and "timeout of 3s" in last.message
    assert not any(e.reason == "CANCELLED" for e in history)
    assert await no_job_processes(job.name.removeprefix("jobs/"), timeout=15) == []
