"""Dataset lifecycle against the real stack: idempotent create, update, list paging, seal, delete."""
from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from dmod.datasets_client import CONFIG, FORCING, OPEN, SEALED, make_domain, object_name, reason
from dmod.errors import error_details
from dmod.v1 import datasets_pb2, domain_pb2


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_create_is_idempotent_per_request_id(ds):
    request_id = uuid.uuid4().hex
    name = unique("idem")
    first, again = await asyncio.gather(
        *(ds.create_dataset(name, FORCING, domain_pb2.DATA_FORMAT_AORC_CSV, request_id=request_id) for _ in range(2)))
    assert first.name == again.name and first.state == OPEN and first.owner
    assert (await ds.create_dataset(name, FORCING, request_id=request_id)).name == first.name
    with pytest.raises(grpc.aio.AioRpcError) as err:  # same display name, another request
        await ds.create_dataset(name, FORCING, request_id=uuid.uuid4().hex)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and reason(err.value) == "DISPLAY_NAME_TAKEN"


async def test_create_validates(ds):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.create_dataset(unique(), FORCING, domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                                derived_from=["nope"])
    fields = {v.field for v in error_details(err.value)["BadRequest"].field_violations}
    assert fields == {"dataset.data_format", "dataset.derived_from[0]"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.create_dataset(unique(), 0)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # the format implies the category
    d = await ds.create_dataset(unique(), 0, domain_pb2.DATA_FORMAT_NGEN_PARTITION_CONFIG)
    assert d.category == CONFIG


async def test_update_list_and_paging(ds):
    tag = uuid.uuid4().hex[:8]
    made = [await ds.create_dataset(unique("page"), FORCING, labels={"batch": tag}) for _ in range(5)]
    updated = await ds.update_dataset(made[0].name, description="first one", labels={"batch": tag, "x": "1"},
                                      domain=make_domain(catchments=["cat-1"]))
    assert updated.description == "first one" and updated.domain.discrete[0].values == ["cat-1"]
    seen, token = [], ""
    while True:
        reply = await ds.stub.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=2, page_token=token,
                                                                            labels={"batch": tag}))
        assert len(reply.datasets) <= 2
        seen += [d.name for d in reply.datasets]
        token = reply.next_page_token
        if not token:
            break
    assert seen == [d.name for d in reversed(made)]  # newest first, each once
    only = await ds.list_datasets(labels={"batch": tag, "x": "1"})
    assert [d.name for d in only] == [made[0].name]
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a token belongs to its query
        first = await ds.stub.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=1, labels={"batch": tag}))
        await ds.stub.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=1, page_token=first.next_page_token))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.stub.UpdateDataset(datasets_pb2.UpdateDatasetRequest(dataset=datasets_pb2.Dataset(name=made[1].name)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_sealed_dataset_is_immutable(ds, dataset):
    obj = await ds.upload_bytes(dataset.name, "cat-1.csv", b"time,v\n2015-12-01 00:00:00,1\n")
    sealed = await ds.seal_dataset(dataset.name)
    assert sealed.state == SEALED and sealed.HasField("seal_time")
    attempts = [
        ds.upload_bytes(dataset.name, "cat-2.csv", b"time,v\n2015-12-01 00:00:00,1\n", retries=0),
        ds.upload_bytes(dataset.name, "cat-1.csv", b"overwrite", retries=0),
        ds.delete_object(obj.name),
        ds.update_dataset(dataset.name, domain=make_domain(catchments=["cat-9"])),
        ds.stub.SealDataset(datasets_pb2.SealDatasetRequest(name=dataset.name)),
        ds.delete_dataset(dataset.name),
        ds.create_upload_url(dataset.name, "x", 1, "0" * 64),
    ]
    for attempt in attempts:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await attempt
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, attempt
    # metadata may still change; content may not
    assert (await ds.update_dataset(dataset.name, description="frozen")).description == "frozen"
    assert await ds.download_bytes(obj.name) == b"time,v\n2015-12-01 00:00:00,1\n"
    assert (await ds.seal_dataset(dataset.name)).state == SEALED  # the helper treats re-sealing as done


async def test_seal_detects_the_domain(ds):
    d = await ds.create_dataset(unique("det"), FORCING, domain_pb2.DATA_FORMAT_AORC_CSV)
    for cat in ("cat-1", "cat-2"):
        await ds.upload_bytes(d.name, f"{cat}.csv", b"time,precip_rate\n2015-12-01 00:00:00,0\n"
                                                    b"2015-12-01 01:00:00,0\n2015-12-01 02:00:00,0\n")
    sealed = await ds.seal_dataset(d.name)
    time = sealed.domain.continuous[0]
    assert (time.begin_time.ToJsonString(), time.end_time.ToJsonString()) == (
        "2015-12-01T00:00:00Z", "2015-12-01T03:00:00Z")
    assert list(sealed.domain.discrete[0].values) == ["cat-1", "cat-2"]


async def test_delete_removes_objects(ds, s3):
    d = await ds.create_dataset(unique("del"), FORCING)
    for i in range(3):
        await ds.upload_bytes(d.name, f"f{i}", b"x" * i)
    assert len(list(s3.list_objects("dmod", prefix=d.name + "/", recursive=True))) == 3
    await ds.seal_dataset(d.name)
    await ds.delete_dataset(d.name, force=True)
    assert list(s3.list_objects("dmod", prefix=d.name + "/", recursive=True)) == []
    for call in (ds.get_dataset(d.name), ds.download_bytes(object_name(d.name, "f1")), ds.list_objects(d.name)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_other_users_cannot_change_a_dataset(ds, dataset, stack):
    from pathlib import Path

    from dmod.services.runtime.auth import TokenIssuer

    token, _ = TokenIssuer(Path(stack.home, "keys/jwt.key").read_bytes(), 300).issue("mallory")
    mallory = (("authorization", f"Bearer {token}"),)
    # private by default: to mallory the dataset does not exist
    for call in (ds.stub.DeleteDataset(datasets_pb2.DeleteDatasetRequest(name=dataset.name), metadata=mallory),
                 ds.stub.GetDataset(datasets_pb2.GetDatasetRequest(name=dataset.name), metadata=mallory)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # shared with mallory: reading is fine, changing is not
    await ds.update_dataset(dataset.name, readers=["users/mallory"])
    got = await ds.stub.GetDataset(datasets_pb2.GetDatasetRequest(name=dataset.name), metadata=mallory)
    assert got.dataset.name == dataset.name and list(got.dataset.readers) == ["users/mallory"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.stub.DeleteDataset(datasets_pb2.DeleteDatasetRequest(name=dataset.name), metadata=mallory)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_large_domains_are_listed_in_part_but_matched_in_full(ds):
    from dmod.datasets_client import requirement

    cats = [f"cat-{i}" for i in range(1, 25_001)]
    d = await ds.create_dataset(f"big-{uuid.uuid4().hex[:8]}", FORCING, domain=make_domain(
        time=("2015-12-01", "2016-01-01"), catchments=cats))
    got = (await ds.get_dataset(d.name)).domain.discrete[0]
    assert got.value_count == 25_000 and len(got.values) == 20_000 and got.values[-1] == "cat-20000"
    listed = next(x for x in await ds.list_datasets(limit=20) if x.name == d.name).domain.discrete[0]
    assert listed.value_count == 25_000 and len(listed.values) == 1_000
    await ds.upload_bytes(d.name, "x", b"x")
    await ds.seal_dataset(d.name)
    reply = await ds.search(requirement(FORCING, domain=make_domain(time=("2015-12-01", "2015-12-02"),
                                                                    catchments=["cat-24999", "cat-25000"])))
    assert d.name in [c.dataset for c in reply.candidates if c.accepted]
    truncated = (await ds.get_dataset(d.name)).domain
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a truncated domain cannot be written back
        await ds.create_dataset(f"copy-{uuid.uuid4().hex[:8]}", FORCING, domain=truncated)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
