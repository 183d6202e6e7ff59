"""Swarm launcher, pure parts: allocation -> services, service spec, secret, hostfile, task states."""
from __future__ import annotations

import base64
import json

import pytest

from dmod.services.jobs.launchers import swarm_plan, swarm_secret, swarm_spec, swarm_ssh
from dmod.services.jobs.launchers.base import EventKind, LaunchHandle, LaunchRequest, NodeSpec, Slice, WorkerState
from dmod.services.jobs.launchers.swarm_tasks import TaskView, Tracker, summarize

GiB = 1 << 30
POOL = [NodeSpec("n1", "host-a", 8, 32 * GiB), NodeSpec("n2", "host-b", 8, 32 * GiB),
        NodeSpec("n3", "host-c", 4, 16 * GiB), NodeSpec("n4", "host-d", 8, 32 * GiB)]
IMAGE = "sha256:" + "ab" * 32


def request(*slices: Slice, job: str = "jobs/0f3c9a", attempt: int = 2) -> LaunchRequest:
    return LaunchRequest(job=job, attempt=attempt, slices=slices, token="secret-token-value",
                         server="envoy:8080", engine="embedded", env={"EXTRA": "1"})


def spec_for(req: LaunchRequest, index: int = 0) -> dict:
    plan = swarm_plan.plan(req, POOL)
    return swarm_spec.service_spec(req, plan, plan.services[index], image=IMAGE, network="net-id", secret_id="sec-id",
                                   server="envoy:8080", command=["python", "-m", "entry"], grace_seconds=7)


# ---- plans ---------------------------------------------------------------------------------------
def test_homogeneous_multi_node_is_one_service_with_a_replica_per_allocated_node():
    req = request(Slice("n1", "host-a", 4, 8 * GiB), Slice("n2", "host-b", 4, 8 * GiB),
                  Slice("n4", "host-d", 4, 8 * GiB))
    plan = swarm_plan.plan(req, POOL)
    assert plan.mode == "replicas" and plan.multi and plan.ranks == 12
    (svc,) = plan.services
    assert svc.name == "dmod-job-0f3c9a-2" and svc.replicas == 3 and svc.cpus == 4
    assert svc.constraints == ("node.id != n3",)  # everything outside the allocation is excluded
    assert plan.peers == (swarm_plan.PeerGroup("tasks.dmod-job-0f3c9a-2", 3, 4),)
    spec = spec_for(req)
    assert spec["TaskTemplate"]["Placement"] == {"Constraints": ["node.id != n3"], "MaxReplicas": 1}
    assert spec["Mode"] == {"Replicated": {"Replicas": 3}}


def test_heterogeneous_cpu_counts_give_one_pinned_service_per_slice():
    req = request(Slice("n1", "host-a", 6, 8 * GiB), Slice("n3", "host-c", 2, 4 * GiB))
    plan = swarm_plan.plan(req, POOL)
    assert plan.mode == "per-slice" and plan.ranks == 8
    assert [s.name for s in plan.services] == ["dmod-job-0f3c9a-2-s0", "dmod-job-0f3c9a-2-s1"]
    assert [s.replicas for s in plan.services] == [1, 1]
    assert plan.services[0].constraints == ("node.hostname == host-a", "node.id == n1")
    assert plan.services[1].constraints == ("node.hostname == host-c", "node.id == n3")
    assert [p.to_list() for p in plan.peers] == [["tasks.dmod-job-0f3c9a-2-s0", 1, 6],
                                                 ["tasks.dmod-job-0f3c9a-2-s1", 1, 2]]
    second = spec_for(req, 1)
    assert "MaxReplicas" not in second["TaskTemplate"]["Placement"]
    assert second["TaskTemplate"]["Resources"]["Limits"] == {"NanoCPUs": 2 * 10**9, "MemoryBytes": 4 * GiB}
    env = dict(e.split("=", 1) for e in second["TaskTemplate"]["ContainerSpec"]["Env"])
    assert env["DMOD_SLICE_INDEX"] == "1" and env["DMOD_MULTI"] == "1"


def test_two_slices_on_one_node_also_use_one_service_per_slice():
    plan = swarm_plan.plan(request(Slice("n1", "host-a", 1), Slice("n1", "host-a", 1)), POOL)
    assert plan.mode == "per-slice" and len(plan.services) == 2 and plan.multi


def test_single_slice_is_pinned_to_its_node_and_not_multi():
    plan = swarm_plan.plan(request(Slice("n2", "host-b", 2, GiB)), POOL)
    assert plan.mode == "replicas" and not plan.multi
    assert plan.services[0].constraints == ("node.id == n2",)
    plan = swarm_plan.plan(request(Slice("elsewhere", "host-z", 2)), POOL)  # not a node id of the pool
    assert plan.services[0].constraints == ("node.hostname == host-z",)


def test_invalid_allocations_are_refused():
    with pytest.raises(ValueError):
        swarm_plan.plan(request(), POOL)
    with pytest.raises(ValueError):
        swarm_plan.plan(request(Slice("n1", "host-a", 0)), POOL)


