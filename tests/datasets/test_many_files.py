"""A 5,000-file directory upload with one file damaged in flight: that file's batch is rejected
with DATA_LOSS naming the file and none of it is visible, every other batch is committed, and
running the same upload again sends only what is missing.

The damage is done by a DatasetService in front of the real stack's gateway that flips one byte
of one object's chunk (as a faulty network or proxy would)."""
from __future__ import annotations

import grpc
import pytest

from dmod.datasets_client import DatasetsClient, UploadIncomplete
from dmod.v1 import datasets_pb2_grpc

FILES = 5000


class Damaging(datasets_pb2_grpc.DatasetServiceServicer):
    def __init__(self, upstream: datasets_pb2_grpc.DatasetServiceStub, victim: str):
        self.upstream, self.victim = upstream, victim

    async def UploadObjects(self, request_iterator, context):
        async def forward():
            armed = False
            async for message in request_iterator:
                if message.WhichOneof("payload") == "header":
                    armed = message.header.path == self.victim
                elif armed and message.WhichOneof("payload") == "chunk":
                    damaged = bytearray(message.chunk)
                    damaged[0] ^= 0xFF
                    message.chunk = bytes(damaged)
                    armed = False
                yield message
        try:
            return await self.upstream.UploadObjects(forward())
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details(), trailing_metadata=tuple((k, v) for k, v in (exc.trailing_metadata() or ())))

    async def ListObjects(self, request, context):
        return await self.upstream.ListObjects(request)


async def test_one_damaged_file_costs_its_batch_only_and_a_rerun_sends_the_rest(ds, dataset, tmp_path, gateway):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(FILES):
        (root / f"cat-{i:05d}.csv").write_text(f"time,q\n2015-12-01 00:00:00,{i}\n")
    victim = "f/cat-02345.csv"

    async with grpc.aio.insecure_channel(gateway) as upstream:
        server = grpc.aio.server()
        datasets_pb2_grpc.add_DatasetServiceServicer_to_server(
            Damaging(datasets_pb2_grpc.DatasetServiceStub(upstream), victim), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with DatasetsClient(target=f"127.0.0.1:{port}") as client:
                with pytest.raises(UploadIncomplete) as err:
                    await client.upload_dir(dataset.name, root, prefix="f/")
        finally:
            await server.stop(None)
    failed = err.value.failed
    assert failed[victim].startswith("DATA_LOSS") and victim in failed[victim]
    rejected = set(failed)
    others = {why for path, why in failed.items() if path != victim}
    assert others == {"not sent: its batch was rejected because of " + victim}, list(others)[:3]
    assert 1 < len(rejected) <= 500  # one batch, not the whole upload

    listed = {o.path: o for o in await ds.list_objects(dataset.name)}
    assert len(listed) == FILES - len(rejected) and not rejected & set(listed)  # nothing of the batch

    objects = await ds.upload_files(dataset.name, [(root / p.removeprefix("f/"), p) for p in
                                                   sorted([f"f/{f.name}" for f in root.iterdir()])],
                                    skip_existing=True)
    assert len(objects) == FILES
    after = {o.path: o for o in await ds.list_objects(dataset.name)}
    assert len(after) == FILES
    # what was committed the first time was not sent again (same version)
    assert all(after[p].create_time == o.create_time for p, o in listed.items())


async def test_download_objects_reads_packs_and_keeps_nothing_damaged(ds, dataset, s3, db, tmp_path):
    import io

    from dmod.v1 import datasets_pb2

    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):
        (src / f"{i:03d}.csv").write_bytes(f"{i}\n".encode() * (i + 1))
    (src / "big.bin").write_bytes(b"B" * (5 << 20))  # larger than BATCH_FILE: its own download
    await ds.upload_dir(dataset.name, src)
    back = tmp_path / "back"
    written = await ds.download_dir(dataset.name, back)
    assert len(written) == 301
    assert all((back / p.name).read_bytes() == p.read_bytes() for p in src.iterdir())

    # bad requests: named paths only, each once, at most 1,000, all existing
    for paths, code in (([], grpc.StatusCode.INVALID_ARGUMENT), (["001.csv", "001.csv"], grpc.StatusCode.INVALID_ARGUMENT),
                        ([f"{i}" for i in range(1001)], grpc.StatusCode.INVALID_ARGUMENT),
                        (["001.csv", "nope.csv"], grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in ds.stub.DownloadObjects(datasets_pb2.DownloadObjectsRequest(parent=dataset.name,
                                                                                     paths=paths)):
                pass
        assert err.value.code() == code, paths

    # one damaged object inside a pack: DATA_LOSS naming it; the objects before it arrive verified
    pack, offset = await db.fetchrow("SELECT s3_key, pack_offset FROM dataset_objects WHERE path = '150.csv' "
                                     "AND dataset_id = $1::uuid", dataset.name.split("/")[1])
    assert offset is not None  # small objects uploaded together are packed
    blob = bytearray(s3.get_object("dmod", pack).read())
    objects = {o.path: o for o in await ds.list_objects(dataset.name)}
    blob[offset] ^= 0xFF
    s3.put_object("dmod", pack, io.BytesIO(bytes(blob)), len(blob))
    again = tmp_path / "again"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.download_objects(dataset.name, [objects[f"{i:03d}.csv"] for i in range(300)], again)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS and "150.csv" in err.value.details()
    assert not (again / "150.csv").exists()
    assert (again / "000.csv").read_bytes() == (src / "000.csv").read_bytes()
