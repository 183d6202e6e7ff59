"""Python helper for DatasetService: datasets, verified uploads/downloads, sealing, search.

    async with DatasetsClient() as ds:                      # DMOD_GATEWAY / the local stack
        d = await ds.create_dataset("aorc-2015", FORCING, AORC_CSV, request_id="...")
        await ds.upload_dir(d.name, "forcing/")             # parallel, SHA-256 verified
        d = await ds.seal_dataset(d.name)                   # domain detected on seal
        best = (await ds.search(requirement(FORCING, domain=make_domain(time=(t0, t1))))).best
        await ds.download_file(f"{d.name}/objects/cat-1.csv", "cat-1.csv")

    ds = SyncDatasetsClient()                               # the same methods, blocking
    ds.upload_file("datasets/…", "big.nc")

Integrity: uploads send the file's SHA-256 (first message, or a trailing `final_sha256` when
the file is hashed while it is sent) and the server rejects a mismatch before the object becomes
visible; downloads are written to a temp file, hashed, compared with the recorded SHA-256 and
only then renamed into place. Interrupted uploads resume from the server's committed offset
(QueryUploadStatus), interrupted downloads from the bytes already written.
"""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2

from dmod import client as _client
from dmod.errors import error_details
from dmod.protowire import read_varint, varint
from dmod.object_stream import DamagedObject, verified_objects
from dmod.upload_journal import UploadJournal
from dmod.url_download import UrlFetchFailed
from dmod.url_download import fetch as fetch_url
from dmod.v1 import datasets_pb2, datasets_pb2_grpc, domain_pb2

CHUNK = 1 << 20  # the server's largest accepted chunk
SMALL_FILE = 4 << 20  # read whole, hashed before sending
READ_AHEAD = 8
# Files up to BATCH_FILE go many per UploadObjects call (one commit per batch, all or nothing);
# batches hold at most BATCH_FILES files / BATCH_BYTES bytes.
BATCH_FILE = SMALL_FILE
BATCH_FILES = 500
BATCH_BYTES = 8 << 20
URL_MIN_BYTES = 32 << 20  # whole objects this big come straight from S3 by URL (auto)
Progress = Callable[[int, int], None]  # (bytes done, total bytes)
# dmod.client's options plus a large initial HTTP/2 receive window: downloads are not throttled
# by window updates when the host is busy.
CHANNEL_OPTIONS = [*_client.CHANNEL_OPTIONS, ("grpc.http2.lookahead_bytes", 16 << 20)]

# Short names for the enums.
CONFIG, FORCING, HYDROFABRIC, OBSERVATION, OUTPUT = (
    domain_pb2.DATA_CATEGORY_CONFIG, domain_pb2.DATA_CATEGORY_FORCING, domain_pb2.DATA_CATEGORY_HYDROFABRIC,
    domain_pb2.DATA_CATEGORY_OBSERVATION, domain_pb2.DATA_CATEGORY_OUTPUT)
OPEN, SEALED = datasets_pb2.DATASET_STATE_OPEN, datasets_pb2.DATASET_STATE_SEALED

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
              grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED}


class ChecksumMismatch(Exception):
    """Downloaded bytes do not hash to the recorded SHA-256."""


class UploadIncomplete(Exception):
    """Some files of an `upload_files` call failed; every other one is committed. `failed`: object
    path -> what went wrong; `uploaded`: the objects committed (or already there). Running the same
    upload again (skip_existing) sends only what is missing."""

    def __init__(self, failed: dict[str, str], uploaded: list):
        self.failed, self.uploaded = failed, uploaded
        shown = "; ".join(f"{path}: {why}" for path, why in list(failed.items())[:5])
        more = f" (+{len(failed) - 5} more)" if len(failed) > 5 else ""
        super().__init__(f"{len(failed)} file(s) not uploaded, {len(uploaded)} committed — {shown}{more}; "
                         "run the same upload again to send what is missing")