def test_names_are_dns_labels_even_for_long_job_ids():
    name = swarm_plan.group_name("jobs/" + "X_" * 60, 12)
    assert len(name + "-s999") <= 63 and name == name.lower() and "_" not in name
    assert swarm_plan.group_name("jobs/" + "X_" * 60, 12) == name  # stable
    assert swarm_plan.group_name("jobs/" + "X_" * 61, 12) != name


# ---- the service spec ----------------------------------------------------------------------------
def test_worker_service_spec_is_unprivileged_pinned_labelled_and_never_restarts():
    req = request(Slice("n1", "host-a", 4, 8 * GiB), Slice("n2", "host-b", 4, 8 * GiB))
    spec = spec_for(req)
    task = spec["TaskTemplate"]
    c = task["ContainerSpec"]
    assert c["Image"] == IMAGE and c["Image"].startswith("sha256:")  # by id: Swarm never pulls
    assert c["User"] == "1000:1000" and c["ReadOnly"] is True and c["CapabilityDrop"] == ["ALL"]
    assert "CapabilityAdd" not in c and "Privileges" not in c
    assert c["StopGracePeriod"] == 7 * 10**9 and c["Init"] is True
    assert {m["Target"]: m["Type"] for m in c["Mounts"]} == {"/tmp": "tmpfs", "/work": "volume"}
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["Resources"]["Reservations"] == {"NanoCPUs": 4 * 10**9, "MemoryBytes": 8 * GiB}
    assert task["Resources"]["Limits"] == {"NanoCPUs": 4 * 10**9, "MemoryBytes": 8 * GiB}
    assert task["Networks"] == [{"Target": "net-id"}] and spec["EndpointSpec"] == {"Mode": "dnsrr"}
    for labels in (spec["Labels"], c["Labels"]):
        assert labels["dmod.job"] == "jobs/0f3c9a" and labels["dmod.attempt"] == "2"
    (secret,) = c["Secrets"]
    assert secret["SecretID"] == "sec-id" and secret["File"] == {"Name": "dmod-job", "UID": "1000", "GID": "1000",
                                                                 "Mode": 0o400}
    env = dict(e.split("=", 1) for e in c["Env"])
    assert not any("secret-token-value" in v for v in env.values())  # the token travels in the secret only
    assert env["DMOD_JOB"] == "jobs/0f3c9a" and env["DMOD_RANKS"] == "8" and env["DMOD_TASK_SLOT"] == "{{.Task.Slot}}"
    assert env["EXTRA"] == "1" and json.loads(env["DMOD_PEERS"]) == [["tasks.dmod-job-0f3c9a-2", 2, 4]]


def test_no_memory_means_no_memory_reservation():
    spec = spec_for(request(Slice("n1", "host-a", 2)))
    assert spec["TaskTemplate"]["Resources"]["Reservations"] == {"NanoCPUs": 2 * 10**9}


