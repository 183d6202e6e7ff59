"""Allocation paradigms over a node pool (pure functions; the allocator applies them in one
transaction with the node rows locked).

- SINGLE_NODE: the first node (pool order) that fits the whole request.
- FILL_NODES: take nodes in order, each as full as it can be, until satisfied.
- ROUND_ROBIN (default): spread the CPUs (and memory, proportionally) evenly over the nodes,
  one CPU per node per round.
All-or-nothing: a request that cannot be satisfied completely gets nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from dmod.v1.jobs_pb2 import AllocationParadigm

SINGLE_NODE = AllocationParadigm.ALLOCATION_PARADIGM_SINGLE_NODE
FILL_NODES = AllocationParadigm.ALLOCATION_PARADIGM_FILL_NODES
ROUND_ROBIN = AllocationParadigm.ALLOCATION_PARADIGM_ROUND_ROBIN


@dataclass(frozen=True)
class NodeFree:
    name: str
    hostname: str
    free_cpus: int
    free_memory: int  # bytes
    ready: bool = True


@dataclass(frozen=True)
class Part:
    node: str
    hostname: str
    cpus: int
    memory_bytes: int


def _mem_for(cpus: int, total_cpus: int, total_memory: int) -> int:
    """Memory that goes with `cpus` of a request (proportional, rounded up)."""
    if total_memory <= 0:
        return 0
    return -(-total_memory * cpus // total_cpus)


def _cpus_fitting(node: NodeFree, want: int, total_cpus: int, total_memory: int) -> int:
    cpus = min(want, node.free_cpus)
    while cpus > 0 and _mem_for(cpus, total_cpus, total_memory) > node.free_memory:
        cpus -= 1
    return cpus


def allocate(paradigm: int, nodes: list[NodeFree], cpus: int, memory: int = 0) -> list[Part] | None:
    """Parts (rank order) satisfying `cpus`/`memory`, or None. `nodes` in pool order."""
    if cpus <= 0:
        raise ValueError("cpus must be positive")
    ready = [n for n in nodes if n.ready]
    if paradigm == SINGLE_NODE:
        for node in ready:
            if node.free_cpus >= cpus and node.free_memory >= memory:
                return [Part(node.name, node.hostname, cpus, memory)]
        return None
    if paradigm == FILL_NODES:
        parts, left = [], cpus
        for node in ready:
            if left == 0:
                break
            take = _cpus_fitting(node, left, cpus, memory)
            if take > 0:
                parts.append(Part(node.name, node.hostname, take, 0))
                left -= take
        return _with_memory(parts, cpus, memory) if left == 0 else None
    # ROUND_ROBIN (also the default for UNSPECIFIED)
    given = {n.name: 0 for n in ready}
    left = cpus
    progress = True
    while left > 0 and progress:
        progress = False
        for node in ready:
            if left == 0:
                break
            want = given[node.name] + 1
            if want <= node.free_cpus and _mem_for(want, cpus, memory) <= node.free_memory:
                given[node.name] = want
                left -= 1
                progress = True
    if left:
        return None
    parts = [Part(n.name, n.hostname, given[n.name], 0) for n in ready if given[n.name]]
    return _with_memory(parts, cpus, memory)


def _with_memory(parts: list[Part], cpus: int, memory: int) -> list[Part]:
    """Split memory proportionally to CPUs; the last part takes the remainder."""
    out, left = [], memory
    for i, part in enumerate(parts):
        mem = left if i == len(parts) - 1 else min(left, _mem_for(part.cpus, cpus, memory))
        left -= mem
        out.append(Part(part.node, part.hostname, part.cpus, mem))
    return out
