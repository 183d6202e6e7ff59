"""Events are authoritative from Postgres: whoever can publish on Redis (a local user before Redis
had a password, anyone holding it now) cannot make WatchJob or WatchEvents say what the services
did not record, nor hide what they did.

A live WatchJob over a running job gets, while it runs, forged payloads on every channel the
services ever used (serialized JobEvents claiming SUCCEEDED on the old event channels, notices
announcing events that do not exist, garbage), a forged MonitorEvent (unsigned and wrongly
signed) goes to a live WatchEvents, and Redis is restarted: every stream still yields exactly the
recorded events, in order, none twice, and nothing forged.
"""
from __future__ import annotations

import asyncio
import os
import struct
import time
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from dmod.local.procs import stop_pid
from dmod.local.redis import start_redis
from dmod.local.stack import Stack, load_state
from dmod.v1 import jobs_pb2 as S
from dmod.v1 import jobs_pb2_grpc, monitor_pb2, monitor_pb2_grpc

from ..jobs.helpers import job_spec, make_domain, upload_domain, upload_slow_realization

TERMINAL = {S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED}
FORGED = "FORGED"


@pytest.fixture(scope="module")
async def slow_job_names(stack, tmp_path_factory):
    async with grpc.aio.insecure_channel(stack.gateway) as ch:
        names = await upload_domain(ch, make_domain(tmp_path_factory.mktemp("domain")))
        return dict(names, realization=await upload_slow_realization(ch))


def _redis(stack) -> aioredis.Redis:
    return aioredis.from_url(stack.service_env()["DMOD_REDIS_URL"])


async def _stored(jobs, name: str) -> list[S.JobEvent]:
    """The job's events as recorded (a fresh WatchJob replay after the job ended)."""
    out = []
    async for item in jobs.WatchJob(S.WatchJobRequest(name=name)):
        if item.HasField("event"):
            out.append(item.event)
    return out


async def _forge(r: aioredis.Redis, job: str, first_seq: int, count: int = 40) -> None:
    """Everything a publisher on Redis could try against `job`, for seqs first_seq.. (the next
    real events among them)."""
    job_id = job.removeprefix("jobs/")
    batch = []
    for seq in range(first_seq, first_seq + count):
        event = S.JobEvent(job=job, seq=seq, state=S.JOB_STATE_SUCCEEDED, reason=FORGED, message="forged by redis")
        data = event.SerializeToString()
        await r.publish(b"dmod:jobs:events", data)  # the old payload channels
        batch += [struct.pack(">I", len(data)), data]
        # Notices naming events that exist only in the forger's head (and some that will).
        await r.publish(b"dmod:jobs:notices", f"{job_id}\t{seq}\t{S.JOB_STATE_SUCCEEDED}\t{FORGED}".encode())
    await r.publish(b"dmod:jobs:event-batches", b"".join(batch))
    await r.publish(b"dmod:jobs:notices", f"{job_id}\t{first_seq + 10**9}\t9\tX\n\xff\xfe\x00garbage\n\t\t\t".encode())
    await r.publish(b"dmod:jobs:notices", b"\x00" * 64)
    await r.publish(b"dmod:jobs:logs", b"\xff\xfe")


async def _forge_monitor(r: aioredis.Redis, job: str) -> None:
    forged = monitor_pb2.MonitorEvent(job=job, backend="local", kind=FORGED, message="forged by redis").SerializeToString()
    await r.publish(b"dmod:monitor:events", forged)  # unsigned
    await r.publish(b"dmod:monitor:events", os.urandom(32) + forged)  # wrongly signed
    await r.publish(b"dmod:monitor:events", b"short")


async def _watch_until_running(jobs, name: str, seen: list, running: asyncio.Event, ended: asyncio.Event):
    try:
        async for item in jobs.WatchJob(S.WatchJobRequest(name=name)):
            if item.HasField("event"):
                seen.append(item.event)
                if item.event.state == S.JOB_STATE_RUNNING and item.event.progress.step > 0:
                    running.set()
    finally:
        ended.set()


async def _monitor(channel, name: str, out: list) -> None:
    stub = monitor_pb2_grpc.MonitorServiceStub(channel)
    async for reply in stub.WatchEvents(monitor_pb2.WatchEventsRequest(job=name)):
        out.append(reply.event)


