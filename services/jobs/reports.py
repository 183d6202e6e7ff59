"""ReportWorkerEvents: what workers tell the scheduler (started, heartbeats, progress, log lines,
exit), authenticated by the per-job token. Any JobService instance can take a worker's stream:
everything goes to Postgres, and the job's scheduler is woken through the event hub.

Log lines carry the worker's own line number (`LogLine.seq`): a worker that reconnects and
re-sends its recent lines creates no duplicates.
"""
from __future__ import annotations

import asyncio
import logging
import time

from dmod.services.jobs import lifecycle, states
from dmod.services.jobs.store import Coalescer, TransitionBatcher
from dmod.v1 import jobs_pb2

log = logging.getLogger("dmod.jobs.reports")

FLUSH_LINES = 200
FLUSH_SECONDS = 0.2
HEARTBEAT_WRITE_SECONDS = 2.0


class _Stream:
    def __init__(self):
        self.job_id = ""
        self.name = ""
        self.attempt = 0
        self.lines: list[jobs_pb2.LogLine] = []
        self.last_heartbeat = 0.0
        self.last_progress = 0.0
        self.pending_progress: jobs_pb2.Progress | None = None


class WorkerReports:
    """The database work of many workers' streams is shared: what the streams ask for in one
    event-loop iteration goes to Postgres as one statement per kind (and one Redis publish)."""

    def __init__(self, rt):
        self.rt = rt
        self._store = None

    def _batched(self) -> None:
        store = self.rt.store
        if self._store is store:
            return
        self._store = store
        self.get = Coalescer(store.get_batch)
        self.worker_started = Coalescer(store.worker_started_batch)
        self.progress = Coalescer(store.progress_batch)
        self.attempt_ended = Coalescer(store.attempt_ended_batch)
        self.transitions = TransitionBatcher(store)

    async def _transition(self, row, to: int, *, reason: str, message: str, **sets):
        return await self.transitions.transition(row, to, reason, message, sets)

    async def handle(self, iterator, principal, check) -> None:
        self._batched()
        st = _Stream()
        stop = asyncio.Event()
        flusher = asyncio.get_running_loop().create_task(self._flush_loop(st, stop))
        try:
            async for req in iterator:
                if req.job != st.name:
                    row = await check(principal, req.job)
                    st.job_id, st.name = row["id"], req.job
                    st.attempt = req.attempt or row["attempt"]
                if req.attempt and req.attempt != st.attempt:
                    await self._flush(st)
                    st.attempt = req.attempt
                await self._one(st, req)
        finally:
            stop.set()
            await flusher
            await self._flush(st)
            await self._progress(st, force=True)

    async def _one(self, st: _Stream, req: jobs_pb2.ReportWorkerEventsRequest) -> None:
        store = self.rt.store
        kind = req.WhichOneof("payload")
        now = time.monotonic()
        if kind == "log":
            st.lines.append(req.log)
            if len(st.lines) >= FLUSH_LINES:
                await self._flush(st)
        elif kind == "heartbeat":
            if now - st.last_heartbeat >= HEARTBEAT_WRITE_SECONDS:
                st.last_heartbeat = now
                await store.heartbeat(st.job_id, st.attempt)
        elif kind == "started":
            st.last_heartbeat = now
            await self.worker_started(st.job_id, st.attempt)
        elif kind == "progress":
            st.pending_progress = req.progress
            final = req.progress.total_steps and req.progress.step >= req.progress.total_steps
            await self._progress(st, force=bool(final))
        elif kind == "exit":
            await self._flush(st)
            await self._progress(st, force=True)
            await self._exit(st, req.exit)

    async def _progress(self, st: _Stream, force: bool = False) -> None:
        p = st.pending_progress
        if p is None or not st.job_id:
            return
        now = time.monotonic()
        if not force and now - st.last_progress < self.rt.cfg.progress_interval_seconds:
            return
        st.pending_progress = None
        st.last_progress = now
        await self.progress(st.job_id, st.attempt, p.step, p.total_steps, f"step {p.step} of {p.total_steps}")

    async def _flush(self, st: _Stream) -> None:
        if not st.lines or not st.job_id:
            return
        lines, st.lines = st.lines, []
        await self.rt.store.append_logs(st.job_id, st.attempt, lines)
        await self.rt.hub.publish_logs(st.job_id)

    async def _flush_loop(self, st: _Stream, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), FLUSH_SECONDS)
            except TimeoutError:
                pass
            try:
                await self._flush(st)
                await self._progress(st)
            except Exception:
                log.exception("flushing worker reports")

    async def _exit(self, st: _Stream, exit: jobs_pb2.WorkerExit) -> None:
        store = self.rt.store
        await self.attempt_ended(st.job_id, st.attempt, "EXITED", exit.exit_code, exit.reason, exit.message)
        for _ in range(10):
            row = await self.get(st.job_id)
            if row is None or row["attempt"] != st.attempt:
                return
            if row["state"] == states.STARTING:  # finished before the launcher recorded RUNNING
                await self._transition(row, states.RUNNING, reason="WORKER_STARTED",
                                       message="worker reported before launch was recorded",
                                       start_time=row["start_time"] or _utcnow())
                continue
            if row["state"] != states.RUNNING:
                return  # cancelling, timed out, or already handled
            if exit.exit_code == 0:
                new = await self._transition(row, states.FINALIZING, reason="WORKER_SUCCEEDED",
                                             message=exit.message or "worker finished; verifying outputs")
                if new is not None:
                    return
                continue
            await lifecycle.fail_or_retry(store, self.rt.cfg, st.job_id, attempt=st.attempt,
                                          reason=exit.reason or "WORKER_FAILED",
                                          message=exit.message or f"worker exit code {exit.exit_code}")
            return


def _utcnow():
    import datetime as dt

    return dt.datetime.now(dt.UTC)
