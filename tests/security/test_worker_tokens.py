"""Worker tokens: the token a running job's model code can read from its environment reaches
exactly its job's RPCs and datasets, and stops working when its attempt is over."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import types
import uuid
from pathlib import Path

import grpc
import jwt
import psutil
import pytest
from google.protobuf import field_mask_pb2

from dmod.errors import error_details
from dmod.v1 import (
    datasets_pb2,
    datasets_pb2_grpc,
    domain_pb2,
    evaluation_pb2,
    evaluation_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    partitioner_pb2,
    partitioner_pb2_grpc,
)

S = jobs_pb2


def _helpers():
    path = Path(__file__).resolve().parents[1] / "jobs" / "helpers.py"
    spec = importlib.util.spec_from_file_location("dmod_tests_job_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


H = _helpers()


def reason(err: grpc.aio.AioRpcError) -> str:
    info = error_details(err).get("ErrorInfo")
    return info.reason if info is not None else ""


async def fails(call, code=grpc.StatusCode.PERMISSION_DENIED) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        result = call
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    assert err.value.code() == code, (err.value.code(), err.value.details())
    return err.value


def test_worker_token_names_its_attempt_and_datasets_and_lives_with_the_timeout(stack):
    from dmod.services.jobs.runtime import WORKER_TOKEN_MARGIN_SECONDS, JobsRuntime
    from dmod.services.runtime.auth import TokenIssuer

    key = Path(stack.home, "keys/jwt.key").read_bytes()
    rt = types.SimpleNamespace(issuer=TokenIssuer(key, 3600), cfg=types.SimpleNamespace(worker_token_ttl_seconds=86_400))
    row = {"id": "abc", "owner": "alice", "attempt": 3, "output_dataset": "datasets/out",
           "resolved": '{"hydrofabric": "datasets/hf", "forcing": "datasets/f"}'}
    claims = jwt.decode(JobsRuntime.worker_token(rt, row, 600), options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["job"] == "jobs/abc" and claims["attempt"] == 3
    assert claims["inputs"] == ["datasets/f", "datasets/hf"] and claims["output"] == "datasets/out"
    assert claims["roles"] == []
    assert claims["exp"] - claims["iat"] == 600 + WORKER_TOKEN_MARGIN_SECONDS
    no_timeout = jwt.decode(JobsRuntime.worker_token(rt, row, 0), options={"verify_signature": False})
    assert no_timeout["exp"] - no_timeout["iat"] == 86_400


@pytest.fixture(scope="module")
def domain_files(tmp_path_factory):
    return H.make_domain(tmp_path_factory.mktemp("domain"))


async def test_a_running_jobs_token_reaches_only_its_job(stack, channel, domain_files):
    names = await H.upload_domain(channel, domain_files)
    names["realization"] = await H.upload_slow_realization(channel)
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    ds = datasets_pb2_grpc.DatasetServiceStub(channel)
    spec = H.job_spec(names, cpus=1)
    spec.timeout.FromSeconds(600)
    created = (await jobs.CreateJob(S.CreateJobRequest(spec=spec, request_id=uuid.uuid4().hex))).job
    job_id = created.name.removeprefix("jobs/")
    # another dataset of the same owner, no input of the job
    bystander = (await ds.CreateDataset(datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
        display_name=f"bystander-{uuid.uuid4().hex[:8]}", category=domain_pb2.DATA_CATEGORY_FORCING,
        data_format=1)))).dataset.name
    try:
        job = await H.wait_running(jobs, created.name)
        token = None
        for proc in H.job_processes(job_id):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                token = proc.environ().get("DMOD_TOKEN") or token
        assert token, "no DMOD_TOKEN in the job's processes"
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["job"] == created.name and claims["attempt"] == job.attempt
        assert claims["exp"] - claims["iat"] <= 600 + 900
        md = (("authorization", f"Bearer {token}"),)

        # what the worker does: its job, its inputs, its output
        assert (await jobs.GetJob(S.GetJobRequest(name=created.name), metadata=md)).job.name == created.name
        listing = await ds.ListObjects(datasets_pb2.ListObjectsRequest(parent=names["hydrofabric"]), metadata=md)
        first = listing.objects[0]
        got = b"".join([r.chunk async for r in ds.DownloadObject(
            datasets_pb2.DownloadObjectRequest(name=first.name), metadata=md)])
        assert hashlib.sha256(got).hexdigest() == first.sha256
        data = b"x"

        def upload(parent: str):
            async def messages():
                yield datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
                    parent=parent, path="probe.txt", size_bytes=1, sha256=hashlib.sha256(data).hexdigest()))
                yield datasets_pb2.UploadObjectRequest(chunk=data)
            return ds.UploadObject(messages(), metadata=md)

        await upload(job.output_dataset)

        # nothing else
        scoped = [
            jobs.ListJobs(S.ListJobsRequest(), metadata=md),
            jobs.CreateJob(S.CreateJobRequest(spec=spec), metadata=md),
            jobs.CancelJob(S.CancelJobRequest(name=created.name), metadata=md),
            jobs.WatchJob(S.WatchJobRequest(name=created.name), metadata=md),
            ds.GetDataset(datasets_pb2.GetDatasetRequest(name=names["forcing"]), metadata=md),
            ds.DeleteDataset(datasets_pb2.DeleteDatasetRequest(name=names["forcing"], force=True), metadata=md),
            ds.UpdateDataset(datasets_pb2.UpdateDatasetRequest(
                dataset=datasets_pb2.Dataset(name=bystander, readers=["users/mallory"]),
                update_mask=field_mask_pb2.FieldMask(paths=["readers"])), metadata=md),
            ds.CreateDataset(datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
                display_name="by-a-worker", category=domain_pb2.DATA_CATEGORY_FORCING, data_format=1)), metadata=md),
            ds.SealDataset(datasets_pb2.SealDatasetRequest(name=bystander), metadata=md),
            ds.ListObjects(datasets_pb2.ListObjectsRequest(parent=bystander), metadata=md),
            upload(bystander),  # (an input is SEALED: FAILED_PRECONDITION before any ownership question)
            evaluation_pb2_grpc.EvaluationServiceStub(channel).CreateEvaluation(evaluation_pb2.CreateEvaluationRequest(
                spec=evaluation_pb2.EvaluationSpec(output_dataset=job.output_dataset,
                                                   observation_dataset=names["forcing"])), metadata=md),
            partitioner_pb2_grpc.PartitionerServiceStub(channel).CreatePartitioning(
                partitioner_pb2.CreatePartitioningRequest(hydrofabric_dataset=names["hydrofabric"], partition_count=2),
                metadata=md),
        ]
        for call in scoped:
            assert reason(await fails(call)) == "TOKEN_SCOPE"
        # a report for another attempt of its own job
        reports = jobs.ReportWorkerEvents(iter([S.ReportWorkerEventsRequest(
            job=created.name, attempt=job.attempt + 1, heartbeat=True)]), metadata=md)
        assert reason(await fails(reports)) == "TOKEN_SCOPE"

        # the attempt ends: the token moves no data any more; a new attempt makes it stale everywhere
        await jobs.CancelJob(S.CancelJobRequest(name=created.name))
        await H.wait_state(jobs, created.name, {S.JOB_STATE_CANCELLED, S.JOB_STATE_FAILED})
        await H.no_job_processes(job_id)
        assert reason(await fails(ds.ListObjects(datasets_pb2.ListObjectsRequest(parent=names["hydrofabric"]),
                                                 metadata=md))) == "TOKEN_SCOPE"
        assert reason(await fails(upload(job.output_dataset))) == "TOKEN_SCOPE"
        retried = (await jobs.RetryJob(S.RetryJobRequest(name=created.name))).job
        assert retried.attempt == job.attempt + 1
        assert reason(await fails(jobs.GetJob(S.GetJobRequest(name=created.name), metadata=md))) == "TOKEN_SCOPE"
    finally:
        try:
            await jobs.CancelJob(S.CancelJobRequest(name=created.name))
        except grpc.aio.AioRpcError:
            pass
        await H.wait_state(jobs, created.name, {S.JOB_STATE_CANCELLED, S.JOB_STATE_FAILED, S.JOB_STATE_SUCCEEDED})
        await H.no_job_processes(job_id)
