"""Making verified bytes the object at a path: one transaction under the dataset's row lock.

Every upload writes its own S3 key, so concurrent uploads to one path never mix bytes; commits
are serialised by the lock, the last one wins, and the version it replaced is queued for removal
after a grace period (downloads already reading it can finish).
"""
from __future__ import annotations

import uuid

from dmod.services.datasets import store
from dmod.services.datasets.transfer import upload_rows
from dmod.services.runtime.errors import FailedPrecondition, NotFound

REPLACED_GRACE_SECONDS = 600


async def check_writable(conn, dataset_id: uuid.UUID, *, lock: bool = False):
    row = await store.get_dataset(conn, dataset_id, lock=lock)
    if row is None:
        raise NotFound(f"datasets/{dataset_id} does not exist", reason="DATASET_NOT_FOUND")
    if row["state"] == store.SEALED:
        raise FailedPrecondition(f"datasets/{dataset_id} is SEALED; its objects are immutable", reason="DATASET_SEALED")
    return row


async def commit(pool, blobs, *, dataset_id: uuid.UUID, path: str, size: int, sha256: str, content_type: str,
                 s3_key: str, upload_id: uuid.UUID, has_row: bool):
    """Returns the object row. On a dataset that vanished or was sealed meanwhile, the uploaded
    version is discarded and the error raised."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            await check_writable(conn, dataset_id, lock=True)
            obj, replaced = await store.commit_object(conn, dataset_id=dataset_id, path=path, size=size, sha256=sha256,
                                                      content_type=content_type, s3_key=s3_key, upload_id=upload_id)
            if has_row:
                await upload_rows.set_state(conn, upload_id, "COMPLETE")
            if replaced and replaced != s3_key:
                await upload_rows.add_garbage(conn, replaced, delay_seconds=REPLACED_GRACE_SECONDS)
        return obj
    except (NotFound, FailedPrecondition):
        await blobs.remove(s3_key)
        if has_row:
            async with pool.acquire() as conn:
                await upload_rows.set_state(conn, upload_id, "ABORTED")
        raise
