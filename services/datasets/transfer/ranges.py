"""Verified byte ranges: a ranged DownloadObject never hands out bytes it has not checked.

A whole-object download is checked against the object's SHA-256 as it streams (downloads.py). A
range cannot be checked against that digest, so:
- an object of at most BLOCK bytes (packed objects included) is read whole, checked, and the
  range cut from it;
- a larger object gets one SHA-256 per BLOCK-sized block. They are computed the first time a range
  of the object is read, from one full read that must match the object's SHA-256, and kept in
  `dataset_objects.block_sha256` (reset when the object is replaced). A range then reads the
  blocks it touches, and sends each block's part of the range only once that block checks out.
Damaged bytes end the call with DATA_LOSS, as for whole objects.
"""
from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from dmod.services.datasets import store
from dmod.services.datasets.transfer.reader import read_blocks
from dmod.services.runtime.errors import DataLoss

BLOCK = 4 << 20
_DIGEST = 32


def _damaged(name: str, what: str) -> DataLoss:
    return DataLoss(f"{name}: {what}; the stored bytes are damaged", reason="CHECKSUM_MISMATCH")


async def _whole(blobs, row, name: str) -> bytes:
    key, start, length = store.stored_range(row["s3_key"], row["pack_offset"], row["size_bytes"])
    hasher = hashlib.sha256()
    data = b"".join([block async for block in read_blocks(blobs, key, start, length or row["size_bytes"],
                                                           hasher=hasher)])
    if len(data) != row["size_bytes"] or hasher.hexdigest() != row["sha256"]:
        raise _damaged(name, "the object does not match its SHA-256")
    return data


async def block_digests(pool, blobs, row, name: str) -> bytes:
    """The object's per-block digests (32 bytes each), computed and recorded on first use."""
    async with pool.acquire() as conn:
        known = await conn.fetchval(
            "SELECT block_sha256 FROM dataset_objects WHERE dataset_id = $1 AND path = $2 AND upload_id = $3",
            row["dataset_id"], row["path"], row["upload_id"])
    if known:
        return known
    key, start, length = store.stored_range(row["s3_key"], row["pack_offset"], row["size_bytes"])
    whole, block, filled, digests = hashlib.sha256(), hashlib.sha256(), 0, []
    async for data in read_blocks(blobs, key, start, length, hasher=whole):
        view = memoryview(data)
        while view:
            take = min(len(view), BLOCK - filled)
            block.update(view[:take])
            filled += take
            view = view[take:]
            if filled == BLOCK:
                digests.append(block.digest())
                block, filled = hashlib.sha256(), 0
    if filled:
        digests.append(block.digest())
    if len(digests) != -(-row["size_bytes"] // BLOCK) or whole.hexdigest() != row["sha256"]:
        raise _damaged(name, "the object does not match its SHA-256")
    joined = b"".join(digests)
    async with pool.acquire() as conn:  # only for the version that was read
        await conn.execute("UPDATE dataset_objects SET block_sha256 = $4 "
                           "WHERE dataset_id = $1 AND path = $2 AND upload_id = $3",
                           row["dataset_id"], row["path"], row["upload_id"], joined)
    return joined


async def read_range(pool, blobs, row, name: str, offset: int, length: int, chunk: int) -> AsyncIterator[bytes]:
    """Bytes [offset, offset + length) of the object, in pieces of at most `chunk` bytes, verified."""
    size = row["size_bytes"]
    if size <= BLOCK:
        data = await _whole(blobs, row, name)
        for i in range(offset, offset + length, chunk):
            yield data[i:min(i + chunk, offset + length)]
        return
    digests = await block_digests(pool, blobs, row, name)
    first, last = offset // BLOCK, (offset + length - 1) // BLOCK
    span_start, span_end = first * BLOCK, min(size, (last + 1) * BLOCK)
    key, start, span = store.stored_range(row["s3_key"], row["pack_offset"], size, span_start, span_end - span_start)
    pending, index = bytearray(), first
    async for data in read_blocks(blobs, key, start, span):
        pending += data
        while index <= last and len(pending) >= min(BLOCK, size - index * BLOCK):
            n = min(BLOCK, size - index * BLOCK)
            block = bytes(pending[:n])
            del pending[:n]
            if await blobs.run(lambda b=block: hashlib.sha256(b).digest()) != digests[index * _DIGEST:(index + 1) * _DIGEST]:
                raise _damaged(name, f"block {index} (bytes {index * BLOCK}..{index * BLOCK + n}) does not match "
                                     "its SHA-256")
            lo = max(offset, index * BLOCK) - index * BLOCK
            hi = min(offset + length, index * BLOCK + n) - index * BLOCK
            for i in range(lo, hi, chunk):
                yield block[i:min(i + chunk, hi)]
            index += 1
    if index <= last:
        raise _damaged(name, f"the stored object ended inside block {index}")
