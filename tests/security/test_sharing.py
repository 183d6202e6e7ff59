"""The dataset sharing model: private by default; shared for reading with users, groups or everyone;
only the owner (and admins) change a dataset; a job reads only what its owner may read; monitor
events reach only the job's owner."""
from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from dmod.datasets_client import FORCING, DatasetsClient, make_domain, requirement
from dmod.errors import error_details
from dmod.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    datasets_pb2,
    domain_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    monitor_pb2,
    monitor_pb2_grpc,
)

from .authz import mint

PRIVATE, PUBLIC = datasets_pb2.DATASET_VISIBILITY_PRIVATE, datasets_pb2.DATASET_VISIBILITY_PUBLIC


def md(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def key(stack) -> bytes:
    return Path(stack.home, "keys/jwt.key").read_bytes()


def client(stack, key: bytes, user: str, roles=("user",)) -> DatasetsClient:
    return DatasetsClient(target=stack.gateway, metadata=md(mint(key, user, roles)))


async def code_of(coro) -> grpc.StatusCode:
    try:
        await coro
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_private_shared_with_a_user_public(stack, key):
    tag = uuid.uuid4().hex[:8]
    alice, bob, carol = f"alice-{tag}", f"bob-{tag}", f"carol-{tag}"
    need = make_domain(time=("2015-12-01", "2015-12-02"), catchments=["cat-1"])
    async with client(stack, key, alice) as a, client(stack, key, bob) as b, client(stack, key, carol) as c:
        d = await a.create_dataset(f"shared-{tag}", FORCING, 1, domain=need)
        assert d.visibility == PRIVATE and not d.readers
        await a.upload_bytes(d.name, "f.csv", b"1\n")
        obj = f"{d.name}/objects/f.csv"

        async def reads(who: DatasetsClient) -> list[grpc.StatusCode]:
            listed = await who.stub.ListDatasets(datasets_pb2.ListDatasetsRequest(owner=alice), metadata=who.metadata)
            found = await who.search(requirement(FORCING, domain=need, owner=alice))
            return [await code_of(who.get_dataset(d.name)), await code_of(who.list_objects(d.name)),
                    await code_of(who.download_bytes(obj)),
                    grpc.StatusCode.OK if any(x.name == d.name for x in listed.datasets) else grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.OK if any(x.dataset == d.name for x in found.candidates) else grpc.StatusCode.NOT_FOUND]

        async def changes(who: DatasetsClient) -> list[grpc.StatusCode]:
            return [await code_of(who.update_dataset(d.name, description="mine now")),
                    await code_of(who.update_dataset(d.name, readers=[f"users/{who_name[who]}"])),
                    await code_of(who.upload_bytes(d.name, "g.csv", b"2\n", retries=0)),
                    await code_of(who.delete_dataset(d.name, force=True))]

        who_name = {b: bob, c: carol}
        NF, PD, OK = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.OK
        assert await reads(b) == [NF] * 5
        assert await changes(b) == [NF, NF, NF, NF]  # uploads too: a stranger learns nothing of it

        d = await a.update_dataset(d.name, readers=[f"users/{bob}"])
        assert list(d.readers) == [f"users/{bob}"]
        assert await reads(b) == [OK] * 5
        assert await changes(b) == [PD] * 4
        assert await reads(c) == [NF] * 5

        await a.seal_dataset(d.name)
        d = await a.update_dataset(d.name, visibility=PUBLIC, readers=[])  # sharing a SEALED dataset is fine
        assert d.visibility == PUBLIC and not d.readers
        assert await reads(c) == [OK] * 5 and await reads(b) == [OK] * 5
        # a reader may change nothing (that it is SEALED matters only to its owner)
        assert await changes(c) == [PD] * 4

        await a.update_dataset(d.name, visibility=PRIVATE)
        assert await reads(c) == [NF] * 5 and await reads(b) == [NF] * 5
        # admins read and change everything
        async with client(stack, key, f"root-{tag}", ("admin",)) as admin:
            assert (await admin.get_dataset(d.name)).owner == alice
            await admin.update_dataset(d.name, description="checked by an admin")


async def test_shared_with_a_group(stack, key, channel):
    tag = uuid.uuid4().hex[:8]
    admin = md(mint(key, f"root-{tag}", ("admin",)))
    users = auth_pb2_grpc.AuthServiceStub(channel)
    member, outsider, group = f"member-{tag}", f"outsider-{tag}", f"hydro-{tag}"
    created = await users.CreateUser(auth_pb2.CreateUserRequest(username=member, password="correct horse",
                                                                groups=[group]), metadata=admin)
    assert list(created.user.groups) == [group] and list(created.user.roles) == ["user"]
    listed = await users.ListUsers(auth_pb2.ListUsersRequest(page_size=1000), metadata=admin)
    assert member in [u.username for u in listed.users]
    async with client(stack, key, f"owner-{tag}") as owner, client(stack, key, member) as m, \
            client(stack, key, outsider) as o:
        d = await owner.create_dataset(f"grouped-{tag}", FORCING, 1)
        d = await owner.update_dataset(d.name, readers=[f"groups/{group}"])
        assert (await m.get_dataset(d.name)).name == d.name
        assert await code_of(o.get_dataset(d.name)) == grpc.StatusCode.NOT_FOUND
        assert await code_of(m.update_dataset(d.name, description="x")) == grpc.StatusCode.PERMISSION_DENIED


async def test_sharing_is_validated(stack, key):
    async with client(stack, key, f"v-{uuid.uuid4().hex[:8]}") as a:
        d = await a.create_dataset(f"v-{uuid.uuid4().hex[:8]}", FORCING, 1)
        for readers in (["bob"], ["users/"], ["users/Bob"], ["teams/x"], [f"users/u{i}" for i in range(101)]):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await a.update_dataset(d.name, readers=readers)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert [v.field for v in error_details(err.value)["BadRequest"].field_violations] == ["dataset.readers"]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await a.stub.UpdateDataset(datasets_pb2.UpdateDatasetRequest(
                dataset=datasets_pb2.Dataset(name=d.name, visibility=7),
                update_mask=field_mask_pb2.FieldMask(paths=["visibility"])), metadata=a.metadata)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        created = await a.stub.CreateDataset(datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
            display_name=f"pub-{uuid.uuid4().hex[:8]}", category=domain_pb2.DATA_CATEGORY_FORCING, data_format=1,
            visibility=PUBLIC, readers=["groups/everyone"])), metadata=a.metadata)
        assert created.dataset.visibility == PUBLIC and list(created.dataset.readers) == ["groups/everyone"]


