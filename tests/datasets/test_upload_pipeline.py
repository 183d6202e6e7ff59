"""The upload pipeline's part bookkeeping with parts finishing out of order and slow database
writes (fakes for S3 and PostgreSQL: this is about ordering, not about the stores)."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import uuid
from concurrent.futures import ThreadPoolExecutor

from dmod.services.datasets.transfer import uploads
from dmod.services.runtime.auth import Principal, set_principal


class FakeBlobs:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.parts: dict[int, bytes] = {}

    async def run(self, fn, *args):
        await asyncio.sleep(self.rng.random() * 0.02)  # parts land in any order
        return fn(*args)

    async def create_multipart(self, key, content_type):
        return "mp-1"

    def upload_part_sync(self, key, multipart_id, number, data):
        self.parts[number] = data if isinstance(data, bytes) else b"".join(data)  # Buffers: the chunks
        return f"etag-{number}"


class FakeConn:
    def __init__(self, rng):
        self.rng = rng

    async def execute(self, *args):
        await asyncio.sleep(self.rng.random() * 0.03)  # a slow database between parts
        return "INSERT 0 1"


class FakePool:
    def __init__(self, rng):
        self.conn = FakeConn(rng)

    @contextlib.asynccontextmanager
    async def acquire(self):
        yield self.conn


class FakeManager:
    def __init__(self, rng):
        self.pool, self.blobs = FakePool(rng), FakeBlobs(rng)
        self.hash_pool = ThreadPoolExecutor(2)
        self.node = "test"
        self.part_budget = asyncio.Semaphore(3)


async def test_parts_are_numbered_without_gaps_whatever_finishes_first(monkeypatch):
    monkeypatch.setattr(uploads, "PART_SIZE", 4)
    set_principal(Principal("tester"))
    for seed in range(5):
        rng = random.Random(seed)
        mgr = FakeManager(rng)
        session = uploads.Session(mgr, uuid.uuid4(), uploads.Live(), dataset_id=uuid.uuid4(), path="x", size=-1,
                                  sha256="", content_type="application/octet-stream")
        data = bytes(rng.randrange(256) for _ in range(97))
        for i in range(0, len(data), 5):
            await session.accept(data[i:i + 5])
        await session.flush()
        await session.drain()
        numbers = [n for n, _, _ in session.parts]
        assert numbers == list(range(1, len(numbers) + 1)) and session.committed == len(data), seed
        assert b"".join(mgr.blobs.parts[n] for n in numbers) == data
        assert await session.chain.hexdigest() == hashlib.sha256(data).hexdigest()
        assert mgr.part_budget._value == 3 and session.slots._value == uploads.PARTS_IN_FLIGHT
        mgr.hash_pool.shutdown()
