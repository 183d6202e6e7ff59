"""DatasetService: datasets, their objects (bytes in S3) and domains.

This module only wires RPCs to the modules that implement them:
catalog (dataset lifecycle), objects (listing/deleting objects), transfer.* (uploads, downloads,
presigned URLs), matching (SearchDatasets), detect (DetectDomain), janitor (cleanup).
"""
from __future__ import annotations

from typing import ClassVar

from dmod.services.datasets import access, janitor, matching, names, objects, store
from dmod.services.datasets.catalog import Catalog
from dmod.services.datasets.detect import DetectionContext, detect_domain
from dmod.services.datasets.domain_codec import to_proto
from dmod.services.datasets.transfer import downloads, many_downloads, presign
from dmod.services.datasets.transfer.batch import Batch
from dmod.services.datasets.transfer.blobs import Blobs
from dmod.services.datasets.transfer.uploads import Uploads
from dmod.services.datasets.transfer.wire import parse_batch_request, parse_upload_request
from dmod.services.runtime import scopes
from dmod.services.runtime.app import App
from dmod.services.runtime.auth import current_principal
from dmod.services.runtime.errors import InvalidArgument, NotFound
from dmod.v1 import datasets_pb2, datasets_pb2_grpc


class DatasetService(datasets_pb2_grpc.DatasetServiceServicer):
    request_parsers: ClassVar = {"UploadObject": parse_upload_request,  # chunks as views, not copies
                                 "UploadObjects": parse_batch_request}

    def __init__(self, app: App, pool, blobs: Blobs):
        self.app, self.pool, self.blobs = app, pool, blobs
        self.catalog = Catalog(pool, blobs)
        self.uploads = Uploads(app, pool, blobs)

    async def start(self) -> None:
        self.app.spawn(janitor.run(self.pool, self.blobs, self.uploads))
        self.app.spawn(self.uploads.keep_leases())
    # No stop(): it runs when draining begins, and in-flight transfers still need the thread pools.

    # ---- datasets --------------------------------------------------------------------------
    async def CreateDataset(self, request, context):
        return await self.catalog.create(request)

    async def GetDataset(self, request, context):
        return await self.catalog.get(request)

    async def ListDatasets(self, request, context):
        return await self.catalog.list(request)

    async def UpdateDataset(self, request, context):
        return await self.catalog.update(request)

    async def DeleteDataset(self, request, context):
        return await self.catalog.delete(request)

    async def SealDataset(self, request, context):
        return await self.catalog.seal(request)

    # ---- access ----------------------------------------------------------------------------
    async def _readable(self, dataset_id, name: str) -> None:
        """NOT_FOUND unless the dataset exists and the caller may read it (access.py)."""
        async with self.pool.acquire() as conn:
            row = await store.get_dataset(conn, dataset_id)
            if row is None:
                raise NotFound(f"{name} does not exist", reason="DATASET_NOT_FOUND", metadata={"name": name})
            await access.require_read(conn, row, name=name)

    async def _live_worker(self) -> None:
        """A worker token moves data only while its attempt is the job's current, running one."""
        principal = current_principal()
        if principal.job is not None:
            async with self.pool.acquire() as conn:
                await scopes.require_live_worker(conn, principal)

    # ---- objects ---------------------------------------------------------------------------
    async def ListObjects(self, request, context):
        await self._readable(names.parse_dataset_name(request.parent, "parent"), request.parent)
        return await objects.list_objects(self.pool, request)

    async def DeleteObject(self, request, context):
        dataset_id, _ = names.parse_object_name(request.name)
        await self._readable(dataset_id, names.dataset_name(dataset_id))  # then: the owner's (objects.py)
        return await objects.delete_object(self.pool, request)

    async def UploadObject(self, request_iterator, context):
        await self._live_worker()  # the dataset (its owner, a worker's output) is checked in transfer
        return await self.uploads.upload(request_iterator, context)

    async def UploadObjects(self, request_iterator, context):
        await self._live_worker()
        return await Batch(self.pool, self.blobs, self.app).run(request_iterator, context)

    async def QueryUploadStatus(self, request, context):
        return await self.uploads.status(request)

    async def DownloadObject(self, request, context):
        dataset_id, _ = names.parse_object_name(request.name)
        await self._readable(dataset_id, names.dataset_name(dataset_id))
        async for message in downloads.download(self.pool, self.blobs, request):
            yield message

    async def DownloadObjects(self, request, context):
        await self._readable(names.parse_dataset_name(request.parent, "parent"), request.parent)
        async for message in many_downloads.download_many(self.pool, self.blobs, request):
            yield message

    async def CreateUploadUrl(self, request, context):
        try:
            dataset_id = names.parse_dataset_name(request.parent, "parent")
        except InvalidArgument:
            dataset_id = None  # reported with the request's other problems
        if dataset_id is not None:
            await self._readable(dataset_id, request.parent)  # then: the owner's (presign)
        return await presign.create_upload_url(self.pool, self.blobs, request)

    async def FinalizeUpload(self, request, context):
        return await presign.finalize_upload(self.pool, self.blobs, request)

    async def CreateDownloadUrl(self, request, context):
        dataset_id, _ = names.parse_object_name(request.name)
        await self._readable(dataset_id, names.dataset_name(dataset_id))
        return await presign.create_download_url(self.pool, self.blobs, request)

    # ---- domains ---------------------------------------------------------------------------
    async def SearchDatasets(self, request, context):
        return await matching.search(self.pool, request)

    async def DetectDomain(self, request, context):
        row = await self.catalog.row(request.name)
        async with self.pool.acquire() as conn:
            rows = await store.list_objects(conn, row["id"], prefix="", after=None, limit=None)
        domain, detected = await detect_domain(DetectionContext(self.blobs, rows),
                                               request.data_format or row["data_format"])
        return datasets_pb2.DetectDomainResponse(domain=to_proto(domain), data_format=detected)


async def create_servicer(app: App) -> DatasetService:
    pool = await app.db()
    blobs = Blobs(app.settings)
    await blobs.ensure_bucket()
    return DatasetService(app, pool, blobs)
