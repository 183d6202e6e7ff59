"""Client helpers for JobService: building a JobSpec from friendly arguments, resolving dataset
names, and watching a job with automatic resume (no gaps, no duplicates) after a broken stream."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import grpc

from dmod.v1 import datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc, partitioner_pb2

TERMINAL = {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED}
PARADIGMS = {"single-node": jobs_pb2.ALLOCATION_PARADIGM_SINGLE_NODE, "fill-nodes": jobs_pb2.ALLOCATION_PARADIGM_FILL_NODES,
             "round-robin": jobs_pb2.ALLOCATION_PARADIGM_ROUND_ROBIN}
PARTITION_METHODS = {"dfs-chunk": partitioner_pb2.PARTITION_METHOD_DFS_CHUNK,
                     "local-only": partitioner_pb2.PARTITION_METHOD_LOCAL_ONLY,
                     "metis": partitioner_pb2.PARTITION_METHOD_METIS}
# CANCELLED: a proxy (Envoy) reset the stream, not us.
_RESUMABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
              grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


def job_name(value: str) -> str:
    return value if value.startswith("jobs/") else f"jobs/{value}"


def state_name(state: int) -> str:
    return jobs_pb2.JobState.Name(state).removeprefix("JOB_STATE_")


def parse_time(text: str) -> dt.datetime:
    text = text.strip().replace("T", " ").removesuffix("Z")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    raise ValueError(f"time {text!r}: use YYYY-MM-DD[ HH:MM[:SS]] (UTC)")


def build_spec(*, hydrofabric: str = "", realization: str = "", forcing: str = "", partition: str = "",
               bmi_config: str = "", start: str | None = None, end: str | None = None, cpus: int = 1,
               memory_bytes: int = 0, paradigm: str = "round-robin", partition_method: str = "",
               catchments: list[str] | None = None, priority: int = 0, timeout_seconds: float = 0,
               engine: str = "auto", max_attempts: int = 0, bmi_library: str = "") -> jobs_pb2.JobSpec:
    spec = jobs_pb2.JobSpec(hydrofabric_dataset=hydrofabric, realization_dataset=realization,
                            forcing_dataset=forcing, partition_dataset=partition, bmi_config_dataset=bmi_config,
                            bmi_library_dataset=bmi_library,
                            cpu_count=cpus, memory_bytes=memory_bytes, priority=priority, engine=engine,
                            catchment_ids=list(catchments or []))
    if paradigm:
        if paradigm not in PARADIGMS:
            raise ValueError(f"paradigm must be one of {', '.join(PARADIGMS)}")
        spec.allocation_paradigm = PARADIGMS[paradigm]
    if partition_method:
        if partition_method not in PARTITION_METHODS:
            raise ValueError(f"partition method must be one of {', '.join(PARTITION_METHODS)}")
        spec.partition_method = PARTITION_METHODS[partition_method]
    if start:
        spec.start_time.FromDatetime(parse_time(start))
    if end:
        spec.end_time.FromDatetime(parse_time(end))
    if timeout_seconds:
        spec.timeout.FromNanoseconds(int(timeout_seconds * 1e9))
    if max_attempts:
        spec.retry_policy.max_attempts = max_attempts
    return spec


async def resolve_dataset(channel: grpc.aio.Channel, value: str, metadata=()) -> str:
    """`datasets/{id}` as is; otherwise a dataset display name (the caller's, or shared)."""
    if not value or value.startswith("datasets/"):
        return value
    stub = datasets_pb2_grpc.DatasetServiceStub(channel)
    token = ""
    while True:
        reply = await stub.ListDatasets(datasets_pb2.ListDatasetsRequest(page_size=500, page_token=token),
                                        metadata=metadata)
        for dataset in reply.datasets:
            if dataset.display_name == value:
                return dataset.name
        token = reply.next_page_token
        if not token:
            raise LookupError(f"no dataset named {value!r}")


async def watch(stub: jobs_pb2_grpc.JobServiceStub, name: str, after_seq: int = 0, metadata=(),
                retries: int = 20) -> AsyncIterator[jobs_pb2.WatchJobResponse]:
    """Snapshot(s) and events of a job until it is terminal; resumes from the last seq after a
    broken stream (a new snapshot is sent on each resume)."""
    last = after_seq
    failures = 0
    while True:
        try:
            async for item in stub.WatchJob(jobs_pb2.WatchJobRequest(name=name, after_seq=last), metadata=metadata):
                failures = 0
                if item.HasField("event"):
                    if item.event.seq <= last:
                        continue
                    last = item.event.seq
                yield item
            return
        except grpc.aio.AioRpcError as exc:
            failures += 1
            if exc.code() not in _RESUMABLE or failures > retries:
                raise
            await asyncio.sleep(min(5.0, 0.2 * 2 ** failures))
