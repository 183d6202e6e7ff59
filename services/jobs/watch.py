"""WatchJob and StreamJobLogs: Postgres is the truth, Redis the doorbell.

Every event a stream yields is a row read from Postgres: the snapshot and backlog by the stream
itself, live events by the process's event hub, which reads the rows a Redis notice announces
once for all the job's watchers (events.py). A notice nobody recorded finds no row.

WatchJob subscribes first, then sends the snapshot and the stored events after `after_seq`,
then live events, skipping any seq already sent and re-reading Postgres on a gap, after a Redis
reconnect, or when idle (a publish lost between commit and Redis). So a client reconnecting
with the last seq it saw gets every later event exactly once. The stream ends after the job's
terminal event.
"""
from __future__ import annotations

from dmod.services.jobs import convert, states
from dmod.services.jobs.events import RESYNC, WatchItem
from dmod.v1 import jobs_pb2

IDLE_POLL = 5.0
PAGE = 1000


async def watch_job(rt, job_id: str, after_seq: int, to_job, check):
    """`check(row)` raises unless the caller may read the job (the row is read once, after
    subscribing: it is both the access check and the snapshot)."""
    store = rt.store
    rt.hub.bind_store(store)  # live events are read from here when a notice announces them
    with rt.hub.watch_job(job_id) as sub:
        row = await store.get(job_id)
        check(row)
        yield jobs_pb2.WatchJobResponse(snapshot=await to_job(row))
        last = after_seq
        done = False

        async def backlog():
            nonlocal last, done
            while True:
                rows = await store.events_after(job_id, last, PAGE)
                for r in rows:
                    last = r["seq"]
                    yield convert.event_message(r, job_id)
                if len(rows) < PAGE:
                    return

        async def finished() -> bool:
            current = await store.get(job_id)
            return current is None or (states.is_terminal(current["state"]) and current["last_event_seq"] <= last)

        async for event in backlog():
            yield jobs_pb2.WatchJobResponse(event=event)
        # A job not terminal at the snapshot ends with a terminal event, which reaches the
        # subscription (taken before the snapshot): only a terminal snapshot needs a re-read here.
        if (states.is_terminal(row["state"]) or last > row["last_event_seq"]) and await finished():
            return
        while not done:
            try:
                item = await sub.get(IDLE_POLL)
            except TimeoutError:
                item = RESYNC
            if item is RESYNC or (isinstance(item, WatchItem) and item.seq > last + 1):
                async for event in backlog():
                    yield jobs_pb2.WatchJobResponse(event=event)
                    if states.is_terminal(event.state) and await finished():
                        return
                if item is RESYNC and await finished():
                    return
                continue
            if item.seq <= last:
                continue
            last = item.seq
            yield item.response
            if states.is_terminal(item.state) and await finished():
                return


async def stream_logs(rt, row, after_seq: int, follow: bool):
    job_id = row["id"]
    store = rt.store
    with rt.hub.watch_logs(job_id) as sub:
        last = after_seq
        while True:
            while True:
                rows = await store.logs_after(job_id, last, 500)
                if rows:
                    last = rows[-1]["id"]
                    yield jobs_pb2.StreamJobLogsResponse(lines=[convert.log_message(r) for r in rows])
                if len(rows) < 500:
                    break
            if not follow:
                return
            current = await store.get(job_id)
            if current is None:
                return
            if states.is_terminal(current["state"]):
                rows = await store.logs_after(job_id, last, 1)  # lines that landed meanwhile
                if not rows:
                    return
                continue
            try:
                await sub.get(IDLE_POLL)
            except TimeoutError:
                pass
