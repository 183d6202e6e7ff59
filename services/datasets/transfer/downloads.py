"""DownloadObject (server stream): whole objects or byte ranges, 1 MiB per message.

A whole-object download recomputes the SHA-256 of the bytes read from S3 while sending them and
ends with DATA_LOSS when they differ from the digest recorded at upload (or the stored object
is shorter or longer than recorded), so a client never mistakes damaged bytes for the object.
A ranged download sends only bytes checked first (ranges.py: the whole small object, or the
4 MiB blocks the range touches against per-block digests).
"""
from __future__ import annotations

import hashlib
import logging
import os

from minio.error import S3Error

from dmod.services.datasets import convert, names, store
from dmod.services.datasets.transfer.blobs import is_missing
from dmod.services.datasets.transfer import ranges
from dmod.services.datasets.transfer.reader import read_blocks
from dmod.services.runtime.errors import DataLoss, InvalidArgument, NotFound, Unavailable
from dmod.v1 import datasets_pb2

log = logging.getLogger("dmod.datasets.download")

CHUNK = int(float(os.environ.get("DMOD_DATASETS_DOWNLOAD_CHUNK_MIB", "1")) * (1 << 20))  # ≤ 3.5 MiB


async def object_row(pool, name: str, field: str = "name"):
    dataset_id, path = names.parse_object_name(name, field)
    async with pool.acquire() as conn:
        row = await store.get_object(conn, dataset_id, path)
    if row is None:
        raise NotFound(f"{name} does not exist", reason="OBJECT_NOT_FOUND", metadata={"name": name})
    return row


async def download(pool, blobs, request: datasets_pb2.DownloadObjectRequest):
    if request.offset < 0:
        raise InvalidArgument(("offset", "must not be negative"))
    if request.length < 0:
        raise InvalidArgument(("length", "must not be negative (0 = to the end)"))
    row = await object_row(pool, request.name)
    size = row["size_bytes"]
    if request.offset > size:
        raise InvalidArgument(("offset", f"{request.offset} is beyond the end of the object ({size} bytes)"),
                              reason="OUT_OF_RANGE")
    end = size if request.length == 0 else min(size, request.offset + request.length)
    whole = request.offset == 0 and end == size
    hasher = hashlib.sha256() if whole else None
    sent = 0
    first = datasets_pb2.DownloadObjectResponse(object=convert.data_object(row))
    if end > request.offset:
        try:
            if whole:
                # Read to the stored object's real end, so one longer than recorded shows (a packed
                # object ends inside its pack: its checksum covers it).
                key, start, length = store.stored_range(row["s3_key"], row["pack_offset"], size)
                blocks = read_blocks(blobs, key, start, length, block=CHUNK, hasher=hasher)
            else:
                blocks = ranges.read_range(pool, blobs, row, request.name, request.offset, end - request.offset,
                                           CHUNK)
            async for block in blocks:
                sent += len(block)
                if sent > end - request.offset:
                    raise DataLoss(f"{request.name}: the stored object is longer than recorded ({size} bytes)",
                                   reason="SIZE_MISMATCH")
                if first is not None:
                    first.chunk = block
                    yield first
                    first = None
                else:
                    yield datasets_pb2.DownloadObjectResponse(chunk=block)
        except S3Error as exc:
            if is_missing(exc):
                raise DataLoss(f"{request.name}: the stored bytes are missing", reason="OBJECT_MISSING") from None
            log.warning("object store read failed", exc_info=exc)
            raise Unavailable(f"object store read failed: {exc.code}", reason="STORAGE_UNAVAILABLE") from None
    if first is not None:
        yield first
    if sent != end - request.offset:
        raise DataLoss(f"{request.name}: the stored object ended after {request.offset + sent} of {end} bytes",
                       reason="SIZE_MISMATCH")
    if hasher is not None and hasher.hexdigest() != row["sha256"]:
        log.error("stored object does not match its checksum", extra={"object": request.name})
        raise DataLoss(f"{request.name}: stored bytes hash to {hasher.hexdigest()}, recorded {row['sha256']}",
                       reason="CHECKSUM_MISMATCH", metadata={"expected": row["sha256"], "actual": hasher.hexdigest()})
