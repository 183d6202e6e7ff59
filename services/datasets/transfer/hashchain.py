"""SHA-256 over an object's bytes, fed part by part in a worker thread, in order, with a snapshot
of the hash state at every part boundary.

The snapshots are what makes an upload resumable without re-reading what S3 already holds: a
resumed stream continues from the copy taken at the committed offset. Python cannot serialise a
hash state, so snapshots live in the serving process; a resume that reaches a process without
them rebuilds the state by reading the committed bytes back (see `uploads.Uploads._rebuild`).
"""
from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import Executor

from dmod.services.datasets.transfer.blobs import Buffers


class HashChain:
    def __init__(self, executor: Executor, offset: int = 0, state=None):
        self._executor = executor
        self._hasher = state.copy() if state is not None else hashlib.sha256()
        self.fed = offset  # bytes submitted
        self.snapshots: dict[int, object] = {offset: self._hasher.copy()}
        self._tail: asyncio.Future | None = None

    def feed(self, data) -> asyncio.Task:
        """Hash `data` (bytes, or a part's Buffers) after everything fed before; the task finishes
        once it is hashed."""
        previous = self._tail
        self.fed += len(data)
        end = self.fed
        buffers = data.buffers if isinstance(data, Buffers) else (data,)

        def update() -> None:
            for buffer in buffers:
                self._hasher.update(buffer)

        async def run() -> None:
            if previous is not None:
                await previous
            await asyncio.get_running_loop().run_in_executor(self._executor, update)
            self.snapshots[end] = self._hasher.copy()

        task = asyncio.ensure_future(run())
        self._tail = task
        return task

    async def hexdigest(self) -> str:
        if self._tail is not None:
            await self._tail
        return self._hasher.hexdigest()
