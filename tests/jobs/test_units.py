"""Pure logic: state machine, allocation paradigms, aging and quota, page tokens, validation,
retry backoff, job directory layout."""
from __future__ import annotations

import datetime as dt

import pytest

from dmod.services.jobs import allocation, pagination, queueing, states
from dmod.services.jobs.allocation import NodeFree, allocate
from dmod.services.jobs.lifecycle import backoff_seconds
from dmod.services.jobs.validation import normalized, validate_create
from dmod.services.runtime.errors import InvalidArgument
from dmod.services.worker.agent import layout
from dmod.v1 import jobs_pb2

S = jobs_pb2


# ---- state machine ------------------------------------------------------------------------------
def test_happy_path_is_allowed():
    path = [states.PENDING, states.VALIDATING, states.STAGING, states.PARTITIONING, states.QUEUED, states.STARTING,
            states.RUNNING, states.FINALIZING, states.SUCCEEDED]
    assert all(states.allowed(a, b) for a, b in zip(path, path[1:]))
    assert states.allowed(states.STAGING, states.QUEUED)  # no partitioning needed


def test_any_non_terminal_can_fail_or_be_cancelled():
    for s in (states.PENDING, states.VALIDATING, states.QUEUED, states.RUNNING, states.FINALIZING):
        assert states.allowed(s, states.FAILED) and states.allowed(s, states.CANCELLING)
    assert states.allowed(states.CANCELLING, states.CANCELLED)
    assert states.allowed(states.CANCELLING, states.FAILED)


def test_disallowed_transitions():
    assert not states.allowed(states.SUCCEEDED, states.PENDING)
    assert not states.allowed(states.SUCCEEDED, states.CANCELLING)
    assert not states.allowed(states.PENDING, states.RUNNING)
    assert not states.allowed(states.QUEUED, states.SUCCEEDED)
    assert not states.allowed(states.FAILED, states.FAILED)
    assert states.allowed(states.FAILED, states.PENDING) and states.allowed(states.CANCELLED, states.PENDING)
    assert states.allowed(states.RUNNING, states.QUEUED)  # automatic retry
    assert states.allowed(states.RUNNING, states.RUNNING)  # progress event
    assert not states.allowed(states.SUCCEEDED, states.SUCCEEDED)


def test_names_round_trip():
    assert states.name(states.CANCELLING) == "CANCELLING"
    assert states.parse("running") == states.RUNNING
    assert states.parse("JOB_STATE_QUEUED") == states.QUEUED


# ---- allocation paradigms -----------------------------------------------------------------------
NODES = [NodeFree("a", "ha", 4, 400), NodeFree("b", "hb", 2, 200), NodeFree("c", "hc", 8, 800)]


def cpus(parts):
    return [(p.node, p.cpus) for p in parts]


def test_single_node_takes_the_first_that_fits():
    assert cpus(allocate(allocation.SINGLE_NODE, NODES, 3)) == [("a", 3)]
    assert cpus(allocate(allocation.SINGLE_NODE, NODES, 6)) == [("c", 6)]
    assert allocate(allocation.SINGLE_NODE, NODES, 9) is None


def test_fill_nodes_takes_nodes_in_order():
    assert cpus(allocate(allocation.FILL_NODES, NODES, 7)) == [("a", 4), ("b", 2), ("c", 1)]
    assert cpus(allocate(allocation.FILL_NODES, NODES, 14)) == [("a", 4), ("b", 2), ("c", 8)]
    assert allocate(allocation.FILL_NODES, NODES, 15) is None


def test_round_robin_spreads_evenly():
    assert cpus(allocate(allocation.ROUND_ROBIN, NODES, 6)) == [("a", 2), ("b", 2), ("c", 2)]
    assert cpus(allocate(allocation.ROUND_ROBIN, NODES, 9)) == [("a", 4), ("b", 2), ("c", 3)]
    assert allocate(allocation.ROUND_ROBIN, NODES, 15) is None
    assert cpus(allocate(S.ALLOCATION_PARADIGM_UNSPECIFIED, NODES, 3)) == [("a", 1), ("b", 1), ("c", 1)]


def test_memory_is_all_or_nothing_and_proportional():
    parts = allocate(allocation.ROUND_ROBIN, NODES, 4, memory=400)
    assert sum(p.memory_bytes for p in parts) == 400
    assert all(p.memory_bytes == 100 * p.cpus for p in parts)
    assert allocate(allocation.SINGLE_NODE, NODES, 2, memory=900) is None
    tight = [NodeFree("a", "ha", 4, 100), NodeFree("b", "hb", 4, 1000)]
    # FILL_NODES takes only as many CPUs from `a` as its memory carries.
    assert cpus(allocate(allocation.FILL_NODES, tight, 4, memory=400)) == [("a", 1), ("b", 3)]


