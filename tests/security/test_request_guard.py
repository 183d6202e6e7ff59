"""Fast unit tests of the input layer: request guard, bounded errors, page tokens, token claims and
the interceptor's decoding (an in-process server, no stack)."""
from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import duration_pb2

from dmod.errors import error_details
from dmod.services.datasets import pagination as dataset_pages
from dmod.services.datasets.transfer.wire import parse_upload_request
from dmod.services.jobs import pagination as job_pages
from dmod.services.runtime import page_tokens, request_guard
from dmod.services.runtime.auth import TokenIssuer, TokenVerifier
from dmod.services.runtime.errors import (
    DESCRIPTION_LIMIT,
    FIELD_LIMIT,
    MESSAGE_LIMIT,
    DmodError,
    InvalidArgument,
    Unauthenticated,
    bounded,
    from_downstream,
    quote,
)
from dmod.v1 import datasets_pb2, domain_pb2, evaluation_pb2, jobs_pb2

GOOD_ID = "datasets/0b5d3f9e-6d8e-4b3e-9a39-1a1c1e1f1a1b"


def problems(message) -> dict[str, str]:
    return dict(request_guard.violations(message))


# ---- request guard ------------------------------------------------------------------------------
def test_plausible_requests_pass():
    create = datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
        display_name="forcing-2015", description="é" * 10_000, labels={"project": "demo"},
        derived_from=[GOOD_ID], data_format=domain_pb2.DATA_FORMAT_AORC_CSV), request_id=str(uuid.uuid4()))
    job = jobs_pb2.CreateJobRequest(spec=jobs_pb2.JobSpec(hydrofabric_dataset=GOOD_ID, cpu_count=2,
                                                          catchment_ids=[f"cat-{i}" for i in range(100)]))
    job.spec.start_time.FromDatetime(dt.datetime(1, 1, 1))  # the very edges are fine
    job.spec.end_time.seconds, job.spec.end_time.nanos = request_guard.TIMESTAMP_MAX_SECONDS, 999_999_999
    job.spec.retry_policy.initial_backoff.seconds = -request_guard.DURATION_MAX_SECONDS
    assert request_guard.violations(create) == [] and request_guard.violations(job) == []
    request_guard.check(create)


@pytest.mark.parametrize("where", ["display_name", "description", "labels-key", "labels-value", "derived_from",
                                   "request_id", "nested-domain"])
def test_nul_anywhere_is_named(where):
    req = datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(display_name="ok"))
    bad = "a\x00b"
    expected = {"display_name": "dataset.display_name", "description": "dataset.description",
                "labels-key": 'dataset.labels["a\\0b"]', "labels-value": 'dataset.labels["k"]',
                "derived_from": "dataset.derived_from[1]", "request_id": "request_id"}
    if where == "display_name":
        req.dataset.display_name = bad
    elif where == "description":
        req.dataset.description = bad
    elif where == "labels-key":
        req.dataset.labels[bad] = "v"
    elif where == "labels-value":
        req.dataset.labels["k"] = bad
    elif where == "derived_from":
        req.dataset.derived_from.extend([GOOD_ID, bad])
    elif where == "request_id":
        req.request_id = bad
    else:
        req = datasets_pb2.SearchDatasetsRequest()
        req.requirement.domain.discrete.add(values=["cat-1", "cat-2", bad])
        assert problems(req) == {"requirement.domain.discrete[0].values[2]": "must not contain NUL characters"}
        return
    found = problems(req)
    assert found == {expected[where]: ("key " if where == "labels-key" else "") + "must not contain NUL characters"}


def test_string_limits_short_long_and_bytes_exempt():
    short = request_guard.SHORT_LIMIT
    long = request_guard.LONG_LIMIT
    assert problems(datasets_pb2.GetDatasetRequest(name="n" * short)) == {}
    assert problems(datasets_pb2.GetDatasetRequest(name="n" * (short + 1))) == {
        "name": f"is longer than {short} bytes"}
    # bytes, not characters: 342 three-byte characters are 1026 bytes
    assert "name" in problems(datasets_pb2.GetDatasetRequest(name="€" * 342))
    assert problems(datasets_pb2.GetDatasetRequest(name="€" * 341)) == {}
    free = datasets_pb2.Dataset(description="d" * long)
    assert problems(free) == {}
    free.description += "d"
    assert problems(free) == {"description": f"is longer than {long} bytes"}
    assert problems(datasets_pb2.UploadObjectRequest(chunk=b"\x00" * (2 << 20))) == {}