async def test_a_job_reads_only_what_its_owner_may_read(stack, key, channel):
    """Bob's job naming Alice's private dataset fails before anything runs; shared, it passes validation."""
    tag = uuid.uuid4().hex[:8]
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    async with client(stack, key, alice) as a:
        hf = await a.create_dataset(f"hf-{tag}", 0, domain_pb2.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC)
        await a.upload_bytes(hf.name, "hydrofabric.gpkg", b"not really a geopackage")
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    bob_md = md(mint(key, bob, ("user",)))
    spec = jobs_pb2.JobSpec(hydrofabric_dataset=hf.name, forcing_dataset=hf.name, realization_dataset=hf.name,
                            cpu_count=1, engine="embedded")
    spec.start_time.FromSeconds(1448928000)
    spec.end_time.FromSeconds(1449014400)
    job = (await jobs.CreateJob(jobs_pb2.CreateJobRequest(spec=spec), metadata=bob_md)).job

    async def ended(attempt: int) -> jobs_pb2.Job:
        for _ in range(300):
            got = (await jobs.GetJob(jobs_pb2.GetJobRequest(name=job.name), metadata=bob_md)).job
            if got.attempt == attempt and got.state in (jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_SUCCEEDED):
                return got
            await asyncio.sleep(0.2)
        raise AssertionError(f"{job.name} did not end")

    job = await ended(1)
    assert job.state == jobs_pb2.JOB_STATE_FAILED and job.state_reason == "VALIDATION_FAILED"
    assert f"NOT_FOUND: {hf.name} does not exist" in job.state_message
    assert not job.output_dataset and not job.resolved_datasets
    # shared with bob: the same job gets past the permission question (and stops at the bad file)
    async with client(stack, key, alice) as a:
        await a.update_dataset(hf.name, readers=[f"users/{bob}"])
    await jobs.RetryJob(jobs_pb2.RetryJobRequest(name=job.name), metadata=bob_md)
    job = await ended(2)
    assert job.state == jobs_pb2.JOB_STATE_FAILED and "NOT_FOUND" not in job.state_message, job.state_message


async def test_monitor_events_reach_only_the_jobs_owner(stack, key, channel):
    tag = uuid.uuid4().hex[:8]
    owner, other = md(mint(key, f"mon-owner-{tag}", ("user",))), md(mint(key, f"mon-other-{tag}", ("user",)))
    admin = md(mint(key, f"mon-admin-{tag}", ("admin",)))
    monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    seen: dict[str, list[str]] = {"owner": [], "other": [], "admin": []}

    async def watch(who: str, metadata) -> None:
        async for reply in monitor.WatchEvents(monitor_pb2.WatchEventsRequest(), metadata=metadata):
            seen[who].append(reply.event.job)

    tasks = [asyncio.create_task(watch(w, m)) for w, m in (("owner", owner), ("other", other), ("admin", admin))]
    await asyncio.sleep(1.0)
    spec = jobs_pb2.JobSpec(engine="noop", cpu_count=1)
    job = (await jobs.CreateJob(jobs_pb2.CreateJobRequest(spec=spec), metadata=owner)).job
    try:
        for _ in range(150):
            if job.name in seen["owner"] and job.name in seen["admin"]:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert job.name in seen["owner"] and job.name in seen["admin"], seen
    assert job.name not in seen["other"]
    assert not [j for j in seen["owner"] if j != job.name]  # only its own jobs' events
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in monitor.WatchEvents(monitor_pb2.WatchEventsRequest(job=job.name), metadata=other):
            break
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