def test_secret_holds_the_token_and_fresh_ssh_keys_only_when_needed():
    req = request(Slice("n1", "host-a", 2), Slice("n2", "host-b", 2))
    plan = swarm_plan.plan(req, POOL)
    body = swarm_spec.secret_spec(plan, swarm_secret.bundle(req.token, plan.group, plan.multi))
    assert body["Name"] == plan.secret and body["Labels"]["dmod.job"] == "jobs/0f3c9a"
    doc = swarm_secret.parse(base64.b64decode(body["Data"]))
    assert doc["token"] == "secret-token-value"
    assert doc["ssh"]["user_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert doc["ssh"]["host_pub"].startswith("ssh-ed25519 ") and doc["ssh"]["user_pub"].startswith("ssh-ed25519 ")
    other = swarm_secret.parse(swarm_secret.bundle(req.token, plan.group, True))
    assert other["ssh"]["user_key"] != doc["ssh"]["user_key"]  # per attempt, never shared
    single = swarm_secret.parse(swarm_secret.bundle("t", "g", False))
    assert "ssh" not in single


# ---- rank 0's hostfile ---------------------------------------------------------------------------
def test_hostfile_for_replicas_puts_rank0_first():
    peers = [swarm_plan.PeerGroup("tasks.svc", 3, 4)]
    resolved = {"tasks.svc": ["10.0.1.7", "10.0.1.12", "10.0.1.3"]}
    assert swarm_plan.hostfile_lines(peers, resolved, ["10.0.1.12"]) == ["10.0.1.12:4", "10.0.1.3:4", "10.0.1.7:4"]


def test_hostfile_for_heterogeneous_slices_follows_slice_order():
    peers = [swarm_plan.PeerGroup("tasks.svc-s0", 1, 6), swarm_plan.PeerGroup("tasks.svc-s1", 1, 2),
             swarm_plan.PeerGroup("tasks.svc-s2", 1, 3)]
    resolved = {"tasks.svc-s0": ["10.0.1.9"], "tasks.svc-s1": ["10.0.1.2"], "tasks.svc-s2": ["10.0.1.5"]}
    assert swarm_plan.hostfile_lines(peers, resolved, ["10.0.1.9", "172.18.0.4"]) == \
        ["10.0.1.9:6", "10.0.1.2:2", "10.0.1.5:3"]


def test_hostfile_refuses_incomplete_resolution_or_a_foreign_rank0():
    peers = [swarm_plan.PeerGroup("tasks.svc", 2, 1)]
    with pytest.raises(ValueError, match="expected 2"):
        swarm_plan.hostfile_lines(peers, {"tasks.svc": ["10.0.0.2"]}, ["10.0.0.2"])
    with pytest.raises(ValueError, match="rank 0"):
        swarm_plan.hostfile_lines(peers, {"tasks.svc": ["10.0.0.2", "10.0.0.3"]}, ["10.0.0.9"])


def test_peers_round_trip_through_the_environment():
    peers = [swarm_plan.PeerGroup("tasks.a", 2, 3)]
    assert swarm_plan.peers_from_env(swarm_plan.peers_env(peers)) == peers


def test_ssh_launch_agent_finds_the_host_among_mpi_launcher_arguments():
    assert swarm_ssh.split_args(["-x", "10.0.0.3", "/opt/dmod/bin/hydra_pmi_proxy", "--control-port", "a:1"]) == \
        (["-x"], "10.0.0.3", ["/opt/dmod/bin/hydra_pmi_proxy", "--control-port", "a:1"])
    assert swarm_ssh.split_args(["-p", "2222", "-o", "BatchMode=yes", "host", "orted"]) == \
        (["-p", "2222", "-o", "BatchMode=yes"], "host", ["orted"])
    with pytest.raises(ValueError):
        swarm_ssh.split_args(["-x"])


# ---- task states ---------------------------------------------------------------------------------
def task(state: str, slot: int = 1, service: str = "svc0", exit_code: int | None = None, index: int = 1,
         err: str = "") -> TaskView:
    return TaskView(id=f"t-{service}-{slot}-{index}", service=service, slot=slot, state=state, desired="running",
                    node="n1", message=state, error=err, exit_code=exit_code, container="c" if exit_code is not None
                    else "", index=index)


HANDLE = LaunchHandle("swarm", "jobs/x", 1, "svc0", {"replicas": 2, "services": [
    {"id": "svc0", "name": "a-s0", "slice": 0}, {"id": "svc1", "name": "a-s1", "slice": 1}]})


def test_rank0_task_decides_the_outcome():
    both = ["svc0", "svc1"]
    assert summarize(HANDLE, both, [task("running"), task("running", service="svc1")]).state is WorkerState.RUNNING
    done = summarize(HANDLE, both, [task("complete", exit_code=0), task("running", service="svc1")])
    assert done.state is WorkerState.EXITED and done.exit_code == 0
    failed = summarize(HANDLE, both, [task("failed", exit_code=4, err="non-zero exit (4)")])
    assert failed.state is WorkerState.EXITED and failed.exit_code == 4
    assert summarize(HANDLE, both, [task("rejected", err="no such image")]).state is WorkerState.GONE
    assert summarize(HANDLE, both, [task("running"), task("orphaned", service="svc1")]).state is WorkerState.GONE
    assert summarize(HANDLE, [], []).state is WorkerState.GONE
    assert summarize(HANDLE, ["svc0"], [task("running")]).state is WorkerState.GONE  # a peer removed out of band
    assert summarize(HANDLE, both, []).state is WorkerState.RUNNING  # not scheduled yet
    newer = summarize(HANDLE, both, [task("failed", exit_code=1, index=1), task("running", index=5)])
    assert newer.state is WorkerState.RUNNING


def test_tracker_emits_started_once_then_exited():
    tracker = Tracker(HANDLE)
    both = ["svc0", "svc1"]
    kinds = [e.kind for e in tracker.update(both, [task("running"), task("starting", service="svc1")])]
    assert kinds == [EventKind.TASK_STATE, EventKind.TASK_STATE]
    kinds = [e.kind for e in tracker.update(both, [task("running"), task("running", service="svc1")])]
    assert kinds == [EventKind.TASK_STATE, EventKind.WORKER_STARTED]
    assert tracker.update(both, [task("running"), task("running", service="svc1")]) == []
    events = tracker.update(both, [task("complete", exit_code=0), task("running", service="svc1")])
    assert [e.kind for e in events][-1] is EventKind.WORKER_EXITED and events[-1].exit_code == 0
    assert tracker.done and tracker.update(both, []) == []


def test_tracker_reports_a_removed_service_as_lost():
    tracker = Tracker(HANDLE)
    tracker.update(["svc0", "svc1"], [task("running"), task("running", service="svc1")])
    events = tracker.update([], [])
    assert [e.kind for e in events] == [EventKind.WORKER_LOST]


def test_tracker_reports_started_before_exited_when_a_task_finished_between_polls():
    tracker = Tracker(HANDLE)
    both = ["svc0", "svc1"]
    events = tracker.update(both, [task("failed", exit_code=7), task("complete", exit_code=0, service="svc1")])
    kinds = [e.kind for e in events if e.kind is not EventKind.TASK_STATE]
    assert kinds == [EventKind.WORKER_STARTED, EventKind.WORKER_EXITED] and events[-1].exit_code == 7
