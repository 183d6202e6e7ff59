"""Admission of new jobs into the pipeline: API calls first.

CreateJob answers as soon as the job is stored; driving it (validation, staging, launch) runs
in the same process, on the same event loop. Under a burst of submissions that work would slow
every API call down (CreateJob p99 of seconds while hundreds of pipelines run). So a new job
waits here while the process is serving unary calls and is admitted once it is quiet, one job
per `gap` at most (a backlog enters the pipeline gradually instead of all at once) — and at
least one job every `trickle` seconds, so a steady stream of calls cannot starve the backlog.
A waiting job is already owned (its lease is renewed); it only starts a little later.
"""
from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from dmod.services.runtime import inflight


class Admission:
    def __init__(self, start: Callable[[str, object], None], trickle: float = 0.5, gap: float = 0.02,
                 poll: float = 0.002):
        self.start = start  # start(job_id, row): begin driving the job
        self.trickle = trickle
        self.gap = gap
        self.poll = poll
        self.waiting: collections.deque[tuple[str, object]] = collections.deque()
        self.task: asyncio.Task | None = None

    def add(self, job_id: str, row=None) -> None:
        self.waiting.append((job_id, row))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        admitted = 0.0
        while self.waiting:
            deadline = time.monotonic() + self.trickle
            while (inflight.busy() or time.monotonic() - admitted < self.gap) and time.monotonic() < deadline:
                await asyncio.sleep(self.poll)
            job_id, row = self.waiting.popleft()
            self.start(job_id, row)
            admitted = time.monotonic()
            await asyncio.sleep(0)  # let the job's first step and any new request run

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
