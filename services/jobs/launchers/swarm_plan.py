"""From an allocation to Swarm services: pure functions, no Docker calls (unit tested).

One attempt of a job becomes one *group* of Swarm services, named after the job and attempt:

- homogeneous allocation (every slice has the same CPUs and memory, on distinct nodes): ONE
  service `dmod-job-<id>-<attempt>` with one replica per slice, `max_replicas_per_node: 1` and
  placement constraints that exclude every node outside the allocation, so its replicas land
  exactly on the allocated nodes. Peers: `tasks.<service>` (N addresses). Rank 0 is task slot 1.
- heterogeneous allocation (CPUs or memory differ, or a node appears twice): one service per
  slice, `dmod-job-<id>-<attempt>-s<k>`, pinned with `node.hostname == X`, 1 replica each.
  Peers: `tasks.<service>-s<k>` (1 address each), in slice order. Rank 0 is slice 0.

Rank 0's hostfile is built from the peer groups once their names resolve: `host:slots` lines,
rank 0's own address first (Hydra numbers ranks in hostfile order), then the other replicas.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dmod.services.jobs.launchers.base import LaunchRequest, NodeSpec, Slice

PREFIX = "dmod-job"
LABEL_JOB = "dmod.job"
LABEL_ATTEMPT = "dmod.attempt"
LABEL_ROLE = "dmod.role"
LABEL_SLICE = "dmod.slice"
LABEL_GROUP = "dmod.group"
ROLE = "worker"
SECRET_TARGET = "dmod-job"  # /run/secrets/dmod-job inside the worker
WORKER_UID = "1000"
MAX_NAME = 63  # a DNS label: tasks.<service> must resolve


@dataclass(frozen=True)
class PeerGroup:
    """A DNS name that resolves to `count` replicas with `slots` MPI ranks each."""
    dns: str
    count: int
    slots: int

    def to_list(self) -> list:
        return [self.dns, self.count, self.slots]


@dataclass(frozen=True)
class ServicePlan:
    name: str
    replicas: int
    cpus: int  # per replica
    memory_bytes: int  # per replica (0 = no reservation/limit)
    constraints: tuple[str, ...]
    slice_index: int  # first slice this service serves
    slices: tuple[int, ...]  # indices of the slices it serves


@dataclass(frozen=True)
class LaunchPlan:
    group: str  # base name = the single service's name in the homogeneous case
    secret: str
    services: tuple[ServicePlan, ...]
    peers: tuple[PeerGroup, ...]
    ranks: int
    mode: str  # "replicas" | "per-slice"
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def multi(self) -> bool:
        """More than one container: MPI must cross containers (ssh launch)."""
        return sum(s.replicas for s in self.services) > 1


def job_id(job: str) -> str:
    return job.removeprefix("jobs/")


def group_name(job: str, attempt: int) -> str:
    """`dmod-job-<id>-<attempt>`, a DNS label (lowercase, <= 63 chars with a `-sNN` suffix)."""
    ident = re.sub(r"[^a-z0-9-]+", "-", job_id(job).lower()).strip("-") or "x"
    tail = f"-{attempt}"
    room = MAX_NAME - len(PREFIX) - 1 - len(tail) - 4  # keep room for "-s<k>" (k < 1000)
    if len(ident) > room:
        digest = hashlib.sha256(job.encode()).hexdigest()[:10]
        ident = ident[: room - 11].rstrip("-") + "-" + digest
    return f"{PREFIX}-{ident}{tail}"


def labels(job: str, attempt: int, group: str) -> dict[str, str]:
    return {LABEL_JOB: job, LABEL_ATTEMPT: str(attempt), LABEL_ROLE: ROLE, LABEL_GROUP: group}


def _homogeneous(slices: Sequence[Slice]) -> bool:
    first = slices[0]
    return (all(s.cpus == first.cpus and s.memory_bytes == first.memory_bytes for s in slices)
            and len({s.node for s in slices}) == len(slices))


def plan(request: LaunchRequest, pool: Sequence[NodeSpec]) -> LaunchPlan:
    """The services that run `request` on a Swarm whose nodes are `pool`."""
    if not request.slices:
        raise ValueError("an allocation needs at least one slice")
    if any(s.cpus < 1 for s in request.slices):
        raise ValueError("every slice needs at least one CPU")
    group = group_name(request.job, request.attempt)
    slices = request.slices
    if _homogeneous(slices):
        allocated = {s.node for s in slices}
        # Exclude every other node: constraints are ANDed, so this pins the replicas to the
        # allocation; max_replicas_per_node=1 then puts exactly one replica on each.
        excluded = sorted(n.name for n in pool if n.name not in allocated)
        constraints = tuple(f"node.id != {n}" for n in excluded)
        if len(slices) == 1:
            constraints = (f"node.id == {slices[0].node}",) if _is_node_id(slices[0], pool) else \
                (f"node.hostname == {slices[0].hostname}",)
        service = ServicePlan(name=group, replicas=len(slices), cpus=slices[0].cpus,
                              memory_bytes=slices[0].memory_bytes, constraints=constraints, slice_index=0,
                              slices=tuple(range(len(slices))))
        peers = (PeerGroup(f"tasks.{group}", len(slices), slices[0].cpus),)
        mode = "replicas"
        services: tuple[ServicePlan, ...] = (service,)
    else:
        services = tuple(
            ServicePlan(name=f"{group}-s{k}", replicas=1, cpus=s.cpus, memory_bytes=s.memory_bytes,
                        constraints=_pin(s, pool), slice_index=k, slices=(k,))
            for k, s in enumerate(slices))
        peers = tuple(PeerGroup(f"tasks.{svc.name}", 1, svc.cpus) for svc in services)
        mode = "per-slice"
    return LaunchPlan(group=group, secret=group, services=services, peers=peers, ranks=request.ranks, mode=mode,
                      labels=labels(request.job, request.attempt, group))


def _is_node_id(s: Slice, pool: Sequence[NodeSpec]) -> bool:
    return any(n.name == s.node for n in pool)


def _pin(s: Slice, pool: Sequence[NodeSpec]) -> tuple[str, ...]:
    pins = [f"node.hostname == {s.hostname}"]
    if _is_node_id(s, pool):
        pins.append(f"node.id == {s.node}")
    return tuple(pins)


# ---- rank 0: the hostfile ------------------------------------------------------------------------
def hostfile_lines(peers: Sequence[PeerGroup], resolved: Mapping[str, Sequence[str]], own: Sequence[str]) -> list[str]:
    """`host:slots` lines in rank order. `resolved` maps each group's DNS name to the addresses it
    resolved to (all its replicas), `own` are rank 0's own addresses: rank 0 comes first, the other
    replicas of a group follow in address order, groups in slice order."""
    own_set = set(own)
    lines: list[str] = []
    first: str | None = None
    for group in peers:
        addrs = sorted(set(resolved.get(group.dns, ())), key=_addr_key)
        if len(addrs) != group.count:
            raise ValueError(f"{group.dns} resolved to {len(addrs)} address(es), expected {group.count}")
        for addr in addrs:
            line = f"{addr}:{group.slots}"
            if addr in own_set and first is None:
                first = line
            else:
                lines.append(line)
    if first is None:
        raise ValueError(f"rank 0's own address ({', '.join(own) or 'none'}) is not among its peers")
    return [first] + lines


def _addr_key(addr: str) -> tuple:
    parts = addr.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (addr,)


def peers_env(peers: Sequence[PeerGroup]) -> str:
    return json.dumps([p.to_list() for p in peers], separators=(",", ":"))


def peers_from_env(text: str) -> list[PeerGroup]:
    return [PeerGroup(str(d), int(c), int(s)) for d, c, s in json.loads(text)]