def test_service_validated_paths_keep_their_own_errors():
    # names.path_problem reports NUL and length of object paths (INVALID_OBJECT_PATH); the guard
    # only caps them at LONG_LIMIT
    assert problems(datasets_pb2.UploadObjectsRequest(header=datasets_pb2.UploadObjectsHeader(path="a\x00b"))) == {}
    meta = datasets_pb2.UploadMetadata(path="p" * (request_guard.LONG_LIMIT + 1))
    assert problems(meta) == {"path": f"is longer than {request_guard.LONG_LIMIT} bytes"}


@pytest.mark.parametrize("seconds,nanos,problem", [
    (-62_135_596_801, 0, "must be within 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z"),
    (253_402_300_800, 0, "must be within 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z"),
    (0, -1, "nanos must be within 0..999999999"),
    (0, 1_000_000_000, "nanos must be within 0..999999999"),
])
def test_timestamps_out_of_range(seconds, nanos, problem):
    req = jobs_pb2.CreateJobRequest()
    req.spec.start_time.seconds, req.spec.start_time.nanos = seconds, nanos
    assert problems(req) == {"spec.start_time": problem}


@pytest.mark.parametrize("seconds,nanos", [(315_576_000_001, 0), (-315_576_000_001, 0), (1, -1), (-1, 1),
                                           (0, 1_000_000_000)])
def test_durations_out_of_range(seconds, nanos):
    req = jobs_pb2.CreateJobRequest()
    req.spec.retry_policy.initial_backoff.CopyFrom(duration_pb2.Duration(seconds=seconds, nanos=nanos))
    assert list(problems(req)) == ["spec.retry_policy.initial_backoff"]


def test_unknown_enum_values():
    req = datasets_pb2.ListDatasetsRequest(category=12345)
    assert problems(req) == {"category": "12345 is not a known DataCategory value"}
    jobs = jobs_pb2.ListJobsRequest(states=[jobs_pb2.JOB_STATE_RUNNING, -1])
    assert problems(jobs) == {"states[1]": "-1 is not a known JobState value"}


def test_errors_never_echo_the_value_and_are_capped():
    secret = "S3CR3T" * 200_000  # ~1.2 MB
    req = datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
        display_name=secret, labels={secret: "x", **{f"k{i}\x00": "v" for i in range(50)}}))
    with pytest.raises(InvalidArgument) as caught:
        request_guard.check(req)
    status = caught.value.to_status().SerializeToString()
    text = status.decode("utf-8", "replace")
    # the value never; a map key only as its first KEY_ECHO characters, in the field path
    assert len(status) < 4096 and text.count("S3CR3T") <= 2 * (request_guard.KEY_ECHO // 6 + 1)
    assert len(caught.value.violations) == request_guard.MAX_VIOLATIONS
    assert caught.value.reason == "INVALID_FIELD_VALUE"


def test_upload_chunk_views_are_not_walked():
    view = parse_upload_request(datasets_pb2.UploadObjectRequest(chunk=b"x" * 1024).SerializeToString())
    assert not hasattr(view, "ListFields") and request_guard.violations(view) == []


def test_guard_is_cheap():
    req = datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
        display_name="forcing", description="text " * 40, labels={"a": "b"}, derived_from=[GOOD_ID]),
        request_id="r")
    request_guard.check(req)
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        request_guard.check(req)
    per_message = (time.perf_counter() - start) / n
    assert per_message < 100e-6, per_message  # ~5 µs measured (bench/request_guard.py); generous on busy CI


# ---- bounded errors -----------------------------------------------------------------------------
def test_bounded_and_quote():
    assert bounded("short", 10) == "short"
    cut = bounded("é" * 100, 11)
    assert cut == "é" * 5 + "…" and len(cut.encode()) <= 11 + 3
    quoted = quote("\x00" * 1000)
    assert quoted.startswith("'\\x00") and quoted.endswith("…") and len(quoted) < 300


def test_every_error_text_is_bounded():
    huge = "x" * (1 << 20)
    bad = InvalidArgument([(huge, huge)] * 100)
    assert all(len(f) <= FIELD_LIMIT + 3 and len(d) <= DESCRIPTION_LIMIT + 3 for f, d in bad.violations)
    assert len(bad.violations) == 21 and bad.violations[-1] == ("request", "and 80 more violations")
    assert len(bad.to_status().SerializeToString()) < 16_384
    other = DmodError(huge, metadata={f"k{i}": huge for i in range(100)})
    assert len(other.message) <= MESSAGE_LIMIT + 3 and len(other.metadata) <= 16
    assert len(other.to_status().SerializeToString()) < 4096


