"""Cleanup: replaced/deleted object versions and abandoned uploads leave nothing behind in S3."""
from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import grpc
import pytest

from dmod.datasets_client import reason
from dmod.services.datasets import janitor
from dmod.services.datasets.transfer.blobs import Blobs
from dmod.services.datasets.transfer.uploads import PART_SIZE
from dmod.v1 import datasets_pb2

MiB = 1 << 20


async def keys(s3, dataset: str) -> list[str]:
    return await asyncio.to_thread(lambda: sorted(o.object_name for o in s3.list_objects(
        "dmod", prefix=dataset + "/", recursive=True)))


async def sweep(settings) -> tuple[int, int]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    blobs = Blobs(settings)
    try:
        return await janitor.sweep(pool, blobs)
    finally:
        blobs.close()
        await pool.close()


async def test_replaced_and_deleted_versions_are_removed_after_grace(ds, dataset, s3, db, settings):
    first = await ds.upload_bytes(dataset.name, "a.txt", b"one")
    await ds.upload_bytes(dataset.name, "a.txt", b"two")  # replaces: the old key waits out its grace period
    await ds.upload_bytes(dataset.name, "b.txt", b"bee")
    await ds.delete_object(f"{dataset.name}/objects/b.txt")
    assert len(await keys(s3, dataset.name)) == 3
    assert await ds.download_bytes(first.name) == b"two"
    await db.execute("UPDATE dataset_garbage SET delete_after = now() - interval '1 second' "
                     "WHERE s3_key LIKE $1", dataset.name + "/%")
    await sweep(settings)
    remaining = await keys(s3, dataset.name)
    assert len(remaining) == 1 and remaining[0].endswith("/a.txt")
    assert [o.path for o in await ds.list_objects(dataset.name)] == ["a.txt"]


async def test_abandoned_upload_is_aborted(ds, dataset, s3, db, settings):
    data = os.urandom(PART_SIZE + MiB)
    upload_id = str(uuid.uuid4())
    release = asyncio.Event()

    async def gen():
        yield datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
            parent=dataset.name, path="abandoned.bin", size_bytes=len(data), upload_id=upload_id))
        for i in range(0, PART_SIZE + MiB, MiB):
            yield datasets_pb2.UploadObjectRequest(chunk=data[i:i + MiB])
        await release.wait()

    call = ds.stub.UploadObject(gen())
    task = asyncio.ensure_future(call)
    for _ in range(300):
        status = await ds.upload_status(upload_id)
        if status is not None and status.committed_bytes:
            break
        await asyncio.sleep(0.1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await ds.upload_status(upload_id)  # waits until the broken stream has settled
    await db.execute("UPDATE dataset_uploads SET expire_time = now() - interval '1 second' WHERE id = $1",
                     uuid.UUID(upload_id))
    aborted, _ = await sweep(settings)
    assert aborted >= 1
    assert await db.fetchval("SELECT state FROM dataset_uploads WHERE id = $1", uuid.UUID(upload_id)) == "ABORTED"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.stub.UploadObject(_resume(upload_id, status.committed_bytes))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(err.value) == "UPLOAD_ABORTED"
    assert await keys(s3, dataset.name) == []
    pending = await asyncio.to_thread(lambda: list(s3._list_multipart_uploads("dmod", prefix=dataset.name + "/")
                                                   .uploads))
    assert pending == []


def _resume(upload_id: str, offset: int):
    async def gen():
        yield datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(upload_id=upload_id,
                                                                                    offset=offset))
    return gen()
