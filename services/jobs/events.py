"""Event fan-out over Redis pub/sub. Postgres is the truth; Redis only says "something new".

One Redis subscription per process (not per watcher) feeds in-process queues:
- `dmod:jobs:events`  every JobEvent (serialized) -> WatchJob streams and the schedulers
- `dmod:jobs:logs`    job ids with new log lines -> StreamJobLogs followers
- `dmod:monitor:events` MonitorEvents -> MonitorService.WatchEvents

A message lost by Redis (reconnect, publisher crash after the commit) is recovered by the
consumers: watchers detect seq gaps and re-read Postgres, and poll it when idle.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Callable

from dmod.v1 import jobs_pb2, monitor_pb2

log = logging.getLogger("dmod.jobs.events")

EVENTS = b"dmod:jobs:events"
# Several JobEvents in one message (a batch of transitions): each is a 4-byte big-endian length
# and the serialized event. One publish and one message to parse per batch, not per event.
EVENT_BATCHES = b"dmod:jobs:event-batches"
LOGS = b"dmod:jobs:logs"
MONITOR = b"dmod:monitor:events"
RESYNC = object()  # put into queues after a reconnect: re-read Postgres
MAX_BACKLOG = 10_000  # items queued for one watcher before it is told to re-read Postgres instead
SWEEP_SECONDS = 0.5  # how often waits are checked for their timeout


class WatchItem:
    """A job event as WatchJob streams it: the event and its WatchJobResponse, built once per
    event (not once per watcher)."""

    __slots__ = ("event", "seq", "state", "response")

    def __init__(self, event: jobs_pb2.JobEvent):
        self.event = event
        self.seq = event.seq
        self.state = event.state
        self.response = jobs_pb2.WatchJobResponse(event=event)


class Subscription:
    """One watcher's inbox. `get` waits on a plain future: no task and no timer per message (with
    1,000 watchers a `wait_for` per event was a good part of the fan-out's cost). Waits time out
    through the hub's sweeper, which checks every waiting inbox twice a second."""

    __slots__ = ("deadline", "hub", "items", "key", "registry", "waiter")

    def __init__(self, hub: EventHub, key: str, registry: dict):
        self.hub, self.key, self.registry = hub, key, registry
        self.items: deque = deque()
        self.waiter: asyncio.Future | None = None
        self.deadline = 0.0

    def __enter__(self) -> Subscription:
        self.registry.setdefault(self.key, set()).add(self)
        return self

    def __exit__(self, *exc) -> None:
        subs = self.registry.get(self.key)
        if subs is not None:
            subs.discard(self)
            if not subs:
                self.registry.pop(self.key, None)

    def put(self, item) -> None:
        if len(self.items) >= MAX_BACKLOG:  # a stuck consumer: drop and make it re-read Postgres
            self.items.clear()
            item = RESYNC
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self, now: float) -> None:
        waiter = self.waiter
        if waiter is not None and now >= self.deadline and not waiter.done():
            waiter.set_result(None)

    async def get(self, timeout: float):
        """The next item; TimeoutError after about `timeout` seconds without one."""
        if not self.items:
            loop = asyncio.get_running_loop()
            self.hub.ensure_sweeper(loop)
            self.deadline = loop.time() + timeout
            self.waiter = loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
            if not self.items:
                raise TimeoutError
        return self.items.popleft()


