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
    assert all("its batch was rejected because of " + victim in why for path, why in failed.items() if path != victim)
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
