"""The worker's side of JobService.ReportWorkerEvents: one client stream fed from a queue,
heartbeats, and reconnection. After a broken stream the recent log lines are sent again (the
server drops duplicates by line number) and a pending exit report is repeated until acknowledged.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from dmod.v1 import jobs_pb2, jobs_pb2_grpc

log = logging.getLogger("dmod.worker.reporter")

_CLOSE = object()
RESEND_LINES = 2000


class Reporter:
    def __init__(self, channel: grpc.aio.Channel | None, job: str, attempt: int, metadata=(),
                 heartbeat_seconds: float = 5.0, echo=None):
        self.stub = jobs_pb2_grpc.JobServiceStub(channel) if channel is not None else None
        self.job = job
        self.attempt = attempt
        self.metadata = metadata
        self.heartbeat_seconds = heartbeat_seconds
        self.echo = echo  # callable(str) for --spec runs without a server
        self.queue: asyncio.Queue = asyncio.Queue()
        self.recent: collections.deque = collections.deque(maxlen=RESEND_LINES)
        self.line_no = 0
        self.exit_request: jobs_pb2.ReportWorkerEventsRequest | None = None
        self.done = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.stub is not None:
            self._tasks.append(loop.create_task(self._run()))
        else:
            self.done.set()
        self._tasks.append(loop.create_task(self._heartbeats()))

    def _put(self, **payload) -> jobs_pb2.ReportWorkerEventsRequest:
        req = jobs_pb2.ReportWorkerEventsRequest(job=self.job, attempt=self.attempt, **payload)
        if self.stub is not None:
            self.queue.put_nowait(req)
        return req

    def started(self) -> None:
        self._put(started=True)

    def progress(self, step: int, total: int) -> None:
        self._put(progress=jobs_pb2.Progress(step=step, total_steps=total))
        if self.echo:
            self.echo(f"[progress] {step}/{total}")

    def log(self, text: str, stream: str = "stdout", rank: int = 0) -> None:
        self.line_no += 1
        when = Timestamp()
        when.GetCurrentTime()
        req = self._put(log=jobs_pb2.LogLine(seq=self.line_no, time=when, stream=stream, rank=rank, text=text))
        self.recent.append(req)
        if self.echo:
            self.echo(f"[{stream}] {text}")

    async def exit(self, code: int, reason: str = "", message: str = "", timeout: float = 30.0) -> bool:
        """Report the exit and wait until the server acknowledged the stream (True) or gave up."""
        self.exit_request = self._put(exit=jobs_pb2.WorkerExit(exit_code=code, reason=reason, message=message[:4000]))
        if self.echo:
            self.echo(f"[exit] {code} {reason} {message}")
        if self.stub is not None:
            self.queue.put_nowait(_CLOSE)
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            for task in self._tasks:
                task.cancel()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            self._put(heartbeat=True)

    async def _run(self) -> None:
        backoff = 0.2
        replay: list = []
        while True:
            sent_close = False

            async def requests(replay=replay):
                nonlocal sent_close
                for req in replay:
                    yield req
                while True:
                    item = await self.queue.get()
                    if item is _CLOSE:
                        sent_close = True
                        return
                    yield item

            started = time.monotonic()
            try:
                await self.stub.ReportWorkerEvents(requests(), metadata=self.metadata)
                if sent_close:
                    self.done.set()
                    return
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                                  grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    log.error("JobService refused the worker's reports: %s %s", exc.code().name, exc.details())
                    self.done.set()
                    return
                log.warning("report stream broke (%s); reconnecting", exc.code().name)
            if time.monotonic() - started > 5:
                backoff = 0.2
            await asyncio.sleep(backoff)
            backoff = min(5.0, backoff * 2)
            replay = list(self.recent)
            if self.exit_request is not None:
                replay.append(self.exit_request)
                if not any(i is _CLOSE for i in self.queue._queue):
                    self.queue.put_nowait(_CLOSE)
