"""Event fan-out over Redis pub/sub. Postgres is the truth; Redis only says "something new".

One Redis subscription per process (not per watcher) feeds in-process queues:
- `dmod:jobs:notices`  "job J has event N" (job id, seq, state, reason; one line per event, a
  batch of transitions in one message) -> the schedulers (a wake-up: they read Postgres) and,
  for jobs someone watches, one read of the new events from Postgres per process, whose rows go
  to every WatchJob stream of the job. Nothing in a notice is ever delivered: whoever can publish
  on Redis can make a process look, never make it say something the store did not record.
- `dmod:jobs:logs`     job ids with new log lines -> StreamJobLogs followers (they read Postgres)
- `dmod:monitor:events` MonitorEvents (not stored anywhere) -> MonitorService.WatchEvents, each
  message authenticated with HMAC-SHA256 under a key every service holds and Redis does not
  (`events_key`); a message that does not verify is dropped.

A message lost by Redis (reconnect, publisher crash after the commit) is recovered by the
consumers: watchers detect seq gaps and re-read Postgres, and poll it when idle.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from dmod.v1 import jobs_pb2, monitor_pb2

log = logging.getLogger("dmod.jobs.events")

NOTICES = b"dmod:jobs:notices"
LOGS = b"dmod:jobs:logs"
MONITOR = b"dmod:monitor:events"
MAC_SIZE = 32  # HMAC-SHA256 in front of each monitor message
FETCH_PAGE = 1000  # events read per query when a notice arrives for a watched job
RESYNC = object()  # put into queues after a reconnect: re-read Postgres
MAX_BACKLOG = 10_000  # items queued for one watcher before it is told to re-read Postgres instead
SWEEP_SECONDS = 0.5  # how often waits are checked for their timeout


def events_key(settings) -> bytes:
    """The key authenticating monitor events between service processes: DMOD_EVENTS_KEY_FILE,
    else derived from the database URL (every service holds it, Redis does not)."""
    path = getattr(settings, "events_key_file", None)
    if path:
        data = Path(path).read_bytes().strip()
        if data:
            return hashlib.sha256(b"dmod-events-key\0" + data).digest()
    return hashlib.sha256(b"dmod-events-db\0" + str(settings.database_url).encode()).digest()


def notice_line(event: jobs_pb2.JobEvent) -> bytes:
    reason = "".join(c for c in event.reason if c.isalnum() or c in "_-.")[:64]
    return f"{event.job.removeprefix('jobs/')}\t{event.seq}\t{int(event.state)}\t{reason}".encode()


def parse_notices(data: bytes) -> list[tuple[str, int, int, str]]:
    """(job id, seq, state, reason) of each well-formed line; anything else is skipped."""
    out = []
    for line in data.split(b"\n"):
        parts = line.split(b"\t")
        if len(parts) != 4 or not parts[0] or len(parts[0]) > 200:
            continue
        try:
            job_id = parts[0].decode("ascii")
            seq, state = int(parts[1]), int(parts[2])
            reason = parts[3].decode("ascii")
        except (UnicodeDecodeError, ValueError):
            continue
        if seq > 0 and job_id.isprintable() and "/" not in job_id:
            out.append((job_id, seq, state, reason))
    return out


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
                if self.registry is self.hub.job_watchers:
                    self.hub._seen.pop(self.key, None)

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
        # Reading new events for watched jobs (one read per job at a time, for all its watchers).
        self.store = None  # the JobStore to read from (bind_store); without one, watchers re-read
        self._seen: dict[str, int] = {}  # job id -> highest seq handed to its watchers
        self._wanted: dict[str, tuple[int, int]] = {}  # job id -> (lowest, highest) seq announced, not read yet
        self._fetching: dict[str, asyncio.Task] = {}
        # Monitor events: HMAC key (set_key; else derived from this process's settings).
        self._key: bytes | None = None
        self._rejected = 0
        self._rejected_logged = 0.0

    def bind_store(self, store) -> None:
        if self.store is None:
            self.store = store

    def set_key(self, key: bytes) -> None:
        self._key = key

    def key(self) -> bytes:
        if self._key is None:
            from dmod.services.runtime.settings import get_settings

            self._key = events_key(get_settings())
        return self._key

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
        """One notice line per event (never the event itself: readers take it from Postgres)."""
        try:
            await self.redis.publish(NOTICES, b"\n".join(notice_line(e) for e in events))
        except Exception as exc:  # noqa: BLE001 - Postgres has the events; watchers poll it
            log.warning("publishing job notices failed: %s", exc)

    async def publish_logs(self, job_id: str) -> None:
        try:
            await self.redis.publish(LOGS, job_id.encode())
        except Exception as exc:  # noqa: BLE001
            log.warning("publishing log notice failed: %s", exc)

    def seal(self, data: bytes) -> bytes:
        return hmac.new(self.key(), MONITOR + b"\0" + data, hashlib.sha256).digest() + data

    def open_sealed(self, message: bytes) -> bytes | None:
        """The payload of an authentic message, else None."""
        if len(message) < MAC_SIZE:
            return None
        mac, data = message[:MAC_SIZE], message[MAC_SIZE:]
        expected = hmac.new(self.key(), MONITOR + b"\0" + data, hashlib.sha256).digest()
        return data if hmac.compare_digest(mac, expected) else None

    async def publish_monitor(self, event: monitor_pb2.MonitorEvent | list[monitor_pb2.MonitorEvent]) -> None:
        events = event if isinstance(event, list) else [event]
        try:
            if len(events) == 1:
                await self.redis.publish(MONITOR, self.seal(events[0].SerializeToString()))
            elif events:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for e in events:
                        pipe.publish(MONITOR, self.seal(e.SerializeToString()))
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
        if channel == NOTICES:
            for job_id, seq, state, reason in parse_notices(data):
                if self.listeners:
                    # A wake-up for the schedulers (they read the job from Postgres), not an event.
                    notice = jobs_pb2.JobEvent(job=f"jobs/{job_id}", seq=seq, state=state, reason=reason)
                    for listener in self.listeners:
                        try:
                            listener(notice)
                        except Exception:
                            log.exception("event listener failed")
                if job_id in self.job_watchers:
                    self._want(job_id, seq)
        elif channel == LOGS:
            for sub in self.log_watchers.get(data.decode(errors="replace"), ()):
                sub.put(True)
        elif channel == MONITOR:
            payload = self.open_sealed(data)
            if payload is None:
                self._reject("monitor event with a bad signature")
                return
            try:
                event = monitor_pb2.MonitorEvent.FromString(payload)
            except Exception:  # noqa: BLE001 - authentic but unreadable (another version): drop
                self._reject("unreadable monitor event")
                return
            for key in ("", event.job):
                for sub in self.monitor_watchers.get(key, ()):
                    sub.put(event)

    def _reject(self, what: str) -> None:
        self._rejected += 1
        now = time.monotonic()
        if now - self._rejected_logged > 60:
            self._rejected_logged = now
            log.warning("dropped %s (%d so far): someone else publishes on Redis", what, self._rejected)

    # ---- reading announced events from Postgres ----------------------------------------------
    def _want(self, job_id: str, seq: int) -> None:
        if seq <= self._seen.get(job_id, 0):
            return
        lo, hi = self._wanted.get(job_id, (seq, seq))
        self._wanted[job_id] = (min(lo, seq), max(hi, seq))
        if self.store is None:  # nothing to read with: the watchers re-read Postgres themselves
            for sub in self.job_watchers.get(job_id, ()):
                sub.put(RESYNC)
            return
        if job_id not in self._fetching:
            self._fetching[job_id] = asyncio.get_running_loop().create_task(self._fetch(job_id))

    async def _fetch(self, job_id: str) -> None:
        """Read the job's events after the last one handed out (or from the lowest one announced
        since) and give each row to every watcher of the job. Reads again while notices announce
        more; stops when the store has nothing newer: a notice of an event that does not exist
        finds nothing, and one announcing a made-up high seq hides no real lower one."""
        try:
            while job_id in self.job_watchers:
                wanted = self._wanted.pop(job_id, None)
                if wanted is None:
                    return
                seen = self._seen.get(job_id)
                after = seen if seen is not None else wanted[0] - 1
                try:
                    rows = await self.store.events_after(job_id, after, FETCH_PAGE)
                except Exception as exc:  # noqa: BLE001 - the watchers re-read on their own
                    log.warning("reading events of %s failed: %s", job_id, exc)
                    for sub in self.job_watchers.get(job_id, ()):
                        sub.put(RESYNC)
                    return
                if not rows:
                    continue
                from dmod.services.jobs import convert

                subs = self.job_watchers.get(job_id)
                if not subs:
                    return
                for row in rows:
                    # One response message per event, shared by every watcher of the job.
                    item = WatchItem(convert.event_message(row, job_id))
                    for sub in subs:
                        sub.put(item)
                last = rows[-1]["seq"]
                self._seen[job_id] = last
                if len(rows) == FETCH_PAGE and last < wanted[1]:  # more announced than one page
                    lo, hi = self._wanted.get(job_id, (last + 1, wanted[1]))
                    self._wanted[job_id] = (min(lo, last + 1), max(hi, wanted[1]))
        finally:
            self._fetching.pop(job_id, None)

    async def _run(self) -> None:
        first = True
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(NOTICES, LOGS, MONITOR)
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
