"""PartitionerService: ngen partition files for N MPI ranks, stored as datasets, and their validation.

CreatePartitioning is idempotent on request_id (it names the partition dataset's own request_id,
so a retried call finds the dataset made the first time).
"""
from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import grpc
import numpy as np

from dmod.datasets_client import CONFIG, DatasetsClient
from dmod.services.hydrofabric.fetch import NetworkCache, fetch_files
from dmod.services.hydrofabric.partition import partition
from dmod.services.hydrofabric.partition_validate import validate_partitioning
from dmod.services.hydrofabric.restrict import restrict
from dmod.services.partitioner import identity
from dmod.services.runtime.app import App
from dmod.services.runtime.auth import current_principal
from dmod.services.runtime.datasets import caller_datasets
from dmod.services.runtime.errors import FailedPrecondition, InvalidArgument, from_downstream
from dmod.v1 import domain_pb2, partitioner_pb2, partitioner_pb2_grpc

PARTITION_FILE = "partitions.json"
STATS_FILE = "stats.json"
_METHODS = {partitioner_pb2.PARTITION_METHOD_DFS_CHUNK: "DFS_CHUNK",
            partitioner_pb2.PARTITION_METHOD_LOCAL_ONLY: "LOCAL_ONLY",
            partitioner_pb2.PARTITION_METHOD_METIS: "METIS"}
MAX_PARTS = 65_536
_PARTITION_REF = re.compile(r"partition #?(\d+)")


def stats_message(stats: dict) -> partitioner_pb2.PartitionStats:
    return partitioner_pb2.PartitionStats(
        part_sizes=[int(x) for x in stats.get("part_sizes", [])], imbalance=float(stats.get("imbalance", 0.0)),
        cut_nexuses=int(stats.get("cut_nexuses", 0)), remote_connections=int(stats.get("remote_connections", 0)))


