"""UploadObjects: many small objects per client stream, committed together (real stack)."""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import grpc
import pytest

from dmod.datasets_client import reason
from dmod.errors import error_details
from dmod.v1 import datasets_pb2

from .test_transfer import MiB, sha, stored_keys, upload_messages, violations


def batch(parent: str, files: list[tuple[str, bytes]], *, digests: dict[str, str] | None = None,
          sizes: dict[str, int] | None = None, chunk: int = MiB):
    """UploadObjects messages: parent, then per file its header and chunks."""
    async def gen():
        yield datasets_pb2.UploadObjectsRequest(parent=parent)
        for path, data in files:
            yield datasets_pb2.UploadObjectsRequest(header=datasets_pb2.UploadObjectsHeader(
                path=path, size_bytes=(sizes or {}).get(path, len(data)), sha256=(digests or {}).get(path, sha(data))))
            for i in range(0, len(data), chunk):
                yield datasets_pb2.UploadObjectsRequest(chunk=data[i:i + chunk])
    return gen()


async def upload_fails(ds, messages, metadata=None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.stub.UploadObjects(messages, metadata=metadata)
    return err.value


async def test_batch_round_trip_with_checksums(ds, dataset, s3):
    files = [(f"out/cat-{i}.csv", f"time,Q\n{i},{i * 0.5}\n".encode() * (i + 1)) for i in range(40)]
    files += [("empty.txt", b""), ("multi-chunk.bin", os.urandom(2 * MiB + 123)), ("nested/a b/ü.json", b"{}")]
    reply = await ds.stub.UploadObjects(batch(dataset.name, files))
    assert [o.path for o in reply.objects] == [p for p, _ in files]  # in the order sent
    for (path, data), obj in zip(files, reply.objects, strict=True):
        assert (obj.sha256, obj.size_bytes) == (sha(data), len(data)), path
        assert obj.name == f"{dataset.name}/objects/{path}"
        assert await ds.download_bytes(obj.name) == data, path
    assert reply.objects[0].content_type == "text/csv" and reply.objects[-1].content_type == "application/json"
    info = await ds.get_dataset(dataset.name)
    assert (info.object_count, info.size_bytes) == (len(files), sum(len(d) for _, d in files))
    # the small objects share one pack; the 2 MiB one is stored alone
    keys = await stored_keys(s3, dataset.name)
    assert len(keys) == 2 and keys[0].endswith(".pack0") and keys[1].endswith("/multi-chunk.bin"), keys

    # a second batch replaces some objects and adds one; the counters follow
    again = [("out/cat-0.csv", b"replaced\n"), ("new.csv", b"a,b\n")]
    await ds.stub.UploadObjects(batch(dataset.name, again))
    assert await ds.download_bytes(f"{dataset.name}/objects/out/cat-0.csv") == b"replaced\n"
    info = await ds.get_dataset(dataset.name)
    expected = {p: d for p, d in files} | dict(again)
    assert (info.object_count, info.size_bytes) == (len(expected), sum(len(d) for d in expected.values()))
    listed = {o.path: o.sha256 for o in await ds.list_objects(dataset.name)}
    assert listed == {p: sha(d) for p, d in expected.items()}


async def test_wrong_checksum_in_the_middle_rejects_the_whole_batch(ds, dataset, s3):
    await ds.upload_bytes(dataset.name, "keep.csv", b"already here\n")
    files = [(f"cat-{i}.csv", os.urandom(30_000)) for i in range(30)]
    bad = files[15][0]
    err = await upload_fails(ds, batch(dataset.name, files, digests={bad: sha(b"something else")}))
    # as for UploadObject: bytes that do not hash to the declared digest were damaged on the way
    assert err.code() == grpc.StatusCode.DATA_LOSS and reason(err) == "CHECKSUM_MISMATCH"
    assert error_details(err)["ErrorInfo"].metadata["path"] == bad and bad in err.details()
    assert [o.path for o in await ds.list_objects(dataset.name)] == ["keep.csv"]  # none of the batch
    info = await ds.get_dataset(dataset.name)
    assert (info.object_count, info.size_bytes) == (1, len(b"already here\n"))
    keys = await stored_keys(s3, dataset.name)  # what the batch stored in S3 is removed again
    assert len(keys) == 1 and keys[0].endswith("/keep.csv")


async def test_bad_paths_sizes_and_headers_are_field_violations(ds, dataset, s3):
    good = [(f"ok-{i}.csv", b"x,y\n1,2\n") for i in range(5)]
    for path in ("../escape.csv", "a/../../b.csv", "/abs.csv", "a//b.csv", "nul\x00.csv"):
        err = await upload_fails(ds, batch(dataset.name, [*good, (path, b"data"), ("after.csv", b"1")]))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(err) == "INVALID_OBJECT_PATH", path
        assert list(violations(err)) == [f"objects/{path}"], path
    err = await upload_fails(ds, batch(dataset.name, [*good, ("short.csv", b"12345")], sizes={"short.csv": 10}))
    assert reason(err) == "SIZE_MISMATCH" and "objects/short.csv" in violations(err)
    err = await upload_fails(ds, batch(dataset.name, [*good, ("long.csv", b"12345")], sizes={"long.csv": 3}))
    assert reason(err) == "SIZE_MISMATCH" and "objects/long.csv" in violations(err)
    err = await upload_fails(ds, batch(dataset.name, [*good, ("ok-1.csv", b"twice")]))
    assert violations(err)["objects/ok-1.csv"] == "sent twice in one call"
    err = await upload_fails(ds, batch(dataset.name, good, digests={"ok-2.csv": ""}))
    assert "required" in violations(err)["objects/ok-2.csv"]
    err = await upload_fails(ds, batch(dataset.name, [("big.bin", b"")], sizes={"big.bin": 17 * MiB}))
    assert "UploadObject" in violations(err)["objects/big.bin"]
    err = await upload_fails(ds, batch(dataset.name, [("c.bin", b"x" * (MiB + 1))], chunk=MiB + 1))
    assert reason(err) == "CHUNK_TOO_LARGE"

    async def no_parent():
        yield datasets_pb2.UploadObjectsRequest(header=datasets_pb2.UploadObjectsHeader(path="a", sha256=sha(b"")))
    err = await upload_fails(ds, no_parent())
    assert "parent" in violations(err)
    err = await upload_fails(ds, batch("datasets/not-a-uuid", good))
    assert "parent" in violations(err)
    assert await ds.list_objects(dataset.name) == []
    assert await stored_keys(s3, dataset.name) == []


async def test_sealed_missing_and_foreign_datasets(ds, stack, settings):
    from dmod.datasets_client import FORCING, make_domain
    from dmod.services.runtime.auth import TokenIssuer

    dataset = await ds.create_dataset(f"ds-{uuid.uuid4().hex[:10]}", FORCING, 1, domain=make_domain(
        time=("2015-12-01", "2015-12-02"), catchments=["cat-1"]))  # sealing needs no detection

    files = [("a.csv", b"1\n"), ("b.csv", b"2\n")]
    issuer = TokenIssuer(Path(stack.home, "keys/jwt.key").read_bytes(), 300)
    mallory = (("authorization", f"Bearer {issuer.issue('mallory')[0]}"),)
    err = await upload_fails(ds, batch(dataset.name, files), metadata=mallory)  # not hers to see
    assert err.code() == grpc.StatusCode.NOT_FOUND and reason(err) == "DATASET_NOT_FOUND"
    # a worker's token writes only its own job's output dataset (tests/security cover the rest)
    worker = (("authorization", f"Bearer {issuer.issue(settings.default_user, job='jobs/x')[0]}"),)
    err = await upload_fails(ds, batch(dataset.name, files), metadata=worker)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and reason(err) == "TOKEN_SCOPE"
    reply = await ds.stub.UploadObjects(batch(dataset.name, files))
    assert [o.path for o in reply.objects] == ["a.csv", "b.csv"]
    err = await upload_fails(ds, batch(f"datasets/{uuid.uuid4()}", files))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    await ds.seal_dataset(dataset.name)
    err = await upload_fails(ds, batch(dataset.name, [("c.csv", b"3\n")]))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(err) == "DATASET_SEALED"
    # a stranger does not learn that it exists, let alone that it is sealed (any upload path)
    err = await upload_fails(ds, batch(dataset.name, [("c.csv", b"3\n")]), metadata=mallory)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as single:
        await ds.stub.UploadObject(upload_messages(datasets_pb2.UploadMetadata(
            parent=dataset.name, path="c.csv", size_bytes=2, sha256=sha(b"3\n")), b"3\n"), metadata=mallory)
    assert single.value.code() == grpc.StatusCode.NOT_FOUND
    assert [o.path for o in await ds.list_objects(dataset.name)] == ["a.csv", "b.csv"]


class Recording:
    """The generated stub, counting the calls made through it."""

    def __init__(self, stub):
        self.stub, self.calls = stub, []

    def __getattr__(self, name):
        method = getattr(self.stub, name)

        def call(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)
        return call


async def test_worker_uploads_outputs_in_batches(ds, dataset, tmp_path, monkeypatch):
    from dmod.services.worker.agent import outputs

    monkeypatch.setattr(outputs, "BATCH_MAX_FILE", 64 << 10)
    out = tmp_path / "output"
    (out / "sub").mkdir(parents=True)
    files = {f"cat-{i}.csv": f"Time,Q_OUT\n{i},{i / 7}\n".encode() * 50 for i in range(300)}
    files["sub/nex-1_output.csv"] = b"0,1\n"
    files["big.csv"] = os.urandom(100 << 10)  # above the (patched) threshold: UploadObject
    for name, data in files.items():
        (out / name).write_bytes(data)
    await ds.upload_bytes(dataset.name, "stale-from-an-earlier-attempt.csv", b"old")
    stub = Recording(ds.stub)
    said = []
    count, size = await outputs.upload_outputs(stub, ds.metadata, dataset.name, out, said.append)
    assert (count, size) == (len(files), sum(len(d) for d in files.values()))
    assert stub.calls.count("UploadObject") == 1 and 1 <= stub.calls.count("UploadObjects") <= 4
    assert stub.calls.count("DeleteObject") == 1
    listed = {o.path: o.sha256 for o in await ds.list_objects(dataset.name)}
    assert listed == {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    assert await ds.download_bytes(f"{dataset.name}/objects/sub/nex-1_output.csv") == b"0,1\n"


def test_batches_are_planned_by_count_bytes_and_lanes():
    from dmod.services.worker.agent.outputs import BATCH_BYTES, BATCH_FILES, plan_batches

    assert plan_batches([]) == []
    assert len(plan_batches([(Path(f"{i}"), 10) for i in range(10)])) == 1  # too few files to split
    lanes = plan_batches([(Path(f"{i}"), 26_000) for i in range(811)])
    assert len(lanes) == 3 and sum(len(b) for b in lanes) == 811
    many = plan_batches([(Path(f"{i}"), 10) for i in range(3 * BATCH_FILES + 1)])
    assert all(len(b) <= BATCH_FILES for b in many) and sum(len(b) for b in many) == 3 * BATCH_FILES + 1
    heavy = plan_batches([(Path(f"{i}"), 3 << 20) for i in range(20)])
    assert all(sum(n for _, n in b) <= BATCH_BYTES for b in heavy) and sum(len(b) for b in heavy) == 20


async def test_client_uploads_a_directory_in_batches(ds, dataset, tmp_path, monkeypatch):
    from dmod import datasets_client

    monkeypatch.setattr(datasets_client, "BATCH_FILE", 32 << 10)
    files = {f"f/{i:03d}.csv": os.urandom(1000 + i) for i in range(150)} | {"big.bin": os.urandom(40 << 10)}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    calls = []
    monkeypatch.setattr(ds, "upload_file", lambda *a, _f=ds.upload_file, **k: calls.append(a[2]) or _f(*a, **k))
    seen = []
    objects = await ds.upload_dir(dataset.name, tmp_path, "p/", concurrency=4,
                                  progress=lambda n, total: seen.append((n, total)))
    assert [o.path for o in objects] == sorted(f"p/{n}" for n in files)
    assert {o.path: o.sha256 for o in objects} == {f"p/{n}": sha(d) for n, d in files.items()}
    assert calls == ["p/big.bin"]  # the only file above the batch threshold
    assert seen[-1] == (sum(len(d) for d in files.values()),) * 2


async def test_packed_objects_read_like_any_object(ds, dataset, s3, tmp_path):
    """Ranges, whole-file downloads (the client falls back from a URL to the stream) and
    DATA_LOSS on damaged bytes behave for a packed object as for one stored alone."""
    files = [(f"p/{i}.txt", bytes([65 + i]) * (1000 + i)) for i in range(5)]
    await ds.stub.UploadObjects(batch(dataset.name, files))
    name = f"{dataset.name}/objects/p/2.txt"
    assert await ds.download_bytes(name, offset=10, length=7) == b"C" * 7
    assert await ds.download_bytes(name, offset=990) == b"C" * 12  # to the object's end, not the pack's
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.stub.CreateDownloadUrl(datasets_pb2.CreateDownloadUrlRequest(name=name))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(err.value) == "OBJECT_PACKED"
    await ds.download_file(name, tmp_path / "2.txt", via="auto")
    assert (tmp_path / "2.txt").read_bytes() == b"C" * 1002

    # damage one member inside the pack: that object fails DATA_LOSS, its neighbours still verify
    (pack,) = [k for k in await stored_keys(s3, dataset.name) if k.endswith(".pack0")]
    blob = bytearray(s3.get_object("dmod", pack).read())
    blob[1000 + 1001 + 5] ^= 0xFF  # a byte of p/2.txt
    import io
    s3.put_object("dmod", pack, io.BytesIO(bytes(blob)), len(blob))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.download_bytes(name)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert await ds.download_bytes(f"{dataset.name}/objects/p/3.txt") == b"D" * 1003


async def test_a_pack_is_removed_only_when_no_object_points_into_it(ds, dataset, s3, db, settings):
    from .test_cleanup import sweep

    files = [(f"{i}.csv", f"{i}\n".encode() * 50) for i in range(3)]
    await ds.stub.UploadObjects(batch(dataset.name, files))
    (pack,) = await stored_keys(s3, dataset.name)

    async def expire_and_sweep():
        await db.execute("UPDATE dataset_garbage SET delete_after = now() - interval '1 second' "
                         "WHERE s3_key LIKE $1", dataset.name + "/%")
        await sweep(settings)

    # one member replaced by a single upload (it must not keep its offset in the pack), one
    # deleted: the pack still holds the third
    await ds.upload_bytes(dataset.name, "1.csv", b"new\n")
    assert await ds.download_bytes(f"{dataset.name}/objects/1.csv") == b"new\n"
    await ds.delete_object(f"{dataset.name}/objects/0.csv")
    await expire_and_sweep()
    assert pack in await stored_keys(s3, dataset.name)
    assert await ds.download_bytes(f"{dataset.name}/objects/2.csv") == b"2\n" * 50
    assert await db.fetchval("SELECT count(*) FROM dataset_garbage WHERE s3_key = $1", pack) == 0

    # the last member replaced by a new batch: now the pack goes
    await ds.stub.UploadObjects(batch(dataset.name, [("2.csv", b"two\n")]))
    await expire_and_sweep()
    left = await stored_keys(s3, dataset.name)
    assert pack not in left and len(left) == 2, left
    assert {o.path: await ds.download_bytes(o.name) for o in await ds.list_objects(dataset.name)} == {
        "1.csv": b"new\n", "2.csv": b"two\n"}
