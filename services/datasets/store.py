"""PostgreSQL access for datasets and their objects (SQL only; no gRPC, no S3)."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import asyncpg

from dmod.services.datasets import domain_codec
from dmod.services.datasets.domains import HYDROFABRIC_ID, Domain

OPEN, SEALED = 1, 2

_DATASET_COLUMNS = ("id, owner, display_name, category, data_format, domain, description, labels, state, "
                    "size_bytes, object_count, derived_from, request_id, create_time, update_time, seal_time, "
                    "visibility, readers")

PUBLIC = 2  # dmod.v1.DatasetVisibility


def _visible(viewer: list[str], arg) -> str:
    """SQL: the dataset is readable by `viewer` (reader names, the first one users/{caller}; see
    access.py): own, PUBLIC, or shared with one of the names."""
    return (f"(owner = {arg(viewer[0].removeprefix('users/'))} OR visibility = {PUBLIC} "
            f"OR readers && {arg(list(viewer))}::text[])")


def jsonb(value) -> str:
    """asyncpg passes jsonb as text (the runtime's pool has no JSON codec)."""
    return json.dumps(value, separators=(",", ":"))


def loads(value) -> dict:
    return json.loads(value) if isinstance(value, str) else (value or {})


def _domain_columns(d: Domain) -> tuple:
    t = d.time()
    hf = sorted(d.values(HYDROFABRIC_ID) or ())
    return jsonb(domain_codec.to_json(d)), (t.begin if t else None), (t.end if t else None), hf


async def insert_dataset(conn, *, owner: str, display_name: str, category: int, data_format: int, domain: Domain,
                         description: str, labels: dict, derived_from: list[str], request_id: str | None,
                         visibility: int = 1, readers: list[str] | None = None):
    """Insert; returns (row, created). An existing (owner, request_id) returns that row unchanged.
    Raises asyncpg.UniqueViolationError when the display name is taken."""
    if request_id:
        row = await conn.fetchrow(f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE owner = $1 AND request_id = $2",
                                  owner, request_id)
        if row:
            return row, False
    doc, t0, t1, hf = _domain_columns(domain)
    try:
        row = await conn.fetchrow(
            f"""INSERT INTO datasets (id, owner, display_name, category, data_format, domain, time_begin, time_end,
                    hydrofabric_ids, description, labels, derived_from, request_id, visibility, readers)
                VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15)
                ON CONFLICT (owner, request_id) WHERE request_id IS NOT NULL DO NOTHING
                RETURNING {_DATASET_COLUMNS}""",
            uuid.uuid4(), owner, display_name, category, data_format, doc, t0, t1, hf, description, jsonb(labels),
            derived_from, request_id, visibility, list(readers or ()))
    except asyncpg.UniqueViolationError:
        # Two concurrent creates of one request: the second may trip over the first's display name
        # (checked before the request id). It is the same dataset, not a taken name.
        twin = await conn.fetchrow(f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE owner = $1 AND request_id = $2",
                                   owner, request_id) if request_id else None
        if twin is None:
            raise
        return twin, False
    if row is None:  # lost a race with the same request_id
        row = await conn.fetchrow(f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE owner = $1 AND request_id = $2",
                                  owner, request_id)
        return row, False
    return row, True


async def get_dataset(conn, dataset_id: uuid.UUID, *, lock: bool = False):
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE id = $1{suffix}", dataset_id)


async def list_datasets(conn, *, category: int, data_format: int, owner: str, labels: dict, state: int,
                        after: tuple[dt.datetime, uuid.UUID] | None, limit: int, viewer: list[str] | None = None):
    """`viewer`: only datasets these reader names may read (None: all, for admins)."""
    where, args = [], []

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    if category:
        where.append(f"category = {arg(category)}")
    if data_format:
        where.append(f"data_format = {arg(data_format)}")
    if owner:
        where.append(f"owner = {arg(owner)}")
    if labels:
        where.append(f"labels @> {arg(jsonb(labels))}::jsonb")
    if state:
        where.append(f"state = {arg(state)}")
    if viewer is not None:
        where.append(_visible(viewer, arg))
    if after:
        where.append(f"(create_time, id) < ({arg(after[0])}, {arg(after[1])})")
    # row_version (the row's xmin) changes with every update: convert.listed caches by it
    sql = (f"SELECT {_DATASET_COLUMNS}, xmin::text AS row_version FROM datasets "
           f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY create_time DESC, id DESC LIMIT {arg(limit)}")
    return await conn.fetch(sql, *args)


async def search_candidates(conn, *, category: int, owner: str, viewer: list[str] | None, limit: int):
    """Datasets a requirement may match: its category (any when 0), of `owner` (any when empty),
    readable by `viewer` (reader names; None: no restriction)."""
    where, args = [], []

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    if category:
        where.append(f"category = {arg(category)}")
    if owner:
        where.append(f"owner = {arg(owner)}")
    if viewer is not None:
        where.append(_visible(viewer, arg))
    args.append(limit)
    sql = (f"SELECT {_DATASET_COLUMNS} FROM datasets {'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY create_time DESC, id DESC LIMIT ${len(args)}")
    return await conn.fetch(sql, *args)


async def update_dataset(conn, dataset_id: uuid.UUID, *, display_name: str | None = None,
                         description: str | None = None, labels: dict | None = None, domain: Domain | None = None,
                         visibility: int | None = None, readers: list[str] | None = None):
    sets, args = ["update_time = now()"], [dataset_id]

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    if display_name is not None:
        sets.append(f"display_name = {arg(display_name)}")
    if description is not None:
        sets.append(f"description = {arg(description)}")
    if labels is not None:
        sets.append(f"labels = {arg(jsonb(labels))}::jsonb")
    if visibility is not None:
        sets.append(f"visibility = {arg(visibility)}")
    if readers is not None:
        sets.append(f"readers = {arg(list(readers))}::text[]")
    if domain is not None:
        doc, t0, t1, hf = _domain_columns(domain)
        sets.append(f"domain = {arg(doc)}::jsonb, time_begin = {arg(t0)}, time_end = {arg(t1)}, hydrofabric_ids = {arg(hf)}")
    return await conn.fetchrow(f"UPDATE datasets SET {', '.join(sets)} WHERE id = $1 RETURNING {_DATASET_COLUMNS}",
                               *args)


async def seal_dataset(conn, dataset_id: uuid.UUID, domain: Domain | None):
    if domain is not None:
        await update_dataset(conn, dataset_id, domain=domain)
    return await conn.fetchrow(
        f"UPDATE datasets SET state = {SEALED}, seal_time = now(), update_time = now() "
        f"WHERE id = $1 AND state = {OPEN} RETURNING {_DATASET_COLUMNS}", dataset_id)


async def delete_dataset(conn, dataset_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM datasets WHERE id = $1", dataset_id)


# ---- objects ---------------------------------------------------------------------------------

_OBJECT_COLUMNS = "dataset_id, path, size_bytes, sha256, content_type, s3_key, pack_offset, upload_id, create_time"


def stored_range(s3_key: str, pack_offset: int | None, size: int, offset: int = 0,
                 length: int = 0) -> tuple[str, int, int]:
    """Where bytes [offset, offset + length) of an object live in S3: (key, offset, length), length
    0 meaning "to the end of the S3 object". A packed object's range is always explicit (its end
    is not the pack's end)."""
    if pack_offset is None:
        return s3_key, offset, length
    return s3_key, pack_offset + offset, length or size - offset


async def get_object(conn, dataset_id: uuid.UUID, path: str):
    return await conn.fetchrow(f"SELECT {_OBJECT_COLUMNS} FROM dataset_objects WHERE dataset_id = $1 AND path = $2",
                               dataset_id, path)


async def get_objects(conn, dataset_id: uuid.UUID, paths: list[str]) -> list:
    return await conn.fetch(f"SELECT {_OBJECT_COLUMNS} FROM dataset_objects WHERE dataset_id = $1 AND path = ANY($2)",
                            dataset_id, paths)


async def list_objects(conn, dataset_id: uuid.UUID, *, prefix: str, after: str | None, limit: int | None):
    args: list = [dataset_id, prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"]
    where = "dataset_id = $1 AND path LIKE $2"
    if after is not None:
        args.append(after)
        where += f" AND path > ${len(args)}"
    sql = f"SELECT {_OBJECT_COLUMNS} FROM dataset_objects WHERE {where} ORDER BY path COLLATE \"C\""
    if limit:
        args.append(limit)
        sql += f" LIMIT ${len(args)}"
    return await conn.fetch(sql, *args)


async def commit_object(conn, *, dataset_id: uuid.UUID, path: str, size: int, sha256: str, content_type: str,
                        s3_key: str, upload_id: uuid.UUID):
    """Make an uploaded version the object at `path`, keeping the dataset's counters, in one
    statement. The caller holds the dataset row lock (so `prev` cannot be stale).
    Returns (object row, S3 key of the replaced version or None)."""
    row = await conn.fetchrow(
        f"""WITH prev AS (
                SELECT s3_key, size_bytes FROM dataset_objects WHERE dataset_id = $1 AND path = $2
            ), up AS (
                INSERT INTO dataset_objects (dataset_id, path, size_bytes, sha256, content_type, s3_key, upload_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (dataset_id, path) DO UPDATE SET size_bytes = EXCLUDED.size_bytes,
                    sha256 = EXCLUDED.sha256, content_type = EXCLUDED.content_type, s3_key = EXCLUDED.s3_key,
                    pack_offset = NULL, block_sha256 = NULL, upload_id = EXCLUDED.upload_id, create_time = now()
                RETURNING {_OBJECT_COLUMNS}
            ), counters AS (
                UPDATE datasets SET size_bytes = size_bytes + $3 - COALESCE((SELECT size_bytes FROM prev), 0),
                    object_count = object_count + (CASE WHEN EXISTS (SELECT 1 FROM prev) THEN 0 ELSE 1 END),
                    update_time = now()
                WHERE id = $1
            )
            SELECT up.*, (SELECT s3_key FROM prev) AS replaced FROM up""",
        dataset_id, path, size, sha256, content_type, s3_key, upload_id)
    return row, row["replaced"]


async def delete_object(conn, dataset_id: uuid.UUID, path: str):
    """Remove the row (caller holds the dataset row lock); returns it, or None."""
    row = await conn.fetchrow(f"DELETE FROM dataset_objects WHERE dataset_id = $1 AND path = $2 RETURNING {_OBJECT_COLUMNS}",
                              dataset_id, path)
    if row:
        await conn.execute("UPDATE datasets SET size_bytes = size_bytes - $2, object_count = object_count - 1, "
                           "update_time = now() WHERE id = $1", dataset_id, row["size_bytes"])
    return row
