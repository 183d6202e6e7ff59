"""Presigned S3 URLs for clients without client streaming (browsers over grpc-web).

CreateUploadUrl issues a PUT URL for a key private to the upload; FinalizeUpload reads the
object back, checks size and SHA-256 against what CreateUploadUrl declared, and only then
commits it. CreateDownloadUrl returns a GET URL together with the recorded SHA-256.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from minio.error import S3Error

from dmod.services.datasets import access, convert, names
from dmod.services.datasets.transfer import commit as committer
from dmod.services.datasets.transfer import upload_rows
from dmod.services.datasets.transfer.blobs import is_missing
from dmod.services.datasets.transfer.downloads import object_row
from dmod.services.datasets.transfer.reader import read_blocks
from dmod.services.datasets.transfer.uploads import _HEX, content_type_for
from dmod.services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from dmod.v1 import datasets_pb2

URL_TTL = dt.timedelta(hours=1)
MAX_PRESIGNED_BYTES = 5 << 30  # one S3 PUT


def _expire_time() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + URL_TTL


async def create_upload_url(pool, blobs, request: datasets_pb2.CreateUploadUrlRequest):
    violations = []
    try:
        dataset_id = names.parse_dataset_name(request.parent, "parent")
    except InvalidArgument as exc:
        violations += exc.violations
        dataset_id = None
    problem = names.path_problem(request.path)
    if problem:
        violations.append(("path", f"object path {problem}"))
    if not _HEX.match(request.sha256.lower()):
        violations.append(("sha256", "required: 64 hex digits (FinalizeUpload verifies it)"))
    if request.size_bytes < 0 or request.size_bytes > MAX_PRESIGNED_BYTES:
        violations.append(("size_bytes", f"must be 0..{MAX_PRESIGNED_BYTES} (use UploadObject for larger objects)"))
    if violations:
        raise InvalidArgument(violations)
    upload_id = uuid.uuid4()
    key = names.object_key(dataset_id, upload_id, request.path)
    async with pool.acquire() as conn:
        await committer.check_caller_may_write(conn, dataset_id)
        await upload_rows.insert(conn, upload_id=upload_id, dataset_id=dataset_id, owner=access.caller().user,
                                 path=request.path, kind="presigned", s3_key=key, multipart_id=None,
                                 size=request.size_bytes, sha256=request.sha256.lower(),
                                 content_type=content_type_for(request.path, request.content_type), lease_owner=None,
                                 expire_seconds=int(URL_TTL.total_seconds()) + 3600)
    url = await blobs.presigned_put(key, URL_TTL)
    return datasets_pb2.CreateUploadUrlResponse(url=url, upload_id=str(upload_id),
                                                expire_time=convert.timestamp(_expire_time()))


async def finalize_upload(pool, blobs, request: datasets_pb2.FinalizeUploadRequest):
    try:
        upload_id = uuid.UUID(request.upload_id)
    except ValueError:
        raise InvalidArgument(("upload_id", "must be a UUID")) from None
    async with pool.acquire() as conn:
        row = await upload_rows.get(conn, upload_id)
    if row is None or row["kind"] != "presigned":
        raise NotFound(f"presigned upload {upload_id} does not exist", reason="UPLOAD_NOT_FOUND")
    principal = access.caller()
    if row["owner"] != principal.user and not principal.is_admin:
        raise PermissionDenied(f"upload {upload_id} belongs to {row['owner']}", reason="NOT_UPLOAD_OWNER")
    if row["state"] != "ACTIVE":
        raise FailedPrecondition(f"upload {upload_id} is {row['state']}", reason=f"UPLOAD_{row['state']}")
    key = row["s3_key"]
    hasher = hashlib.sha256()
    size = 0
    try:
        async for block in read_blocks(blobs, key, hasher=hasher):
            size += len(block)
    except S3Error as exc:
        if is_missing(exc):
            raise FailedPrecondition(f"nothing was uploaded to the URL of upload {upload_id} yet",
                                     reason="UPLOAD_EMPTY") from None
        raise
    problems = []
    if size != row["size_bytes"]:
        problems.append(("size_bytes", f"declared {row['size_bytes']} bytes, {size} were uploaded"))
    if hasher.hexdigest() != row["expected_sha256"]:
        problems.append(("sha256", f"declared {row['expected_sha256']}, the uploaded bytes hash to {hasher.hexdigest()}"))
    if problems:
        await blobs.remove(key)
        async with pool.acquire() as conn:
            await upload_rows.set_state(conn, upload_id, "ABORTED")
        raise InvalidArgument(problems, reason="CHECKSUM_MISMATCH")
    obj = await committer.commit(pool, blobs, dataset_id=row["dataset_id"], path=row["path"], size=size,
                                 sha256=hasher.hexdigest(), content_type=row["content_type"], s3_key=key,
                                 upload_id=upload_id, has_row=True)
    return datasets_pb2.FinalizeUploadResponse(object=convert.data_object(obj))


async def create_download_url(pool, blobs, request: datasets_pb2.CreateDownloadUrlRequest):
    row = await object_row(pool, request.name)
    if row["pack_offset"] is not None:  # a URL would serve the whole pack
        raise FailedPrecondition(f"{request.name} is a small object stored in a pack with others; download it "
                                 "with DownloadObject", reason="OBJECT_PACKED")
    filename = row["path"].rsplit("/", 1)[-1].replace('"', "")
    url = await blobs.presigned_get(row["s3_key"], URL_TTL, filename)
    return datasets_pb2.CreateDownloadUrlResponse(url=url, sha256=row["sha256"],
                                                  expire_time=convert.timestamp(_expire_time()),
                                                  object=convert.data_object(row))