class EventHub:
    def __init__(self, redis):
        self.redis = redis
        self.job_watchers: dict[str, set[Subscription]] = {}
        self.log_watchers: dict[str, set[Subscription]] = {}
        self.monitor_watchers: dict[str, set[Subscription]] = {}
        self.listeners: list[Callable[[jobs_pb2.JobEvent], None]] = []
        self.ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._outbox: list[jobs_pb2.JobEvent] = []  # events for the next PUBLISH
        self._outbox_sent: asyncio.Future | None = None  # resolves when they are out
        self._sending: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None

    def ensure_sweeper(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = loop.time()
            for registry in (self.job_watchers, self.log_watchers, self.monitor_watchers):
                for subs in list(registry.values()):
                    for sub in list(subs):
                        sub.expire(now)

    def start(self, spawn) -> None:
        if self._task is None:
            self._task = spawn(self._run())

    async def wait_ready(self, timeout: float = 5.0) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            log.warning("event hub not connected to Redis yet; watchers fall back to polling Postgres")

    # ---- publishing -----------------------------------------------------------------------
    async def publish_events(self, events: list[jobs_pb2.JobEvent]) -> None:
        """Publish (returns once they are out). Events of concurrent callers that arrive while a
        publish is in flight go out together in the next message: under a burst of submissions
        one PUBLISH carries many jobs' events, for the publisher and for every subscriber."""
        if not events:
            return
        loop = asyncio.get_running_loop()
        self._outbox.extend(events)
        if self._outbox_sent is None:
            self._outbox_sent = loop.create_future()
        sent = self._outbox_sent
        if self._sending is None:
            self._sending = loop.create_task(self._send())
        await asyncio.shield(sent)  # only this batch: a steady flow of later events never holds us

    async def _send(self) -> None:
        try:
            while self._outbox:
                events, sent = self._outbox, self._outbox_sent
                self._outbox, self._outbox_sent = [], None
                await self._publish_batch(events)
                sent.set_result(None)
        finally:
            self._sending = None

    async def _publish_batch(self, events: list[jobs_pb2.JobEvent]) -> None:
        try:
            if len(events) == 1:
                await self.redis.publish(EVENTS, events[0].SerializeToString())
            else:
                parts = []
                for event in events:
                    data = event.SerializeToString()
                    parts.append(struct.pack(">I", len(data)))
                    parts.append(data)
                await self.redis.publish(EVENT_BATCHES, b"".join(parts))
        except Exception as exc:  # noqa: BLE001 - Postgres has the events; watchers poll it
            log.warning("publishing job events failed: %s", exc)

    async def publish_logs(self, job_id: str) -> None:
        try:
            await self.redis.publish(LOGS, job_id.encode())
        except Exception as exc:  # noqa: BLE001
            log.warning("publishing log notice failed: %s", exc)

    async def publish_monitor(self, event: monitor_pb2.MonitorEvent | list[monitor_pb2.MonitorEvent]) -> None:
        events = event if isinstance(event, list) else [event]
        try:
            if len(events) == 1:
                await self.redis.publish(MONITOR, events[0].SerializeToString())
            elif events:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for e in events:
                        pipe.publish(MONITOR, e.SerializeToString())
                    await pipe.execute()
        except Exception as exc:  # noqa: BLE001
            log.warning("publishing monitor event failed: %s", exc)

    # ---- subscribing ----------------------------------------------------------------------
    def watch_job(self, job_id: str) -> Subscription:
        return Subscription(self, job_id, self.job_watchers)

    def watch_logs(self, job_id: str) -> Subscription:
        return Subscription(self, job_id, self.log_watchers)

    def watch_monitor(self, job: str = "") -> Subscription:
        return Subscription(self, job, self.monitor_watchers)

    def _resync_all(self) -> None:
        for registry in (self.job_watchers, self.log_watchers):
            for subs in registry.values():
                for sub in subs:
                    sub.put(RESYNC)

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        if channel == EVENT_BATCHES:
            offset = 0
            while offset + 4 <= len(data):
                (size,) = struct.unpack_from(">I", data, offset)
                self._dispatch(EVENTS, data[offset + 4:offset + 4 + size])
                offset += 4 + size
        elif channel == EVENTS:
            event = jobs_pb2.JobEvent.FromString(data)
            job_id = event.job.removeprefix("jobs/")
            subs = self.job_watchers.get(job_id)
            if subs:
                # One response message per event, shared by every watcher of the job.
                item = WatchItem(event)
                for sub in subs:
                    sub.put(item)
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener failed")
        elif channel == LOGS:
            for sub in self.log_watchers.get(data.decode(), ()):
                sub.put(True)
        elif channel == MONITOR:
            event = monitor_pb2.MonitorEvent.FromString(data)
            for key in ("", event.job):
                for sub in self.monitor_watchers.get(key, ()):
                    sub.put(event)

    async def _run(self) -> None:
        first = True
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(EVENTS, EVENT_BATCHES, LOGS, MONITOR)
                self.ready.set()
                if not first:
                    self._resync_all()
                first = False
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is None or message.get("type") != "message":
                        continue
                    self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect
                self.ready.clear()
                log.warning("event hub lost Redis (%s); reconnecting", exc)
                await asyncio.sleep(0.5)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # noqa: BLE001
                    pass
