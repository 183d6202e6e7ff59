"""MonitorService: observes launcher backends and turns what it sees into job events."""
from __future__ import annotations

from dmod.services.jobs.runtime import get_runtime
from dmod.services.monitor.watcher import Monitor
from dmod.services.runtime.app import App
from dmod.services.runtime.auth import current_principal
from dmod.services.runtime.errors import InvalidArgument, NotFound, PermissionDenied
from dmod.v1 import monitor_pb2, monitor_pb2_grpc


class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    def __init__(self, monitor: Monitor):
        self.monitor = monitor

    async def start(self) -> None:
        await self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.stop()
        await self.monitor.rt.release("monitor")

    async def _owner(self, job: str) -> str | None:
        return await self.monitor.rt.store.pool.fetchval("SELECT owner FROM jobs WHERE id = $1",
                                                        job.removeprefix("jobs/"))

    async def WatchEvents(self, request, context):
        principal = current_principal()
        if request.job and not request.job.startswith("jobs/"):
            raise InvalidArgument(("job", "must look like jobs/{id}"))
        if principal.job is not None and principal.job != request.job:
            raise PermissionDenied("a worker token only sees its own job", reason="TOKEN_SCOPE")
        # Admins see every job's events; others only their own jobs' (a job of another user is
        # NOT_FOUND, as in JobService). Ownership never changes, so it is looked up once per job.
        owners: dict[str, str | None] = {}
        if request.job and not principal.is_admin:
            owners[request.job] = await self._owner(request.job)
            if owners[request.job] != principal.user:
                raise NotFound(f"{request.job} not found", reason="JOB_NOT_FOUND")
        with self.monitor.rt.hub.watch_monitor(request.job) as sub:
            while True:
                try:
                    event = await sub.get(30.0)
                except TimeoutError:
                    continue
                if not isinstance(event, monitor_pb2.MonitorEvent):
                    continue
                if not principal.is_admin:
                    if event.job not in owners:
                        if len(owners) > 10_000:
                            owners.clear()
                        owners[event.job] = await self._owner(event.job) if event.job.startswith("jobs/") else None
                    if owners[event.job] != principal.user:
                        continue
                yield monitor_pb2.WatchEventsResponse(event=event)

    async def ListWorkers(self, request, context):
        principal = current_principal()
        workers = await self.monitor.workers()
        if not principal.is_admin:
            rows = {r["id"]: r["owner"] for r in await self.monitor.rt.store.pool.fetch(
                "SELECT id, owner FROM jobs WHERE id = ANY($1::text[])", [w.job.removeprefix("jobs/") for w in workers])}
            workers = [w for w in workers if rows.get(w.job.removeprefix("jobs/")) == principal.user]
        return monitor_pb2.ListWorkersResponse(workers=workers)


async def create_servicer(app: App) -> MonitorServicer:
    rt = get_runtime(app, "monitor")
    await rt.init()
    return MonitorServicer(Monitor(rt))
