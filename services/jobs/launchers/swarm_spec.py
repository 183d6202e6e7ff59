"""Docker Engine API bodies for a launch plan: the worker service spec and the per-job secret.

Pure functions (unit tested). Every worker replica:
- runs the image *by id* as uid 1000, no capability added (all dropped), read-only root file
  system with a tmpfs /tmp and an anonymous volume for the job directory (/work);
- reserves and is limited to its slice's CPUs and memory;
- is attached to the `mpi` overlay with DNS round-robin endpoints (`tasks.<service>`);
- never restarts (`Condition: none`): a failed attempt is the scheduler's to retry;
- mounts the attempt's secret at /run/secrets/dmod-job (0400, owned by uid 1000).
"""
from __future__ import annotations

import base64
from collections.abc import Mapping

from dmod.services.jobs.launchers.base import LaunchRequest
from dmod.services.jobs.launchers.swarm_plan import (LABEL_SLICE, SECRET_TARGET, WORKER_UID, LaunchPlan, ServicePlan,
                                                     peers_env)

NANO = 1_000_000_000
SSH_PORT = 2222


def worker_env(request: LaunchRequest, plan: LaunchPlan, service: ServicePlan, server: str,
               ssh_port: int = SSH_PORT) -> list[str]:
    env = {**request.env,
           "DMOD_JOB": request.job, "DMOD_ATTEMPT": str(request.attempt), "DMOD_RANKS": str(plan.ranks),
           "DMOD_ENGINE": request.engine, "DMOD_SERVER": server, "DMOD_GATEWAY": server,
           "DMOD_SLICE_INDEX": str(service.slice_index), "DMOD_TASK_SLOT": "{{.Task.Slot}}",
           "DMOD_PEERS": peers_env(plan.peers), "DMOD_SECRET_FILE": f"/run/secrets/{SECRET_TARGET}",
           "DMOD_SSH_PORT": str(ssh_port), "DMOD_MULTI": "1" if plan.multi else "0",
           "PYTHONUNBUFFERED": "1", "HOME": "/work"}
    return [f"{k}={v}" for k, v in env.items()]


def service_spec(request: LaunchRequest, plan: LaunchPlan, service: ServicePlan, *, image: str, network: str,
                 secret_id: str, server: str, command: list[str], grace_seconds: float = 10.0,
                 tmp_bytes: int = 256 << 20, ssh_port: int = SSH_PORT) -> dict:
    svc_labels = {**plan.labels, LABEL_SLICE: str(service.slice_index)}
    resources: dict = {"Reservations": {"NanoCPUs": service.cpus * NANO},
                       "Limits": {"NanoCPUs": service.cpus * NANO}}
    if service.memory_bytes > 0:
        resources["Reservations"]["MemoryBytes"] = service.memory_bytes
        resources["Limits"]["MemoryBytes"] = service.memory_bytes
    container = {
        "Image": image,
        "Command": command,
        "Env": worker_env(request, plan, service, server, ssh_port),
        "Labels": svc_labels,
        "User": f"{WORKER_UID}:{WORKER_UID}",
        "Dir": "/work",
        "Hostname": "{{.Service.Name}}-{{.Task.Slot}}",
        "ReadOnly": True,
        "Init": True,
        "CapabilityDrop": ["ALL"],
        "StopSignal": "SIGTERM",
        "StopGracePeriod": int(grace_seconds * NANO),
        "Mounts": [
            {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": tmp_bytes, "Mode": 0o1777}},
            {"Type": "volume", "Target": "/work", "VolumeOptions": {"Labels": dict(svc_labels)}},
        ],
        "Secrets": [{"SecretID": secret_id, "SecretName": plan.secret,
                     "File": {"Name": SECRET_TARGET, "UID": WORKER_UID, "GID": WORKER_UID, "Mode": 0o400}}],
    }
    placement: dict = {"Constraints": list(service.constraints)}
    if service.replicas > 1:
        placement["MaxReplicas"] = 1
    return {
        "Name": service.name,
        "Labels": svc_labels,
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": resources,
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            "Placement": placement,
            "Networks": [{"Target": network}],
        },
        "Mode": {"Replicated": {"Replicas": service.replicas}},
        "EndpointSpec": {"Mode": "dnsrr"},
    }


def secret_spec(plan: LaunchPlan, payload: bytes) -> dict:
    return {"Name": plan.secret, "Labels": dict(plan.labels), "Data": base64.b64encode(payload).decode()}


def label_filters(labels: Mapping[str, str]) -> dict[str, list[str]]:
    return {"label": [f"{k}={v}" for k, v in labels.items()]}
