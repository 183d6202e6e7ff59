"""Swarm task states -> the launcher's view of an attempt (pure; unit tested).

An attempt is "its services" (one, or one per slice). Rank 0 is slot 1 of the service that serves
slice 0; its task decides the outcome: complete/failed with an exit code -> EXITED; rejected,
orphaned, removed, or shut down without ever running a container -> GONE (the worker is lost).
While rank 0 still runs, a peer that is rejected/orphaned/removed also makes the attempt GONE
(rank 0 would wait for it forever). Services missing altogether -> GONE.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dmod.services.jobs.launchers.base import EventKind, Inspection, LauncherEvent, LaunchHandle, WorkerState

ACTIVE = frozenset({"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting",
                    "running"})
LOST = frozenset({"rejected", "orphaned", "remove"})


@dataclass(frozen=True)
class TaskView:
    id: str
    service: str  # service id
    slot: int
    state: str
    desired: str
    node: str
    message: str
    error: str
    exit_code: int | None
    container: str
    index: int  # Version.Index: newer tasks have larger ones

    @classmethod
    def from_api(cls, task: Mapping) -> TaskView:
        status = task.get("Status") or {}
        cstatus = status.get("ContainerStatus") or {}
        return cls(id=task.get("ID", ""), service=task.get("ServiceID", ""), slot=int(task.get("Slot") or 0),
                   state=status.get("State", ""), desired=task.get("DesiredState", ""), node=task.get("NodeID", ""),
                   message=status.get("Message", ""), error=status.get("Err", ""),
                   exit_code=cstatus.get("ExitCode") if cstatus.get("ContainerID") else None,
                   container=cstatus.get("ContainerID", ""), index=int((task.get("Version") or {}).get("Index", 0)))

    def describe(self) -> str:
        text = f"task {self.id[:12]} slot {self.slot} {self.state}"
        detail = self.error or self.message
        return f"{text}: {detail}" if detail else text


def latest(tasks: Iterable[TaskView]) -> dict[tuple[str, int], TaskView]:
    """The newest task of each (service, slot)."""
    out: dict[tuple[str, int], TaskView] = {}
    for t in tasks:
        key = (t.service, t.slot)
        if key not in out or t.index > out[key].index:
            out[key] = t
    return out


def rank0_key(handle: LaunchHandle) -> tuple[str, int]:
    return handle.data["services"][0]["id"], 1


def summarize(handle: LaunchHandle, present: Sequence[str], tasks: Iterable[TaskView]) -> Inspection:
    """`present`: ids of the handle's services that still exist."""
    services = [s["id"] for s in handle.data.get("services", [])]
    if not services or not any(s in present for s in services):
        return Inspection(WorkerState.GONE, None, "the attempt's Swarm service is gone")
    newest = latest(t for t in tasks if t.service in services)
    rank0 = newest.get(rank0_key(handle))
    if rank0 is None:
        if services[0] not in present:
            return Inspection(WorkerState.GONE, None, "rank 0's service is gone")
        return Inspection(WorkerState.RUNNING, None, "waiting for Swarm to create the task")
    if rank0.state in ACTIVE:
        for key, task in newest.items():
            if key != rank0_key(handle) and task.state in LOST:
                return Inspection(WorkerState.GONE, None, f"peer {task.describe()}")
        missing = [s for s in services if s not in present]
        if missing:
            return Inspection(WorkerState.GONE, None, f"{len(missing)} peer service(s) removed")
        return Inspection(WorkerState.RUNNING, None, rank0.describe())
    if rank0.state == "complete":
        return Inspection(WorkerState.EXITED, rank0.exit_code or 0, f"exit code {rank0.exit_code or 0}")
    if rank0.state in ("failed", "shutdown") and rank0.exit_code is not None:
        code = rank0.exit_code
        return Inspection(WorkerState.EXITED, code, f"exit code {code}" + (f" ({rank0.error})" if rank0.error else ""))
    return Inspection(WorkerState.GONE, None, rank0.describe())


@dataclass
class Tracker:
    """Turns successive task snapshots of one handle into launcher events."""
    handle: LaunchHandle
    seen: dict[str, str] = field(default_factory=dict)  # task id -> state
    started: bool = False
    done: bool = False

    def update(self, present: Sequence[str], tasks: Sequence[TaskView]) -> list[LauncherEvent]:
        if self.done:
            return []
        events: list[LauncherEvent] = []
        services = [s["id"] for s in self.handle.data.get("services", [])]
        slices = {s["id"]: str(s.get("slice", i)) for i, s in enumerate(self.handle.data.get("services", []))}
        mine = [t for t in tasks if t.service in services]
        for t in sorted(mine, key=lambda t: (t.service, t.slot, t.index)):
            if self.seen.get(t.id) != t.state:
                self.seen[t.id] = t.state
                events.append(LauncherEvent(self.handle, EventKind.TASK_STATE, message=t.describe(), attributes={
                    "task": t.id, "slot": str(t.slot), "slice": slices.get(t.service, ""), "state": t.state,
                    "node": t.node, "exit_code": "" if t.exit_code is None else str(t.exit_code)}))
        newest = latest(mine)
        expected = int(self.handle.data.get("replicas", len(services)))
        running = [t for t in newest.values() if t.state == "running"]
        if not self.started and len(running) >= expected:
            self.started = True
            events.append(LauncherEvent(self.handle, EventKind.WORKER_STARTED,
                                        message=f"{len(running)} task(s) running", attributes={
                                            "nodes": ",".join(sorted({t.node for t in running}))}))
        seen = summarize(self.handle, present, mine)
        if seen.state is WorkerState.EXITED:
            self.done = True
            if not self.started:  # ran and exited between two polls: it did start, say so first
                self.started = True
                events.append(LauncherEvent(self.handle, EventKind.WORKER_STARTED,
                                            message="task(s) ran to completion between polls"))
            events.append(LauncherEvent(self.handle, EventKind.WORKER_EXITED, exit_code=seen.exit_code,
                                        message=seen.message))
        elif seen.state is WorkerState.GONE:
            self.done = True
            events.append(LauncherEvent(self.handle, EventKind.WORKER_LOST, message=seen.message))
        return events
