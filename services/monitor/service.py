"""MonitorService: observes launcher backends and turns what it sees into job events."""
from __future__ import annotations

from dmod.services.jobs.runtime import get_runtime
from dmod.services.monitor.watcher import Monitor
from dmod.services.runtime.app import App
from dmod.services.runtime.auth import current_principal
from dmod.services.runtime.errors import InvalidArgument, PermissionDenied
from dmod.v1 import monitor_pb2, monitor_pb2_grpc


class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    def __init__(self, monitor: Monitor):
        self.monitor = monitor

    async def start(self) -> None:
        await self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.stop()
        await self.monitor.rt.release("monitor")

    async def WatchEvents(self, request, context):
        principal = current_principal()
        if request.job and not request.job.startswith("jobs/"):
            raise InvalidArgument(("job", "must look like jobs/{id}"))
        if principal.job is not None and principal.job != request.job:
            raise PermissionDenied("a worker token only sees its own job", reason="TOKEN_SCOPE")
        with self.monitor.rt.hub.watch_monitor(request.job) as sub:
            while True:
                try:
                    event = await sub.get(30.0)
                except TimeoutError:
                    continue
                if isinstance(event, monitor_pb2.MonitorEvent):
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
