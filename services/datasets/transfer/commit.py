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


async def check_caller_may_write(conn, dataset_id: uuid.UUID, principal=None):
    """Before any byte is accepted: the dataset exists for the caller (NOT_FOUND when they may not
    read it, so a stranger learns nothing, not even that it is sealed), the caller may change it
    (PERMISSION_DENIED), and it is OPEN (FAILED_PRECONDITION). Returns the row."""
    from dmod.services.datasets import access

    row = await store.get_dataset(conn, dataset_id)
    if row is None:
        raise NotFound(f"datasets/{dataset_id} does not exist", reason="DATASET_NOT_FOUND")
    await access.require_read(conn, row, principal)
    access.require_owner(row, principal)
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


_BATCH_SQL = f"""
    WITH input AS (
        SELECT * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $9::bigint[])
            AS t(path, size_bytes, sha256, content_type, s3_key, pack_offset)
    ), prev AS (
        SELECT o.path, o.s3_key, o.size_bytes FROM dataset_objects o
        WHERE o.dataset_id = $1 AND o.path IN (SELECT path FROM input)
    ), up AS (
        INSERT INTO dataset_objects (dataset_id, path, size_bytes, sha256, content_type, s3_key, pack_offset,
                                     upload_id)
        SELECT $1, path, size_bytes, sha256, content_type, s3_key, pack_offset, $7 FROM input
        ON CONFLICT (dataset_id, path) DO UPDATE SET size_bytes = EXCLUDED.size_bytes,
            sha256 = EXCLUDED.sha256, content_type = EXCLUDED.content_type, s3_key = EXCLUDED.s3_key,
            pack_offset = EXCLUDED.pack_offset, block_sha256 = NULL, upload_id = EXCLUDED.upload_id,
            create_time = now()
        RETURNING {store._OBJECT_COLUMNS}
    ), counters AS (
        UPDATE datasets SET
            size_bytes = size_bytes + (SELECT COALESCE(sum(size_bytes), 0) FROM input)
                                    - (SELECT COALESCE(sum(size_bytes), 0) FROM prev),
            object_count = object_count + (SELECT count(*) FROM input) - (SELECT count(*) FROM prev),
            update_time = now()
        WHERE id = $1
    ), garbage AS (
        INSERT INTO dataset_garbage (s3_key, delete_after)
        SELECT DISTINCT s3_key, now() + make_interval(secs => $8) FROM prev
        ON CONFLICT (s3_key) DO UPDATE SET delete_after = EXCLUDED.delete_after
    )
    SELECT * FROM up"""


async def commit_batch(conn, *, dataset_id: uuid.UUID, upload_id: uuid.UUID, objects: list[tuple]) -> list:
    """Make many uploaded objects visible at once, in the caller's transaction: the dataset row
    lock (which rejects a SEALED or vanished dataset), then one statement that upserts every
    object row, keeps the dataset's counters and queues the replaced versions for removal.
    `objects`: (path, size, sha256, content_type, s3_key, pack_offset or None) with distinct
    paths whose keys are new (this upload's). A replaced packed version queues its pack, which the
    janitor removes only once no row points into it. Returns the object rows, in no particular order."""
    await check_writable(conn, dataset_id, lock=True)
    paths, sizes, digests, types, keys, offsets = (
        (list(c) for c in zip(*objects, strict=True)) if objects else ([],) * 6)
    return await conn.fetch(_BATCH_SQL, dataset_id, paths, sizes, digests, types, keys, upload_id,
                            float(REPLACED_GRACE_SECONDS), offsets)