def test_not_ready_nodes_are_skipped():
    nodes = [NodeFree("a", "ha", 4, 0, ready=False), NodeFree("b", "hb", 4, 0)]
    assert cpus(allocate(allocation.SINGLE_NODE, nodes, 2)) == [("b", 2)]


def test_allocate_rejects_nonsense():
    with pytest.raises(ValueError):
        allocate(allocation.SINGLE_NODE, NODES, 0)


# ---- queue: aging and quota -----------------------------------------------------------------------
def test_aging_adds_ten_per_full_idle_hour():
    assert queueing.effective_priority(5, 0) == 5
    assert queueing.effective_priority(5, 3599) == 5
    assert queueing.effective_priority(5, 3600) == 15
    assert queueing.effective_priority(-20, 3 * 3600 + 10) == 10


def test_order_prefers_priority_then_age():
    now = 100_000.0
    jobs = [queueing.Waiting("new-high", "u", 10, now - 60, 1), queueing.Waiting("old-low", "u", 0, now - 2 * 3600, 1),
            queueing.Waiting("older-low", "u", 0, now - 2.5 * 3600, 1), queueing.Waiting("fresh", "u", 0, now, 1)]
    # old-low/older-low aged to 20 and pass new-high (10); ties go to the longest waiting.
    assert [j.job_id for j in queueing.order(jobs, now)] == ["older-low", "old-low", "new-high", "fresh"]


def test_quota():
    assert queueing.within_quota(10, 100, 0)
    assert queueing.within_quota(2, 2, 4)
    assert not queueing.within_quota(3, 2, 4)


