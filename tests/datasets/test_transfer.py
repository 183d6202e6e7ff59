"""Uploads and downloads against the real stack (Envoy → DatasetService → PostgreSQL + S3)."""
from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid

import grpc
import httpx
import pytest

from dmod import datasets_client
from dmod.datasets_client import ChecksumMismatch, DatasetsClient, object_name, reason
from dmod.errors import error_details
from dmod.services.datasets.transfer.uploads import PART_SIZE
from dmod.v1 import datasets_pb2

MiB = 1 << 20


def violations(err: grpc.RpcError) -> dict[str, str]:
    bad = error_details(err).get("BadRequest")
    return {v.field: v.description for v in bad.field_violations} if bad else {}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stored_keys(s3, dataset_name: str) -> list[str]:
    prefix = dataset_name + "/"
    return await asyncio.to_thread(lambda: sorted(o.object_name for o in s3.list_objects("dmod", prefix=prefix,
                                                                                            recursive=True)))


def upload_messages(meta: datasets_pb2.UploadMetadata, data: bytes, chunk: int = MiB, final_sha: str = ""):
    async def gen():
        yield datasets_pb2.UploadObjectRequest(metadata=meta)
        for i in range(0, len(data), chunk):
            yield datasets_pb2.UploadObjectRequest(chunk=data[i:i + chunk])
        if final_sha:
            yield datasets_pb2.UploadObjectRequest(final_sha256=final_sha)
    return gen()


