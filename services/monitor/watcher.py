"""The monitor: watches the workers of active attempts through the launcher and turns what it
sees into job events.

- Launcher events (a local child exiting, a Swarm task failing) are published as MonitorEvents.
- A worker that ends without having reported its exit (killed, crashed, lost with its host) is
  a failure of the attempt: WORKER_LOST (transient: retried per the job's policy) or
  WORKER_FAILED (it exited non-zero on its own).
- A worker silent for longer than the heartbeat timeout is stopped and declared lost.
- Every second, every active attempt of the pool is (re)adopted, so after a restart of the
  monitor (or of the scheduler that spawned the worker) nothing goes unobserved.
All decisions are optimistic transitions: two monitors deciding the same thing decide it once.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket

from google.protobuf.timestamp_pb2 import Timestamp

from dmod.services.jobs import lifecycle, states
from dmod.services.jobs.events import events_key
from dmod.services.jobs.launchers.base import EventKind, LauncherEvent, LaunchHandle, WorkerState
from dmod.v1 import monitor_pb2

log = logging.getLogger("dmod.monitor")


def _handle(raw) -> LaunchHandle | None:
    if not raw:
        return None
    return LaunchHandle.from_dict(json.loads(raw) if isinstance(raw, str) else raw)


class Monitor:
    def __init__(self, rt):
        self.rt = rt
        self.cfg = rt.cfg
        self._deciding: set[tuple[str, int]] = set()
        self.hostname = socket.gethostname()
        # MonitorEvents go between processes over Redis signed with a key Redis does not hold:
        # WatchEvents streams only what a service published (events.py).
        rt.hub.set_key(events_key(rt.app.settings))

    async def start(self) -> None:
        self.started = dt.datetime.now(dt.UTC)
        self.loops = [self.rt.app.spawn(self._consume()), self.rt.app.spawn(self._poll_loop())]

    async def stop(self) -> None:
        for task in getattr(self, "loops", []):
            task.cancel()
        await asyncio.gather(*getattr(self, "loops", []), return_exceptions=True)

    # ---- launcher events ----------------------------------------------------------------------
    async def _consume(self) -> None:
        events = self.rt.launcher.events()
        async for event in events:
            batch = [event]
            batch += self.rt.launcher.pending_events()  # what arrived meanwhile: one Redis round trip
            try:
                await self.rt.hub.publish_monitor([self._message(e) for e in batch])
                for e in batch:
                    if e.kind in (EventKind.WORKER_EXITED, EventKind.WORKER_LOST):
                        self.rt.app.spawn(self._worker_ended(e))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling launcher event")

    def _message(self, event: LauncherEvent) -> monitor_pb2.MonitorEvent:
        attrs = {"attempt": str(event.handle.attempt), "handle": event.handle.id, **event.attributes}
        if event.exit_code is not None:
            attrs["exit_code"] = str(event.exit_code)
        when = Timestamp()
        when.FromNanoseconds(int(event.time * 1e9))
        return monitor_pb2.MonitorEvent(time=when, job=event.handle.job, backend=event.handle.backend,
                                        kind=event.kind.value, message=event.message, attributes=attrs)

    async def _worker_ended(self, event: LauncherEvent) -> None:
        job_id, attempt = event.handle.job.removeprefix("jobs/"), event.handle.attempt
        key = (job_id, attempt)
        if key in self._deciding:
            return
        self._deciding.add(key)
        try:
            store = self.rt.store
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.cfg.exit_report_grace_seconds
            while True:  # the worker's own exit report normally lands first
                row = await store.get(job_id)
                if row is None or row["attempt"] != attempt or row["state"] not in states.WORKER_STATES:
                    return
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(0.2)
            code = event.exit_code
            if event.kind is EventKind.WORKER_LOST or code is None or code < 0 or code == 0:
                reason = "WORKER_LOST"
                message = f"worker {event.handle.id} ended without reporting ({event.message})"
                kind = "LOST"
            else:
                reason = "WORKER_FAILED"
                message = f"worker {event.handle.id} failed: {event.message}"
                kind = "EXITED"
            await store.attempt_ended(job_id, attempt, kind, code, reason, message)
            new = await lifecycle.fail_or_retry(store, self.cfg, job_id, attempt=attempt, reason=reason,
                                                message=message)
            if new is not None:
                await self.rt.hub.publish_monitor(monitor_pb2.MonitorEvent(
                    job=f"jobs/{job_id}", backend=event.handle.backend, kind=reason, message=message,
                    attributes={"attempt": str(attempt), "next_state": states.name(new["state"])}))
        finally:
            self._deciding.discard(key)

    # ---- reconciliation + heartbeats ----------------------------------------------------------
    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor reconcile")
            await asyncio.sleep(1.0)

    async def reconcile(self) -> None:
        launcher = self.rt.launcher
        now = dt.datetime.now(dt.UTC)
        for row in await self.rt.store.active_attempts(self.rt.pool_name):
            handle = _handle(row["handle"])
            if handle is None or handle.backend != launcher.name or row["end_time"] is not None:
                continue
            if handle.data.get("host") not in (None, self.hostname) and launcher.name == "local":
                continue
            if row["lease_owner"] and row["lease_owner"] != self.rt.me:
                # A live scheduler instance holds the job and observes its worker (its launcher
                # spawned it, or it adopted it when it took the job over); when that instance
                # dies, its leases move here and so does the observing.
                continue
            await launcher.adopt(handle)
            # Silence is counted from when this monitor started listening: after an outage of the
            # services (`dmod up` after a crash), workers get the full timeout to reconnect.
            beat = max(b for b in (row["last_heartbeat"], row["launch_time"], getattr(self, "started", None)) if b)
            if row["job_state"] == states.RUNNING and beat and \
                    (now - beat).total_seconds() > self.cfg.heartbeat_timeout_seconds:
                seen = await launcher.inspect(handle)
                if seen.state is WorkerState.RUNNING:
                    log.warning("worker of %s attempt %s silent for %.0fs: stopping it", handle.job, handle.attempt,
                                (now - beat).total_seconds())
                    await launcher.cancel(handle, grace=5.0)
                self.rt.app.spawn(self._worker_ended(LauncherEvent(
                    handle, EventKind.WORKER_LOST, message=f"no heartbeat for {(now - beat).total_seconds():.0f}s")))

    # ---- API helpers --------------------------------------------------------------------------
    async def workers(self) -> list[monitor_pb2.Worker]:
        out = []
        for row in await self.rt.store.active_attempts(self.rt.pool_name):
            handle = _handle(row["handle"])
            worker = monitor_pb2.Worker(job=f"jobs/{row['job_id']}", attempt=row["attempt"], backend=row["launcher"],
                                        handle=handle.id if handle else "", state=row["state"])
            if row["last_heartbeat"] is not None:
                worker.last_heartbeat_time.FromDatetime(row["last_heartbeat"])
            out.append(worker)
        return out