# ---- retry backoff ----------------------------------------------------------------------------------
def test_exponential_backoff():
    assert [backoff_seconds(a, 1.0, 2.0) for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_seconds(30, 1.0, 2.0) == 300.0


# ---- page tokens ------------------------------------------------------------------------------------
def test_page_tokens_are_opaque_and_bound_to_the_filter():
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    token = pagination.encode(when, "abc", "f1")
    assert pagination.decode(token, "f1") == (when, "abc")
    assert pagination.decode("", "f1") is None
    with pytest.raises(InvalidArgument):
        pagination.decode(token, "other-filter")
    with pytest.raises(InvalidArgument):
        pagination.decode("not-a-token!", "f1")


# ---- request validation -----------------------------------------------------------------------------
def test_validation_names_fields():
    req = S.CreateJobRequest(spec=S.JobSpec(cpu_count=-1, engine="warp", hydrofabric_dataset="hf",
                                            catchment_ids=["cat-1", "cat-1", "bad id"], priority=5000))
    req.spec.start_time.FromSeconds(100)
    req.labels["Bad Key"] = "x"
    fields = {f for f, _ in validate_create(req)}
    assert {"spec.cpu_count", "spec.engine", "spec.hydrofabric_dataset", "spec.catchment_ids",
            "spec.catchment_ids[2]", "spec.priority", "spec.end_time", "labels[Bad Key]"} <= fields
    ok = S.CreateJobRequest(spec=S.JobSpec(cpu_count=2, hydrofabric_dataset="datasets/x"))
    assert validate_create(ok) == []
    spec = normalized(ok.spec)
    assert (spec.engine, spec.model, spec.allocation_paradigm) == ("auto", "ngen", S.ALLOCATION_PARADIGM_ROUND_ROBIN)


def test_end_before_start():
    req = S.CreateJobRequest(spec=S.JobSpec())
    req.spec.start_time.FromSeconds(200)
    req.spec.end_time.FromSeconds(100)
    assert ("spec.end_time", "must be after spec.start_time") in validate_create(req)


# ---- job directory layout ---------------------------------------------------------------------------
def test_hydrofabric_and_json_picking():
    assert layout.pick_hydrofabric(["a/x.gpkg", "readme.txt"]) == ("a/x.gpkg", "a/x.gpkg")
    assert layout.pick_hydrofabric(["catchment_data.geojson", "nexus_data.geojson"]) == (
        "catchment_data.geojson", "nexus_data.geojson")
    with pytest.raises(layout.LayoutError):
        layout.pick_hydrofabric(["x.csv"])
    assert layout.pick_json(["a.json", "realization.json"], "realization.json", "realization") == "realization.json"
    with pytest.raises(layout.LayoutError):
        layout.pick_json(["a.json", "b.json"], "realization.json", "realization")


def test_realization_rewrite():
    doc = {"global": {"forcing": {"provider": "CsvPerFeature", "path": "/data/forcing/"}},
           "catchments": {"cat-1": {"forcing": {"path": "/elsewhere/cat-1.csv"}}},
           "time": {"start_time": "2000-01-01 00:00:00", "end_time": "2000-01-02 00:00:00", "output_interval": 900},
           "output_root": "/tmp/out"}
    start = dt.datetime(2015, 12, 1, tzinfo=dt.UTC)
    end = dt.datetime(2015, 12, 2, 23, tzinfo=dt.UTC)
    out = layout.rewrite_realization(doc, forcing_paths=["cat-1.csv", "cat-2.csv"], start=start, end=end)
    assert out["time"] == {"start_time": "2015-12-01 00:00:00", "end_time": "2015-12-02 23:00:00",
                           "output_interval": 900}
    assert out["global"]["forcing"]["path"] == "./forcing/"
    assert out["catchments"]["cat-1"]["forcing"]["path"] == "./forcing/cat-1.csv"
    assert out["output"]["root"] == "./output/" and "output_root" not in out
    nc = layout.rewrite_realization({"global": {"forcing": {"provider": "NetCDF", "path": "x/forcing.nc"}}},
                                    forcing_paths=["sub/forcing.nc"], start=None, end=None)
    assert nc["global"]["forcing"]["path"] == "./forcing/sub/forcing.nc"
    with pytest.raises(layout.LayoutError):
        layout.rewrite_realization({"global": {"forcing": {"provider": "NetCDF", "path": "f.nc"}}},
                                   forcing_paths=["a.csv"], start=None, end=None)


async def test_admission_gives_way_to_calls_in_flight_but_never_starves():
    import asyncio
    import time

    from dmod.services.jobs.admission import Admission
    from dmod.services.runtime import inflight

    started: list[tuple[str, float]] = []

    async def until(count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(started) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    gate = Admission(lambda job_id, row: started.append((job_id, time.monotonic())), trickle=1.0)
    gate.add("idle")
    await until(1)
    assert [j for j, _ in started] == ["idle"]  # nothing in flight: admitted

    inflight.enter()  # a call being served
    try:
        t0 = time.monotonic()
        gate.add("a")
        gate.add("b")
        await asyncio.sleep(0.2)
        if time.monotonic() - t0 < 0.9:  # (only meaningful if this loop was not stalled itself)
            assert [j for j, _ in started] == ["idle"]  # waiting while busy
        await until(3)  # ... but never starved: one per trickle period even so
        assert [j for j, _ in started] == ["idle", "a", "b"]
        assert started[1][1] - t0 >= 0.99 and started[2][1] - started[1][1] >= 0.99
    finally:
        inflight.leave()
    gate.add("c")
    await until(4)
    assert started[-1][0] == "c"
    await gate.close()


# ---- event fan-out and worker priority -------------------------------------------------------------
async def test_subscription_wakes_on_put_times_out_and_resyncs_when_full(monkeypatch):
    import asyncio
    import time

    from dmod.services.jobs import events

    monkeypatch.setattr(events, "SWEEP_SECONDS", 0.05)
    hub = events.EventHub(redis=None)
    with hub.watch_job("j1") as sub:
        assert hub.job_watchers["j1"] == {sub}
        waiter = asyncio.ensure_future(sub.get(5.0))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        sub.put("first")
        assert await asyncio.wait_for(waiter, 1.0) == "first"
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await sub.get(0.2)  # no timer of its own: the hub's sweeper ends the wait
        assert 0.2 <= time.monotonic() - t0 < 2.0
        for i in range(events.MAX_BACKLOG + 1):  # a consumer that stopped reading
            sub.put(i)
        assert await sub.get(1.0) is events.RESYNC  # told to re-read Postgres instead
        sub.put("after")
        assert await sub.get(1.0) == "after"
    assert "j1" not in hub.job_watchers
    hub._sweeper.cancel()


def test_ranks_keep_the_session_nice_of_their_agent(tmp_path):
    import subprocess
    from pathlib import Path

    from dmod.services.worker.agent.run import at_session_nice

    assert at_session_nice(["ngen", "a"], 0) == ["ngen", "a"]
    if not Path("/proc/self/autogroup").exists():
        pytest.skip("no autogroup scheduling in this kernel")
    # A rank in a session of its own (as MPI launchers start them) sets its session's nice.
    argv = at_session_nice(["cat", "/proc/self/autogroup"], 7)
    out = subprocess.run(argv, capture_output=True, text=True, check=True, start_new_session=True).stdout
    assert out.split()[-1] == "7"


def test_lower_priority_makes_the_worker_session_idle():
    import os
    import subprocess
    from pathlib import Path

    from dmod.services.jobs.launchers.priority import lower_priority

    proc = subprocess.Popen(["sleep", "5"], start_new_session=True)
    try:
        lower_priority(proc.pid, 10, idle=True)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) >= 10
        if hasattr(os, "SCHED_IDLE"):
            assert os.sched_getscheduler(proc.pid) == os.SCHED_IDLE
        if Path(f"/proc/{proc.pid}/autogroup").exists():
            assert Path(f"/proc/{proc.pid}/autogroup").read_text().split()[-1] == "19"
    finally:
        proc.kill()
        proc.wait()
