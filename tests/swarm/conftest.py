"""Swarm test harness: a private dockerd + one-node Swarm for the session, the worker image built
(or loaded from the cache) into it, and everything torn down at the end, even after a failure:
swarm left, dockerd and its containerd/shims stopped, the gateway bridge deleted, data root
removed. Teardown fails loudly if the host is not left clean."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmod.local.docker import PrivateDocker

REPO = Path(__file__).resolve().parents[2]


def load_file_module(name: str, relative: str):
    """A repository file that is not part of a package (deploy/, tests/) as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_images_module():
    return load_file_module("dmod_deploy_images", "deploy/swarm/images.py")


def load_jobs_helpers():
    return load_file_module("dmod_tests_jobs_helpers", "tests/jobs/helpers.py")


def host_leftovers(engine: PrivateDocker) -> list[str]:
    """What a stopped private engine must not leave behind."""
    problems = []
    for link in ("docker_gwbridge", "docker0", engine.state.bridge):
        if link and Path(f"/sys/class/net/{link}").exists():
            problems.append(f"network link {link}")
    if engine.root.exists():
        problems.append(f"data root {engine.root}")
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(engine.root) in cmd:
            problems.append(f"process {pid}: {cmd[:120]}")
    for path in engine.state.created_host_paths:
        if os.path.lexists(path):
            problems.append(f"host path {path}")
    return problems


def _require_docker() -> None:
    missing = [tool for tool in ("dockerd", "debootstrap", "ip") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup installs docker.io and debootstrap)")
    if os.geteuid() != 0:
        pytest.skip("a private dockerd needs root")


@pytest.fixture(scope="session")
def docker_engine():
    _require_docker()
    engine = PrivateDocker(log=lambda m: print(f"[swarm-harness] {m}"))
    try:
        engine.start()
        engine.swarm_init()
        engine.ensure_network("mpi")
        yield engine
    finally:
        engine.stop()
        leftovers = host_leftovers(engine)
        assert not leftovers, f"the swarm harness left: {leftovers}"


@pytest.fixture(scope="session")
def worker_image(docker_engine) -> str:
    images = load_images_module()
    builder = images.ImageBuilder(docker_engine.api, log=lambda m: print(f"[image] {m}"))
    started = time.perf_counter()
    image = builder.worker_image()
    print(f"[image] {image} in {time.perf_counter() - started:.1f}s: {builder.report.timings} "
          f"cached={builder.report.cached}")
    return image


@pytest.fixture(scope="session")
def swarm_env(docker_engine, worker_image) -> dict[str, str]:
    return {"DMOD_DOCKER_URL": docker_engine.url, "DMOD_WORKER_IMAGE": worker_image, "DMOD_SWARM_NETWORK": "mpi"}


def docker_cli(engine: PrivateDocker, *args: str) -> str:
    return subprocess.run(["docker", "-H", engine.url, *args], capture_output=True, text=True, check=True).stdout
