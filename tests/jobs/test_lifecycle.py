"""Lifecycle through the gateway: validation, idempotency, cancel, retry, watch and logs."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from dmod.errors import error_details
from dmod.v1 import jobs_pb2

from .helpers import (
    events,
    job_processes,
    job_spec,
    no_job_processes,
    state_names,
    upload_domain,
    upload_slow_realization,
    wait_state,
)

S = jobs_pb2
TERMINAL = {S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED}


async def test_invalid_requests_name_the_fields(jobs, domain):
    spec = job_spec(domain, cpus=-2, start="2015-12-02 00:00:00", end="2015-12-01 00:00:00")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await jobs.CreateJob(S.CreateJobRequest(spec=spec))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in error_details(err.value)["BadRequest"].field_violations}
    assert {"spec.cpu_count", "spec.end_time"} <= fields
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await jobs.GetJob(S.GetJobRequest(name="nope"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await jobs.GetJob(S.GetJobRequest(name="jobs/doesnotexist"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_create_is_idempotent_on_request_id(jobs, domain):
    request = S.CreateJobRequest(spec=job_spec(domain, engine="noop"), request_id="idem-1", labels={"t": "idem"})
    first, second = await asyncio.gather(jobs.CreateJob(request), jobs.CreateJob(request))
    assert first.job.name == second.job.name
    again = await jobs.CreateJob(request)
    assert again.job.name == first.job.name
    other = S.CreateJobRequest(spec=job_spec(domain, cpus=2, engine="noop"), request_id="idem-1", labels={"t": "idem"})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await jobs.CreateJob(other)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_details(err.value)["ErrorInfo"].reason == "REQUEST_ID_REUSED"
    listed = (await jobs.ListJobs(S.ListJobsRequest(labels={"t": "idem"}))).jobs
    assert [j.name for j in listed] == [first.job.name]
    await wait_state(jobs, first.job.name, TERMINAL)


async def test_missing_forcing_fails_in_validating_naming_the_catchment(jobs, channel, domain_files):
    missing = domain_files["catchments"][5]
    names = await upload_domain(channel, domain_files, drop_forcing={missing})
    job = (await jobs.CreateJob(S.CreateJobRequest(spec=job_spec(names)))).job
    job = await wait_state(jobs, job.name, TERMINAL)
    assert job.state == S.JOB_STATE_FAILED
    assert job.state_reason == "FORCING_INCOMPLETE"
    assert f"catchment {missing}:" in job.state_message
    assert state_names(await events(jobs, job.name)) == ["PENDING", "VALIDATING", "FAILED"]
    # RetryJob: a new attempt through the whole pipeline, history kept.
    retried = (await jobs.RetryJob(S.RetryJobRequest(name=job.name))).job
    assert retried.attempt == 2 and retried.state == S.JOB_STATE_PENDING
    job = await wait_state(jobs, job.name, TERMINAL)
    assert job.state == S.JOB_STATE_FAILED and job.attempt == 2
    history = await events(jobs, job.name)
    assert state_names(history) == ["PENDING", "VALIDATING", "FAILED", "PENDING", "VALIDATING", "FAILED"]
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await jobs.CancelJob(S.CancelJobRequest(name=job.name))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancel_running_job_leaves_no_process(jobs, channel, domain):
    names = dict(domain, realization=await upload_slow_realization(channel))
    job = (await jobs.CreateJob(S.CreateJobRequest(spec=job_spec(names, cpus=2)))).job
    job_id = job.name.removeprefix("jobs/")
    deadline = asyncio.get_running_loop().time() + 120
    while True:  # running and making progress
        job = (await jobs.GetJob(S.GetJobRequest(name=job.name))).job
        if job.state == S.JOB_STATE_RUNNING and job.progress.step > 0:
            break
        assert job.state not in TERMINAL, (job.state_reason, job.state_message)
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
    assert len(job_processes(job_id)) >= 3  # worker, mpiexec, 2 ranks
    cancelled = (await jobs.CancelJob(S.CancelJobRequest(name=job.name))).job
    assert cancelled.state in (S.JOB_STATE_CANCELLING, S.JOB_STATE_CANCELLED)
    job = await wait_state(jobs, job.name, TERMINAL, timeout=30)
    assert job.state == S.JOB_STATE_CANCELLED
    assert await no_job_processes(job_id, timeout=2.0) == []
    nodes = (await jobs.ListNodes(S.ListNodesRequest())).nodes
    assert all(n.allocated_cpus <= n.cpus for n in nodes)
    history = state_names(await events(jobs, job.name))
    assert history[-2:] == ["CANCELLING", "CANCELLED"]


async def test_watch_resumes_without_gaps_or_duplicates(jobs, channel, domain):
    job = (await jobs.CreateJob(S.CreateJobRequest(spec=job_spec(domain)))).job
    seen: list[S.JobEvent] = []
    # Watch, drop the stream after a few events, resume from the last seq, repeatedly.
    while True:
        call = jobs.WatchJob(S.WatchJobRequest(name=job.name, after_seq=seen[-1].seq if seen else 0))
        got = 0
        snapshot = None
        async for item in call:
            if item.HasField("snapshot"):
                snapshot = item.snapshot
                continue
            seen.append(item.event)
            got += 1
            if got == 2:
                call.cancel()
                break
        assert snapshot is not None and snapshot.name == job.name
        if seen and seen[-1].state in TERMINAL:
            break
        if got < 2:  # the stream ended by itself: the job is terminal
            break
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].state == S.JOB_STATE_SUCCEEDED
    full = await events(jobs, job.name)
    assert [(e.seq, e.state) for e in full] == [(e.seq, e.state) for e in seen]
    tail = await events(jobs, job.name, after=3)
    assert [e.seq for e in tail] == [e.seq for e in full[3:]]
    # Stored logs, then nothing more (the job is over).
    lines = []
    async for reply in jobs.StreamJobLogs(S.StreamJobLogsRequest(name=job.name, follow=True)):
        lines.extend(reply.lines)
    texts = [ln.text for ln in lines]
    assert any(t.startswith("Running timestep") for t in texts)
    assert [ln.seq for ln in lines] == sorted(ln.seq for ln in lines)


async def test_many_watchers_opening_at_once_each_get_their_own_backlog(jobs, domain):
    """Streams that open together over one job, from the same and from different seqs: each gets
    exactly the events after its own seq."""
    job = (await jobs.CreateJob(S.CreateJobRequest(spec=job_spec(domain)))).job
    await wait_state(jobs, job.name, TERMINAL, timeout=120)
    full = [e.seq for e in await events(jobs, job.name)]

    async def watch(after: int) -> tuple[int, list[int]]:
        got = []
        async for item in jobs.WatchJob(S.WatchJobRequest(name=job.name, after_seq=after)):
            if item.HasField("event"):
                got.append(item.event.seq)
        return after, got

    afters = [i % (len(full) + 1) for i in range(60)]  # the same seq several times, and every seq
    for after, got in await asyncio.gather(*(watch(a) for a in afters)):
        assert got == [s for s in full if s > after]