class _Downstream(grpc.aio.AioRpcError):
    def __init__(self, code, details):
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize("code,expected", [
    (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND),
    (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT),
    (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.PERMISSION_DENIED),
    (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE),
    (grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE),
    (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE),
])
def test_downstream_errors_keep_their_meaning_and_are_bounded(code, expected):
    mapped = from_downstream(_Downstream(code, "d" * 100_000), "spec.hydrofabric_dataset")
    assert mapped.code == expected
    assert len(mapped.to_status().SerializeToString()) < 2048


# ---- page tokens --------------------------------------------------------------------------------
def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


ZERO = "00000000-0000-0000-0000-000000000000"
CRAFTED = ["!!!", "A", "=", "😀", "a" * 5000, _b64("null"), _b64("[]"), _b64("{}"), _b64('{"k":1,"f":"x"}'),
           _b64('{"k":[],"f":"x","extra":1}'), _b64("[" * 10_000 + "]" * 10_000), _b64('{"f":"x"}')]


@pytest.mark.parametrize("token", CRAFTED)
def test_crafted_dataset_tokens_are_invalid_argument(token):
    with pytest.raises(InvalidArgument) as caught:
        dataset_pages.decode(token, {"owner": ""}, schema=(page_tokens.timestamp, page_tokens.uuid_value))
    assert caught.value.violations[0][0] == "page_token"


@pytest.mark.parametrize("key", [["9999-12-31T23:59:59-14:00", ZERO], ["0001-01-01T00:00:00+14:00", ZERO],
                                 ["not a time", ZERO], ["2020-01-01T00:00:00", "nope"], [1e300, ZERO],
                                 [None, None], ["2020-01-01T00:00:00"], ["2020-01-01T00:00:00", ZERO, "x"],
                                 [["nested"], {"a": 1}]])
def test_tokens_signed_by_our_encoder_with_impossible_keys(key):
    token = dataset_pages.encode(key, {"owner": ""})
    with pytest.raises(InvalidArgument):
        dataset_pages.decode(token, {"owner": ""}, schema=(page_tokens.timestamp, page_tokens.uuid_value))


def test_good_tokens_round_trip_and_other_filters_are_refused():
    when = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    token = dataset_pages.encode([when.isoformat(), ZERO], {"owner": "a"})
    assert dataset_pages.decode(token, {"owner": "a"}, schema=(page_tokens.timestamp, page_tokens.uuid_value)) == [
        when, uuid.UUID(ZERO)]
    with pytest.raises(InvalidArgument, match="different query"):
        dataset_pages.decode(token, {"owner": "b"}, schema=(page_tokens.timestamp, page_tokens.uuid_value))
    text_token = dataset_pages.encode(["dir/a\x00"], {"p": 1})
    with pytest.raises(InvalidArgument):
        dataset_pages.decode(text_token, {"p": 1}, schema=(page_tokens.text,))


@pytest.mark.parametrize("value", [1e400, float("nan"), True, "1", 1e30, -1e30, None])
def test_epoch_positions_are_finite_and_in_range(value):
    token = page_tokens.encode([value, ZERO], {"owner": None, "job": ""})
    with pytest.raises(InvalidArgument):
        page_tokens.decode(token, {"owner": None, "job": ""}, schema=(page_tokens.epoch_seconds, page_tokens.uuid_value))


@pytest.mark.parametrize("doc", [{"t": "2020-01-01T00:00:00+00:00", "i": "a\x00", "f": "d"},
                                 {"t": "2020-01-01T00:00:00+00:00", "i": 5, "f": "d"},
                                 {"t": 1, "i": "a", "f": "d"},
                                 {"t": "0001-01-01T00:00:00+14:00", "i": "a", "f": "d"},
                                 {"t": "2020-01-01T00:00:00+00:00", "i": "a"},
                                 {"t": "2020-01-01T00:00:00+00:00", "i": "a", "f": "d", "x": 1},
                                 {"t": "2020-01-01T00:00:00+00:00", "i": "", "f": "d"},
                                 ["2020", "a", "d"]])
def test_crafted_job_tokens_are_invalid_argument(doc):
    with pytest.raises(InvalidArgument) as caught:
        job_pages.decode(_b64(json.dumps(doc)), "d")
    assert caught.value.violations[0][0] == "page_token"


