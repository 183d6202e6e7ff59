"""Ranged downloads never return damaged bytes with OK (the issue: they did): a range is checked
against per-block SHA-256 digests (recorded on first use from a full read that matches the
object's SHA-256), or the whole small object is checked."""
from __future__ import annotations

import io
import os

import grpc
import pytest

from dmod.services.datasets.transfer.ranges import BLOCK

from .test_transfer import MiB


def damage(s3, dataset: str, path: str, at: int) -> None:
    key = next(o.object_name for o in s3.list_objects("dmod", prefix=dataset + "/", recursive=True)
               if o.object_name.endswith("/" + path))
    blob = bytearray(s3.get_object("dmod", key).read())
    blob[at] ^= 0xFF
    s3.put_object("dmod", key, io.BytesIO(bytes(blob)), len(blob))


async def data_loss(call) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.DATA_LOSS, err.value


async def test_large_object_ranges_are_checked_per_block(ds, dataset, s3, db):
    data = os.urandom(2 * BLOCK + 123)
    obj = await ds.upload_bytes(dataset.name, "big.bin", data)
    across = (BLOCK - 10, 20)  # straddles blocks 0 and 1
    assert await ds.download_bytes(obj.name, *across) == data[across[0]:sum(across)]
    digests = await db.fetchval("SELECT block_sha256 FROM dataset_objects WHERE path = 'big.bin' "
                                "AND dataset_id = $1::uuid", dataset.name.split("/")[1])
    assert len(digests) == 3 * 32
    assert await ds.download_bytes(obj.name, 2 * BLOCK, 123) == data[2 * BLOCK:]

    damage(s3, dataset.name, "big.bin", 2 * BLOCK + 5)  # in the last block
    assert await ds.download_bytes(obj.name, 100, MiB) == data[100:100 + MiB]  # block 0 is intact
    await data_loss(ds.download_bytes(obj.name, 2 * BLOCK + 100, 10))
    await data_loss(ds.download_bytes(obj.name))

    # a new version of the object gets its own digests
    fresh = os.urandom(BLOCK + 1)
    await ds.upload_bytes(dataset.name, "big.bin", fresh)
    assert await ds.download_bytes(obj.name, BLOCK - 1, 2) == fresh[BLOCK - 1:]


async def test_damage_before_the_first_range_is_caught(ds, dataset, s3):
    data = os.urandom(BLOCK + 7)
    obj = await ds.upload_bytes(dataset.name, "early.bin", data)
    damage(s3, dataset.name, "early.bin", BLOCK + 3)
    await data_loss(ds.download_bytes(obj.name, 0, 10))  # the digests come from a full, checked read


async def test_small_object_ranges_are_checked_whole(ds, dataset, s3):
    data = os.urandom(1000)
    obj = await ds.upload_bytes(dataset.name, "small.bin", data)
    assert await ds.download_bytes(obj.name, 10, 20) == data[10:30]
    damage(s3, dataset.name, "small.bin", 900)
    await data_loss(ds.download_bytes(obj.name, 10, 20))
