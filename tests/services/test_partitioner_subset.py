"""PartitionerService and SubsetService against the real stack (datasets in Postgres + S3)."""
import json
import uuid

import grpc
import numpy as np
import pytest

from dmod.datasets_client import HYDROFABRIC, DatasetsClient
from dmod.errors import error_details
from dmod.services.hydrofabric import load_network, synth
from dmod.services.hydrofabric.subset import subset_network
from dmod.v1 import domain_pb2, partitioner_pb2, partitioner_pb2_grpc, subset_pb2, subset_pb2_grpc


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf")
    synth(out, catchments=80, seed=11, forcing=None)
    return out / "hydrofabric.gpkg"


@pytest.fixture
async def hydrofabric(stack, synthetic):
    async with DatasetsClient(target=stack.gateway) as ds:
        d = await ds.create_dataset(f"hf-{uuid.uuid4().hex[:8]}", HYDROFABRIC,
                                    domain_pb2.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC)
        await ds.upload_file(d.name, synthetic, "hydrofabric.gpkg")
        return (await ds.seal_dataset(d.name)).name


def _fields(error):
    return {v.field for v in error_details(error)["BadRequest"].field_violations}


async def test_partition_into_a_sealed_valid_dataset(channel, stack, hydrofabric, synthetic):
    stub = partitioner_pb2_grpc.PartitionerServiceStub(channel)
    request_id = uuid.uuid4().hex
    reply = await stub.CreatePartitioning(partitioner_pb2.CreatePartitioningRequest(
        hydrofabric_dataset=hydrofabric, partition_count=3, method=partitioner_pb2.PARTITION_METHOD_METIS,
        request_id=request_id), timeout=120)
    assert reply.dataset.state == 2 and reply.dataset.data_format == domain_pb2.DATA_FORMAT_NGEN_PARTITION_CONFIG
    assert sum(reply.stats.part_sizes) == 80 and len(reply.stats.part_sizes) == 3
    assert reply.stats.imbalance >= 1.0
    lengths = [list(d.values) for d in reply.dataset.domain.discrete if d.index == domain_pb2.STANDARD_INDEX_LENGTH]
    assert lengths == [["3"]]
    again = await stub.CreatePartitioning(partitioner_pb2.CreatePartitioningRequest(
        hydrofabric_dataset=hydrofabric, partition_count=3, method=partitioner_pb2.PARTITION_METHOD_METIS,
        request_id=request_id), timeout=120)
    assert again.dataset.name == reply.dataset.name  # idempotent on request_id

    ok = await stub.ValidatePartitioning(partitioner_pb2.ValidatePartitioningRequest(
        hydrofabric_dataset=hydrofabric, partition_dataset=reply.dataset.name, partition_count=3), timeout=60)
    assert ok.valid, ok.violations
    wrong_count = await stub.ValidatePartitioning(partitioner_pb2.ValidatePartitioningRequest(
        hydrofabric_dataset=hydrofabric, partition_dataset=reply.dataset.name, partition_count=4), timeout=60)
    assert not wrong_count.valid
    assert any(v.code == "PARTITION_COUNT" for v in wrong_count.violations)

    # A catchment in two partitions: the double-counting class ngen accepts silently.
    async with DatasetsClient(target=stack.gateway) as ds:
        doc = json.loads(await ds.download_bytes(f"{reply.dataset.name}/objects/partitions.json"))
        dup = doc["partitions"][0]["cat-ids"][0]
        doc["partitions"][1]["cat-ids"].append(dup)
        bad = await ds.create_dataset(f"bad-part-{uuid.uuid4().hex[:8]}", domain_pb2.DATA_CATEGORY_CONFIG,
                                      domain_pb2.DATA_FORMAT_NGEN_PARTITION_CONFIG)
        await ds.upload_bytes(bad.name, "partitions.json", json.dumps(doc).encode())
    duplicated = await stub.ValidatePartitioning(partitioner_pb2.ValidatePartitioningRequest(
        hydrofabric_dataset=hydrofabric, partition_dataset=bad.name, partition_count=3), timeout=60)
    assert not duplicated.valid
    assert any(v.id == dup for v in duplicated.violations), duplicated.violations


async def test_partitioner_rejects_bad_requests(channel, hydrofabric):
    stub = partitioner_pb2_grpc.PartitionerServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreatePartitioning(partitioner_pb2.CreatePartitioningRequest(hydrofabric_dataset="x",
                                                                                partition_count=0))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _fields(caught.value) == {"hydrofabric_dataset", "partition_count"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreatePartitioning(partitioner_pb2.CreatePartitioningRequest(
            hydrofabric_dataset="datasets/00000000-0000-0000-0000-000000000000", partition_count=2))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreatePartitioning(partitioner_pb2.CreatePartitioningRequest(
            hydrofabric_dataset=hydrofabric, partition_count=2, catchment_ids=["cat-1", "cat-999999"]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cat-999999" in caught.value.details()


async def test_upstream_subset_matches_the_library(channel, stack, hydrofabric, synthetic):
    net = load_network(str(synthetic))
    outlet = net.catchment_ids[net.outlet_catchments()[0]]
    expected = subset_network(net, [outlet], upstream=True)
    stub = subset_pb2_grpc.SubsetServiceStub(channel)
    reply = await stub.SubsetHydrofabric(subset_pb2.SubsetHydrofabricRequest(
        hydrofabric_dataset=hydrofabric, ids=[outlet], direction=subset_pb2.SUBSET_DIRECTION_UPSTREAM), timeout=120)
    assert reply.catchment_count == len(expected.catchments)
    assert reply.dataset.state == 2 and list(reply.dataset.derived_from) == [hydrofabric]
    async with DatasetsClient(target=stack.gateway) as ds:
        paths = {o.path for o in await ds.list_objects(reply.dataset.name)}
        definition = json.loads(await ds.download_bytes(f"{reply.dataset.name}/objects/subset.json"))
    assert {"hydrofabric.gpkg", "subset.json"} <= paths
    assert sorted(definition["catchment_ids"]) == sorted(expected.catchment_ids(net))
    assert np.all(np.isin(definition["catchment_ids"], net.catchment_ids))

    ids = await stub.ValidateIds(subset_pb2.ValidateIdsRequest(hydrofabric_dataset=hydrofabric,
                                                               ids=[outlet, "nex-424242", "bogus"]), timeout=60)
    assert list(ids.unknown_ids) == ["nex-424242", "bogus"] and ids.kinds[outlet] == "catchment"


async def test_subset_rejects_unknown_ids(channel, hydrofabric):
    stub = subset_pb2_grpc.SubsetServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubsetHydrofabric(subset_pb2.SubsetHydrofabricRequest(hydrofabric_dataset=hydrofabric,
                                                                         ids=["cat-77777"]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cat-77777" in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubsetHydrofabric(subset_pb2.SubsetHydrofabricRequest(hydrofabric_dataset=hydrofabric))
    assert _fields(caught.value) == {"ids"}
