"""DownloadObjects (server stream): many whole objects of one dataset in one call.

Per object: its DataObject, then its chunks (≤ 1 MiB; none when empty). Every object is checked
against its SHA-256 before the call moves on: bytes that do not match end the call with DATA_LOSS
naming the object (the client checks too, and keeps nothing unverified).

Objects that share a pack (small objects uploaded together, see batch.py) are read with one
ranged GET per pack span instead of one GET each — the object store's cost is per request.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

from minio.error import S3Error

from dmod.services.datasets import convert, names, store
from dmod.services.datasets.transfer.blobs import is_missing
from dmod.services.datasets.transfer.downloads import CHUNK
from dmod.services.datasets.transfer.reader import read_blocks
from dmod.services.runtime.errors import DataLoss, InvalidArgument, NotFound, Unavailable
from dmod.v1 import datasets_pb2

log = logging.getLogger("dmod.datasets.download")

MAX_PATHS = 1000
# A pack span is read whole when the objects asked for fill at least this share of it.
DENSE = 0.5


def _paths(request: datasets_pb2.DownloadObjectsRequest) -> list[str]:
    violations = []
    if not request.paths:
        violations.append(("paths", "name at least one object path"))
    if len(request.paths) > MAX_PATHS:
        violations.append(("paths", f"{len(request.paths)} paths; at most {MAX_PATHS} per call"))
    if len(set(request.paths)) != len(request.paths):
        violations.append(("paths", "each path at most once"))
    if violations:
        raise InvalidArgument(violations)
    return list(request.paths)


def _spans(rows: list) -> list[list]:
    """Rows grouped into reads: runs of objects of one pack read as one span (when dense enough),
    every other object alone. Order: by pack, then by offset."""
    groups: dict[str, list] = {}
    alone = []
    for row in rows:
        (groups.setdefault(row["s3_key"], []) if row["pack_offset"] is not None else alone).append(row)
    reads = [[row] for row in alone]
    for members in groups.values():
        members.sort(key=lambda r: r["pack_offset"])
        span = [members[0]]
        for row in members[1:]:
            start = span[0]["pack_offset"]
            end = row["pack_offset"] + row["size_bytes"]
            useful = sum(r["size_bytes"] for r in span) + row["size_bytes"]
            if end - start and useful / (end - start) < DENSE:
                reads.append(span)
                span = [row]
            else:
                span.append(row)
        reads.append(span)
    return reads


def _damaged(row, actual: str) -> DataLoss:
    name = names.object_name(row["dataset_id"], row["path"])
    log.error("stored object does not match its checksum", extra={"object": name})
    return DataLoss(f"{name}: stored bytes hash to {actual}, recorded {row['sha256']}", reason="CHECKSUM_MISMATCH",
                    metadata={"path": row["path"], "expected": row["sha256"], "actual": actual})


def _messages(row, data) -> list[datasets_pb2.DownloadObjectsResponse]:
    out = [datasets_pb2.DownloadObjectsResponse(object=convert.data_object(row))]
    for i in range(0, len(data), CHUNK):
        out.append(datasets_pb2.DownloadObjectsResponse(chunk=bytes(data[i:i + CHUNK])))
    return out


async def _read_span(blobs, span: list) -> AsyncIterator[datasets_pb2.DownloadObjectsResponse]:
    first, last = span[0], span[-1]
    if len(span) == 1 and first["pack_offset"] is None:  # an object stored alone: streamed
        hasher = hashlib.sha256()
        yield datasets_pb2.DownloadObjectsResponse(object=convert.data_object(first))
        sent = 0
        async for block in read_blocks(blobs, first["s3_key"], block=CHUNK, hasher=hasher):
            sent += len(block)
            yield datasets_pb2.DownloadObjectsResponse(chunk=block)
        if sent != first["size_bytes"] or hasher.hexdigest() != first["sha256"]:
            raise _damaged(first, hasher.hexdigest())
        return
    start = first["pack_offset"]
    length = last["pack_offset"] + last["size_bytes"] - start
    data = bytearray()
    if length:
        async for block in read_blocks(blobs, first["s3_key"], start, length):
            data += block
    view = memoryview(data)
    for row in span:
        piece = view[row["pack_offset"] - start:row["pack_offset"] - start + row["size_bytes"]]
        actual = hashlib.sha256(piece).hexdigest()
        if len(piece) != row["size_bytes"] or actual != row["sha256"]:
            raise _damaged(row, actual)
        for message in _messages(row, piece):
            yield message


async def download_many(pool, blobs, request: datasets_pb2.DownloadObjectsRequest):
    """The caller's read access to the dataset is checked by the servicer first."""
    dataset_id = names.parse_dataset_name(request.parent, "parent")
    paths = _paths(request)
    async with pool.acquire() as conn:
        rows = await store.get_objects(conn, dataset_id, paths)
    by_path = {row["path"]: row for row in rows}
    missing = [p for p in paths if p not in by_path]
    if missing:
        raise NotFound(f"{len(missing)} of {len(paths)} objects do not exist in {request.parent}, e.g. "
                       f"{missing[0][:200]}", reason="OBJECT_NOT_FOUND", metadata={"path": missing[0]})
    try:
        for span in _spans([by_path[p] for p in paths]):
            async for message in _read_span(blobs, span):
                yield message
    except S3Error as exc:
        if is_missing(exc):
            raise DataLoss(f"{request.parent}: the stored bytes of an object are missing",
                           reason="OBJECT_MISSING") from None
        log.warning("object store read failed", exc_info=exc)
        raise Unavailable(f"object store read failed: {exc.code}", reason="STORAGE_UNAVAILABLE") from None