def _assert_exactly_recorded(seen: list[S.JobEvent], stored: list[S.JobEvent]) -> None:
    assert not [e for e in seen if e.reason == FORGED or e.message == "forged by redis"], "a forged event was delivered"
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1)), "gaps or duplicates"
    assert [e.SerializeToString(deterministic=True) for e in seen] == \
        [e.SerializeToString(deterministic=True) for e in stored], "delivered events differ from the recorded ones"


async def test_forged_redis_payloads_are_never_delivered(stack, channel, slow_job_names):
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    job = (await jobs.CreateJob(S.CreateJobRequest(spec=job_spec(slow_job_names, cpus=1)))).job
    monitor_events: list[monitor_pb2.MonitorEvent] = []
    monitor_task = asyncio.ensure_future(_monitor(channel, job.name, monitor_events))
    seen: list[S.JobEvent] = []
    running, ended = asyncio.Event(), asyncio.Event()
    watch = asyncio.ensure_future(_watch_until_running(jobs, job.name, seen, running, ended))
    r = _redis(stack)
    try:
        await asyncio.wait_for(running.wait(), 120)
        # Forge the next events (the real ones of those seqs come later), and many after them.
        await _forge(r, job.name, seen[-1].seq + 1)
        await _forge_monitor(r, job.name)
        await asyncio.sleep(1.0)
        assert not [e for e in seen if e.reason == FORGED], "a forged event was delivered"
        # Real events after the forgery: cancelling records CANCELLING and CANCELLED. They arrive
        # live (a notice read at once), not by the watcher's idle re-read of Postgres (5 s).
        count = len(seen)
        t0 = time.monotonic()
        await jobs.CancelJob(S.CancelJobRequest(name=job.name))
        while not [e for e in seen[count:] if e.state == S.JOB_STATE_CANCELLING] and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.02)
        assert time.monotonic() - t0 < 4.5, "CANCELLING was not delivered live after the forgery"
        await asyncio.wait_for(ended.wait(), 60)
        await watch
    finally:
        watch.cancel()
        await r.aclose()
    stored = await _stored(jobs, job.name)
    assert stored[-1].state == S.JOB_STATE_CANCELLED
    _assert_exactly_recorded(seen, stored)
    assert seen[-1].state == S.JOB_STATE_CANCELLED
    await asyncio.sleep(0.5)
    monitor_task.cancel()
    kinds = [e.kind for e in monitor_events]
    assert FORGED not in kinds, "a forged monitor event was delivered"
    assert "WORKER_STARTED" in kinds or "WORKER_EXITED" in kinds, f"no real monitor event delivered: {kinds}"


async def test_no_event_missed_or_duplicated_across_a_redis_restart(stack, channel, slow_job_names):
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    job = (await jobs.CreateJob(S.CreateJobRequest(spec=job_spec(slow_job_names, cpus=1)))).job
    seen: list[S.JobEvent] = []
    running, ended = asyncio.Event(), asyncio.Event()
    watch = asyncio.ensure_future(_watch_until_running(jobs, job.name, seen, running, ended))
    try:
        await asyncio.wait_for(running.wait(), 120)
        before = len(seen)
        # Redis goes away under the live stream (events keep being recorded meanwhile) and comes
        # back on the same port with the same password.
        home = Path(stack.home)
        state = load_state(home)
        stop_pid(state.pids["redis"], sig=9)
        await asyncio.sleep(1.5)
        state.pids["redis"] = start_redis(home / "redis", state.ports["redis"], state.secret("redis.password")).pid
        Stack(home)._save(state)
        r = _redis(stack)
        try:
            await _forge(r, job.name, seen[-1].seq + 1, count=5)
        finally:
            await r.aclose()
        deadline = time.monotonic() + 30
        while len(seen) <= before + 1 and time.monotonic() < deadline:  # live again after the restart
            await asyncio.sleep(0.2)
        await jobs.CancelJob(S.CancelJobRequest(name=job.name))
        await asyncio.wait_for(ended.wait(), 60)
        await watch
    finally:
        watch.cancel()
    stored = await _stored(jobs, job.name)
    assert stored[-1].state in TERMINAL
    _assert_exactly_recorded(seen, stored)
