"""Bad input never becomes INTERNAL or UNKNOWN, and one client's bad request never breaks another's:
through the gateway (Envoy) of a real local stack."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from dmod.errors import error_details
from dmod.services.runtime import page_tokens
from dmod.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    datasets_pb2,
    datasets_pb2_grpc,
    domain_pb2,
    evaluation_pb2,
    evaluation_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
)

from . import fuzz

# The default run sends every RPC at least this many bodies (all targeted cases plus random ones up
# to the count); `make chaos` runs fuzz.run_fuzz with ≥ 300 as well.
MESSAGES = int(os.environ.get("DMOD_FUZZ_MESSAGES", "300"))


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    bad = error_details(error).get("BadRequest")
    return {v.field: v.description for v in bad.field_violations} if bad else {}


def reason(error: grpc.aio.AioRpcError) -> str:
    info = error_details(error).get("ErrorInfo")
    return info.reason if info else ""


def metadata_size(error: grpc.aio.AioRpcError) -> int:
    return len(error.details() or "") + sum(len(k) + len(v) for k, v in error.trailing_metadata() or ())


def raw(channel, path: str, kind: str = "unary"):
    factory = {"unary": channel.unary_unary, "server": channel.unary_stream, "client": channel.stream_unary}[kind]
    return factory(path, request_serializer=None, response_deserializer=None)


async def fails(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        result = await call if not hasattr(call, "__aiter__") else [m async for m in call]
        raise AssertionError(f"expected an error, got {result!r:.200}")
    return caught.value


@pytest.fixture
async def dataset(channel) -> datasets_pb2.Dataset:
    stub = datasets_pb2_grpc.DatasetServiceStub(channel)
    return (await stub.CreateDataset(datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
        display_name=f"bad-input-{uuid.uuid4().hex[:8]}", data_format=domain_pb2.DATA_FORMAT_AORC_CSV)))).dataset


# ---- the fuzzer ---------------------------------------------------------------------------------
async def test_fuzz_every_rpc_yields_no_internal_or_unknown(gateway):
    summary = await fuzz.run_fuzz_async(gateway, MESSAGES)
    methods = {fuzz.path_of(m) for m in fuzz.rpcs()}
    assert len(methods) >= 39 and set(summary["rpcs"]) == methods  # every RPC of the contract, new ones too
    short = {rpc: sum(codes.values()) for rpc, codes in summary["rpcs"].items() if sum(codes.values()) < MESSAGES}
    assert not short, short
    assert summary["internal_or_unknown"] == 0, (summary["codes"], summary["bad"][:20])
    assert summary["healthy_after"] and summary["canary_ok"] > 0 and summary["canary_failures"] == 0, summary
    assert "UNAVAILABLE" not in summary["codes"], summary["bad"][:20]  # no connection was lost to a bad request
    print(json.dumps({k: summary[k] for k in ("total", "codes", "seconds", "messages_per_rpc")}))


# ---- undecodable bodies -------------------------------------------------------------------------
UNDECODABLE = [b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x02\xc3\x28"]


@pytest.mark.parametrize("body", UNDECODABLE)
async def test_undecodable_bodies_are_invalid_argument_everywhere(channel, dataset, body):
    cases = [raw(channel, "/dmod.v1.DatasetService/GetDataset")(body, timeout=10),
             raw(channel, "/dmod.v1.AuthService/Login")(body, timeout=10),  # before authentication too
             raw(channel, "/dmod.v1.JobService/WatchJob", "server")(body, timeout=10),
             raw(channel, "/dmod.v1.DatasetService/DownloadObject", "server")(body, timeout=10),
             raw(channel, "/dmod.v1.DatasetService/UploadObject", "client")(iter([body]), timeout=10),
             raw(channel, "/dmod.v1.DatasetService/UploadObjects", "client")(iter([body]), timeout=10),
             raw(channel, "/dmod.v1.JobService/ReportWorkerEvents", "client")(iter([body]), timeout=10)]
    first = datasets_pb2.UploadObjectsRequest(parent=dataset.name).SerializeToString()
    cases.append(raw(channel, "/dmod.v1.DatasetService/UploadObjects", "client")(iter([first, body]), timeout=10))
    for call in cases:
        error = await fails(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
        assert reason(error) == "MALFORMED_REQUEST" and list(violations(error)) == ["request"]


# ---- values no service may see ------------------------------------------------------------------
async def test_nul_bytes_and_bad_timestamps_are_named(channel, dataset):
    ds = datasets_pb2_grpc.DatasetServiceStub(channel)
    error = await fails(ds.CreateDataset(datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
        display_name="nul\x00name", labels={"k": "v\x00"}), request_id="r\x00")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(error)) == {"dataset.display_name", 'dataset.labels["k"]', "request_id"}
    request = jobs_pb2.CreateJobRequest(spec=jobs_pb2.JobSpec(hydrofabric_dataset=dataset.name))
    request.spec.start_time.nanos = -1
    request.spec.end_time.seconds = 253_402_300_800
    error = await fails(jobs_pb2_grpc.JobServiceStub(channel).CreateJob(request))
    assert set(violations(error)) == {"spec.start_time", "spec.end_time"}
    error = await fails(ds.ListObjects(datasets_pb2.ListObjectsRequest(parent=dataset.name, prefix="a\x00")))
    assert violations(error) == {"prefix": "must not contain NUL characters"}


async def test_a_huge_bad_value_never_breaks_other_clients(gateway, channel):
    """A 1 MiB bad name used to come back as 1 MiB of error metadata: Envoy dropped the upstream
    connection (GOAWAY) and unrelated calls failed UNAVAILABLE."""
    huge = "n" * (1 << 20)
    options = [("grpc.max_send_message_length", 8 << 20)]
    async with grpc.aio.insecure_channel(gateway, options=options) as attacker_channel:
        attacker = datasets_pb2_grpc.DatasetServiceStub(attacker_channel)
        bystander = datasets_pb2_grpc.DatasetServiceStub(channel)

        async def attack() -> grpc.aio.AioRpcError:
            return await fails(attacker.CreateDataset(datasets_pb2.CreateDatasetRequest(
                dataset=datasets_pb2.Dataset(display_name=huge)), timeout=30))

        async def bystand() -> None:
            for _ in range(10):
                await bystander.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=1), timeout=30)

        results = await asyncio.gather(*[attack() for _ in range(20)], *[bystand() for _ in range(20)],
                                       return_exceptions=True)
    errors, bystanders = results[:20], results[20:]
    assert all(b is None for b in bystanders), [b for b in bystanders if b is not None][:3]
    for error in errors:
        assert isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert metadata_size(error) < 2048, metadata_size(error)
    # a name under the guard's limit that a service rejects itself: its echo is cut too
    long_name = "datasets/" + "x" * 1000
    error = await fails(bystander.GetDataset(datasets_pb2.GetDatasetRequest(name=long_name)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x" * 100 not in error.details() and metadata_size(error) < 1024


# ---- page tokens --------------------------------------------------------------------------------
def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


ZERO = "00000000-0000-0000-0000-000000000000"
CRAFTED = ["!!!", "AAAA", _b64("null"), _b64("[]"), _b64("{}"), _b64('{"k":1,"f":"x"}'),
           _b64(f'[1e400, "{ZERO}"]'), _b64(f'[1e30, "{ZERO}"]'), _b64(f'[{"9" * 400}, "{ZERO}"]'),
           _b64('{"t":"0001-01-01T00:00:00+14:00","i":"x\\u0000","f":"x"}'), _b64("[" * 3000 + "]" * 3000)]


async def test_crafted_page_tokens_are_invalid_argument(channel, dataset):
    ds = datasets_pb2_grpc.DatasetServiceStub(channel)
    calls = {
        "ListDatasets": lambda t: ds.ListDatasets(datasets_pb2.ListDatasetsRequest(page_token=t)),
        "ListObjects": lambda t: ds.ListObjects(datasets_pb2.ListObjectsRequest(parent=dataset.name, page_token=t)),
        "ListJobs": lambda t: jobs_pb2_grpc.JobServiceStub(channel).ListJobs(jobs_pb2.ListJobsRequest(page_token=t)),
        "ListEvaluations": lambda t: evaluation_pb2_grpc.EvaluationServiceStub(channel).ListEvaluations(
            evaluation_pb2.ListEvaluationsRequest(page_token=t)),
        "ListUsers": lambda t: auth_pb2_grpc.AuthServiceStub(channel).ListUsers(auth_pb2.ListUsersRequest(page_token=t)),
    }
    # tokens signed by the services' own encoders for positions no row can have
    own = [page_tokens.encode(["9999-12-31T23:59:59-14:00", ZERO], {}),
           page_tokens.encode([1e300, "not-a-uuid"], {"owner": None, "job": ""}),
           page_tokens.encode([float("nan"), ZERO], {"owner": None, "job": ""}),
           page_tokens.encode(["a\x00"], {"parent": dataset.name, "prefix": ""})]
    for name, call in calls.items():
        for token in CRAFTED + own:
            error = await fails(call(token))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, token[:40], error.code(), error.details())
            assert list(violations(error)) == ["page_token"], (name, token[:40])


async def test_page_tokens_are_bound_to_their_filter(channel):
    ds = datasets_pb2_grpc.DatasetServiceStub(channel)
    label = {"bound": uuid.uuid4().hex[:8]}
    for _ in range(2):
        await ds.CreateDataset(datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
            display_name=f"bound-{uuid.uuid4().hex[:8]}", data_format=domain_pb2.DATA_FORMAT_AORC_CSV, labels=label)))
    page = await ds.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=1, labels=label))
    assert page.next_page_token
    again = await ds.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=1, labels=label,
                                                                   page_token=page.next_page_token))
    assert len(again.datasets) == 1 and again.datasets[0].name != page.datasets[0].name
    error = await fails(ds.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=1, labels={"other": "x"},
                                                                         page_token=page.next_page_token)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in violations(error)
    # evaluations: a token for one job's list is refused for another's (the caller is the local admin)
    evaluations = evaluation_pb2_grpc.EvaluationServiceStub(channel)
    token = page_tokens.encode(["2024-01-01T00:00:00+00:00", ZERO], {"owner": None, "job": ""})
    await evaluations.ListEvaluations(evaluation_pb2.ListEvaluationsRequest(page_token=token))  # accepted
    error = await fails(evaluations.ListEvaluations(evaluation_pb2.ListEvaluationsRequest(
        job=f"jobs/{uuid.uuid4()}", page_token=token)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "different query" in violations(error)["page_token"]


# ---- tokens signed with the real key but not shaped like ours -----------------------------------
@pytest.mark.parametrize("claims", [{}, {"sub": 42}, {"sub": ""}, {"sub": "local", "roles": "admin"},
                                    {"sub": "local", "job": {"id": 1}}])
async def test_real_key_tokens_with_bad_claims_are_unauthenticated(stack, channel, claims):
    key = serialization.load_pem_private_key(Path(stack.home, "keys/jwt.key").read_bytes(), password=None)
    now = int(time.time())
    token = jwt.encode({"iss": "dmod", "iat": now, "exp": now + 300, **claims}, key, algorithm="EdDSA")
    metadata = (("authorization", f"Bearer {token}"),)
    stubs = [auth_pb2_grpc.AuthServiceStub(channel).GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata),
             datasets_pb2_grpc.DatasetServiceStub(channel).ListDatasets(datasets_pb2.ListDatasetsRequest(),
                                                                        metadata=metadata)]
    for call in stubs:
        error = await fails(call)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, (claims, error.code(), error.details())
        assert reason(error) == "TOKEN_INVALID"


async def test_evaluation_pages_walk_every_row_once(channel, settings):
    """The validated, filter-bound evaluation tokens still page through real rows: equal create
    times (ties broken by id) and microsecond times included."""
    import asyncpg

    job = f"jobs/{uuid.uuid4()}"
    base = "2024-03-01 12:00:00.123456+00"
    times = [base, base, "2024-03-01 12:00:00.123457+00", "2024-03-02 00:00:00+00", "2023-12-31 23:59:59.999999+00"]
    ids = [uuid.uuid4() for _ in times]
    conn = await asyncpg.connect(settings.database_url)
    try:
        for eid, when in zip(ids, times, strict=True):
            await conn.execute(
                "INSERT INTO evaluations (id, owner, spec, state, job, create_time) VALUES ($1, 'local', $2, $3, $4, "
                "$5::text::timestamptz)", eid, evaluation_pb2.EvaluationSpec().SerializeToString(),
                evaluation_pb2.EVALUATION_STATE_FAILED, job, when)
    finally:
        await conn.close()
    stub = evaluation_pb2_grpc.EvaluationServiceStub(channel)
    seen, token, pages = [], "", 0
    while pages < 10:
        reply = await stub.ListEvaluations(evaluation_pb2.ListEvaluationsRequest(job=job, page_size=2, page_token=token))
        seen += [e.name for e in reply.evaluations]
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(f"evaluations/{i}" for i in ids) and len(seen) == len(set(seen)) == 5
    assert pages == 3
