"""S3 operations DatasetService needs, on a minio client, in a dedicated thread pool.

Multipart uploads use minio's low-level calls (create / upload part / complete / abort) so the
service decides part boundaries itself (resumable uploads). ETags are only used as S3 part
handles, never as checksums.

Large request bodies (parts, objects ≥ 1 MiB) are signed with UNSIGNED-PAYLOAD instead of a
SHA-256 of the payload, as minio-py already does over TLS: the service computes the object's
SHA-256 itself and verifies it on every whole download, so a second hash of every byte on the
upload path would only cost CPU.

Small objects of UploadObjects calls are PUT by `LeanPut` (plain HTTP endpoints): the per-request
CPU of the generic client dominated the cost of many small objects.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import logging
import re
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import urllib3
from minio import Minio
from minio import time as mtime
from minio.datatypes import Part
from minio.error import S3Error

from dmod.services.datasets import names

log = logging.getLogger("dmod.datasets.s3")

_MISSING = ("NoSuchKey", "NoSuchObject", "NotFound", "NoSuchUpload")


UNSIGNED_MIN_BYTES = 1 << 20


class Buffers:
    """A request body made of several buffers (a part's received chunks), sent one after the
    other: a part is never joined into one bytes object (a copy of every byte) just to be sent."""

    __slots__ = ("buffers", "size")

    def __init__(self, buffers: list):
        self.buffers = buffers
        self.size = sum(len(b) for b in buffers)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return iter(self.buffers)


def is_missing(exc: BaseException) -> bool:
    return isinstance(exc, S3Error) and exc.code in _MISSING


class _Client(Minio):
    def _build_headers(self, host, headers=None, body=None, creds=None):
        # Buffers are bodies the service hashed itself (parts, batch objects): unsigned at any size.
        if body is None or creds is None or (len(body) < UNSIGNED_MIN_BYTES and not isinstance(body, Buffers)):
            return super()._build_headers(host, headers, body, creds)
        headers = dict(headers or {})
        headers.update({"Host": host, "User-Agent": self._user_agent, "Content-Length": str(len(body)),
                        "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        if creds.session_token:
            headers["X-Amz-Security-Token"] = creds.session_token
        date = mtime.utcnow()
        headers["x-amz-date"] = mtime.to_amz_date(date)
        return headers, date


_HEADER_VALUE = re.compile(r"^[\x21-\x7e]+( [\x21-\x7e]+)*$")


class _S3Status(Exception):
    def __init__(self, status: int, body: bytes):
        code = re.search(rb"<Code>([^<]*)</Code>", body)
        self.code = code.group(1).decode("ascii", "replace") if code else str(status)
        super().__init__(f"S3 PUT answered {status}: {self.code}")


class LeanPut:
    """PUT of small objects with as little Python as possible, on the event loop: SigV4 with
    UNSIGNED-PAYLOAD and a cached signing key, request line, headers and body in one write, on
    kept-alive asyncio connections (no thread hop, no generic HTTP client). minio's request path
    cost ~0.85 ms of CPU per PUT on the test machine (plus a thread hop each); this ~0.15 ms. With
    many small objects per UploadObjects call that was most of the service's own CPU.
    Plain HTTP endpoints only (TLS endpoints use minio)."""

    def __init__(self, settings, connections: int = 32):
        self.host = settings.s3_endpoint
        address, _, port = self.host.rpartition(":")
        self.address, self.port = (address.strip("[]"), int(port)) if address else (self.host, 80)
        self.access_key, self.secret_key = settings.s3_access_key, settings.s3_secret_key
        self.region = settings.s3_region or "us-east-1"
        self.bucket = settings.s3_bucket
        self._keys: dict[str, bytes] = {}
        self._second, self._amz_date = 0, ""
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(connections)

    @staticmethod
    def accepts(content_type: str) -> bool:
        return bool(_HEADER_VALUE.match(content_type))

    def _signing_key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            key = ("AWS4" + self.secret_key).encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {day: key}
        return key

    def _head(self, key: str, size: int, content_type: str) -> bytes:
        now = int(time.time())
        if now != self._second:  # one strftime per second, not per request
            self._second, self._amz_date = now, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        amz_date = self._amz_date
        day = amz_date[:8]
        uri = f"/{self.bucket}/{quote(key, safe='/~')}"
        signed = "content-type;host;x-amz-content-sha256;x-amz-date"
        canonical = (f"PUT\n{uri}\n\ncontent-type:{content_type}\nhost:{self.host}\n"
                     f"x-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{amz_date}\n\n{signed}\nUNSIGNED-PAYLOAD")
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.digest(self._signing_key(day), to_sign.encode(), "sha256").hex()
        return (f"PUT {uri} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {size}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: {amz_date}\r\n"
                f"Authorization: AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, SignedHeaders={signed}, "
                f"Signature={signature}\r\n\r\n").encode()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.address, self.port, limit=1 << 16)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        """(status, body, the server closes the connection) of one HTTP/1.1 response."""
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += await reader.readexactly(size + 2)
                del body[-2:]
            await reader.readuntil(b"\r\n")  # no trailers are expected
            return int(status), bytes(body), close
        length = headers.get("content-length")
        if length is None:
            return int(status), await reader.read(), True
        return int(status), await reader.readexactly(int(length)) if int(length) else b"", close

    async def put(self, key: str, body: Buffers, content_type: str) -> None:
        data = self._head(key, len(body), content_type) + b"".join(body.buffers)
        async with self._slots, asyncio.timeout(300):
            for attempt in range(3):
                reader, writer = self._idle.pop() if self._idle and not attempt else await self._connect()
                try:
                    writer.write(data)
                    await writer.drain()
                    status, answer, close = await self._response(reader)
                except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                    # a kept-alive connection the server closed, or a broken one: the same request
                    # on a new connection (a PUT to this upload's private key is idempotent)
                    writer.close()
                    if attempt == 2:
                        raise
                    continue
                except BaseException:  # cancelled mid-request: the connection is in an unknown state
                    writer.close()
                    raise
                if close:
                    writer.close()
                else:
                    self._idle.append((reader, writer))
                if status == 200:
                    return
                if status in (500, 502, 503, 504) and attempt < 2:
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                raise _S3Status(status, answer)

    def close(self) -> None:
        for _reader, writer in self._idle:
            writer.close()
        self._idle.clear()


def make_client(settings, connections: int) -> Minio:
    http = urllib3.PoolManager(maxsize=connections, timeout=urllib3.Timeout(connect=5, read=300),
                               retries=urllib3.Retry(total=3, backoff_factor=0.2,
                                                     status_forcelist=(500, 502, 503, 504)))
    return _Client(settings.s3_endpoint, access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                   secure=settings.s3_secure, region=settings.s3_region, http_client=http)


def make_signer(settings) -> Minio:
    """A client that only signs URLs, for S3 as clients see it (`s3_public_url`). With the
    region given, minio signs offline: this client never connects anywhere."""
    if not settings.s3_public_url:
        return make_client(settings, 1)
    url = urllib3.util.parse_url(settings.s3_public_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"DMOD_S3_PUBLIC_URL must look like https://host[:port], not {settings.s3_public_url!r}")
    return Minio(url.netloc, access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                 secure=url.scheme == "https", region=settings.s3_region)


class Blobs:
    def __init__(self, settings, threads: int = 32):
        self.client = make_client(settings, threads)
        self.lean = None if settings.s3_secure else LeanPut(settings)
        self.signer = make_signer(settings)
        self.bucket = settings.s3_bucket
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dmod-s3")

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def ensure_bucket(self) -> None:
        def make() -> None:
            if self.client.bucket_exists(self.bucket):
                return
            try:
                self.client.make_bucket(self.bucket)
            except S3Error as exc:  # another replica made it meanwhile
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        await self.run(make)

    # ---- writes ------------------------------------------------------------------------------
    def put_sync(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def put_buffers_sync(self, key: str, data: Buffers, content_type: str) -> None:
        """One PUT of bytes the service has hashed itself (sent as they are, unsigned payload)."""
        if not len(data):
            self.put_sync(key, b"", content_type)
            return
        self.client._put_object(self.bucket, key, data, headers={"Content-Type": content_type})

    async def put_buffers(self, key: str, data: Buffers, content_type: str) -> None:
        """`put_buffers_sync` on the event loop when the endpoint allows (see LeanPut)."""
        if self.lean is not None and len(data) and self.lean.accepts(content_type):
            await self.lean.put(key, data, content_type)
        else:
            await self.run(self.put_buffers_sync, key, data, content_type)

    async def create_multipart(self, key: str, content_type: str) -> str:
        return await self.run(self.client._create_multipart_upload, self.bucket, key,
                              {"Content-Type": content_type})

    def upload_part_sync(self, key: str, multipart_id: str, number: int, data: bytes | Buffers) -> str:
        return self.client._upload_part(self.bucket, key, data, None, multipart_id, number)

    async def complete_multipart(self, key: str, multipart_id: str, parts: list[tuple[int, str]]) -> None:
        await self.run(self.client._complete_multipart_upload, self.bucket, key, multipart_id,
                       [Part(n, etag) for n, etag in parts])

    async def abort_multipart(self, key: str, multipart_id: str) -> None:
        try:
            await self.run(self.client._abort_multipart_upload, self.bucket, key, multipart_id)
        except S3Error as exc:
            if not is_missing(exc):
                raise

    # ---- reads -------------------------------------------------------------------------------
    def read_sync(self, key: str, offset: int = 0, length: int = 0, block: int = 1 << 20) -> Iterator[bytes]:
        """Blocks of the object (or of a byte range), in order. A generator: run it in a thread."""
        response = self.client.get_object(self.bucket, key, offset=offset, length=length)
        try:
            yield from response.stream(block)
        finally:
            response.close()
            response.release_conn()

    async def stat(self, key: str):
        return await self.run(self.client.stat_object, self.bucket, key)

    # ---- removal -----------------------------------------------------------------------------
    async def remove(self, key: str) -> None:
        try:
            await self.run(self.client.remove_object, self.bucket, key)
        except S3Error as exc:
            if not is_missing(exc):
                raise

    async def remove_many(self, keys: list[str]) -> None:
        """Remove keys with multi-object deletes (up to 1,000 keys per S3 request); raises if
        any key could not be removed."""
        from minio.deleteobjects import DeleteObject

        def remove() -> None:
            for i in range(0, len(keys), 1000):
                errors = [e for e in self.client.remove_objects(self.bucket, [DeleteObject(k) for k in keys[i:i + 1000]])
                          if e.code not in _MISSING]
                if errors:
                    raise RuntimeError(f"could not remove {len(errors)} keys, e.g. {errors[0].name}: "
                                       f"{errors[0].code} {errors[0].message}")
        if keys:
            await self.run(remove)

    async def remove_dataset(self, dataset_id: uuid.UUID, multiparts: list[tuple[str, str]]) -> None:
        """Best effort (the dataset row is already gone): abort its pending multipart uploads and
        remove every object under its prefix."""
        prefix = names.dataset_prefix(dataset_id)
        try:
            for key, multipart_id in multiparts:
                await self.abort_multipart(key, multipart_id)

            def remove_all() -> int:
                count = 0
                for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                    self.client.remove_object(self.bucket, obj.object_name)
                    count += 1
                return count
            await self.run(remove_all)
        except Exception:
            log.exception("could not remove S3 data of deleted dataset", extra={"prefix": prefix})

    async def presigned_put(self, key: str, expires) -> str:
        return await self.run(self.signer.presigned_put_object, self.bucket, key, expires)

    async def presigned_get(self, key: str, expires, filename: str) -> str:
        headers = {"response-content-disposition": f'attachment; filename="{filename}"'}
        return await self.run(lambda: self.signer.presigned_get_object(self.bucket, key, expires,
                                                                       response_headers=headers))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.lean is not None:
            self.lean.close()
