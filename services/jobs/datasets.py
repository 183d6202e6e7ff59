"""The scheduler's view of DatasetService (gRPC, on behalf of the job's owner).

Calls carry a short-lived token of the job owner scoped to the job, so datasets the scheduler
creates (the output) belong to the owner.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import grpc

from dmod.services.runtime.deadlines import downstream_timeout
from dmod.v1 import datasets_pb2, datasets_pb2_grpc, domain_pb2


class DatasetError(Exception):
    """A dataset call failed: `reason` is UPPER_SNAKE, `transient` when retrying may help."""

    def __init__(self, message: str, reason: str, transient: bool = False):
        super().__init__(message)
        self.reason = reason
        self.transient = transient


_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
              grpc.StatusCode.ABORTED}


def _wrap(exc: grpc.aio.AioRpcError, what: str) -> DatasetError:
    code = exc.code()
    reason = {grpc.StatusCode.NOT_FOUND: "DATASET_NOT_FOUND", grpc.StatusCode.UNIMPLEMENTED: "DATASETS_UNAVAILABLE",
              grpc.StatusCode.PERMISSION_DENIED: "DATASET_PERMISSION_DENIED"}.get(code, "DATASET_ERROR")
    return DatasetError(f"{what}: {code.name}: {exc.details()}", reason,
                        transient=code in _TRANSIENT or code == grpc.StatusCode.UNIMPLEMENTED)


class Datasets:
    def __init__(self, channel: grpc.aio.Channel, metadata: tuple = ()):
        self.stub = datasets_pb2_grpc.DatasetServiceStub(channel)
        self.metadata = metadata

    async def _call(self, method, request, what: str, timeout: float = 30.0):
        try:
            return await method(request, metadata=self.metadata, timeout=downstream_timeout(timeout))
        except grpc.aio.AioRpcError as exc:
            raise _wrap(exc, what) from None

    async def get(self, name: str) -> datasets_pb2.Dataset:
        return (await self._call(self.stub.GetDataset, datasets_pb2.GetDatasetRequest(name=name), name)).dataset

    async def search(self, requirement: domain_pb2.DataRequirement) -> datasets_pb2.SearchDatasetsResponse:
        return await self._call(self.stub.SearchDatasets, datasets_pb2.SearchDatasetsRequest(requirement=requirement),
                                "SearchDatasets")

    async def create(self, dataset: datasets_pb2.Dataset, request_id: str) -> datasets_pb2.Dataset:
        reply = await self._call(self.stub.CreateDataset,
                                 datasets_pb2.CreateDatasetRequest(dataset=dataset, request_id=request_id),
                                 f"CreateDataset {dataset.display_name}")
        return reply.dataset

    async def seal(self, name: str) -> datasets_pb2.Dataset:
        try:
            reply = await self.stub.SealDataset(datasets_pb2.SealDatasetRequest(name=name), metadata=self.metadata,
                                                timeout=downstream_timeout(120.0))
            return reply.dataset
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:  # already sealed: fine
                dataset = await self.get(name)
                if dataset.state == datasets_pb2.DATASET_STATE_SEALED:
                    return dataset
            raise _wrap(exc, f"SealDataset {name}") from None

    async def objects(self, name: str, prefix: str = "") -> list[datasets_pb2.DataObject]:
        out, token = [], ""
        while True:
            reply = await self._call(self.stub.ListObjects, datasets_pb2.ListObjectsRequest(
                parent=name, page_size=1000, page_token=token, prefix=prefix), f"ListObjects {name}")
            out.extend(reply.objects)
            token = reply.next_page_token
            if not token:
                return out

    async def read(self, obj: datasets_pb2.DataObject, offset: int = 0, length: int = 0) -> bytes:
        """Bytes of an object (a range when offset/length are given)."""
        chunks = []
        try:
            async for reply in self.stub.DownloadObject(
                    datasets_pb2.DownloadObjectRequest(name=obj.name, offset=offset, length=length),
                    metadata=self.metadata, timeout=downstream_timeout(300.0)):
                chunks.append(reply.chunk)
        except grpc.aio.AioRpcError as exc:
            raise _wrap(exc, f"DownloadObject {obj.name}") from None
        return b"".join(chunks)

    async def download(self, obj: datasets_pb2.DataObject, dest: Path) -> None:
        """Download a whole object to `dest`, verifying its SHA-256."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".part")
        try:
            with open(tmp, "wb") as fh:
                async for reply in self.stub.DownloadObject(datasets_pb2.DownloadObjectRequest(name=obj.name),
                                                            metadata=self.metadata, timeout=downstream_timeout(600.0)):
                    digest.update(reply.chunk)
                    fh.write(reply.chunk)
        except grpc.aio.AioRpcError as exc:
            tmp.unlink(missing_ok=True)
            raise _wrap(exc, f"DownloadObject {obj.name}") from None
        if obj.sha256 and digest.hexdigest() != obj.sha256:
            tmp.unlink(missing_ok=True)
            raise DatasetError(f"{obj.name}: SHA-256 mismatch", "CHECKSUM_MISMATCH")
        tmp.replace(dest)

    async def download_many(self, parent: str, objs: list[datasets_pb2.DataObject], dest_of) -> None:
        """Whole objects of one dataset by DownloadObjects (≤ 1,000 per call), each verified
        (dmod.object_stream) and written to `dest_of(obj)` under a temporary name first."""
        from dmod.object_stream import DamagedObject, verified_objects

        for i in range(0, len(objs), 1000):
            group = objs[i:i + 1000]
            try:
                replies = self.stub.DownloadObjects(datasets_pb2.DownloadObjectsRequest(
                    parent=parent, paths=[o.path for o in group]), metadata=self.metadata,
                    timeout=downstream_timeout(600.0))
                async for obj, data in verified_objects(replies):
                    dest = dest_of(obj)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_name(dest.name + ".part")
                    tmp.write_bytes(data)
                    tmp.replace(dest)
            except grpc.aio.AioRpcError as exc:
                raise _wrap(exc, f"DownloadObjects {parent} ({len(group)} objects)") from None
            except DamagedObject as exc:
                raise DatasetError(str(exc), "CHECKSUM_MISMATCH", transient=True) from None

    async def upload_bytes(self, parent: str, path: str, data: bytes, content_type: str = "application/json"):
        digest = hashlib.sha256(data).hexdigest()

        async def messages():
            yield datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
                parent=parent, path=path, size_bytes=len(data), sha256=digest, content_type=content_type))
            for i in range(0, len(data), 1 << 20):
                yield datasets_pb2.UploadObjectRequest(chunk=data[i:i + (1 << 20)])

        try:
            reply = await self.stub.UploadObject(messages(), metadata=self.metadata, timeout=downstream_timeout(120.0))
        except grpc.aio.AioRpcError as exc:
            raise _wrap(exc, f"UploadObject {parent}/{path}") from None
        return reply.object
