"""Background cleanup: abandoned uploads (aborted in S3 after they expire) and replaced or
deleted object versions (removed after their grace period). Safe with several replicas: rows are
claimed with FOR UPDATE SKIP LOCKED."""
from __future__ import annotations

import asyncio
import logging

from dmod.services.datasets.transfer import upload_rows

log = logging.getLogger("dmod.datasets.janitor")

INTERVAL_SECONDS = 60.0


async def sweep(pool, blobs) -> tuple[int, int]:
    """One pass; returns (uploads aborted, keys removed)."""
    aborted = removed = 0
    async with pool.acquire() as conn, conn.transaction():
        for row in await upload_rows.expired(conn):
            if row["multipart_id"]:
                await blobs.abort_multipart(row["s3_key"], row["multipart_id"])
            await blobs.remove(row["s3_key"])
            await upload_rows.set_state(conn, row["id"], "ABORTED")
            aborted += 1
    async with pool.acquire() as conn, conn.transaction():
        due = await upload_rows.due_garbage(conn)
        for row in due:
            if row["in_use"]:
                continue
            if row["multipart_id"]:
                await blobs.abort_multipart(row["s3_key"], row["multipart_id"])
            await blobs.remove(row["s3_key"])
            removed += 1
        if due:
            await upload_rows.drop_garbage(conn, [r["s3_key"] for r in due])
    return aborted, removed


async def run(pool, blobs, uploads, interval: float = INTERVAL_SECONDS) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            aborted, removed = await sweep(pool, blobs)
            uploads.forget_idle()
            if aborted or removed:
                log.info("janitor sweep", extra={"uploads_aborted": aborted, "keys_removed": removed})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("janitor sweep failed")
