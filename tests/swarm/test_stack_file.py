"""deploy/swarm/stack.yml is a valid stack (it cannot be deployed here: its Envoy, MinIO, Postgres
and Redis images come from a registry this machine cannot reach)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from .conftest import REPO

STACK = REPO / "deploy/swarm/stack.yml"


def test_stack_file_declares_the_three_networks_secrets_and_services():
    doc = yaml.safe_load(STACK.read_text())
    nets = doc["networks"]
    assert nets["mpi"] == {"driver": "overlay", "attachable": True}
    assert nets["internal"]["internal"] is True and nets["requests"]["driver"] == "overlay"
    services = doc["services"]
    for name in ("auth", "datasets", "jobs", "partitioner", "subset", "evaluation"):
        svc = services[name]
        assert svc["image"].startswith("${DMOD_IMAGE"), name
        assert svc["command"][:1] == ["serve"], name
        assert "internal" in (svc["networks"] if isinstance(svc["networks"], list) else list(svc["networks"]))
    assert set(services["envoy"]["networks"]) == {"requests", "internal", "mpi"}
    assert "mpi" in services["minio"]["networks"]
    jobs_env = services["jobs"]["environment"]
    assert jobs_env["DMOD_LAUNCHER"] == "swarm" and jobs_env["DMOD_WORKER_IMAGE"].startswith("${DMOD_WORKER_IMAGE")
    assert {s for s in doc["secrets"]} >= {"dmod_database_url", "dmod_s3_access_key", "dmod_s3_secret_key",
                                           "dmod_jwt_private_key", "dmod_jwt_public_key"}
    assert all(s.get("external") for s in doc["secrets"].values())
    assert doc["configs"]["envoy_config"]["file"].endswith("gateway/envoy.swarm.json")


@pytest.mark.docker
def test_docker_stack_config_accepts_the_stack_file(tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client")
    env = {**os.environ, "DMOD_IMAGE": "sha256:" + "1" * 64, "DMOD_WORKER_IMAGE": "sha256:" + "2" * 64}
    done = subprocess.run([docker, "stack", "config", "-c", str(STACK)], capture_output=True, text=True, env=env,
                          timeout=60)
    if done.returncode != 0 and "unknown command" in done.stderr + done.stdout:
        pytest.skip("this docker client has no `stack config`")
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)
    assert rendered["services"]["jobs"]["image"] == env["DMOD_IMAGE"]
    assert rendered["services"]["jobs"]["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert json.dumps(rendered["networks"]["mpi"]).count("attachable") == 1
