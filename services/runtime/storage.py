"""S3 object storage on the `minio` client (MinIO in production, SeaweedFS locally).

The minio client is synchronous; calls run in worker threads so the event loop stays free.
"""
from __future__ import annotations

import asyncio
import io
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.error import S3Error

from dmod.services.runtime.settings import Settings


class Storage:
    def __init__(self, settings: Settings):
        # A pool large enough for parallel part uploads/downloads.
        http = urllib3.PoolManager(maxsize=32, timeout=urllib3.Timeout(connect=5, read=120),
                                   retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)))
        self.client = Minio(settings.s3_endpoint, access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                            secure=settings.s3_secure, region=settings.s3_region, http_client=http)
        self.bucket = settings.s3_bucket

    async def ensure_bucket(self) -> None:
        def make() -> None:
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        await asyncio.to_thread(make)

    async def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await asyncio.to_thread(self.client.put_object, self.bucket, key, io.BytesIO(data), len(data),
                                content_type=content_type)

    async def put_stream(self, key: str, stream: BinaryIO, size: int = -1, content_type: str = "application/octet-stream",
                         part_size: int = 16 * 1024 * 1024) -> None:
        await asyncio.to_thread(self.client.put_object, self.bucket, key, stream, size, content_type=content_type,
                                part_size=part_size)

    async def get_bytes(self, key: str, offset: int = 0, length: int = 0) -> bytes:
        def read() -> bytes:
            response = self.client.get_object(self.bucket, key, offset=offset, length=length)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()
        return await asyncio.to_thread(read)

    async def stat(self, key: str):
        return await asyncio.to_thread(self.client.stat_object, self.bucket, key)

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.remove_object, self.bucket, key)

    async def delete_prefix(self, prefix: str) -> None:
        def remove() -> None:
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                self.client.remove_object(self.bucket, obj.object_name)
        await asyncio.to_thread(remove)
