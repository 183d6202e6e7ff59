"""STAGING (the output dataset) and PARTITIONING (a partition dataset for N ranks).

PARTITIONING asks PartitionerService.CreatePartitioning; while that service answers
UNIMPLEMENTED, the hydrofabric library partitions in-process here and the result is stored
as a partition dataset through DatasetService (same outcome, noted in the event message).
"""
from __future__ import annotations

import asyncio
import json
import posixpath
from pathlib import Path

import grpc

from dmod.services.jobs.datasets import DatasetError, Datasets
from dmod.services.partitioner import identity
from dmod.services.runtime.deadlines import downstream_timeout
from dmod.services.worker.agent import layout
from dmod.v1 import datasets_pb2, domain_pb2, jobs_pb2, partitioner_pb2, partitioner_pb2_grpc


class StagingFailed(Exception):
    def __init__(self, message: str, reason: str, transient: bool = False):
        super().__init__(message)
        self.reason = reason
        self.transient = transient


async def create_output(ds: Datasets, job_id: str, spec: jobs_pb2.JobSpec, resolved: dict[str, str]) -> str:
    dataset = datasets_pb2.Dataset(
        display_name=f"job-{job_id}-output", category=domain_pb2.DATA_CATEGORY_OUTPUT,
        data_format=domain_pb2.DATA_FORMAT_NGEN_CSV_OUTPUT, description=f"outputs of jobs/{job_id}",
        labels={"job": job_id}, derived_from=sorted(set(resolved.values())))
    if spec.HasField("start_time"):
        dataset.domain.continuous.add(index=domain_pb2.STANDARD_INDEX_TIME, begin_time=spec.start_time,
                                      end_time=spec.end_time)
    created = await ds.create(dataset, request_id=f"job-{job_id}-output")
    return created.name


_METHOD = identity.METHODS


async def create_partition(channel: grpc.aio.Channel, metadata, ds: Datasets, scratch: Path, job_id: str,
                           spec: jobs_pb2.JobSpec, hydrofabric: str, staged: dict) -> tuple[str, str]:
    """(partition dataset name, how it was made)."""
    n = spec.cpu_count
    method = spec.partition_method or identity.JOB_DEFAULT_METHOD
    stub = partitioner_pb2_grpc.PartitionerServiceStub(channel)
    try:
        reply = await stub.CreatePartitioning(partitioner_pb2.CreatePartitioningRequest(
            hydrofabric_dataset=hydrofabric, partition_count=n, method=method, catchment_ids=list(spec.catchment_ids),
            request_id=f"job-{job_id}-partition-{n}"), metadata=metadata, timeout=downstream_timeout(600.0))
        return reply.dataset.name, f"made {reply.dataset.name} ({identity.describe(reply.dataset)}) with PartitionerService"
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            transient = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            raise StagingFailed(f"partitioning failed: {exc.code().name}: {exc.details()}", "PARTITIONING_FAILED",
                                transient) from None
    return await _partition_in_process(ds, scratch, job_id, spec, hydrofabric, staged, _METHOD[method])


async def _partition_in_process(ds: Datasets, scratch: Path, job_id: str, spec: jobs_pb2.JobSpec, hydrofabric: str,
                                staged: dict, method: str) -> tuple[str, str]:
    from dmod.services.hydrofabric import load_network
    from dmod.services.hydrofabric.partition import partition

    objects = await ds.objects(hydrofabric)
    cat_path, nex_path = layout.pick_hydrofabric([o.path for o in objects])
    by_path = {o.path: o for o in objects}
    files = []
    for path in dict.fromkeys((cat_path, nex_path)):
        obj = by_path[path]
        dest = scratch / "cache" / obj.sha256[:2] / obj.sha256 / posixpath.basename(path)
        if not dest.exists():
            await ds.download(obj, dest)
        files.append(dest)
    network = await asyncio.to_thread(load_network, str(files[0]), str(files[-1]))
    if spec.catchment_ids:
        from dmod.services.hydrofabric.subset import subset_network

        sub = await asyncio.to_thread(subset_network, network, list(spec.catchment_ids), False, False)
        network = getattr(sub, "network", sub)
    try:
        result = await asyncio.to_thread(partition, network, spec.cpu_count, method)
    except ValueError as exc:
        raise StagingFailed(f"cannot partition into {spec.cpu_count} parts: {exc}", "PARTITIONING_FAILED") from None
    # Method, parameters, rank count and hydrofabric: what a later job's search must match to reuse it.
    labels = {"job": job_id, **identity.partition_labels(method, spec.cpu_count, hydrofabric, network.hydrofabric_id,
                                                          spec.catchment_ids)}
    dataset = datasets_pb2.Dataset(
        display_name=f"job-{job_id}-partition-{spec.cpu_count}", category=domain_pb2.DATA_CATEGORY_CONFIG,
        data_format=domain_pb2.DATA_FORMAT_NGEN_PARTITION_CONFIG, labels=labels,
        description=f"{method} partitioning of {hydrofabric} for {spec.cpu_count} ranks", derived_from=[hydrofabric],
        domain=identity.partition_domain(method, spec.cpu_count, network.hydrofabric_id, spec.catchment_ids))
    created = await ds.create(dataset, request_id=f"job-{job_id}-partition-{spec.cpu_count}")
    if created.state != datasets_pb2.DATASET_STATE_SEALED:
        await ds.upload_bytes(created.name, layout.PARTITION_FILE, json.dumps(result.document).encode())
        try:
            await ds.seal(created.name)
        except DatasetError:
            pass  # an unsealed partition dataset still works; sealing is bookkeeping
    return created.name, (f"made {created.name} ({identity.describe(created)}) in-process "
                          f"(PartitionerService unimplemented)")
