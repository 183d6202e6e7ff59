"""A live WatchJob per job for the whole chaos phase, as a client would keep one: on a broken
stream (services killed, gateway restarted) it reconnects with `after_seq` = the last seq it
received. Every delivered event is recorded with the stream it came on, so the audit can tell
missing sequence numbers (never delivered) from duplicated ones (delivered twice on one stream, or
again after a resume)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc

from dmod.v1 import jobs_pb2, jobs_pb2_grpc

TERMINAL = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED}


@dataclass
class Watch:
    name: str
    delivered: list[tuple[int, int]] = field(default_factory=list)  # (stream number, seq)
    events: dict[int, jobs_pb2.JobEvent] = field(default_factory=dict)
    streams: int = 0
    errors: list[str] = field(default_factory=list)
    ended: bool = False  # the server ended the stream after the terminal event
    terminal_seq: int = 0
    last: int = 0

    def duplicates(self) -> dict[str, list[int]]:
        """Seqs delivered twice on one stream, and seqs delivered again on a later stream."""
        same, again = [], []
        seen_in: dict[int, set[int]] = {}
        for stream, seq in self.delivered:
            streams = seen_in.setdefault(seq, set())
            if stream in streams:
                same.append(seq)
            elif streams:
                again.append(seq)
            streams.add(stream)
        return {"same_stream": same, "after_resume": again}

    def missing(self, last_event_seq: int) -> list[int]:
        got = {seq for _, seq in self.delivered}
        return [s for s in range(1, last_event_seq + 1) if s not in got]


async def watch(channel: grpc.aio.Channel, w: Watch, stop: asyncio.Event, metadata=()) -> None:
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    while not stop.is_set():
        w.streams += 1
        stream = w.streams
        call = stub.WatchJob(jobs_pb2.WatchJobRequest(name=w.name, after_seq=w.last), metadata=metadata)
        try:
            async for item in call:
                if not item.HasField("event"):
                    continue
                e = item.event
                w.delivered.append((stream, e.seq))
                w.events.setdefault(e.seq, e)
                w.last = max(w.last, e.seq)
                if e.state in TERMINAL:
                    w.terminal_seq = e.seq
            if w.terminal_seq:
                w.ended = True
                return
        except grpc.aio.AioRpcError as exc:
            w.errors.append(f"{time.strftime('%H:%M:%S')} stream {stream}: {exc.code().name}")
        except asyncio.CancelledError:
            call.cancel()
            raise
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


async def history(channel: grpc.aio.Channel, name: str, metadata=(), tries: int = 30) -> list[jobs_pb2.JobEvent]:
    """Every stored event of a job (a WatchJob from seq 0 of a finished job replays Postgres)."""
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    for i in range(tries):
        out = []
        try:
            async for item in stub.WatchJob(jobs_pb2.WatchJobRequest(name=name, after_seq=0), metadata=metadata,
                                            timeout=60):
                if item.HasField("event"):
                    out.append(item.event)
            return out
        except grpc.aio.AioRpcError:
            if i == tries - 1:
                raise
            await asyncio.sleep(1.0)
    return []