def _why(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or exc.__class__.__name__


def reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason of an RPC error ('' if none)."""
    info = error_details(error).get("ErrorInfo")
    return info.reason if info is not None else ""


def sha256_file(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(start)
        left = None if stop is None else stop - start
        while left is None or left > 0:
            block = fh.read(8 << 20 if left is None else min(8 << 20, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


# ---- building domains and requirements --------------------------------------------------------

def _ts(value: dt.datetime | str) -> timestamp_pb2.Timestamp:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC))
    return ts


def make_domain(*, time: tuple | None = None, catchments: Iterable[str] | None = None,
                hydrofabric_id: str | None = None, length: int | None = None, gages: Iterable[str] | None = None,
                nexuses: Iterable[str] | None = None, vpu: str | None = None) -> domain_pb2.Domain:
    """time=(begin, end) (end exclusive; datetimes or ISO strings, naive = UTC); an empty
    iterable for an id index means "all"."""
    d = domain_pb2.Domain()
    if time is not None:
        d.continuous.add(index=domain_pb2.STANDARD_INDEX_TIME, begin_time=_ts(time[0]), end_time=_ts(time[1]))
    for index, values in ((domain_pb2.STANDARD_INDEX_CATCHMENT_ID, catchments),
                          (domain_pb2.STANDARD_INDEX_GAGE_ID, gages), (domain_pb2.STANDARD_INDEX_NEXUS_ID, nexuses)):
        if values is not None:
            d.discrete.add(index=index, values=list(values))
    if hydrofabric_id:
        d.discrete.add(index=domain_pb2.STANDARD_INDEX_HYDROFABRIC_ID, values=[hydrofabric_id])
    if length is not None:
        d.discrete.add(index=domain_pb2.STANDARD_INDEX_LENGTH, values=[str(length)])
    if vpu:
        d.discrete.add(index=domain_pb2.STANDARD_INDEX_VPU, values=[vpu])
    return d


def requirement(category: int, data_format: int = 0, domain: domain_pb2.Domain | None = None,
                owner: str = "") -> domain_pb2.DataRequirement:
    return domain_pb2.DataRequirement(category=category, data_format=data_format, domain=domain, owner=owner)


def object_name(dataset: str, path: str) -> str:
    return f"{dataset}/objects/{path}"


# ---- bulk messages without protobuf copies -------------------------------------------------------
# Chunks are most of the bytes: encoding/decoding them by hand avoids two copies of every byte per
# message (protobuf's own parse/serialise and the bytes-field accessor). Everything else goes
# through protobuf.

def encode_chunk(block) -> bytes:
    """The wire form of UploadObjectRequest(chunk=block) (field 2, length-delimited)."""
    return b"\x12" + varint(len(block)) + block


def encode_batch_chunk(block) -> bytes:
    """The wire form of UploadObjectsRequest(chunk=block) (field 3, length-delimited)."""
    return b"\x1a" + varint(len(block)) + block


def plan_batches(items: list, size_of, lanes: int) -> list[list]:
    """Small files into batches of at most BATCH_FILES / BATCH_BYTES, and into at least `lanes`
    batches when each would still hold ≥ 64 files (even shares, one file of slack)."""
    if not items:
        return []
    total = sum(size_of(i) for i in items)
    count = max(-(-total // BATCH_BYTES), -(-len(items) // BATCH_FILES), min(lanes, len(items) // 64), 1)
    per_bytes = min(BATCH_BYTES, -(-total // count) + max(size_of(i) for i in items))
    per_files = min(BATCH_FILES, -(-len(items) // count))
    batches: list[list] = [[]]
    used = 0
    for item in items:
        if batches[-1] and (len(batches[-1]) >= per_files or used + size_of(item) > per_bytes):
            batches.append([])
            used = 0
        batches[-1].append(item)
        used += size_of(item)
    return batches


def _write_files(files: list[tuple[Path, bytes]]) -> None:
    """Each file written whole under a temporary name, then renamed into place."""
    for dest, data in files:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)


def _serialize_upload(message) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


class DownloadPart:
    """A DownloadObjectResponse: `object` (first message only, else None) and `chunk` (a
    memoryview into the received message, not a copy)."""

    __slots__ = ("chunk", "object")

    def __init__(self, obj, chunk):
        self.object = obj
        self.chunk = chunk


def _parse_download(raw: bytes) -> DownloadPart:
    view, i, obj, chunk = memoryview(raw), 0, None, memoryview(b"")
    try:
        while i < len(raw):
            tag, i = read_varint(raw, i)
            if tag & 7 != 2:
                raise ValueError("unexpected wire type")
            length, i = read_varint(raw, i)
            if tag >> 3 == 1:
                obj = datasets_pb2.DataObject.FromString(view[i:i + length])
            elif tag >> 3 == 2:
                chunk = view[i:i + length]
            i += length
        return DownloadPart(obj, chunk)
    except (ValueError, IndexError):  # a newer server's fields: let protobuf decode it
        pb = datasets_pb2.DownloadObjectResponse.FromString(raw)
        return DownloadPart(pb.object if pb.HasField("object") else None, memoryview(pb.chunk))


# ---- ordered background I/O -------------------------------------------------------------------

class _FileReader:
    """Blocks of a file from `offset`, read (and optionally hashed and encoded) ahead by one
    thread. Yields (block size, encoded block)."""

    def __init__(self, path: Path, offset: int, hasher=None, encode=lambda block: block):
        self._fh = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._fh.seek(offset)
        self._hasher = hasher
        self._encode = encode
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dmod-read")
        self._ahead: collections.deque = collections.deque()

    def _read(self) -> tuple[int, bytes]:
        block = self._fh.read(CHUNK)
        if block and self._hasher is not None:
            self._hasher.update(block)
        return len(block), self._encode(block) if block else block

    async def __aiter__(self) -> AsyncIterator[tuple[int, bytes]]:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while len(self._ahead) < READ_AHEAD:
                    self._ahead.append(loop.run_in_executor(self._pool, self._read))
                size, block = await self._ahead.popleft()
                if not size:
                    return
                yield size, block
        finally:
            self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._fh.close()


class _FileWriter:
    """Writes and hashes blocks in order on one thread; `write` applies back-pressure."""

    def __init__(self, path: Path, offset: int, hasher):
        self._fh = open(path, "r+b" if offset else "wb")  # noqa: SIM115 - closed in close()
        self._fh.seek(offset)
        self._fh.truncate()
        self._hasher = hasher
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dmod-write")
        self._pending: collections.deque = collections.deque()

    def _write(self, block: bytes) -> None:
        self._fh.write(block)
        self._hasher.update(block)

    async def write(self, block: bytes) -> None:
        self._pending.append(asyncio.get_running_loop().run_in_executor(self._pool, self._write, block))
        while len(self._pending) > READ_AHEAD:
            await self._pending.popleft()

    async def flush(self) -> None:
        while self._pending:
            await self._pending.popleft()
        await asyncio.get_running_loop().run_in_executor(self._pool, self._fh.flush)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._fh.close()


# ---- the client -------------------------------------------------------------------------------

class DatasetsClient:
    def __init__(self, channel: grpc.aio.Channel | None = None, *, target: str | None = None,
                 metadata: tuple | None = None, timeout: float = 60.0, journal: UploadJournal | None = None):
        """`journal`: remember large-file uploads in progress so that a rerun after the process
        was killed resumes them (the CLI uses `UploadJournal.default()`)."""
        self.journal = journal
        self._own = channel is None
        self.channel = channel if channel is not None else grpc.aio.insecure_channel(
            target or _client.gateway_address(), options=CHANNEL_OPTIONS)
        self.stub = datasets_pb2_grpc.DatasetServiceStub(self.channel)
        self._upload = self.channel.stream_unary(
            "/dmod.v1.DatasetService/UploadObject", request_serializer=_serialize_upload,
            response_deserializer=datasets_pb2.UploadObjectResponse.FromString)
        self._upload_batch = self.channel.stream_unary(
            "/dmod.v1.DatasetService/UploadObjects", request_serializer=_serialize_upload,
            response_deserializer=datasets_pb2.UploadObjectsResponse.FromString)
        self._download = self.channel.unary_stream(
            "/dmod.v1.DatasetService/DownloadObject",
            request_serializer=datasets_pb2.DownloadObjectRequest.SerializeToString,
            response_deserializer=_parse_download)
        self.metadata = tuple(metadata) if metadata is not None else _client.metadata()
        self.timeout = timeout

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own:
            await self.channel.close()

    async def _unary(self, method, request, timeout: float | None = None):
        return await method(request, metadata=self.metadata, timeout=timeout or self.timeout)

    # ---- datasets ----------------------------------------------------------------------------
    async def create_dataset(self, display_name: str, category: int, data_format: int = 0, *, description: str = "",
                             labels: dict[str, str] | None = None, domain: domain_pb2.Domain | None = None,
                             derived_from: Iterable[str] = (), request_id: str | None = None) -> datasets_pb2.Dataset:
        """Idempotent when `request_id` is given (the same id returns the same dataset)."""
        dataset = datasets_pb2.Dataset(display_name=display_name, category=category, data_format=data_format,
                                       description=description, labels=labels or {}, domain=domain,
                                       derived_from=list(derived_from))
        reply = await self._unary(self.stub.CreateDataset,
                                  datasets_pb2.CreateDatasetRequest(dataset=dataset, request_id=request_id or ""))
        return reply.dataset

    async def get_dataset(self, name: str) -> datasets_pb2.Dataset:
        return (await self._unary(self.stub.GetDataset, datasets_pb2.GetDatasetRequest(name=name))).dataset

    async def list_datasets(self, *, category: int = 0, data_format: int = 0, owner: str = "",
                            labels: dict[str, str] | None = None, state: int = 0,
                            limit: int | None = None) -> list[datasets_pb2.Dataset]:
        out: list[datasets_pb2.Dataset] = []
        token = ""
        while True:
            reply = await self._unary(self.stub.ListDatasets, datasets_pb2.ListDatasetsRequest(
                page_size=min(limit or 500, 500), page_token=token, category=category, data_format=data_format,
                owner=owner, labels=labels or {}, state=state))
            out.extend(reply.datasets)
            token = reply.next_page_token
            if not token or (limit and len(out) >= limit):
                return out[:limit] if limit else out

    async def resolve(self, name_or_display: str) -> str:
        """`datasets/{id}` as given, or the dataset with that display name."""
        if name_or_display.startswith("datasets/"):
            return name_or_display
        found = [d.name for d in await self.list_datasets() if d.display_name == name_or_display]
        if len(found) != 1:
            raise LookupError(f"{len(found)} datasets are named {name_or_display!r}" if found
                              else f"no dataset is named {name_or_display!r}")
        return found[0]

    async def update_dataset(self, name: str, *, display_name: str | None = None, description: str | None = None,
                             labels: dict[str, str] | None = None,
                             domain: domain_pb2.Domain | None = None, visibility: int | None = None,
                             readers: list[str] | None = None) -> datasets_pb2.Dataset:
        """Change the named fields only. Sharing: `visibility` (datasets_pb2.DATASET_VISIBILITY_PRIVATE
        or _PUBLIC) and `readers` ("users/{name}" / "groups/{name}", replacing the list)."""
        dataset = datasets_pb2.Dataset(name=name)
        paths = []
        for field, value in (("display_name", display_name), ("description", description)):
            if value is not None:
                setattr(dataset, field, value)
                paths.append(field)
        if labels is not None:
            dataset.labels.update(labels)
            paths.append("labels")
        if domain is not None:
            dataset.domain.CopyFrom(domain)
            paths.append("domain")
        if visibility is not None:
            dataset.visibility = visibility
            paths.append("visibility")
        if readers is not None:
            dataset.readers.extend(readers)
            paths.append("readers")
        reply = await self._unary(self.stub.UpdateDataset, datasets_pb2.UpdateDatasetRequest(
            dataset=dataset, update_mask=field_mask_pb2.FieldMask(paths=paths)))
        return reply.dataset

    async def delete_dataset(self, name: str, *, force: bool = False) -> None:
        await self._unary(self.stub.DeleteDataset, datasets_pb2.DeleteDatasetRequest(name=name, force=force))

    async def seal_dataset(self, name: str) -> datasets_pb2.Dataset:
        """OPEN → SEALED (domain detected when empty). Sealing a sealed dataset returns it."""
        try:
            return (await self._unary(self.stub.SealDataset, datasets_pb2.SealDatasetRequest(name=name),
                                      timeout=max(self.timeout, 600.0))).dataset
        except grpc.aio.AioRpcError as exc:
            if reason(exc) == "DATASET_SEALED":
                return await self.get_dataset(name)
            raise

    async def detect_domain(self, name: str, data_format: int = 0) -> datasets_pb2.DetectDomainResponse:
        return await self._unary(self.stub.DetectDomain, datasets_pb2.DetectDomainRequest(
            name=name, data_format=data_format), timeout=max(self.timeout, 600.0))

    async def search(self, req: domain_pb2.DataRequirement) -> datasets_pb2.SearchDatasetsResponse:
        """`.best` (empty name when nothing fits) and every candidate with its rejection reasons."""
        return await self._unary(self.stub.SearchDatasets, datasets_pb2.SearchDatasetsRequest(requirement=req))

    # ---- objects -----------------------------------------------------------------------------
    async def list_objects(self, dataset: str, prefix: str = "") -> list[datasets_pb2.DataObject]:
        out: list[datasets_pb2.DataObject] = []
        token = ""
        while True:
            reply = await self._unary(self.stub.ListObjects, datasets_pb2.ListObjectsRequest(
                parent=dataset, page_size=1000, page_token=token, prefix=prefix))
            out.extend(reply.objects)
            token = reply.next_page_token
            if not token:
                return out

    async def delete_object(self, name: str) -> None:
        await self._unary(self.stub.DeleteObject, datasets_pb2.DeleteObjectRequest(name=name))

    async def upload_status(self, upload_id: str) -> datasets_pb2.QueryUploadStatusResponse | None:
        """None when the server has nothing committed for the upload."""
        try:
            return await self._unary(self.stub.QueryUploadStatus,
                                     datasets_pb2.QueryUploadStatusRequest(upload_id=upload_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    async def upload_bytes(self, dataset: str, path: str, data: bytes, *, content_type: str = "",
                           retries: int = 3) -> datasets_pb2.DataObject:
        digest = hashlib.sha256(data).hexdigest()

        async def messages():
            yield datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
                parent=dataset, path=path, size_bytes=len(data), sha256=digest, content_type=content_type))
            view = memoryview(data)
            for i in range(0, len(data), CHUNK):
                yield encode_chunk(view[i:i + CHUNK])

        for attempt in range(retries + 1):
            try:
                reply = await self._upload(messages(), metadata=self.metadata, timeout=max(self.timeout, 300))
                return reply.object
            except grpc.aio.AioRpcError as exc:
                if attempt == retries or exc.code() not in _RETRYABLE:
                    raise
                await asyncio.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    async def upload_file(self, dataset: str, local: str | os.PathLike, path: str | None = None, *,
                          content_type: str = "", progress: Progress | None = None, retries: int = 8,
                          upload_id: str | None = None) -> datasets_pb2.DataObject:
        """Upload one file (default object path: its name), resuming after transient failures
        (retried for ~45 s: a restarted server takes over an upload's lease within 15 s) and,
        with a journal, after this process was killed."""
        local = Path(local)
        size = local.stat().st_size
        path = path or local.name
        if size <= SMALL_FILE:
            data = await asyncio.to_thread(local.read_bytes)
            obj = await self.upload_bytes(dataset, path, data, content_type=content_type, retries=retries)
            if progress:
                progress(size, size)
            return obj
        offset, digest, recalled = 0, "", False
        if upload_id is None and self.journal is not None:
            upload_id = self.journal.recall(dataset, path, local)
            status = await self.upload_status(upload_id) if upload_id else None
            if status is not None and status.complete:
                return await self._finished(dataset, path, local)
            recalled = status is not None
            upload_id = upload_id if recalled else None
            if recalled and status.committed_bytes:
                offset = status.committed_bytes
                digest = await asyncio.to_thread(sha256_file, local)  # a resume sends it up front
        upload_id = upload_id or str(uuid.uuid4())
        if self.journal is not None:
            self.journal.remember(dataset, path, local, upload_id)
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 10))
                try:
                    status = await self.upload_status(upload_id)
                except grpc.aio.AioRpcError as exc:  # the server may still be restarting
                    if attempt == retries or exc.code() not in _RETRYABLE:
                        raise
                    continue
                offset = status.committed_bytes if status is not None else 0
                if not digest:  # the first attempt hashed while sending; a resume sends it up front
                    digest = await asyncio.to_thread(sha256_file, local)
            try:
                obj = await self._send_file(dataset, local, path, size, upload_id, offset, digest, content_type,
                                            progress)
                return self._forget(dataset, path, local, obj)
            except grpc.aio.AioRpcError as exc:
                if reason(exc) == "UPLOAD_COMPLETE":
                    return await self._finished(dataset, path, local)
                if recalled and attempt < retries and reason(exc) in ("UPLOAD_ABORTED", "OFFSET_MISMATCH"):
                    # the remembered upload cannot go on (expired, aborted): a new one, from byte 0
                    recalled, upload_id, offset, digest = False, str(uuid.uuid4()), 0, ""
                    self.journal.remember(dataset, path, local, upload_id)
                    continue
                if attempt == retries or exc.code() not in _RETRYABLE:
                    if exc.code() not in _RETRYABLE:
                        self._forget(dataset, path, local)
                    raise
        raise AssertionError("unreachable")

    def _forget(self, dataset: str, path: str, local: Path, obj=None):
        if self.journal is not None:
            self.journal.forget(dataset, path, local)
        return obj

    async def _finished(self, dataset: str, path: str, local: Path) -> datasets_pb2.DataObject:
        return self._forget(dataset, path, local, await self._completed(dataset, path, local))

    async def _completed(self, dataset: str, path: str, local: Path) -> datasets_pb2.DataObject:
        objects = [o for o in await self.list_objects(dataset, prefix=path) if o.path == path]
        digest = await asyncio.to_thread(sha256_file, local)
        if not objects or objects[0].sha256 != digest:
            raise ChecksumMismatch(f"{path}: the completed upload does not hold {local}")
        return objects[0]

    async def _send_file(self, dataset, local: Path, path: str, size: int, upload_id: str, offset: int, digest: str,
                         content_type: str, progress: Progress | None) -> datasets_pb2.DataObject:
        hasher = None if digest else hashlib.sha256()
        reader = _FileReader(local, offset, hasher, encode_chunk)  # wire form built off the event loop
        sent = offset

        async def messages():
            nonlocal sent
            yield datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
                parent=dataset, path=path, size_bytes=size, sha256=digest, content_type=content_type,
                upload_id=upload_id, offset=offset))
            async for n, message in reader:
                yield message
                sent += n
                if progress:
                    progress(sent, size)
            if hasher is not None:
                yield datasets_pb2.UploadObjectRequest(final_sha256=hasher.hexdigest())

        try:
            reply = await self._upload(messages(), metadata=self.metadata)
        finally:
            reader.close()
        if progress:
            progress(size, size)
        return reply.object

    async def upload_batch(self, dataset: str, files: list[tuple[str | os.PathLike, str]], *,
                           retries: int = 3) -> list[datasets_pb2.DataObject]:
        """Small files [(local file, object path)] in one UploadObjects call: all become visible
        together, or (on any error) none. A failed call is retried as a whole."""
        def read() -> list[tuple[str, bytes, str]]:
            out = []
            for local, path in files:
                data = Path(local).read_bytes()
                out.append((path, data, hashlib.sha256(data).hexdigest()))
            return out
        items = await asyncio.to_thread(read)

        async def messages():
            yield datasets_pb2.UploadObjectsRequest(parent=dataset)
            for path, data, digest in items:
                yield datasets_pb2.UploadObjectsRequest(header=datasets_pb2.UploadObjectsHeader(
                    path=path, size_bytes=len(data), sha256=digest))
                view = memoryview(data)
                for i in range(0, len(data), CHUNK):
                    yield encode_batch_chunk(view[i:i + CHUNK])

        for attempt in range(retries + 1):
            try:
                reply = await self._upload_batch(messages(), metadata=self.metadata, timeout=max(self.timeout, 300))
                break
            except grpc.aio.AioRpcError as exc:
                if attempt == retries or exc.code() not in _RETRYABLE:
                    raise
                await asyncio.sleep(0.2 * 2 ** attempt)
        for (path, _data, digest), obj in zip(items, reply.objects, strict=True):
            if obj.sha256 != digest:
                raise ChecksumMismatch(f"{path}: the server stored SHA-256 {obj.sha256}, expected {digest}")
        return list(reply.objects)

    async def upload_files(self, dataset: str, files: list[tuple[str | os.PathLike, str]], *, concurrency: int = 8,
                           progress: Progress | None = None,
                           skip_existing: bool = False) -> list[datasets_pb2.DataObject]:
        """Upload [(local file, object path)]; returns the objects in the same order. Files up to
        BATCH_FILE go in UploadObjects batches (a few at a time), larger ones one stream each
        (resumable), `concurrency` streams in all. A failed batch or file does not stop the others:
        at the end UploadIncomplete names what failed. `skip_existing`: files the dataset already
        holds with the same size and SHA-256 are not sent again."""
        sizes = {i: Path(local).stat().st_size for i, (local, _) in enumerate(files)}
        total = sum(sizes.values())
        done = dict.fromkeys(sizes, 0)
        results: dict[int, datasets_pb2.DataObject] = {}
        failed: dict[int, str] = {}
        sem = asyncio.Semaphore(concurrency)
        if skip_existing:
            present = await self._already_there(dataset, files, sizes)
            results.update(present)
            done.update({i: sizes[i] for i in present})

        def report() -> None:
            if progress:
                progress(sum(done.values()), total)

        async def one(i: int) -> None:
            def each(n: int, _total: int) -> None:
                done[i] = n
                report()
            async with sem:
                local, path = files[i]
                try:
                    results[i] = await self.upload_file(dataset, local, path, progress=each)
                except (grpc.aio.AioRpcError, ChecksumMismatch, OSError) as exc:
                    failed[i] = _why(exc)

        async def batch(indices: list[int]) -> None:
            async with sem:
                try:
                    objects = await self.upload_batch(dataset, [files[i] for i in indices])
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNIMPLEMENTED:  # else an older server: one stream per file
                        culprit = error_details(exc).get("ErrorInfo")
                        culprit = culprit.metadata.get("path") if culprit is not None else None
                        for i in indices:  # nothing of the batch is visible
                            failed[i] = _why(exc) if files[i][1] == culprit or culprit is None else \
                                f"not sent: its batch was rejected because of {culprit}"
                        return
                    objects = None
                except (ChecksumMismatch, OSError) as exc:
                    failed.update(dict.fromkeys(indices, _why(exc)))
                    return
            if objects is None:
                await asyncio.gather(*(one(i) for i in indices))
                return
            for i, obj in zip(indices, objects, strict=True):
                results[i] = obj
                done[i] = sizes[i]
            report()

        todo = [i for i in sizes if i not in results]
        small = [i for i in todo if sizes[i] <= BATCH_FILE]
        large = [i for i in todo if sizes[i] > BATCH_FILE]
        batches = plan_batches(small, sizes.__getitem__, max(1, min(3, concurrency // 2)))
        await asyncio.gather(*(batch(b) for b in batches), *(one(i) for i in large))
        if failed:
            raise UploadIncomplete({files[i][1]: why for i, why in sorted(failed.items())},
                                   [results[i] for i in sorted(results)])
        return [results[i] for i in range(len(files))]

    async def _already_there(self, dataset: str, files: list[tuple[str | os.PathLike, str]],
                             sizes: dict[int, int]) -> dict[int, datasets_pb2.DataObject]:
        """Indices of files the dataset holds already (same path, size and SHA-256)."""
        prefix = os.path.commonprefix([path for _, path in files]) if files else ""
        existing = {o.path: o for o in await self.list_objects(dataset, prefix=prefix)}
        candidates = [i for i, (_, path) in enumerate(files)
                      if path in existing and existing[path].size_bytes == sizes[i]]

        def compare() -> list[bool]:  # hashing local files: off the event loop
            with ThreadPoolExecutor(max_workers=4) as pool:
                return list(pool.map(lambda i: sha256_file(files[i][0]) == existing[files[i][1]].sha256, candidates))
        matches = await asyncio.to_thread(compare) if candidates else []
        return {i: existing[files[i][1]] for i, ok in zip(candidates, matches, strict=True) if ok}

    async def upload_dir(self, dataset: str, local_dir: str | os.PathLike, prefix: str = "", *,
                         concurrency: int = 8, progress: Progress | None = None) -> list[datasets_pb2.DataObject]:
        """Every file under `local_dir`, as `prefix` + its relative path (see `upload_files`)."""
        root = Path(local_dir)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        return await self.upload_files(dataset, [(p, prefix + p.relative_to(root).as_posix()) for p in files],
                                       concurrency=concurrency, progress=progress)

    async def download_bytes(self, name: str, offset: int = 0, length: int = 0) -> bytes:
        """An object's bytes (a range with offset/length); whole objects are verified."""
        chunks, obj = [], None
        async for reply in self._download(datasets_pb2.DownloadObjectRequest(
                name=name, offset=offset, length=length), metadata=self.metadata):
            if obj is None:
                obj = reply.object
            chunks.append(reply.chunk)
        data = b"".join(chunks)
        if offset == 0 and length == 0 and obj is not None and hashlib.sha256(data).hexdigest() != obj.sha256:
            raise ChecksumMismatch(f"{name}: received bytes do not hash to {obj.sha256}")
        return data

    async def download_file(self, name: str, dest: str | os.PathLike, *, progress: Progress | None = None,
                            retries: int = 5, via: str | None = None,
                            size_hint: int | None = None) -> datasets_pb2.DataObject:
        """Download a whole object to `dest` (atomically; SHA-256 verified).

        via: "stream" (through the service, resuming after transient failures), "url" (straight
        from S3 by a presigned URL the service issues), or "auto" (default, DMOD_DOWNLOAD_VIA):
        objects of URL_MIN_BYTES and more by URL when S3 answers, else streamed. size_hint
        (e.g. from list_objects) saves asking for a URL for small objects."""
        via = via or os.environ.get("DMOD_DOWNLOAD_VIA", "auto")
        if via not in ("auto", "url", "stream"):
            raise ValueError(f"via must be auto, url or stream, not {via!r}")
        if via == "url" or (via == "auto" and (size_hint is None or size_hint >= URL_MIN_BYTES)):
            obj = await self._download_by_url(name, Path(dest), progress, required=via == "url")
            if obj is not None:
                return obj
        return await self._download_stream(name, Path(dest), progress, retries)

    async def _download_by_url(self, name: str, dest: Path, progress: Progress | None, *,
                               required: bool) -> datasets_pb2.DataObject | None:
        """The URL path of download_file; None = not taken (small object, S3 not reachable from
        here, older server, a small object stored in a pack) unless `required`."""
        try:
            url = await self.create_download_url(name)
        except grpc.aio.AioRpcError as exc:
            if required or exc.code() not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION):
                raise
            return None
        if not url.HasField("object"):  # an older server: it does not state the size
            if required:
                raise UrlFetchFailed(f"{name}: the server did not state the object's size")
            return None
        if not required and url.object.size_bytes < URL_MIN_BYTES:
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            try:
                digest = await asyncio.to_thread(fetch_url, url.url, tmp, url.object.size_bytes, progress)
            except UrlFetchFailed:
                if required:
                    raise
                return None
            if digest != url.object.sha256:
                raise ChecksumMismatch(f"{name}: downloaded bytes hash to {digest}, recorded {url.object.sha256}")
            os.replace(tmp, dest)
            return url.object
        finally:
            tmp.unlink(missing_ok=True)

    async def _download_stream(self, name: str, dest: Path, progress: Progress | None,
                               retries: int) -> datasets_pb2.DataObject:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        hasher = hashlib.sha256()
        received, obj = 0, None
        try:
            for attempt in range(retries + 1):
                writer = _FileWriter(tmp, received, hasher)
                try:
                    async for reply in self._download(datasets_pb2.DownloadObjectRequest(
                            name=name, offset=received), metadata=self.metadata):
                        if reply.object is not None:
                            if obj is not None and reply.object.sha256 != obj.sha256:
                                raise ChecksumMismatch(f"{name} was replaced during the download")
                            obj = reply.object
                        chunk = reply.chunk
                        if chunk:
                            await writer.write(chunk)
                            received += len(chunk)
                            if progress:
                                progress(received, obj.size_bytes)
                    await writer.flush()
                    break
                except grpc.aio.AioRpcError as exc:
                    await writer.flush()
                    if attempt == retries or exc.code() not in _RETRYABLE:
                        raise
                finally:
                    writer.close()
                await asyncio.sleep(min(0.5 * 2 ** attempt, 10))
            if obj is None or hasher.hexdigest() != obj.sha256 or received != obj.size_bytes:
                raise ChecksumMismatch(f"{name}: received {received} bytes hashing to {hasher.hexdigest()}, "
                                       f"expected {obj.size_bytes if obj else '?'} bytes {obj.sha256 if obj else ''}")
            os.replace(tmp, dest)
            return obj
        finally:
            tmp.unlink(missing_ok=True)

    async def download_objects(self, dataset: str, objects: list[datasets_pb2.DataObject], root: Path, *,
                               progress: Callable[[int], None] | None = None, retries: int = 3) -> None:
        """Whole objects of one dataset in DownloadObjects calls (≤ 1,000 per call), each verified
        and written atomically under `root` (its relative path); a broken call is retried for the
        objects not written yet. `progress(n)`: bytes of objects written since the last call."""
        left = {o.path: o for o in objects}
        for attempt in range(retries + 1):
            pending: list[tuple[Path, bytes]] = []

            async def flush() -> None:
                await asyncio.to_thread(_write_files, list(pending))
                if progress:
                    progress(sum(len(d) for _, d in pending))
                for dest, _ in pending:
                    left.pop(dest.relative_to(root).as_posix(), None)
                pending.clear()
            try:
                paths = list(left)
                for i in range(0, len(paths), 1000):
                    replies = self.stub.DownloadObjects(datasets_pb2.DownloadObjectsRequest(
                        parent=dataset, paths=paths[i:i + 1000]), metadata=self.metadata)
                    async for obj, data in verified_objects(replies):
                        pending.append((root / obj.path, data))
                        if len(pending) >= 64:
                            await flush()
                    await flush()
                return
            except grpc.aio.AioRpcError as exc:
                await flush()  # what arrived verified is kept
                if attempt == retries or exc.code() not in _RETRYABLE:
                    raise
            except DamagedObject as exc:
                await flush()
                if attempt == retries:
                    raise ChecksumMismatch(str(exc)) from None
            await asyncio.sleep(min(0.5 * 2 ** attempt, 5))

    async def download_dir(self, dataset: str, dest_dir: str | os.PathLike, prefix: str = "", *,
                           concurrency: int = 8, progress: Progress | None = None) -> list[Path]:
        """Every object (under `prefix`) into `dest_dir`, keeping relative paths. Objects up to
        BATCH_FILE come many per DownloadObjects call, larger ones one download each."""
        objects = await self.list_objects(dataset, prefix)
        root = Path(dest_dir)
        total = sum(o.size_bytes for o in objects)
        done = {o.path: 0 for o in objects}
        received = [0]
        sem = asyncio.Semaphore(concurrency)

        def report() -> None:
            if progress:
                progress(sum(done.values()) + received[0], total)

        async def one(o: datasets_pb2.DataObject) -> None:
            def each(n: int, _total: int) -> None:
                done[o.path] = n
                report()
            async with sem:
                await self.download_file(o.name, root / o.path, progress=each, size_hint=o.size_bytes)

        async def many(group: list[datasets_pb2.DataObject]) -> None:
            def each(n: int) -> None:
                received[0] += n
                report()
            async with sem:
                try:
                    await self.download_objects(dataset, group, root, progress=each)
                    return
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNIMPLEMENTED:  # an older server: one call each
                        raise
            await asyncio.gather(*(one(o) for o in group))

        small = [o for o in objects if o.size_bytes <= BATCH_FILE]
        large = [o for o in objects if o.size_bytes > BATCH_FILE]
        groups = plan_batches(small, lambda o: o.size_bytes, max(1, min(3, concurrency // 2)))
        await asyncio.gather(*(many(g) for g in groups), *(one(o) for o in large))
        return [root / o.path for o in objects]

    # ---- presigned URLs (browsers, tools without gRPC streaming) -----------------------------
    async def create_upload_url(self, dataset: str, path: str, size: int, sha256: str,
                                content_type: str = "") -> datasets_pb2.CreateUploadUrlResponse:
        return await self._unary(self.stub.CreateUploadUrl, datasets_pb2.CreateUploadUrlRequest(
            parent=dataset, path=path, size_bytes=size, sha256=sha256, content_type=content_type))

    async def finalize_upload(self, upload_id: str) -> datasets_pb2.DataObject:
        return (await self._unary(self.stub.FinalizeUpload, datasets_pb2.FinalizeUploadRequest(upload_id=upload_id),
                                  timeout=max(self.timeout, 600.0))).object

    async def create_download_url(self, name: str) -> datasets_pb2.CreateDownloadUrlResponse:
        return await self._unary(self.stub.CreateDownloadUrl, datasets_pb2.CreateDownloadUrlRequest(name=name))


class SyncDatasetsClient:
    """The same methods as `DatasetsClient`, blocking; runs its own event loop on a thread, so
    it also works from code that is itself inside an event loop (it blocks that loop)."""

    def __init__(self, target: str | None = None, *, metadata: tuple | None = None, timeout: float = 60.0):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dmod-datasets", daemon=True)
        self._thread.start()

        async def make() -> DatasetsClient:
            return DatasetsClient(target=target, metadata=metadata, timeout=timeout)
        self._client = self._run(make())

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        def call(*args, **kwargs):
            return self._run(attr(*args, **kwargs))
        call.__doc__ = attr.__doc__
        return call

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._client.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
