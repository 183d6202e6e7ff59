"""A worker's input download rides out a datasets service that is briefly unavailable, and a
longer outage ends the attempt with a reason the scheduler retries (not a permanent failure).

The faults are injected by a DatasetService in front of the real stack's gateway: it answers
UNAVAILABLE to the first calls, then forwards to the real service."""
from __future__ import annotations

import uuid

import grpc
import pytest

from dmod.datasets_client import DatasetsClient
from dmod.services.jobs import states
from dmod.services.jobs.datasets import Datasets
from dmod.services.worker.agent import prepare
from dmod.v1 import datasets_pb2, datasets_pb2_grpc, domain_pb2


class Flaky(datasets_pb2_grpc.DatasetServiceServicer):
    def __init__(self, upstream: datasets_pb2_grpc.DatasetServiceStub, failures: int):
        self.upstream, self.failures, self.calls = upstream, failures, 0

    async def _fault(self, context) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "datasets service restarting (injected)")

    async def ListObjects(self, request, context):
        await self._fault(context)
        return await self.upstream.ListObjects(request)

    async def DownloadObject(self, request, context):
        await self._fault(context)
        async for reply in self.upstream.DownloadObject(request):
            yield reply

    async def DownloadObjects(self, request, context):
        await self._fault(context)
        async for reply in self.upstream.DownloadObjects(request):
            yield reply


@pytest.fixture
async def inputs(gateway):
    async with DatasetsClient(target=gateway) as client:
        dataset = await client.create_dataset(f"retry-{uuid.uuid4().hex[:8]}", domain_pb2.DATA_CATEGORY_CONFIG,
                                              domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG)
        data = {"a.json": b'{"a": 1}', "b/c.txt": b"cee" * 1000}
        for path, blob in data.items():
            await client.upload_bytes(dataset.name, path, blob)
        yield dataset.name, data


async def run_flaky(gateway, failures: int, dataset: str, root):
    async with grpc.aio.insecure_channel(gateway) as upstream:
        flaky = Flaky(datasets_pb2_grpc.DatasetServiceStub(upstream), failures)
        server = grpc.aio.server()
        datasets_pb2_grpc.add_DatasetServiceServicer_to_server(flaky, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                return await prepare.download_inputs(Datasets(ch), {"realization": dataset}, root, lambda s: None), flaky
        finally:
            await server.stop(None)


async def test_brief_outage_is_ridden_out(gateway, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "RETRY_DELAYS", (0.05, 0.1, 0.2, 0.4, 0.8))
    name, data = inputs
    paths, flaky = await run_flaky(gateway, 3, name, tmp_path)
    assert sorted(paths["realization"]) == sorted(data)
    assert flaky.calls >= 3 + 1 + 1  # three refused, then the listing and the objects (one call)
    for path, blob in data.items():  # the realization role lands at the job directory's root
        assert (tmp_path / path).read_bytes() == blob


async def test_long_outage_ends_the_attempt_retryably(gateway, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "RETRY_DELAYS", (0.01, 0.01))
    name, _ = inputs
    with pytest.raises(prepare.PrepareError) as err:
        await run_flaky(gateway, 1000, name, tmp_path)
    assert err.value.reason == "INPUTS_UNAVAILABLE" and "UNAVAILABLE" in str(err.value)
    assert "INPUTS_UNAVAILABLE" in states.TRANSIENT_REASONS  # the scheduler makes a new attempt