async def test_round_trip_small_and_multipart(ds, dataset, tmp_path):
    small = b"time,APCP_surface\n2015-12-01 00:00:00,0.1\n"
    obj = await ds.upload_bytes(dataset.name, "forcing/cat-1.csv", small)
    assert obj.sha256 == sha(small) and obj.size_bytes == len(small) and obj.content_type == "text/csv"
    big = os.urandom(PART_SIZE * 2 + 3 * MiB + 17)  # three parts, the last one short
    (tmp_path / "big.bin").write_bytes(big)
    seen = []
    obj = await ds.upload_file(dataset.name, tmp_path / "big.bin", "nested/big.bin",
                               progress=lambda done, total: seen.append(done))
    assert obj.sha256 == sha(big) and obj.size_bytes == len(big) and seen[-1] == len(big)
    got = await ds.download_file(obj.name, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == big and got.sha256 == sha(big)
    assert await ds.download_bytes(obj.name, PART_SIZE - 5, 10) == big[PART_SIZE - 5:PART_SIZE + 5]
    assert await ds.download_bytes(obj.name, len(big) - 3) == big[-3:]
    info = await ds.get_dataset(dataset.name)
    assert (info.object_count, info.size_bytes) == (2, len(small) + len(big))
    assert [o.path for o in await ds.list_objects(dataset.name)] == ["forcing/cat-1.csv", "nested/big.bin"]
    assert [o.path for o in await ds.list_objects(dataset.name, prefix="forcing/")] == ["forcing/cat-1.csv"]


async def test_checksum_mismatch_is_rejected_and_invisible(ds, dataset, s3):
    data = os.urandom(PART_SIZE + MiB)
    for meta_sha, final in ((sha(b"other"), ""), ("", sha(b"other"))):
        meta = datasets_pb2.UploadMetadata(parent=dataset.name, path="x.bin", size_bytes=len(data), sha256=meta_sha)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ds.stub.UploadObject(upload_messages(meta, data, final_sha=final))
        # the bytes do not hash to the declared digest: damaged on the way, nothing kept
        assert err.value.code() == grpc.StatusCode.DATA_LOSS and reason(err.value) == "CHECKSUM_MISMATCH"
    assert await ds.list_objects(dataset.name) == []
    assert await stored_keys(s3, dataset.name) == []


async def test_flipped_byte_in_s3_is_data_loss(ds, dataset, s3, db, tmp_path):
    data = os.urandom(3 * MiB)
    obj = await ds.upload_bytes(dataset.name, "victim.bin", data)
    key = await db.fetchval("SELECT s3_key FROM dataset_objects WHERE dataset_id = $1 AND path = $2",
                            uuid.UUID(dataset.name.split("/")[1]), "victim.bin")
    damaged = bytearray(data)
    damaged[2 * MiB + 5] ^= 0x01
    await asyncio.to_thread(s3.put_object, "dmod", key, io.BytesIO(bytes(damaged)), len(damaged))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.download_bytes(obj.name)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS and reason(err.value) == "CHECKSUM_MISMATCH"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.download_file(obj.name, tmp_path / "never")
    assert err.value.code() == grpc.StatusCode.DATA_LOSS and not list(tmp_path.iterdir())
    # a truncated object is data loss too
    await asyncio.to_thread(s3.put_object, "dmod", key, io.BytesIO(data[:100]), 100)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.download_bytes(obj.name)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS


async def _stalled_upload(ds, meta, data: bytes, send: int):
    """Start an upload that sends `send` bytes and then stalls; returns (call, task)."""
    release = asyncio.Event()

    async def gen():
        yield datasets_pb2.UploadObjectRequest(metadata=meta)
        for i in range(0, send, MiB):
            yield datasets_pb2.UploadObjectRequest(chunk=data[i:i + MiB])
        await release.wait()

    call = ds.stub.UploadObject(gen())
    return call, asyncio.ensure_future(call)


async def _wait_committed(ds, upload_id: str, at_least: int) -> int:
    for _ in range(300):
        status = await ds.upload_status(upload_id)
        if status is not None and status.committed_bytes >= at_least:
            return status.committed_bytes
        await asyncio.sleep(0.1)
    raise AssertionError("parts never committed")


async def test_killed_upload_resumes(ds, dataset, tmp_path):
    data = os.urandom(2 * PART_SIZE + 5 * MiB)
    upload_id = str(uuid.uuid4())
    meta = datasets_pb2.UploadMetadata(parent=dataset.name, path="resumed.bin", size_bytes=len(data),
                                       upload_id=upload_id)
    call, task = await _stalled_upload(ds, meta, data, 2 * PART_SIZE + 2 * MiB)
    await _wait_committed(ds, upload_id, 2 * PART_SIZE)
    call.cancel()  # the client dies mid-stream
    with pytest.raises(asyncio.CancelledError):
        await task
    status = await ds.upload_status(upload_id)
    assert status.committed_bytes == 2 * PART_SIZE and not status.complete and status.path == "resumed.bin"
    assert await ds.list_objects(dataset.name) == []  # nothing visible yet
    # resuming at an offset that is not committed is refused with the right offset
    bad = datasets_pb2.UploadMetadata(upload_id=upload_id, offset=PART_SIZE + 1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.stub.UploadObject(upload_messages(bad, b""))
    assert reason(err.value) == "OFFSET_MISMATCH"
    assert error_details(err.value)["ErrorInfo"].metadata["committed_bytes"] == str(2 * PART_SIZE)
    resume = datasets_pb2.UploadMetadata(upload_id=upload_id, offset=status.committed_bytes)
    reply = await ds.stub.UploadObject(upload_messages(resume, data[status.committed_bytes:], final_sha=sha(data)))
    assert reply.object.sha256 == sha(data) and reply.object.size_bytes == len(data)
    assert await ds.download_bytes(reply.object.name) == data
    assert (await ds.upload_status(upload_id)).complete


async def test_resume_on_a_server_without_hash_state(ds, dataset, settings):
    """A resume reaching another replica (or a restarted server) rebuilds the hash from S3."""
    from dmod.services.runtime.server import Server

    data = os.urandom(PART_SIZE + 3 * MiB)
    upload_id = str(uuid.uuid4())
    meta = datasets_pb2.UploadMetadata(parent=dataset.name, path="moved.bin", size_bytes=len(data),
                                       upload_id=upload_id)
    call, task = await _stalled_upload(ds, meta, data, PART_SIZE + MiB)
    await _wait_committed(ds, upload_id, PART_SIZE)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    committed = (await ds.upload_status(upload_id)).committed_bytes  # what a resuming client asks first
    other = Server(["datasets"], settings)
    port = await other.start()
    try:
        async with DatasetsClient(target=f"127.0.0.1:{port}") as replica:
            resume = datasets_pb2.UploadMetadata(upload_id=upload_id, offset=committed)
            reply = await replica.stub.UploadObject(upload_messages(resume, data[committed:]), metadata=ds.metadata)
    finally:
        await other.shutdown()
    assert reply.object.sha256 == sha(data)
    assert await ds.download_bytes(reply.object.name) == data


async def test_client_helper_resumes_after_a_broken_stream(ds, dataset, tmp_path, monkeypatch):
    """upload_file retries a transient failure from the committed offset."""
    data = os.urandom(PART_SIZE + 4 * MiB)
    (tmp_path / "f.bin").write_bytes(data)
    real = DatasetsClient._send_file
    calls = []

    async def flaky(self, *args):
        calls.append(args[5])  # offset of this attempt
        if len(calls) == 1:
            raise _Unavailable()
        return await real(self, *args)

    monkeypatch.setattr(DatasetsClient, "_send_file", flaky)
    obj = await ds.upload_file(dataset.name, tmp_path / "f.bin")
    assert obj.sha256 == sha(data) and calls == [0, 0]


class _Unavailable(grpc.aio.AioRpcError):
    def __init__(self):
        super().__init__(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "injected")


async def test_bad_paths_and_chunks_are_field_violations(ds, dataset):
    for path in ("../escape.txt", "/abs.txt", "a/../../b", "a//b", "nul\x00.txt", "x" * 1025):
        meta = datasets_pb2.UploadMetadata(parent=dataset.name, path=path, size_bytes=1)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ds.stub.UploadObject(upload_messages(meta, b"x"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
        assert "metadata.path" in violations(err.value), path
    meta = datasets_pb2.UploadMetadata(parent=dataset.name, path="big-chunk.bin")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.stub.UploadObject(upload_messages(meta, b"x" * (MiB + 1), chunk=MiB + 1))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk" in violations(err.value) and reason(err.value) == "CHUNK_TOO_LARGE"
    for name in ("datasets/nope/objects/a", f"{dataset.name}/objects/../a", f"{dataset.name}/x"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ds.download_bytes(name)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "name" in violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.download_bytes(object_name(dataset.name, "missing.txt"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:  # declared size must match what arrives
        await ds.stub.UploadObject(upload_messages(
            datasets_pb2.UploadMetadata(parent=dataset.name, path="short.bin", size_bytes=10), b"12345"))
    assert "metadata.size_bytes" in violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:  # neither size nor checksum: a cut stream could look whole
        await ds.stub.UploadObject(upload_messages(
            datasets_pb2.UploadMetadata(parent=dataset.name, path="unknown.bin"), b"12345"))
    assert reason(err.value) == "SIZE_OR_CHECKSUM_REQUIRED"
    assert await ds.list_objects(dataset.name) == []


async def test_concurrent_uploads_to_one_path_one_wins(ds, dataset, s3):
    contents = [os.urandom(PART_SIZE + (i + 1) * MiB) for i in range(2)] + [os.urandom(100 + i) for i in range(4)]
    results = await asyncio.gather(*(ds.upload_bytes(dataset.name, "same.bin", c) for c in contents),
                                   return_exceptions=True)
    assert all(not isinstance(r, BaseException) for r in results), results
    objects = await ds.list_objects(dataset.name)
    assert len(objects) == 1
    final = await ds.download_bytes(objects[0].name)
    assert final in contents and sha(final) == objects[0].sha256
    info = await ds.get_dataset(dataset.name)
    assert (info.object_count, info.size_bytes) == (1, len(final))


async def test_presigned_upload_and_download(ds, dataset, tmp_path):
    data = os.urandom(200_000)
    created = await ds.create_upload_url(dataset.name, "browser/file.bin", len(data), sha(data))
    async with httpx.AsyncClient() as http:
        assert (await http.put(created.url, content=data)).status_code == 200
        obj = await ds.finalize_upload(created.upload_id)
        assert obj.sha256 == sha(data) and obj.path == "browser/file.bin"
        url = await ds.create_download_url(obj.name)
        assert url.sha256 == sha(data)
        assert (await http.get(url.url)).content == data
        # a browser that uploads other bytes than it declared is rejected at finalize
        bad = await ds.create_upload_url(dataset.name, "browser/bad.bin", len(data), sha(data))
        await http.put(bad.url, content=data[:-1] + b"!")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.finalize_upload(bad.upload_id)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(err.value) == "CHECKSUM_MISMATCH"
    assert [o.path for o in await ds.list_objects(dataset.name)] == ["browser/file.bin"]
    got = await ds.download_file(obj.name, tmp_path / "via-url.bin", via="url")
    assert got.sha256 == sha(data) and got.size_bytes == len(data) and got.path == "browser/file.bin"
    assert (tmp_path / "via-url.bin").read_bytes() == data
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.create_upload_url(dataset.name, "../x", 1, "0" * 64)
    assert "path" in violations(err.value)


async def test_directory_round_trip(ds, dataset, tmp_path):
    src = tmp_path / "src"
    for i in range(30):
        (src / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 3}" / f"f{i}.txt").write_bytes(os.urandom(1000 + i))
    uploaded = await ds.upload_dir(dataset.name, src, prefix="in/", concurrency=8)
    assert len(uploaded) == 30
    paths = await ds.download_dir(dataset.name, tmp_path / "dst", prefix="in/")
    assert len(paths) == 30
    for p in src.rglob("*.txt"):
        assert (tmp_path / "dst" / "in" / p.relative_to(src)).read_bytes() == p.read_bytes()


async def test_download_by_url_is_verified_and_falls_back_to_the_stream(ds, dataset, s3, db, tmp_path, monkeypatch):
    data = os.urandom(3 * MiB + 7)
    obj = await ds.upload_bytes(dataset.name, "big/by-url.bin", data)
    monkeypatch.setattr(datasets_client, "URL_MIN_BYTES", MiB)  # "large" for this test
    got = await ds.download_file(obj.name, tmp_path / "auto.bin")  # auto: by URL, straight from S3
    assert got.sha256 == sha(data) and (tmp_path / "auto.bin").read_bytes() == data

    # S3 not reachable from the client (a URL to a closed port): auto streams through the
    # service instead, "url" insists and fails
    real = ds.create_download_url

    async def unreachable(name):
        reply = await real(name)
        reply.url = "http://127.0.0.1:9/dmod/nowhere?X-Amz-Signature=0"
        return reply
    monkeypatch.setattr(ds, "create_download_url", unreachable)
    got = await ds.download_file(obj.name, tmp_path / "fallback.bin")
    assert got.sha256 == sha(data) and (tmp_path / "fallback.bin").read_bytes() == data
    with pytest.raises(datasets_client.UrlFetchFailed):
        await ds.download_file(obj.name, tmp_path / "never.bin", via="url")
    monkeypatch.setattr(ds, "create_download_url", real)

    # a damaged object is never written under its name, whichever path the bytes took
    key = await db.fetchval("SELECT s3_key FROM dataset_objects WHERE dataset_id = $1 AND path = $2",
                            uuid.UUID(dataset.name.split("/")[1]), "big/by-url.bin")
    damaged = bytearray(data)
    damaged[MiB + 11] ^= 0x40
    await asyncio.to_thread(s3.put_object, "dmod", key, io.BytesIO(bytes(damaged)), len(damaged))
    with pytest.raises(ChecksumMismatch):
        await ds.download_file(obj.name, tmp_path / "out" / "damaged.bin")
    assert not list((tmp_path / "out").iterdir())
    with pytest.raises(ValueError):
        await ds.download_file(obj.name, tmp_path / "x", via="carrier-pigeon")
