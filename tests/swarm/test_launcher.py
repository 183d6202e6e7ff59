"""SwarmLauncher against a real Docker Swarm (the harness's private engine) and the real worker image."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from dmod.services.jobs.launchers.base import EventKind, LaunchRequest, Slice, WorkerState
from dmod.services.jobs.launchers.swarm import DEFAULT_COMMAND, SwarmConfig, SwarmLauncher

from .conftest import load_images_module, load_jobs_helpers

pytestmark = pytest.mark.docker

PY = "/opt/dmod/bin/python"
# Asserts, inside the worker, what the launcher promises: non-root, no capabilities, read-only root,
# the secret readable by the worker only, the token not in the environment.
CHECK = """
import os, stat, sys, time, json
assert os.getuid() == 1000 and os.getgid() == 1000, os.getuid()
caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm', 'CapBnd'))]
assert all(int(c, 16) == 0 for c in caps), caps
try:
    open('/opt/x', 'w'); sys.exit(20)
except OSError:
    pass
st = os.stat('/run/secrets/dmod-job')
assert st.st_uid == 1000 and stat.S_IMODE(st.st_mode) == 0o400, (st.st_uid, oct(st.st_mode))
assert json.load(open('/run/secrets/dmod-job'))['token'] == 'tok-' + os.environ['DMOD_ATTEMPT']
assert not any(v.startswith('tok-') for v in os.environ.values())
open('/work/ok', 'w').write('ok')
time.sleep(float(os.environ.get('SLEEP', '0')))
sys.exit(int(os.environ.get('CODE', '0')))
"""


def slice_of(node, cpus=1, memory=128 << 20) -> Slice:
    return Slice(node.name, node.hostname, cpus, memory)


def make_request(node, attempt=1, job=None, **env) -> LaunchRequest:
    return LaunchRequest(job=job or f"jobs/{uuid.uuid4().hex[:12]}", attempt=attempt, slices=(slice_of(node),),
                         token=f"tok-{attempt}", server="127.0.0.1:9", engine="noop", env={k: str(v) for k, v in env.items()})


@pytest.fixture
async def launcher(docker_engine, worker_image):
    cfg = SwarmConfig(docker_url=docker_engine.url, image=worker_image, linger_seconds=0, poll_seconds=0.5,
                      stop_grace=3, command=(PY, "-c", CHECK))
    launcher = SwarmLauncher(config=cfg)
    yield launcher
    await launcher.close()


async def next_event(launcher, kinds, timeout=90):
    async def wait():
        async for event in launcher.events():
            if event.kind in kinds:
                return event
    return await asyncio.wait_for(wait(), timeout)


def swarm_objects(engine, job: str) -> dict[str, list]:
    label = json.dumps({"label": [f"dmod.job={job}"]})
    return {"services": engine.api.call("GET", "/services", params={"filters": label}),
            "secrets": engine.api.call("GET", "/secrets", params={"filters": label}),
            "containers": engine.api.call("GET", "/containers/json", params={"filters": label, "all": "1"}),
            "volumes": engine.api.call("GET", "/volumes", params={"filters": label}).get("Volumes") or []}


async def test_worker_runs_unprivileged_and_its_exit_code_is_reported(launcher, docker_engine):
    (node,) = await launcher.nodes()
    assert node.cpus >= 2 and node.memory_bytes > 0 and node.ready
    request = make_request(node, CODE=7)
    handle = await launcher.launch(request)
    assert handle.data["services"][0]["name"] == f"dmod-job-{request.job[5:]}-1"
    assert (await launcher.launch(request)).id == handle.id  # idempotent per (job, attempt)
    started = await next_event(launcher, {EventKind.WORKER_STARTED, EventKind.WORKER_EXITED, EventKind.WORKER_LOST})
    assert started.kind is EventKind.WORKER_STARTED
    ended = await next_event(launcher, {EventKind.WORKER_EXITED, EventKind.WORKER_LOST})
    assert ended.kind is EventKind.WORKER_EXITED and ended.exit_code == 7, ended.message
    seen = await launcher.inspect(handle)
    assert seen.state is WorkerState.EXITED and seen.exit_code == 7
    found = await launcher.find(request.job, 1)
    assert found is not None and found.id == handle.id
    assert swarm_objects(docker_engine, request.job)["secrets"]
    await launcher.cleanup(handle)
    assert all(not v for v in swarm_objects(docker_engine, request.job).values())
    assert (await launcher.inspect(handle)).state is WorkerState.GONE
    assert await launcher.find(request.job, 1) is None


async def test_cancel_removes_service_secret_and_volume(launcher, docker_engine):
    (node,) = await launcher.nodes()
    request = make_request(node, attempt=3, SLEEP=600)
    handle = await launcher.launch(request)
    await next_event(launcher, {EventKind.WORKER_STARTED})
    assert (await launcher.inspect(handle)).state is WorkerState.RUNNING
    objects = swarm_objects(docker_engine, request.job)
    assert len(objects["services"]) == 1 and len(objects["secrets"]) == 1 and len(objects["containers"]) == 1
    started = time.monotonic()
    await launcher.cancel(handle, grace=3)
    assert time.monotonic() - started < 30
    assert all(not v for v in swarm_objects(docker_engine, request.job).values())
    assert (await launcher.inspect(handle)).state is WorkerState.GONE
    await launcher.cancel(handle, grace=3)  # idempotent


async def test_service_removed_out_of_band_is_a_lost_worker(launcher, docker_engine):
    (node,) = await launcher.nodes()
    request = make_request(node, SLEEP=600)
    handle = await launcher.launch(request)
    await next_event(launcher, {EventKind.WORKER_STARTED})
    docker_engine.api.call("DELETE", f"/services/{handle.id}")
    lost = await next_event(launcher, {EventKind.WORKER_LOST, EventKind.WORKER_EXITED})
    assert lost.kind is EventKind.WORKER_LOST
    await launcher.cleanup(handle)
    assert all(not v for v in swarm_objects(docker_engine, request.job).values())


async def test_adopt_by_a_new_launcher_process_sees_the_exit(docker_engine, worker_image):
    cfg = SwarmConfig(docker_url=docker_engine.url, image=worker_image, linger_seconds=0, poll_seconds=0.5,
                      command=(PY, "-c", CHECK))
    first = SwarmLauncher(config=cfg)
    (node,) = await first.nodes()
    request = make_request(node, SLEEP=3, CODE=0)
    handle = await first.launch(request)
    await first.close()  # the scheduler "crashes"; the worker keeps running
    second = SwarmLauncher(config=cfg)
    try:
        found = await second.find(request.job, request.attempt)
        assert found is not None and found.id == handle.id
        await second.adopt(found)
        ended = await next_event(second, {EventKind.WORKER_EXITED, EventKind.WORKER_LOST})
        assert ended.kind is EventKind.WORKER_EXITED and ended.exit_code == 0
        await second.cleanup(found)
    finally:
        await second.close()


def _spec_domain(folder: Path, root: str) -> dict:
    """A small generated domain + partition for 2 ranks, as an agent --spec document rooted at `root`."""
    from dmod.services.hydrofabric import load_network, partition

    domain = load_jobs_helpers().make_domain(folder, catchments=8, hours=24)
    doc = partition(load_network(domain["gpkg"]), 2).document
    (folder / "partition.json").write_text(json.dumps(doc))
    (folder / "realization.json").write_text(json.dumps(load_jobs_helpers().realization(end="2015-12-01 23:00:00")))
    return {"inputs": {"hydrofabric": f"{root}/synth/{domain['gpkg'].name}", "realization": f"{root}/realization.json",
                       "forcing": f"{root}/synth/forcing", "bmi_config": f"{root}/config",
                       "partition": f"{root}/partition.json"},
            "ranks": 2, "start_time": "2015-12-01 00:00:00", "end_time": "2015-12-01 23:00:00"}


def _outputs_from_container(engine, container: str, path: str) -> dict[str, bytes]:
    with tempfile.NamedTemporaryFile(suffix=".tar") as tmp:
        engine.api.download(f"/containers/{container}/archive?path={path}", Path(tmp.name))
        with tarfile.open(tmp.name) as tar:
            return {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


async def test_mpi_spans_two_containers_over_ssh_and_matches_a_local_run(docker_engine, worker_image, tmp_path):
    """Two slices on the one node -> two pinned services on the `mpi` overlay: rank 0's agent runs
    mpiexec -n 2, Hydra starts rank 1 in the other container through the per-job sshd, the job
    directory goes there and the outputs come back. Same outputs as the agent running locally."""
    data = tmp_path / "ctx" / "data"
    data.mkdir(parents=True)
    spec = _spec_domain(data, "/data")
    (data / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "ctx" / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY data/ /data/\n")
    images = load_images_module()
    image = images.ImageBuilder(docker_engine.api, log=print)._build(tmp_path / "ctx", "Dockerfile",
                                                                     {"BASE": worker_image})
    cfg = SwarmConfig(docker_url=docker_engine.url, image=image, linger_seconds=0, poll_seconds=0.5,
                      command=tuple(DEFAULT_COMMAND))
    launcher = SwarmLauncher(config=cfg)
    try:
        (node,) = await launcher.nodes()
        request = LaunchRequest(job=f"jobs/mpi{uuid.uuid4().hex[:8]}", attempt=1,
                                slices=(slice_of(node, memory=1 << 30), slice_of(node, memory=1 << 30)), token="tok-1", server="127.0.0.1:9",
                                engine="embedded", env={"DMOD_SPEC": "/data/spec.json"})
        handle = await launcher.launch(request)
        assert handle.data["mode"] == "per-slice" and len(handle.data["services"]) == 2
        ended = await next_event(launcher, {EventKind.WORKER_EXITED, EventKind.WORKER_LOST}, timeout=240)
        tasks = docker_engine.api.call("GET", "/tasks", params={"filters": json.dumps(
            {"service": [handle.data["services"][0]["id"]]})})
        rank0 = tasks[0]["Status"]["ContainerStatus"]["ContainerID"]
        logs = docker_engine.api.call("GET", f"/containers/{rank0}/logs", params={"stdout": 1, "stderr": 1})
        text = logs.decode(errors="replace")
        assert ended.kind is EventKind.WORKER_EXITED and ended.exit_code == 0, text[-4000:]
        assert "hostfile: " in text and ":1 " in text
        remote = _outputs_from_container(docker_engine, rank0, "/work/attempt-1/run/output")
        await launcher.cleanup(handle)
    finally:
        await launcher.close()
    # The same spec, run by the agent on this host (2 ranks, one process tree).
    local_spec = _spec_domain(tmp_path / "local", str(tmp_path / "local"))
    (tmp_path / "local" / "spec.json").write_text(json.dumps(local_spec))
    done = subprocess.run([sys.executable, "-m", "dmod.services.worker", "run", "--spec",
                           str(tmp_path / "local" / "spec.json"), "--workdir", str(tmp_path / "localrun")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    local_dir = tmp_path / "localrun" / "run" / "output"
    local = {p.name: p.read_bytes() for p in local_dir.iterdir() if p.is_file()}
    assert set(remote) == set(local) and any(n.startswith("cat-") for n in remote)
    assert remote == local
    assert all(not v for v in swarm_objects(docker_engine, request.job).values())
