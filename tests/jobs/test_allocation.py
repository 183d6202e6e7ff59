"""200 concurrent submissions never over-commit the node pool."""
from __future__ import annotations

import asyncio
import random

import asyncpg

from dmod.v1 import jobs_pb2

from .helpers import wait_state

S = jobs_pb2
TERMINAL = {S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED}
PARADIGMS = [S.ALLOCATION_PARADIGM_SINGLE_NODE, S.ALLOCATION_PARADIGM_FILL_NODES, S.ALLOCATION_PARADIGM_ROUND_ROBIN]


async def test_concurrent_submissions_never_overcommit(jobs, settings):
    rng = random.Random(7)
    capacity = {n.name.removeprefix("nodes/"): n.cpus for n in (await jobs.ListNodes(S.ListNodesRequest())).nodes}
    assert capacity

    async def submit(i: int) -> str:
        spec = S.JobSpec(engine="noop", cpu_count=rng.choice([1, 1, 2]), allocation_paradigm=rng.choice(PARADIGMS),
                         priority=rng.randint(-5, 5))
        reply = await jobs.CreateJob(S.CreateJobRequest(spec=spec, labels={"test": "overcommit"}))
        return reply.job.name

    names = await asyncio.gather(*(submit(i) for i in range(200)))
    assert len(set(names)) == 200
    # Let the queue drain for a while, sampling the nodes: never more allocated than they have.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 25
    while loop.time() < deadline:
        for node in (await jobs.ListNodes(S.ListNodesRequest())).nodes:
            assert 0 <= node.allocated_cpus <= node.cpus, node
        await asyncio.sleep(0.1)
    async def cancel(name: str) -> None:
        try:
            await jobs.CancelJob(S.CancelJobRequest(name=name))
        except Exception:  # noqa: BLE001 - already finished
            pass

    await asyncio.gather(*(cancel(n) for n in names))
    finished = await asyncio.gather(*(wait_state(jobs, name, TERMINAL, timeout=60) for name in names))
    succeeded = sum(j.state == S.JOB_STATE_SUCCEEDED for j in finished)
    assert succeeded >= 5, "the queue should have made progress"
    assert all(j.state != S.JOB_STATE_FAILED for j in finished), [j.state_message for j in finished
                                                                   if j.state == S.JOB_STATE_FAILED][:3]
    # Replay the allocation history: at no instant did a node hold more than its CPUs.
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT a.node, a.cpus, a.allocate_time, a.release_time FROM job_allocations a JOIN jobs j "
            "ON j.id = a.job_id WHERE j.labels @> '{\"test\": \"overcommit\"}'::jsonb")
    finally:
        await conn.close()
    assert rows and all(r["release_time"] is not None for r in rows)
    for node, cpus in capacity.items():
        points = []
        for r in rows:
            if r["node"] == node:
                points.append((r["allocate_time"], 1, r["cpus"]))
                points.append((r["release_time"], 0, -r["cpus"]))
        in_use = peak = 0
        for _, _, delta in sorted(points):
            in_use += delta
            peak = max(peak, in_use)
        assert peak <= cpus, f"node {node}: {peak} CPUs allocated at once, it has {cpus}"
    nodes = (await jobs.ListNodes(S.ListNodesRequest())).nodes
    assert all(n.allocated_cpus == 0 for n in nodes), nodes