def test_job_tokens_round_trip():
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert job_pages.decode(job_pages.encode(when, "abc", "f1"), "f1") == (when, "abc")
    naive = job_pages.decode(_b64(json.dumps({"t": "2024-01-02T03:04:05", "i": "abc", "f": "f1"})), "f1")
    assert naive[0].tzinfo is not None


# ---- token claims -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keypair():
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, private, public


def _signed(key, **claims) -> str:
    now = int(time.time())
    base = {"iss": "dmod", "iat": now, "exp": now + 60}
    base.update(claims)
    return "Bearer " + jwt.encode({k: v for k, v in base.items() if v is not ...}, key, algorithm="EdDSA")


@pytest.mark.parametrize("claims", [{}, {"sub": ""}, {"sub": 7}, {"sub": ["a"]}, {"sub": "a\x00b"},
                                    {"sub": "u", "roles": "admin"}, {"sub": "u", "roles": [1]},
                                    {"sub": "u", "job": 5}, {"sub": "u", "job": "x"}, {"sub": "u", "exp": ...},
                                    {"sub": "u", "exp": "soon"}, {"sub": "u", "iss": "other"}])
def test_real_key_tokens_with_bad_claims_are_unauthenticated(keypair, claims):
    key, _, public = keypair
    verifier = TokenVerifier(public, required=True, default_user="local")
    with pytest.raises(Unauthenticated) as caught:
        verifier.verify(_signed(key, **claims))
    assert caught.value.reason == "TOKEN_INVALID"


def test_issued_tokens_still_verify(keypair):
    _, private, public = keypair
    issuer, verifier = TokenIssuer(private, 60), TokenVerifier(public, required=True, default_user="local")
    user = verifier.verify("Bearer " + issuer.issue("alice", ["admin"])[0])
    worker = verifier.verify("Bearer " + issuer.issue("alice", job=f"jobs/{uuid.uuid4()}", extra={"attempt": 1})[0])
    assert user.user == "alice" and user.is_admin and worker.job.startswith("jobs/") and worker.claims["attempt"] == 1


# ---- the interceptor: decoding and the guard before any service code ----------------------------
@pytest.fixture
async def probe_server():
    """An in-process DMOD server (the real runtime interceptor) with a unary, a server-streaming and
    a client-streaming method taking dmod.v1 messages, and one raising a downstream error."""
    from dmod.services.runtime.server import Server
    from dmod.services.runtime.settings import Settings

    seen: list = []

    async def unary(request, context):
        seen.append(request)
        return datasets_pb2.GetDatasetResponse()

    async def server_stream(request, context):
        seen.append(request)
        yield evaluation_pb2.WatchEvaluationResponse()

    async def client_stream(requests, context):
        async for request in requests:
            seen.append(request)
        return datasets_pb2.UploadObjectsResponse()

    async def nested(request, context):
        if request.name == "store":
            import asyncpg
            raise asyncpg.exceptions.NumericValueOutOfRangeError("value out of range")
        raise _Downstream(grpc.StatusCode.NOT_FOUND, "datasets/x does not exist")

    def add(server) -> None:
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=datasets_pb2.GetDatasetRequest.FromString,
                response_serializer=datasets_pb2.GetDatasetResponse.SerializeToString),
            "ServerStream": grpc.unary_stream_rpc_method_handler(
                server_stream, request_deserializer=evaluation_pb2.WatchEvaluationRequest.FromString,
                response_serializer=evaluation_pb2.WatchEvaluationResponse.SerializeToString),
            "ClientStream": grpc.stream_unary_rpc_method_handler(
                client_stream, request_deserializer=datasets_pb2.UploadObjectsRequest.FromString,
                response_serializer=datasets_pb2.UploadObjectsResponse.SerializeToString),
            "Nested": grpc.unary_unary_rpc_method_handler(
                nested, request_deserializer=datasets_pb2.GetDatasetRequest.FromString,
                response_serializer=datasets_pb2.GetDatasetResponse.SerializeToString),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("dmod.test.Guarded", handlers),))

    server = Server([], Settings(listen="127.0.0.1:0", log_json=True), extra_handlers=[("dmod.test.Guarded", add)])
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, seen
    finally:
        await server.shutdown()


def _raw(channel, kind: str, name: str):
    factory = {"unary": channel.unary_unary, "server": channel.unary_stream, "client": channel.stream_unary}[kind]
    return factory(f"/dmod.test.Guarded/{name}", request_serializer=None, response_deserializer=None)


