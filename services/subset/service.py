"""SubsetService: upstream/downstream closures of a hydrofabric, written as a new dataset with
every layer filtered consistently (plus the subset definition)."""
from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

import grpc

from dmod.datasets_client import HYDROFABRIC, DatasetsClient
from dmod.services.hydrofabric.crosswalk import gage_crosswalk
from dmod.services.hydrofabric.fetch import NetworkCache, fetch_files
from dmod.services.hydrofabric.readers import is_geopackage
from dmod.services.hydrofabric.subset import resolve_seeds, subset_network
from dmod.services.hydrofabric.subset_write import write_subset
from dmod.services.runtime.app import App
from dmod.services.runtime.datasets import caller_datasets
from dmod.services.runtime.errors import InvalidArgument, from_downstream
from dmod.v1 import subset_pb2, subset_pb2_grpc

MAX_IDS = 100_000
_DIRECTIONS = {subset_pb2.SUBSET_DIRECTION_UPSTREAM: (True, False),
               subset_pb2.SUBSET_DIRECTION_DOWNSTREAM: (False, True),
               subset_pb2.SUBSET_DIRECTION_BOTH: (True, True)}


class SubsetServicer(subset_pb2_grpc.SubsetServiceServicer):
    def __init__(self, app: App):
        self.app = app
        self.cache = Path(app.settings.home) / "cache/hydrofabric"
        self.networks = NetworkCache()

    async def _load(self, ds: DatasetsClient, dataset: str):
        try:
            source = await ds.get_dataset(dataset)
            files = await fetch_files(ds, dataset, self.cache)
        except grpc.aio.AioRpcError as exc:
            raise from_downstream(exc, "hydrofabric_dataset") from None
        except ValueError as exc:
            raise InvalidArgument(("hydrofabric_dataset", f"{dataset} {exc}")) from None
        try:
            net = await self.networks.load(files)
            crosswalk = await asyncio.to_thread(gage_crosswalk, str(files.catchments), net) \
                if is_geopackage(str(files.catchments)) else None
        except Exception as exc:  # noqa: BLE001 - unreadable user data is bad input
            raise InvalidArgument(("hydrofabric_dataset", f"{dataset} cannot be read as a hydrofabric: {exc}")) from None
        return source, files, net, crosswalk

    @staticmethod
    def _check_ids(ids) -> None:
        if not ids:
            raise InvalidArgument(("ids", "give at least one catchment, nexus, waterbody or gage id"))
        if len(ids) > MAX_IDS:
            raise InvalidArgument(("ids", f"{len(ids)} ids; at most {MAX_IDS}"))

    async def SubsetHydrofabric(self, request, context):
        violations = []
        if not request.hydrofabric_dataset.startswith("datasets/"):
            violations.append(("hydrofabric_dataset", "required: datasets/{id}"))
        if request.depth < 0:
            violations.append(("depth", "must be ≥ 0 (0 = unlimited)"))
        if request.direction not in (0, *_DIRECTIONS):
            violations.append(("direction", f"unknown direction {request.direction}"))
        if violations:
            raise InvalidArgument(violations)
        self._check_ids(request.ids)
        upstream, downstream = _DIRECTIONS.get(request.direction, (True, False))
        async with caller_datasets(self.app) as ds:
            source, files, net, crosswalk = await self._load(ds, request.hydrofabric_dataset)
            try:
                sub = subset_network(net, list(request.ids), upstream=upstream, downstream=downstream,
                                     depth=request.depth or None, crosswalk=crosswalk)
            except KeyError as exc:
                raise InvalidArgument(("ids", str(exc).strip("'\""))) from None
            if len(sub.catchments) == 0:
                raise InvalidArgument(("ids", "the subset is empty: no catchment in that direction"))
            definition = {"source_dataset": request.hydrofabric_dataset, "ids": list(request.ids), "upstream": upstream,
                          "downstream": downstream, "depth": request.depth or None, "id_kinds": sub.kinds}
            with tempfile.TemporaryDirectory(prefix="dmod-subset-") as tmp:
                nexus_path = None if files.nexuses == files.catchments else str(files.nexuses)
                await asyncio.to_thread(write_subset, net, sub, tmp, str(files.catchments), nexus_path,
                                        definition, files.catchments.stem)
                name = request.display_name or f"{source.display_name}-subset-{uuid.uuid4().hex[:8]}"
                try:
                    dataset = await ds.create_dataset(
                        name, HYDROFABRIC, source.data_format, derived_from=[request.hydrofabric_dataset],
                        description=f"subset of {request.hydrofabric_dataset}: {len(sub.catchments)} catchments",
                        labels={"dmod.subset.source": request.hydrofabric_dataset.split("/", 1)[1]},
                        request_id=f"subset:{request.request_id}" if request.request_id else None)
                except grpc.aio.AioRpcError as exc:
                    raise from_downstream(exc, "display_name") from None
                if dataset.state != 2:  # not sealed by an earlier identical request
                    await ds.upload_dir(dataset.name, tmp)
                    dataset = await ds.seal_dataset(dataset.name)
        return subset_pb2.SubsetHydrofabricResponse(dataset=dataset, catchment_count=len(sub.catchments),
                                                    nexus_count=len(sub.nexuses))

    async def ValidateIds(self, request, context):
        if not request.hydrofabric_dataset.startswith("datasets/"):
            raise InvalidArgument(("hydrofabric_dataset", "required: datasets/{id}"))
        self._check_ids(request.ids)
        async with caller_datasets(self.app) as ds:
            _, _, net, crosswalk = await self._load(ds, request.hydrofabric_dataset)
        seeds = resolve_seeds(net, list(request.ids), crosswalk)
        return subset_pb2.ValidateIdsResponse(unknown_ids=seeds.unknown, kinds=seeds.kinds)


async def create_servicer(app: App) -> SubsetServicer:
    return SubsetServicer(app)

