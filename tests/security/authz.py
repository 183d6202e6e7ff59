"""The authorization matrix: every RPC of every dmod.v1 service × five identities.

For each RPC (found by iterating the dmod.v1 file descriptors, so a new RPC cannot be missed: it
has no entry in EXPECT and the run reports it as `missing`) the runner calls it as

- ``owner``  — the user who owns the resources the call names (a real user, created by an admin),
- ``other``  — another user,
- ``admin``  — a user with the admin role,
- ``worker`` — the worker token of another job of the owner (acts as the owner, scoped to that job),
- ``anon``   — no token, against services with DMOD_AUTH_REQUIRED=true,

against resources owned by the owner (a private dataset with an object, a sealed private
hydrofabric and its partitioning, a job, an evaluation, an upload), and compares the status code
with the expectation table. A *leak* is a call that succeeded (or streamed data, or listed one of
the owner's resources) where it must not; INTERNAL/UNKNOWN are counted apart (never expected).

`run_matrix(...)` returns a `MatrixReport` (counts and one row per call) for tests and for
`make chaos`; `auth_required_services(...)` starts the services with DMOD_AUTH_REQUIRED=true on
the stack's stores for the ``anon`` column.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import os
import pkgutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.message_factory import GetMessageClass

import dmod.v1
from dmod.v1 import (
    auth_pb2,
    datasets_pb2,
    domain_pb2,
    evaluation_pb2,
    jobs_pb2,
    monitor_pb2,
    partitioner_pb2,
    subset_pb2,
)

IDENTITIES = ("anon", "worker", "other", "owner", "admin")  # deniers first: destructive calls come last
OK, OPEN = "OK", "OPEN"  # OPEN: a server stream that stayed open without sending anything
DENY = frozenset({"PERMISSION_DENIED", "NOT_FOUND"})
PD = frozenset({"PERMISSION_DENIED"})
UNAUTH = frozenset({"UNAUTHENTICATED"})
ALLOW = frozenset({OK})
STREAM_WAIT = 3.0


# ---- expectations ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    codes: frozenset[str]
    # OK allowed, but the response must not name any of the owner's resources (lists, searches).
    private: bool = False


def codes(*names: str) -> Expect:
    return Expect(frozenset(names))


def row(owner: Expect, other: Expect, admin: Expect, worker: Expect = Expect(DENY),
        anon: Expect = Expect(UNAUTH)) -> dict[str, Expect]:
    return {"owner": owner, "other": other, "admin": admin, "worker": worker, "anon": anon}


_OK, _DENY, _PD = Expect(ALLOW), Expect(DENY), Expect(PD)
_OWNER_ONLY = row(_OK, _DENY, _OK)
_CHANGED = codes(OK, "FAILED_PRECONDITION")  # allowed through; the job's state may refuse it
_LISTED = Expect(ALLOW, private=True)
_PUBLIC = row(_OK, _OK, _OK, _OK, _OK)

# "/pkg.Service/Method" -> expected code per identity.
EXPECT: dict[str, dict[str, Expect]] = {
    # AuthService: Login and GetJwks answer without a token (credentials decide); users are admin business.
    "/dmod.v1.AuthService/Login": _PUBLIC,
    "/dmod.v1.AuthService/GetJwks": _PUBLIC,
    "/dmod.v1.AuthService/GetCurrentUser": row(_OK, _OK, _OK, _PD),
    "/dmod.v1.AuthService/CreateUser": row(_PD, _PD, _OK, _PD),
    "/dmod.v1.AuthService/ListUsers": row(_PD, _PD, _OK, _PD),
    "/dmod.v1.AuthService/UpdateUser": row(_PD, _PD, _OK, _PD),
    # DatasetService: private by default.
    "/dmod.v1.DatasetService/CreateDataset": row(_OK, _OK, _OK, _PD),  # one's own dataset
    "/dmod.v1.DatasetService/GetDataset": _OWNER_ONLY,
    "/dmod.v1.DatasetService/ListDatasets": row(_OK, _LISTED, _OK, _PD),
    "/dmod.v1.DatasetService/UpdateDataset": _OWNER_ONLY,
    "/dmod.v1.DatasetService/DeleteDataset": _OWNER_ONLY,
    "/dmod.v1.DatasetService/SealDataset": _OWNER_ONLY,
    "/dmod.v1.DatasetService/ListObjects": _OWNER_ONLY,
    "/dmod.v1.DatasetService/DeleteObject": _OWNER_ONLY,
    "/dmod.v1.DatasetService/UploadObject": _OWNER_ONLY,
    "/dmod.v1.DatasetService/UploadObjects": _OWNER_ONLY,
    "/dmod.v1.DatasetService/QueryUploadStatus": _OWNER_ONLY,
    "/dmod.v1.DatasetService/DownloadObject": _OWNER_ONLY,
    "/dmod.v1.DatasetService/DownloadObjects": _OWNER_ONLY,
    "/dmod.v1.DatasetService/CreateUploadUrl": _OWNER_ONLY,
    "/dmod.v1.DatasetService/FinalizeUpload": _OWNER_ONLY,
    "/dmod.v1.DatasetService/CreateDownloadUrl": _OWNER_ONLY,
    "/dmod.v1.DatasetService/SearchDatasets": row(_OK, _LISTED, _OK, _PD),
    "/dmod.v1.DatasetService/DetectDomain": _OWNER_ONLY,
    # EvaluationService
    "/dmod.v1.EvaluationService/CreateEvaluation": _OWNER_ONLY,  # on the owner's private datasets
    "/dmod.v1.EvaluationService/GetEvaluation": _OWNER_ONLY,
    "/dmod.v1.EvaluationService/ListEvaluations": row(_OK, _LISTED, _OK, _PD),
    "/dmod.v1.EvaluationService/WatchEvaluation": _OWNER_ONLY,
    # JobService
    "/dmod.v1.JobService/CreateJob": row(_OK, _OK, _OK, _PD),  # one's own job
    "/dmod.v1.JobService/GetJob": _OWNER_ONLY,
    "/dmod.v1.JobService/ListJobs": _OWNER_ONLY,  # of the owner: only admins list other users' jobs
    "/dmod.v1.JobService/CancelJob": row(_CHANGED, _DENY, _CHANGED),
    "/dmod.v1.JobService/RetryJob": row(_CHANGED, _DENY, _CHANGED),
    "/dmod.v1.JobService/WatchJob": _OWNER_ONLY,
    "/dmod.v1.JobService/StreamJobLogs": _OWNER_ONLY,
    "/dmod.v1.JobService/ListNodes": row(_OK, _OK, _OK, _PD),  # the pool, no user's resource
    "/dmod.v1.JobService/ReportWorkerEvents": row(_PD, _DENY, _OK),  # the job's worker (or an admin) only
    # MonitorService
    "/dmod.v1.MonitorService/WatchEvents": row(codes(OK, OPEN), _DENY, codes(OK, OPEN), _PD),
    "/dmod.v1.MonitorService/ListWorkers": row(_OK, _LISTED, _OK, _PD),
    # PartitionerService / SubsetService: on the owner's private hydrofabric.
    "/dmod.v1.PartitionerService/CreatePartitioning": _OWNER_ONLY,
    "/dmod.v1.PartitionerService/ValidatePartitioning": _OWNER_ONLY,
    "/dmod.v1.SubsetService/SubsetHydrofabric": _OWNER_ONLY,
    "/dmod.v1.SubsetService/ValidateIds": _OWNER_ONLY,
}


def all_methods() -> dict[str, object]:
    """"/pkg.Service/Method" -> MethodDescriptor, for every service of every dmod.v1 file."""
    found = {}
    for mod in pkgutil.iter_modules(dmod.v1.__path__):
        if not mod.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"dmod.v1.{mod.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found[f"/{service.full_name}/{method.name}"] = method
    return found


# ---- the owner's resources ------------------------------------------------------------------

@dataclass
class Ctx:
    tag: str
    owner: str
    owner_password: str
    dataset: str = ""       # private, OPEN, with object a.txt
    obj: str = ""
    hydrofabric: str = ""   # private, SEALED GeoPackage hydrofabric
    catchment: str = ""
    partition: str = ""     # the owner's partitioning of `hydrofabric` (2 parts)
    job: str = ""
    job_attempt: int = 1
    evaluation: str = ""
    upload_id: str = ""     # a presigned upload of the owner into `dataset`
    secrets: list[str] = field(default_factory=list)  # names of the owner's resources
    tokens: dict[str, tuple] = field(default_factory=dict)  # identity -> metadata
    channel: grpc.aio.Channel | None = None  # the gateway
    counter: int = 0

    def fresh(self, what: str) -> str:
        self.counter += 1
        return f"authz-{self.tag}-{what}-{self.counter}"


def _md(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def mint(key_pem: bytes, user: str, roles=(), job: str | None = None, extra: dict | None = None,
         ttl: int = 3600) -> str:
    """A token as the services issue them (runtime/auth.TokenIssuer), signed with the deployment's key;
    built here so that the matrix also runs against older servers (to count their leaks)."""
    import jwt
    from cryptography.hazmat.primitives import serialization

    now = int(time.time())
    claims = {**(extra or {}), "iss": "dmod", "sub": user, "roles": list(roles), "iat": now, "exp": now + ttl,
              "jti": uuid.uuid4().hex}
    if job:
        claims["job"] = job
    return jwt.encode(claims, serialization.load_pem_private_key(key_pem, password=None), algorithm="EdDSA")


async def _owner_dataset(ctx: Ctx, name: str, *, fmt: int = 1, category: int = domain_pb2.DATA_CATEGORY_FORCING):
    stub = _stub(ctx, "DatasetService")
    return (await stub.CreateDataset(datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
        display_name=name, category=category, data_format=fmt)), metadata=ctx.tokens["owner"], timeout=30)).dataset


async def _put(ctx: Ctx, dataset: str, path: str, data: bytes, metadata=None) -> None:
    stub = _stub(ctx, "DatasetService")

    async def messages():
        yield datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
            parent=dataset, path=path, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))
        yield datasets_pb2.UploadObjectRequest(chunk=data)

    await stub.UploadObject(messages(), metadata=metadata or ctx.tokens["owner"], timeout=60)


_STUBS = {"AuthService": auth_pb2, "DatasetService": datasets_pb2, "EvaluationService": evaluation_pb2,
          "JobService": jobs_pb2, "MonitorService": monitor_pb2, "PartitionerService": partitioner_pb2,
          "SubsetService": subset_pb2}


def _stub(ctx: Ctx, service: str):
    grpc_module = importlib.import_module(_STUBS[service].__name__ + "_grpc")
    return getattr(grpc_module, f"{service}Stub")(ctx.channel)


def _noop_spec() -> jobs_pb2.JobSpec:
    spec = jobs_pb2.JobSpec(engine="noop", cpu_count=1)
    spec.timeout.FromSeconds(600)
    return spec


async def _job(ctx: Ctx, identity: str = "owner") -> jobs_pb2.Job:
    return (await _stub(ctx, "JobService").CreateJob(jobs_pb2.CreateJobRequest(
        spec=_noop_spec(), request_id=ctx.fresh("job")), metadata=ctx.tokens[identity], timeout=30)).job


async def setup(channel: grpc.aio.Channel, key_pem: bytes, workdir: Path) -> Ctx:
    from dmod.services.hydrofabric import load_network, synth

    tag = uuid.uuid4().hex[:8]
    ctx = Ctx(tag=tag, owner=f"authz-owner-{tag}", owner_password=uuid.uuid4().hex, channel=channel)
    ctx.tokens["admin"] = _md(mint(key_pem, f"authz-admin-{tag}", roles=["admin"]))
    ctx.tokens["other"] = _md(mint(key_pem, f"authz-other-{tag}", roles=["user"]))
    ctx.tokens["anon"] = ()
    auth = _stub(ctx, "AuthService")
    await auth.CreateUser(auth_pb2.CreateUserRequest(username=ctx.owner, password=ctx.owner_password,
                                                     roles=["user"]), metadata=ctx.tokens["admin"], timeout=30)
    login = await auth.Login(auth_pb2.LoginRequest(username=ctx.owner, password=ctx.owner_password), timeout=30)
    ctx.tokens["owner"] = _md(login.access_token)

    d = await _owner_dataset(ctx, ctx.fresh("data"))
    ctx.dataset, ctx.obj = d.name, f"{d.name}/objects/a.txt"
    await _put(ctx, d.name, "a.txt", b"the owner's private bytes\n")

    synth(workdir / "hf", catchments=12, seed=5, forcing=None)
    gpkg = workdir / "hf" / "hydrofabric.gpkg"
    ctx.catchment = str(load_network(str(gpkg)).catchment_ids.tolist()[0])
    hf = await _owner_dataset(ctx, ctx.fresh("hf"), fmt=domain_pb2.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC,
                              category=domain_pb2.DATA_CATEGORY_HYDROFABRIC)
    await _put(ctx, hf.name, "hydrofabric.gpkg", gpkg.read_bytes())
    ds = _stub(ctx, "DatasetService")
    await ds.SealDataset(datasets_pb2.SealDatasetRequest(name=hf.name), metadata=ctx.tokens["owner"], timeout=120)
    ctx.hydrofabric = hf.name
    part = await _stub(ctx, "PartitionerService").CreatePartitioning(partitioner_pb2.CreatePartitioningRequest(
        hydrofabric_dataset=hf.name, partition_count=2, request_id=ctx.fresh("part")),
        metadata=ctx.tokens["owner"], timeout=120)
    ctx.partition = part.dataset.name

    job = await _job(ctx)
    ctx.job, ctx.job_attempt = job.name, job.attempt
    evaluation = await _stub(ctx, "EvaluationService").CreateEvaluation(evaluation_pb2.CreateEvaluationRequest(
        spec=evaluation_pb2.EvaluationSpec(output_dataset=ctx.dataset, observation_dataset=ctx.dataset),
        request_id=ctx.fresh("eval")), metadata=ctx.tokens["owner"], timeout=30)
    ctx.evaluation = evaluation.evaluation.name
    up = await ds.CreateUploadUrl(datasets_pb2.CreateUploadUrlRequest(
        parent=ctx.dataset, path="presigned.txt", size_bytes=1, sha256=hashlib.sha256(b"x").hexdigest()),
        metadata=ctx.tokens["owner"], timeout=30)
    ctx.upload_id = up.upload_id

    # The worker token of another job of the owner: what a job's model code could get hold of.
    other_job = await _job(ctx)
    ctx.tokens["worker"] = _md(mint(key_pem, ctx.owner, job=other_job.name, extra={
        "attempt": other_job.attempt, "inputs": [], "output": other_job.output_dataset}))
    ctx.secrets = [ctx.dataset, ctx.hydrofabric, ctx.partition, ctx.job, ctx.evaluation,
                   ctx.dataset.removeprefix("datasets/"), ctx.job.removeprefix("jobs/")]
    return ctx


# ---- requests -------------------------------------------------------------------------------

async def _fresh_dataset(ctx: Ctx) -> str:
    return (await _owner_dataset(ctx, ctx.fresh("victim"))).name


async def _fresh_object(ctx: Ctx, identity: str) -> str:
    path = f"victim-{identity}.txt"
    await _put(ctx, ctx.dataset, path, b"victim\n")
    return f"{ctx.dataset}/objects/{path}"


async def _fresh_finalizable(ctx: Ctx) -> str:
    data = b"presigned upload\n"
    up = await _stub(ctx, "DatasetService").CreateUploadUrl(datasets_pb2.CreateUploadUrlRequest(
        parent=ctx.dataset, path=f"{ctx.fresh('put')}.txt", size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest()), metadata=ctx.tokens["owner"], timeout=30)
    put = urllib.request.Request(up.url, data=data, method="PUT")
    await asyncio.to_thread(lambda: urllib.request.urlopen(put, timeout=30).read())
    return up.upload_id


def _upload_one(parent: str, path: str) -> list:
    data = b"written by the matrix\n"
    return [datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
        parent=parent, path=path, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())),
        datasets_pb2.UploadObjectRequest(chunk=data)]


def _upload_batch(parent: str, path: str) -> list:
    data = b"written by the matrix\n"
    return [datasets_pb2.UploadObjectsRequest(parent=parent),
            datasets_pb2.UploadObjectsRequest(header=datasets_pb2.UploadObjectsHeader(
                path=path, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())),
            datasets_pb2.UploadObjectsRequest(chunk=data)]


Build = Callable[[Ctx, str], object]  # (ctx, identity) -> request, list of requests, or awaitable of those


def _requests() -> dict[str, Build]:
    d, a, e, j, m, p, s = datasets_pb2, auth_pb2, evaluation_pb2, jobs_pb2, monitor_pb2, partitioner_pb2, subset_pb2

    async def delete_dataset(ctx, _):
        return d.DeleteDatasetRequest(name=await _fresh_dataset(ctx), force=True)

    async def seal_dataset(ctx, _):
        return d.SealDatasetRequest(name=await _fresh_dataset(ctx))

    async def delete_object(ctx, identity):
        return d.DeleteObjectRequest(name=await _fresh_object(ctx, identity))

    async def finalize(ctx, _):
        return d.FinalizeUploadRequest(upload_id=await _fresh_finalizable(ctx))

    def hydrofabric_requirement(ctx, _):
        return d.SearchDatasetsRequest(requirement=domain_pb2.DataRequirement(
            category=domain_pb2.DATA_CATEGORY_HYDROFABRIC, owner=ctx.owner))

    return {
        "/dmod.v1.AuthService/Login": lambda c, _: a.LoginRequest(username=c.owner, password=c.owner_password),
        "/dmod.v1.AuthService/GetJwks": lambda c, _: a.GetJwksRequest(),
        "/dmod.v1.AuthService/GetCurrentUser": lambda c, _: a.GetCurrentUserRequest(),
        "/dmod.v1.AuthService/CreateUser": lambda c, _: a.CreateUserRequest(
            username=c.fresh("user").replace("authz-", "authz."), password=uuid.uuid4().hex, roles=["user"]),
        "/dmod.v1.AuthService/ListUsers": lambda c, _: a.ListUsersRequest(),
        "/dmod.v1.AuthService/UpdateUser": lambda c, i: a.UpdateUserRequest(
            user=a.User(name=f"users/{c.owner}", groups=[f"set-by-{i}"]),
            update_mask=field_mask_pb2.FieldMask(paths=["groups"])),
        "/dmod.v1.DatasetService/CreateDataset": lambda c, _: d.CreateDatasetRequest(dataset=d.Dataset(
            display_name=c.fresh("new"), category=domain_pb2.DATA_CATEGORY_FORCING, data_format=1,
            derived_from=[c.dataset])),
        "/dmod.v1.DatasetService/GetDataset": lambda c, _: d.GetDatasetRequest(name=c.dataset),
        "/dmod.v1.DatasetService/ListDatasets": lambda c, _: d.ListDatasetsRequest(owner=c.owner, page_size=1000),
        "/dmod.v1.DatasetService/UpdateDataset": lambda c, i: d.UpdateDatasetRequest(
            dataset=d.Dataset(name=c.dataset, description=f"changed by {i}"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"])),
        "/dmod.v1.DatasetService/DeleteDataset": delete_dataset,
        "/dmod.v1.DatasetService/SealDataset": seal_dataset,
        "/dmod.v1.DatasetService/ListObjects": lambda c, _: d.ListObjectsRequest(parent=c.dataset),
        "/dmod.v1.DatasetService/DeleteObject": delete_object,
        "/dmod.v1.DatasetService/UploadObject": lambda c, i: _upload_one(c.dataset, f"by-{i}.txt"),
        "/dmod.v1.DatasetService/UploadObjects": lambda c, i: _upload_batch(c.dataset, f"batch-by-{i}.txt"),
        "/dmod.v1.DatasetService/QueryUploadStatus": lambda c, _: d.QueryUploadStatusRequest(upload_id=c.upload_id),
        "/dmod.v1.DatasetService/DownloadObject": lambda c, _: d.DownloadObjectRequest(name=c.obj),
        "/dmod.v1.DatasetService/DownloadObjects": lambda c, _: d.DownloadObjectsRequest(
            parent=c.dataset, paths=[c.obj.split("/objects/", 1)[1]]),
        "/dmod.v1.DatasetService/CreateUploadUrl": lambda c, i: d.CreateUploadUrlRequest(
            parent=c.dataset, path=f"url-by-{i}.txt", size_bytes=1, sha256=hashlib.sha256(b"x").hexdigest()),
        "/dmod.v1.DatasetService/FinalizeUpload": finalize,
        "/dmod.v1.DatasetService/CreateDownloadUrl": lambda c, _: d.CreateDownloadUrlRequest(name=c.obj),
        "/dmod.v1.DatasetService/SearchDatasets": hydrofabric_requirement,
        "/dmod.v1.DatasetService/DetectDomain": lambda c, _: d.DetectDomainRequest(name=c.hydrofabric),
        "/dmod.v1.EvaluationService/CreateEvaluation": lambda c, _: e.CreateEvaluationRequest(
            spec=e.EvaluationSpec(output_dataset=c.dataset, observation_dataset=c.dataset),
            request_id=c.fresh("eval")),
        "/dmod.v1.EvaluationService/GetEvaluation": lambda c, _: e.GetEvaluationRequest(name=c.evaluation),
        "/dmod.v1.EvaluationService/ListEvaluations": lambda c, _: e.ListEvaluationsRequest(page_size=1000),
        "/dmod.v1.EvaluationService/WatchEvaluation": lambda c, _: e.WatchEvaluationRequest(name=c.evaluation),
        "/dmod.v1.JobService/CreateJob": lambda c, _: j.CreateJobRequest(spec=_noop_spec(), request_id=c.fresh("job")),
        "/dmod.v1.JobService/GetJob": lambda c, _: j.GetJobRequest(name=c.job),
        "/dmod.v1.JobService/ListJobs": lambda c, _: j.ListJobsRequest(owner=c.owner, page_size=500),
        "/dmod.v1.JobService/CancelJob": lambda c, _: j.CancelJobRequest(name=c.job),
        "/dmod.v1.JobService/RetryJob": lambda c, _: j.RetryJobRequest(name=c.job),
        "/dmod.v1.JobService/WatchJob": lambda c, _: j.WatchJobRequest(name=c.job),
        "/dmod.v1.JobService/StreamJobLogs": lambda c, _: j.StreamJobLogsRequest(name=c.job),
        "/dmod.v1.JobService/ListNodes": lambda c, _: j.ListNodesRequest(),
        "/dmod.v1.JobService/ReportWorkerEvents": lambda c, _: [j.ReportWorkerEventsRequest(
            job=c.job, attempt=c.job_attempt, heartbeat=True)],
        "/dmod.v1.MonitorService/WatchEvents": lambda c, _: m.WatchEventsRequest(job=c.job),
        "/dmod.v1.MonitorService/ListWorkers": lambda c, _: m.ListWorkersRequest(),
        "/dmod.v1.PartitionerService/CreatePartitioning": lambda c, _: p.CreatePartitioningRequest(
            hydrofabric_dataset=c.hydrofabric, partition_count=2, request_id=c.fresh("part")),
        "/dmod.v1.PartitionerService/ValidatePartitioning": lambda c, _: p.ValidatePartitioningRequest(
            hydrofabric_dataset=c.hydrofabric, partition_dataset=c.partition, partition_count=2),
        "/dmod.v1.SubsetService/SubsetHydrofabric": lambda c, _: s.SubsetHydrofabricRequest(
            hydrofabric_dataset=c.hydrofabric, ids=[c.catchment], display_name=c.fresh("subset")),
        "/dmod.v1.SubsetService/ValidateIds": lambda c, _: s.ValidateIdsRequest(
            hydrofabric_dataset=c.hydrofabric, ids=[c.catchment]),
    }


# ---- calling --------------------------------------------------------------------------------

async def invoke(channel: grpc.aio.Channel, path: str, method, request, metadata,
                 timeout: float = 120.0) -> tuple[str, list]:
    """(status code name, or OK/OPEN; the response messages)."""
    req_cls, resp_cls = GetMessageClass(method.input_type), GetMessageClass(method.output_type)
    kwargs = {"request_serializer": req_cls.SerializeToString, "response_deserializer": resp_cls.FromString}
    try:
        if method.client_streaming:
            async def messages():
                for item in request:
                    yield item
            reply = await channel.stream_unary(path, **kwargs)(messages(), metadata=metadata, timeout=timeout)
            return OK, [reply]
        if not method.server_streaming:
            return OK, [await channel.unary_unary(path, **kwargs)(request, metadata=metadata, timeout=timeout)]
        call = channel.unary_stream(path, **kwargs)(request, metadata=metadata, timeout=timeout)
        try:
            first = await asyncio.wait_for(call.read(), STREAM_WAIT)
        except TimeoutError:
            return OPEN, []
        finally:
            call.cancel()
        if first is grpc.aio.EOF:
            code = await call.code()
            return (OK if code == grpc.StatusCode.OK else code.name), []
        return OK, [first]
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, []


@dataclass
class Call:
    method: str
    identity: str
    code: str
    expected: frozenset[str]
    leak: bool
    ok: bool
    detail: str = ""


@dataclass
class MatrixReport:
    calls: list[Call] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # RPCs without an entry in EXPECT
    stale: list[str] = field(default_factory=list)    # entries for RPCs that no longer exist
    seconds: float = 0.0

    @property
    def leaks(self) -> int:
        return sum(c.leak for c in self.calls)

    @property
    def internal_or_unknown(self) -> int:
        return sum(c.code in ("INTERNAL", "UNKNOWN") for c in self.calls)

    @property
    def mismatches(self) -> list[Call]:
        return [c for c in self.calls if not c.ok]

    def counts(self) -> dict:
        methods = {c.method for c in self.calls}
        return {"rpcs": len(methods), "identities": len({c.identity for c in self.calls}), "calls": len(self.calls),
                "leaks": self.leaks, "internal_or_unknown": self.internal_or_unknown,
                "mismatches": len(self.mismatches), "missing": len(self.missing), "seconds": round(self.seconds, 1)}

    def table(self) -> str:
        lines = [f"{'method':<50} " + " ".join(f"{i:<18}" for i in IDENTITIES)]
        by = {(c.method, c.identity): c for c in self.calls}
        for method in sorted({c.method for c in self.calls}):
            cells = []
            for identity in IDENTITIES:
                c = by.get((method, identity))
                cells.append(f"{'' if c is None else c.code + ('!LEAK' if c.leak else '' if c.ok else '?'):<18}")
            lines.append(f"{method.removeprefix('/dmod.v1.'):<50} " + " ".join(cells))
        return "\n".join(lines)


def judge(expect: Expect, code: str, replies: list, secrets: list[str]) -> tuple[bool, bool, str]:
    """(as expected, leak, detail)."""
    # OPEN counts as success: the server admitted the subscription (events would flow to it).
    succeeded = code in (OK, OPEN)
    if expect.private and code == OK:
        blob = b"".join(r.SerializeToString() for r in replies)
        shown = [s for s in secrets if s.encode() in blob]
        if shown:
            return False, True, f"listed the owner's {shown[0]}"
        return True, False, ""
    denied = OK not in expect.codes and OPEN not in expect.codes
    leak = denied and bool(succeeded)
    return code in expect.codes, leak, ""


async def run_matrix(gateway: str, key_pem: bytes, anonymous_target: str | None = None,
                     workdir: Path | None = None, only: set[str] | None = None) -> MatrixReport:
    """Run the matrix against `gateway` (identities with tokens) and `anonymous_target`
    (services with DMOD_AUTH_REQUIRED=true; without it the anon column is skipped)."""
    started = time.perf_counter()
    report = MatrixReport()
    methods = all_methods()
    requests = _requests()
    report.missing = sorted(set(methods) - set(EXPECT) | set(methods) - set(requests))
    report.stale = sorted(set(EXPECT) - set(methods))
    with tempfile.TemporaryDirectory(prefix="dmod-authz-") as tmp:
        async with grpc.aio.insecure_channel(gateway) as channel, \
                grpc.aio.insecure_channel(anonymous_target or gateway) as anon_channel:
            ctx = await setup(channel, key_pem, Path(workdir or tmp))
            for path in sorted(set(methods) & set(EXPECT) & set(requests)):
                if only and path not in only:
                    continue
                for identity in IDENTITIES:
                    if identity == "anon" and anonymous_target is None:
                        continue
                    request = requests[path](ctx, identity)
                    if asyncio.iscoroutine(request):
                        request = await request
                    target = anon_channel if identity == "anon" else channel
                    code, replies = await invoke(target, path, methods[path], request, ctx.tokens[identity])
                    expect = EXPECT[path][identity]
                    ok, leak, detail = judge(expect, code, replies, ctx.secrets)
                    report.calls.append(Call(path, identity, code, expect.codes, leak, ok, detail))
    report.seconds = time.perf_counter() - started
    return report


# ---- services with DMOD_AUTH_REQUIRED=true --------------------------------------------------

@contextlib.contextmanager
def auth_required_services(service_env: dict[str, str], timeout: float = 60.0):
    """`dmod serve all` with DMOD_AUTH_REQUIRED=true on the stack's stores (its own scheduler pool,
    so it drives none of the stack's jobs); yields its address."""
    home = Path(tempfile.mkdtemp(prefix="dmod-authz-home-"))
    port_file = home / "port"
    env = {**os.environ, **service_env, "DMOD_HOME": str(home), "DMOD_LISTEN": "127.0.0.1:0",
           "DMOD_PORT_FILE": str(port_file), "DMOD_AUTH_REQUIRED": "true",
           "DMOD_JOBS_POOL": f"authz-{uuid.uuid4().hex[:8]}", "DMOD_LOG_LEVEL": "WARNING"}
    log = open(home / "services.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "dmod.cli.main", "serve", "all"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=home)
    try:
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"auth-required services did not start: {(home / 'services.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def chaos_counts(gateway: str, home: str | Path, service_env: dict[str, str],
                       only: set[str] | None = None) -> dict:
    """For `make chaos`: the whole matrix on a running stack (`home`: its DMOD_HOME, for the signing
    key; `service_env`: StackState.service_env(), to start the auth-required services for the
    anonymous column). Returns MatrixReport.counts() plus the leaking calls."""
    key = (Path(home) / "keys/jwt.key").read_bytes()
    with auth_required_services(service_env) as anonymous:
        report = await run_matrix(gateway, key, anonymous, only=only)
    return {**report.counts(), "leaking_calls": [f"{c.method} as {c.identity}: {c.code} {c.detail}".strip()
                                                 for c in report.calls if c.leak],
            "table": report.table()}
