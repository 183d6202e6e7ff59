"""The launcher interface: how the scheduler starts, stops and observes a job's worker(s).

A launcher turns one *attempt* of a job plus its allocation into running workers on a backend:

- `local` (default of `dmod up`): the worker agent (`python -m dmod.services.worker`) as an
  asyncio subprocess of this host, in its own process group; the agent runs `mpiexec -n N`.
- `swarm` (to be written against this interface): one Docker Swarm service per attempt, one
  replica per allocated node (pinned with `node.hostname == X`), attached to the `mpi` overlay,
  peers found via `tasks.<service>` DNS; rank 0's agent runs mpiexec over the replicas.

Contract (every method must honour it, the scheduler and the monitor rely on it):

- `launch(request) -> LaunchHandle` starts the workers and returns quickly (it does not wait
  for the model). It must be *idempotent per (job, attempt)*: the scheduler may crash after
  `launch` returned but before it recorded the handle; on restart it calls
  `find(job, attempt)` first and only launches again when nothing is found. Backends therefore
  name/label what they start with the job and attempt (swarm: service name
  `dmod-job-<id>-<attempt>` and labels `dmod.job`, `dmod.attempt`).
- The handle is plain data (`to_dict`/`from_dict`, stored as JSON in Postgres with the
  attempt) that lets a *different process* (a restarted scheduler/monitor) find the workers
  again: local stores pid + process start time (so a recycled pid is never mistaken for the
  worker), swarm stores the service id/name.
- `inspect(handle) -> Inspection` tells whether the workers are RUNNING, EXITED (with the exit
  code) or GONE (nothing there any more, e.g. the host rebooted / service removed). It never
  raises for a missing worker.
- `cancel(handle, grace)` stops the workers: SIGTERM (swarm: remove the service, whose tasks get
  SIGTERM and `stop_grace_period`), then SIGKILL of the whole process group after `grace`
  seconds. Idempotent; returns when nothing of the attempt runs any more.
- `events()` is an async iterator of `LauncherEvent`s (WORKER_STARTED, WORKER_EXITED,
  WORKER_LOST, TASK_STATE) for every handle launched or `adopt`ed by this process; the monitor
  consumes it and turns it into job events. `adopt(handle)` makes a handle launched by an earlier
  process observable again (after a restart).
- `nodes()` describes the node pool the allocator divides (local: this host; swarm: the
  Swarm's ready nodes with their CPUs/memory).
- `cleanup(handle)` removes what is left of a finished attempt (swarm: the service; local:
  nothing but the job directory).

Nothing here may block the event loop: use asyncio subprocesses / aiodocker.
"""
from __future__ import annotations

import abc
import enum
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class NodeSpec:
    """One node of the pool the allocator divides."""
    name: str  # stable id (local: "local"; swarm: node id)
    hostname: str
    cpus: int
    memory_bytes: int
    ready: bool = True


@dataclass(frozen=True)
class Slice:
    """The part of an allocation on one node."""
    node: str
    hostname: str
    cpus: int
    memory_bytes: int = 0


@dataclass(frozen=True)
class LaunchRequest:
    job: str  # "jobs/{id}"
    attempt: int
    slices: tuple[Slice, ...]  # all-or-nothing allocation, rank order = slice order
    token: str  # per-job scoped JWT: the worker reports with it and reads/writes the job's datasets
    server: str  # gRPC target the worker talks to (the gateway)
    engine: str = "auto"  # passed through to the worker (auto | ngen | embedded | noop)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the worker

    @property
    def ranks(self) -> int:
        return sum(s.cpus for s in self.slices)


@dataclass
class LaunchHandle:
    backend: str  # "local" | "swarm"
    job: str
    attempt: int
    id: str  # pid (local) or service id (swarm)
    data: dict = field(default_factory=dict)  # backend details needed to find it again (pid start time, ...)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict) -> LaunchHandle:
        return cls(backend=value["backend"], job=value["job"], attempt=int(value["attempt"]), id=str(value["id"]),
                   data=dict(value.get("data") or {}))


class WorkerState(enum.Enum):
    RUNNING = "RUNNING"
    EXITED = "EXITED"  # finished; exit_code known
    GONE = "GONE"  # nothing found: lost (crash of the host, removed out of band, pid recycled)


@dataclass(frozen=True)
class Inspection:
    state: WorkerState
    exit_code: int | None = None
    message: str = ""


class EventKind(str, enum.Enum):
    WORKER_STARTED = "WORKER_STARTED"
    WORKER_EXITED = "WORKER_EXITED"
    WORKER_LOST = "WORKER_LOST"
    TASK_STATE = "TASK_STATE"


@dataclass(frozen=True)
class LauncherEvent:
    handle: LaunchHandle
    kind: EventKind
    exit_code: int | None = None
    message: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class LaunchError(Exception):
    """The backend could not start the workers (reason is UPPER_SNAKE, e.g. LAUNCH_FAILED)."""

    def __init__(self, message: str, reason: str = "LAUNCH_FAILED", transient: bool = False):
        super().__init__(message)
        self.reason = reason
        self.transient = transient  # retrying later may succeed (backend temporarily unavailable)


class Launcher(abc.ABC):
    """A backend that runs job workers. One instance per server process."""

    name: str = ""

    @abc.abstractmethod
    async def nodes(self) -> list[NodeSpec]:
        """The node pool (only ready nodes are allocated)."""

    @abc.abstractmethod
    async def launch(self, request: LaunchRequest) -> LaunchHandle:
        """Start the workers of one attempt; return once they are started (not finished).
        Raises LaunchError."""

    @abc.abstractmethod
    async def find(self, job: str, attempt: int) -> LaunchHandle | None:
        """The handle of an attempt started earlier (by any process), or None."""

    @abc.abstractmethod
    async def inspect(self, handle: LaunchHandle) -> Inspection:
        """Current state of the attempt's workers; never raises for a missing worker."""

    @abc.abstractmethod
    async def cancel(self, handle: LaunchHandle, grace: float = 10.0) -> None:
        """Stop the workers (TERM, then KILL after `grace`); idempotent."""

    @abc.abstractmethod
    async def adopt(self, handle: LaunchHandle) -> None:
        """Observe a handle launched by an earlier process (its events appear in `events()`)."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[LauncherEvent]:
        """Events of every launched or adopted handle; one consumer (the monitor)."""

    def pending_events(self) -> list[LauncherEvent]:
        """Events already queued behind the one `events()` just yielded (taken, not waited for)."""
        queue = getattr(self, "_events", None)
        out = []
        while queue is not None and not queue.empty():
            out.append(queue.get_nowait())
        return out

    async def cleanup(self, handle: LaunchHandle) -> None:
        """Remove leftovers of a finished attempt (default: nothing)."""

    async def close(self) -> None:
        """Stop observing (workers keep running: they are not owned by this process)."""
