"""PostgreSQL state of uploads (`dataset_uploads`) and of S3 keys awaiting removal
(`dataset_garbage`).

An upload row is written when an upload first needs durable state (its S3 multipart upload
starts, or a presigned URL is issued) and then once per committed part — never per chunk.
While a stream writes, the row carries a lease (owner + expiry) so another server process
cannot write the same upload concurrently. The holder renews its leases every few seconds
(`renew_leases`), so a crashed holder's lease expires within LEASE_SECONDS and the client's
resume is taken over by the restarted (or another) server.
"""
from __future__ import annotations

import json
import uuid

LEASE_SECONDS = 15
LEASE_RENEW_SECONDS = 4
_COLUMNS = ("id, dataset_id, owner, path, kind, s3_key, multipart_id, parts, committed_bytes, size_bytes, "
            "expected_sha256, content_type, state, lease_owner, lease_until, expire_time, create_time")


def parts_of(row) -> list[tuple[int, str, int]]:
    """[(part number, etag, size)] of a row's committed parts, in order."""
    raw = row["parts"]
    doc = json.loads(raw) if isinstance(raw, str) else (raw or [])
    return [(p["n"], p["etag"], p["size"]) for p in doc]


def _parts_json(parts: list[tuple[int, str, int]]) -> str:
    return json.dumps([{"n": n, "etag": e, "size": s} for n, e, s in parts], separators=(",", ":"))


async def get(conn, upload_id: uuid.UUID):
    return await conn.fetchrow(f"SELECT {_COLUMNS} FROM dataset_uploads WHERE id = $1", upload_id)


async def insert(conn, *, upload_id: uuid.UUID, dataset_id: uuid.UUID, owner: str, path: str, kind: str, s3_key: str,
                 multipart_id: str | None, size: int, sha256: str, content_type: str, lease_owner: str | None,
                 expire_seconds: int) -> bool:
    """False when the id is taken."""
    status = await conn.execute(
        f"""INSERT INTO dataset_uploads (id, dataset_id, owner, path, kind, s3_key, multipart_id, size_bytes,
                expected_sha256, content_type, lease_owner, lease_until, expire_time)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                    CASE WHEN $11::text IS NULL THEN NULL ELSE now() + interval '{LEASE_SECONDS} seconds' END,
                    now() + make_interval(secs => $12))
            ON CONFLICT (id) DO NOTHING""",
        upload_id, dataset_id, owner, path, kind, s3_key, multipart_id, size, sha256, content_type, lease_owner,
        float(expire_seconds))
    return status.endswith(" 1")


async def take_lease(conn, upload_id: uuid.UUID, lease_owner: str) -> bool:
    status = await conn.execute(
        f"""UPDATE dataset_uploads SET lease_owner = $2, lease_until = now() + interval '{LEASE_SECONDS} seconds'
            WHERE id = $1 AND state = 'ACTIVE'
              AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $2)""", upload_id, lease_owner)
    return status.endswith(" 1")


async def renew_leases(conn, upload_ids: list[uuid.UUID], lease_owner: str) -> None:
    await conn.execute(
        f"""UPDATE dataset_uploads SET lease_until = now() + interval '{LEASE_SECONDS} seconds'
            WHERE id = ANY($1) AND lease_owner = $2""", upload_ids, lease_owner)


async def release_lease(conn, upload_id: uuid.UUID, lease_owner: str) -> None:
    await conn.execute("UPDATE dataset_uploads SET lease_owner = NULL, lease_until = NULL "
                       "WHERE id = $1 AND lease_owner = $2", upload_id, lease_owner)


async def save_parts(conn, upload_id: uuid.UUID, parts: list[tuple[int, str, int]], multipart_id: str | None = None,
                     lease_owner: str | None = None) -> None:
    """Record the committed parts (and renew the lease)."""
    await conn.execute(
        f"""UPDATE dataset_uploads SET parts = $2::jsonb, committed_bytes = $3, update_time = now(),
                multipart_id = COALESCE($4, multipart_id),
                lease_until = CASE WHEN lease_owner = $5 THEN now() + interval '{LEASE_SECONDS} seconds'
                                   ELSE lease_until END
            WHERE id = $1""",
        upload_id, _parts_json(parts), sum(p[2] for p in parts), multipart_id, lease_owner)


async def set_state(conn, upload_id: uuid.UUID, state: str) -> None:
    await conn.execute("UPDATE dataset_uploads SET state = $2, lease_owner = NULL, lease_until = NULL, "
                       "update_time = now() WHERE id = $1", upload_id, state)


async def expired(conn, limit: int = 100):
    """ACTIVE uploads past their expiry and not leased, locked for this transaction."""
    return await conn.fetch(
        f"""SELECT {_COLUMNS} FROM dataset_uploads
            WHERE state = 'ACTIVE' AND expire_time < now() AND (lease_until IS NULL OR lease_until < now())
            ORDER BY expire_time LIMIT $1 FOR UPDATE SKIP LOCKED""", limit)


# ---- garbage ---------------------------------------------------------------------------------

async def add_garbage(conn, s3_key: str, multipart_id: str | None = None, delay_seconds: float = 0) -> None:
    await conn.execute(
        """INSERT INTO dataset_garbage (s3_key, multipart_id, delete_after)
           VALUES ($1, $2, now() + make_interval(secs => $3))
           ON CONFLICT (s3_key) DO UPDATE SET delete_after = EXCLUDED.delete_after,
               multipart_id = COALESCE(EXCLUDED.multipart_id, dataset_garbage.multipart_id)""",
        s3_key, multipart_id, float(delay_seconds))


async def due_garbage(conn, limit: int = 500):
    """Keys past their grace period; `in_use`: a pack some object row still points into (one of
    its objects was replaced, not all) — dropped from the queue, kept in S3."""
    return await conn.fetch(
        """SELECT g.s3_key, g.multipart_id, EXISTS (
               SELECT 1 FROM dataset_objects o WHERE o.s3_key = g.s3_key AND o.pack_offset IS NOT NULL) AS in_use
           FROM dataset_garbage g WHERE g.delete_after < now()
           ORDER BY g.delete_after LIMIT $1 FOR UPDATE OF g SKIP LOCKED""", limit)


async def drop_garbage(conn, keys: list[str]) -> None:
    await conn.execute("DELETE FROM dataset_garbage WHERE s3_key = ANY($1)", keys)
