"""SearchDatasets: requirement → best dataset, with every other candidate's rejection reasons."""
from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from dmod.datasets_client import FORCING, HYDROFABRIC, DatasetsClient, make_domain, requirement
from dmod.services.runtime.auth import TokenIssuer
from dmod.v1 import datasets_pb2
from dmod.v1 import domain_pb2 as d

CATS = [f"cat-{i}" for i in range(1, 21)]


def user_client(stack, gateway, user: str) -> DatasetsClient:
    token, _ = TokenIssuer(Path(stack.home, "keys/jwt.key").read_bytes(), 600).issue(user)
    return DatasetsClient(target=gateway, metadata=(("authorization", f"Bearer {token}"),))


async def put(client: DatasetsClient, label: str, fmt: int, time, cats, *, seal: bool = True, category: int = FORCING,
              labels=None) -> str:
    created = await client.create_dataset(f"{label}-{uuid.uuid4().hex[:6]}", category, fmt,
                                          domain=make_domain(time=time, catchments=cats), labels=labels)
    await client.upload_bytes(created.name, "data.bin", label.encode())
    if seal:
        await client.seal_dataset(created.name)
    return created.name


@pytest.fixture
async def scenario(stack, gateway):
    async with user_client(stack, gateway, f"matcher-{uuid.uuid4().hex[:8]}") as client:
        names = {
            "A": await put(client, "short", d.DATA_FORMAT_AORC_CSV, ("2015-12-01", "2015-12-10"), CATS),
            "B": await put(client, "nc-old", d.DATA_FORMAT_NETCDF_FORCING, ("2015-12-01", "2015-12-31"), CATS),
            "B2": await put(client, "nc-new", d.DATA_FORMAT_NETCDF_FORCING, ("2015-12-01", "2015-12-31"), CATS),
            "C": await put(client, "wide", d.DATA_FORMAT_AORC_CSV, ("2015-11-01", "2016-01-31"),
                           [f"cat-{i}" for i in range(1, 51)]),
            "D": await put(client, "few", d.DATA_FORMAT_AORC_CSV, ("2015-12-01", "2015-12-31"), CATS[:3]),
            "E": await put(client, "open", d.DATA_FORMAT_AORC_CSV, ("2015-12-01", "2015-12-30"), CATS, seal=False),
            "F": await put(client, "hf", d.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC, None, CATS,
                           category=HYDROFABRIC),
        }
        yield client, names


def by_dataset(reply) -> dict:
    return {c.dataset: c for c in reply.candidates}


async def test_best_dataset_and_reasons(scenario):
    client, n = scenario
    need = make_domain(time=("2015-12-01", "2015-12-30"), catchments=["cat-1", "cat-4", "cat-5", "cat-9"])
    reply = await client.search(requirement(FORCING, domain=need))
    assert reply.best.name == n["B2"]  # tightest superset; newest of the two identical ones
    cands = by_dataset(reply)
    assert n["F"] not in cands  # another category is not a candidate
    assert [c.dataset for c in reply.candidates if c.accepted] == [n["B2"], n["B"], n["C"]]
    assert cands[n["B"]].reasons[0].startswith("fulfils the requirement; ranked 2 of 3")
    assert cands[n["A"]].reasons == ["time range 2015-12-01..2015-12-10 does not cover 2015-12-01..2015-12-30"]
    assert cands[n["D"]].reasons == ["missing catchments cat-4, cat-5, cat-9"]
    assert cands[n["E"]].reasons == ["dataset is OPEN (only SEALED datasets are used by jobs)"]


async def test_format_requirement(scenario):
    client, n = scenario
    need = make_domain(time=("2015-12-01", "2015-12-30"), catchments=["cat-4"])
    reply = await client.search(requirement(FORCING, d.DATA_FORMAT_AORC_CSV, need))
    assert reply.best.name == n["C"]
    assert by_dataset(reply)[n["B2"]].reasons == ["format NETCDF_FORCING does not satisfy AORC_CSV"]
    # a format alone implies its category
    assert (await client.search(requirement(0, d.DATA_FORMAT_NETCDF_FORCING, need))).best.name == n["B2"]


async def test_nothing_fits(scenario):
    client, n = scenario
    need = make_domain(time=("2016-06-01", "2016-07-01"), catchments=[f"cat-{i}" for i in range(1, 40)])
    reply = await client.search(requirement(FORCING, domain=need))
    assert not reply.best.name
    assert all(not c.accepted for c in reply.candidates) and len(reply.candidates) == 6
    assert "missing catchments cat-4, cat-5, cat-6, cat-7, cat-8 (+31 more)" in by_dataset(reply)[n["D"]].reasons
    assert by_dataset(reply)[n["C"]].reasons == [
        "time range 2015-11-01..2016-01-31 does not cover 2016-06-01..2016-07-01"]


async def test_scope_owner_and_public(scenario, stack, gateway):
    client, n = scenario
    need = make_domain(time=("2015-12-01", "2015-12-30"), catchments=["cat-1", "cat-9"])
    name = f"other-{uuid.uuid4().hex[:8]}"
    async with user_client(stack, gateway, name) as other:
        assert not (await other.search(requirement(FORCING, domain=need))).best.name
        owner = (await client.get_dataset(n["B2"])).owner
        # private datasets are no candidates for others, even when they name the owner
        scoped = await other.search(requirement(FORCING, domain=need, owner=owner))
        assert not scoped.best.name and not scoped.candidates
        await client.update_dataset(n["B2"], readers=[f"users/{name}"])  # shared with `other`
        scoped = await other.search(requirement(FORCING, domain=need, owner=owner))
        assert scoped.best.name == n["B2"] and len(scoped.candidates) == 1
        await client.update_dataset(n["B2"], readers=[])
        await client.update_dataset(n["C"], labels={"public": "true"})  # the legacy label: PUBLIC
        assert (await other.search(requirement(FORCING, domain=need))).best.name == n["C"]
        assert (await client.get_dataset(n["C"])).visibility == datasets_pb2.DATASET_VISIBILITY_PUBLIC


async def test_requirement_is_validated(scenario):
    client, _ = scenario
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.search(requirement(0))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