class PartitionerServicer(partitioner_pb2_grpc.PartitionerServiceServicer):
    def __init__(self, app: App):
        self.app = app
        self.cache = Path(app.settings.home) / "cache/hydrofabric"
        self.networks = NetworkCache()

    async def _network(self, ds: DatasetsClient, dataset: str, field: str):
        try:
            files = await fetch_files(ds, dataset, self.cache)
        except grpc.aio.AioRpcError as exc:
            raise from_downstream(exc, field) from None
        except ValueError as exc:
            raise InvalidArgument((field, f"{dataset} {exc}")) from None
        try:
            return await self.networks.load(files)
        except Exception as exc:  # noqa: BLE001 - unreadable user data is bad input, not a server fault
            raise InvalidArgument((field, f"{dataset} cannot be read as a hydrofabric: {exc}")) from None

    async def CreatePartitioning(self, request, context):
        violations = []
        if not request.hydrofabric_dataset.startswith("datasets/"):
            violations.append(("hydrofabric_dataset", "required: datasets/{id}"))
        if not 1 <= request.partition_count <= MAX_PARTS:
            violations.append(("partition_count", f"must be between 1 and {MAX_PARTS}"))
        if request.method and request.method not in _METHODS:
            violations.append(("method", f"unknown method {request.method}"))
        if violations:
            raise InvalidArgument(violations)
        method = _METHODS.get(request.method, "METIS")
        async with caller_datasets(self.app) as ds:
            existing = await self._existing(ds, request.request_id)
            if existing is not None:
                return existing
            net = await self._network(ds, request.hydrofabric_dataset, "hydrofabric_dataset")
            if request.catchment_ids:
                try:
                    net = restrict(net, request.catchment_ids)
                except KeyError as exc:
                    raise InvalidArgument(("catchment_ids", str(exc).strip("'\""))) from None
            if request.partition_count > net.n_catchments:
                raise InvalidArgument(("partition_count", (f"{request.partition_count} partitions for "
                                                          f"{net.n_catchments} catchments")))
            try:
                result = await asyncio.to_thread(partition, net, request.partition_count, method)
            except ValueError as exc:
                raise FailedPrecondition(f"cannot partition {request.hydrofabric_dataset}: {exc}",
                                         reason="PARTITIONING_FAILED") from None
            # Method, parameters, rank count and hydrofabric: what a job's search must match to reuse it.
            labels = identity.partition_labels(method, request.partition_count, request.hydrofabric_dataset,
                                               net.hydrofabric_id, request.catchment_ids)
            if request.request_id:
                labels["dmod.partition.request"] = request.request_id
            dataset = await ds.create_dataset(
                f"partition-{request.partition_count}-{method.lower()}-{uuid.uuid4().hex[:8]}",
                CONFIG, domain_pb2.DATA_FORMAT_NGEN_PARTITION_CONFIG,
                domain=identity.partition_domain(method, request.partition_count, net.hydrofabric_id,
                                                 request.catchment_ids),
                description=f"{method} partitioning of {request.hydrofabric_dataset} into {request.partition_count}",
                derived_from=[request.hydrofabric_dataset], labels=labels,
                request_id=f"partition:{request.request_id}" if request.request_id else None)
            stats = dict(result.stats, part_sizes=np.bincount(result.assignment.part,
                                                              minlength=request.partition_count).tolist())
            await ds.upload_bytes(dataset.name, PARTITION_FILE, json.dumps(result.document).encode())
            await ds.upload_bytes(dataset.name, STATS_FILE, json.dumps(stats, default=float).encode())
            dataset = await ds.seal_dataset(dataset.name)
        return partitioner_pb2.CreatePartitioningResponse(dataset=dataset, stats=stats_message(stats))

    async def _existing(self, ds: DatasetsClient, request_id: str):
        """The answer of an earlier call with this request_id, when that call completed."""
        if not request_id:
            return None
        caller = current_principal().user
        for dataset in await ds.list_datasets(owner=caller, labels={"dmod.partition.request": request_id}):
            # the caller's own earlier call: a dataset shared with the caller is someone else's
            if dataset.state == 2 and dataset.owner == caller:  # SEALED: the earlier call finished
                stats = json.loads(await ds.download_bytes(f"{dataset.name}/objects/{STATS_FILE}"))
                return partitioner_pb2.CreatePartitioningResponse(dataset=dataset, stats=stats_message(stats))
        return None

    async def ValidatePartitioning(self, request, context):
        violations = []
        for field in ("hydrofabric_dataset", "partition_dataset"):
            if not getattr(request, field).startswith("datasets/"):
                violations.append((field, "required: datasets/{id}"))
        if request.partition_count < 1:
            violations.append(("partition_count", "must be ≥ 1 (the number of MPI ranks)"))
        if violations:
            raise InvalidArgument(violations)
        async with caller_datasets(self.app) as ds:
            net = await self._network(ds, request.hydrofabric_dataset, "hydrofabric_dataset")
            try:
                objects = [o.path for o in await ds.list_objects(request.partition_dataset)]
                json_files = sorted(p for p in objects if p.endswith(".json") and p != STATS_FILE)
                if not json_files:
                    raise InvalidArgument(("partition_dataset", f"{request.partition_dataset} has no JSON file"))
                path = PARTITION_FILE if PARTITION_FILE in json_files else json_files[0]
                raw = await ds.download_bytes(f"{request.partition_dataset}/objects/{path}")
            except grpc.aio.AioRpcError as exc:
                raise from_downstream(exc, "partition_dataset") from None
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise InvalidArgument(("partition_dataset", f"{path} is not valid JSON: {exc}")) from None
        issues = await asyncio.to_thread(validate_partitioning, net, document, request.partition_count)
        errors = [i for i in issues if i.severity == "error"]
        reply = partitioner_pb2.ValidatePartitioningResponse(valid=not errors)
        for issue in issues:
            reply.violations.append(partitioner_pb2.PartitionViolation(
                code=issue.code, partition=_partition_of(issue.message), id=issue.id, message=issue.message))
        return reply


def _partition_of(message: str) -> int:
    """The first partition a violation names ("partition #3 ...", "partition 3 ..."), or -1."""
    found = _PARTITION_REF.search(message)
    return int(found.group(1)) if found else -1


async def create_servicer(app: App) -> PartitionerServicer:
    return PartitionerServicer(app)