def reason_of(error: grpc.aio.AioRpcError) -> str:
    return error_details(error)["ErrorInfo"].reason


def _assert_bad_request(error: grpc.aio.AioRpcError, field: str, reason: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    details = error_details(error)
    assert details["ErrorInfo"].reason == reason
    assert [v.field for v in details["BadRequest"].field_violations] == [field]


UNDECODABLE = [b"\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x03\xc3\x28\xff", b"\x0b"]


@pytest.mark.parametrize("body", UNDECODABLE)
async def test_undecodable_bodies_are_invalid_argument_on_every_kind_of_rpc(probe_server, body):
    channel, seen = probe_server
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw(channel, "unary", "Unary")(body, timeout=10)
    _assert_bad_request(caught.value, "request", "MALFORMED_REQUEST")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in _raw(channel, "server", "ServerStream")(body, timeout=10):
            pass
    _assert_bad_request(caught.value, "request", "MALFORMED_REQUEST")
    good = datasets_pb2.UploadObjectsRequest(parent=GOOD_ID).SerializeToString()
    for messages in ([body], [good, body]):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _raw(channel, "client", "ClientStream")(iter(messages), timeout=10)
        _assert_bad_request(caught.value, "request", "MALFORMED_REQUEST")
    assert all(m.SerializeToString() == good for m in seen)  # only the good message got through


async def test_guard_runs_before_the_servicer_on_every_kind_of_rpc(probe_server):
    channel, seen = probe_server
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw(channel, "unary", "Unary")(datasets_pb2.GetDatasetRequest(name="a\x00").SerializeToString())
    _assert_bad_request(caught.value, "name", "INVALID_FIELD_VALUE")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in _raw(channel, "server", "ServerStream")(
                evaluation_pb2.WatchEvaluationRequest(name="e" * 5000).SerializeToString()):
            pass
    _assert_bad_request(caught.value, "name", "INVALID_FIELD_VALUE")
    good = datasets_pb2.UploadObjectsRequest(parent=GOOD_ID).SerializeToString()
    bad = datasets_pb2.UploadObjectsRequest(header=datasets_pb2.UploadObjectsHeader(
        path="ok.csv", sha256="a\x00")).SerializeToString()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw(channel, "client", "ClientStream")(iter([good, bad]))
    _assert_bad_request(caught.value, "header.sha256", "INVALID_FIELD_VALUE")
    assert len(seen) == 1
    # a good unary request still works
    assert await _raw(channel, "unary", "Unary")(datasets_pb2.GetDatasetRequest(name=GOOD_ID).SerializeToString()) == b""


async def test_unwrapped_downstream_error_keeps_its_code(probe_server):
    channel, _ = probe_server
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw(channel, "unary", "Nested")(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw(channel, "unary", "Nested")(datasets_pb2.GetDatasetRequest(name="store").SerializeToString())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason_of(caught.value) == "VALUE_NOT_STORABLE"


async def test_a_rejected_client_stream_reports_its_status_not_a_lost_one(probe_server):
    """grpc clients still writing when the status arrives lose it ("INTERNAL: Internal error from
    Core"): the interceptor reads the rest of a rejected stream (bounded) before answering."""
    channel, _ = probe_server
    good = datasets_pb2.UploadObjectsRequest(chunk=b"c" * 65536).SerializeToString()
    codes = []
    for _ in range(30):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _raw(channel, "client", "ClientStream")(iter([b"\xff\xff", *[good] * 40]), timeout=10)
        codes.append((caught.value.code(), caught.value.details()))
    assert {code for code, _ in codes} == {grpc.StatusCode.INVALID_ARGUMENT}, codes


def test_store_failures_are_not_internal():
    import asyncpg
    import redis.exceptions
    import urllib3.exceptions

    from dmod.services.runtime.errors import from_store

    bad_value = from_store(asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence 0x00"), "r1")
    assert bad_value.code == grpc.StatusCode.INVALID_ARGUMENT and bad_value.reason == "VALUE_NOT_STORABLE"
    for outage in (redis.exceptions.ConnectionError("down"), asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
                   asyncpg.exceptions.AdminShutdownError("restart"), urllib3.exceptions.MaxRetryError(None, "/x"),
                   ConnectionRefusedError()):
        mapped = from_store(outage, "r2")
        assert mapped.code == grpc.StatusCode.UNAVAILABLE and "r2" in mapped.message, outage
    assert from_store(ValueError("a bug"), "r3") is None and from_store(KeyError("k"), "r4") is None
