"""UploadObject (client stream) and QueryUploadStatus: chunked, verified, resumable uploads.

Pipeline: chunks (≤ 1 MiB) are buffered into parts of `PART_SIZE` (16 MiB by default); each part
is hashed in order in a worker thread (`HashChain`) and sent to S3 as a multipart part by another
thread, up to `PARTS_IN_FLIGHT` at a time, while the next part is received. Nothing touches the
database per chunk: the upload row is written when the multipart upload starts and once per
committed part. An object smaller than one part is stored with a single PUT and needs no upload
row at all.

Every upload writes its own S3 key (`datasets/{id}/{upload_id}/{path}`), invisible until the
SHA-256 computed here (and the client's, if sent) checks out and `commit` makes it the object at
its path. A rejected upload is aborted, never visible.

Resume: the committed offset is the sum of the parts S3 has acknowledged, in order. The upload id
is chosen by the client (`metadata.upload_id`, a UUID) or by the server, and is sent back at once
in the `dmod-upload-id` initial metadata, so a client whose stream broke can ask
QueryUploadStatus and continue from `committed_bytes`. The hash state at each part boundary is
kept in this process; after a restart (or on another replica) a resume rebuilds it by reading the
committed bytes back once (`Session.rebuild`).
"""
from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from minio.error import S3Error

from dmod.services.datasets import access, convert, names
from dmod.services.datasets.transfer import commit as committer
from dmod.services.datasets.transfer import upload_rows
from dmod.services.datasets.transfer.blobs import Buffers
from dmod.services.datasets.transfer.hashchain import HashChain
from dmod.services.datasets.transfer.reader import read_blocks
from dmod.services.runtime.errors import (
    Aborted,
    DataLoss,
    DmodError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from dmod.v1 import datasets_pb2

log = logging.getLogger("dmod.datasets.upload")

PART_SIZE = int(os.environ.get("DMOD_DATASETS_PART_MIB", "16")) << 20
MAX_CHUNK = 1 << 20
MAX_PARTS = 10_000
PARTS_IN_FLIGHT = 4  # per upload
PARTS_IN_FLIGHT_TOTAL = 24  # per process: at most ~400 MiB of part buffers with 16 MiB parts
LOCK_WAIT_SECONDS = 30.0
STREAM_EXPIRE_SECONDS = 24 * 3600
UPLOAD_ID_HEADER = "dmod-upload-id"
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Target:
    dataset_id: uuid.UUID | None
    path: str
    size: int  # -1 unknown
    sha256: str
    content_type: str
    upload_id: uuid.UUID | None
    offset: int


@dataclass
class Live:
    """Per-upload state this process keeps between streams."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    snapshots: dict[int, object] = field(default_factory=dict)  # committed offset -> sha256 state
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # clear while a broken stream lands
    touched: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        self.settled.set()


def content_type_for(path: str, given: str) -> str:
    return given or mimetypes.guess_type(path)[0] or "application/octet-stream"


def parse_metadata(meta: datasets_pb2.UploadMetadata) -> Target:
    violations: list[tuple[str, str]] = []
    upload_id = None
    if meta.upload_id:
        try:
            upload_id = uuid.UUID(meta.upload_id)
        except ValueError:
            violations.append(("metadata.upload_id", "must be a UUID"))
    resuming = upload_id is not None
    dataset_id = None
    if meta.parent or not resuming:
        try:
            dataset_id = names.parse_dataset_name(meta.parent, "metadata.parent")
        except InvalidArgument as exc:
            violations += exc.violations
    if meta.path or not resuming:
        problem = names.path_problem(meta.path)
        if problem:
            violations.append(("metadata.path", f"object path {problem}"))
    if meta.size_bytes < 0:
        violations.append(("metadata.size_bytes", "must not be negative"))
    sha = meta.sha256.lower()
    if sha and not _HEX.match(sha):
        violations.append(("metadata.sha256", "must be 64 hex digits"))
    if meta.offset < 0:
        violations.append(("metadata.offset", "must not be negative"))
    elif meta.offset and not resuming:
        violations.append(("metadata.offset", "an offset needs the upload_id of the upload to resume"))
    if len(meta.content_type) > 255:
        violations.append(("metadata.content_type", "must be at most 255 characters"))
    if violations:
        raise InvalidArgument(violations, reason="INVALID_OBJECT_PATH" if any(
            f == "metadata.path" for f, _ in violations) else None)
    return Target(dataset_id, meta.path, meta.size_bytes or -1, sha, meta.content_type, upload_id, meta.offset)


def _storage_error(exc: BaseException) -> DmodError:
    if isinstance(exc, DmodError):
        return exc
    log.warning("object store write failed", exc_info=exc)
    return Unavailable(f"object store write failed: {exc.__class__.__name__}", reason="STORAGE_UNAVAILABLE")


class Session:
    """One UploadObject stream writing one upload."""

    def __init__(self, mgr: Uploads, upload_id: uuid.UUID, live: Live, *, dataset_id: uuid.UUID, path: str,
                 size: int, sha256: str, content_type: str, row=None, parts=(), state=None):
        self.mgr, self.pool, self.blobs = mgr, mgr.pool, mgr.blobs
        self.upload_id, self.live = upload_id, live
        self.dataset_id, self.path, self.size, self.sha256, self.content_type = (
            dataset_id, path, size, sha256, content_type)
        self.key = row["s3_key"] if row else names.object_key(dataset_id, upload_id, path)
        self.multipart_id = row["multipart_id"] if row else None
        self.has_row = row is not None
        self.parts: list[tuple[int, str, int]] = list(parts)
        self.committed = sum(p[2] for p in self.parts)
        self.next_number = len(self.parts) + 1  # parts are numbered 1.. in byte order, no gaps
        self.chain = HashChain(mgr.hash_pool, self.committed, state)
        self.part_size = max(PART_SIZE, -(-size // (MAX_PARTS - 1)) if size > 0 else 0)
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.pending: dict[int, asyncio.Task] = {}
        self.done: dict[int, tuple[str, int]] = {}
        self.failure: BaseException | None = None
        self.slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
        self.save_lock = asyncio.Lock()
        self.completed = False

    @property
    def received(self) -> int:
        return self.chain.fed + self.buffered

    # ---- receiving ---------------------------------------------------------------------------
    async def receive(self, requests) -> None:
        trailer = False
        async for message in requests:
            kind = message.WhichOneof("payload")
            if trailer:
                raise InvalidArgument(("final_sha256", "must be the last message"))
            if kind == "chunk":
                await self.accept(message.chunk)
            elif kind == "final_sha256":
                self.expect(message.final_sha256)
                trailer = True
            else:
                raise InvalidArgument(("metadata", "only the first message carries metadata; the rest are chunks"))

    def expect(self, digest: str) -> None:
        digest = digest.lower()
        if not _HEX.match(digest):
            raise InvalidArgument(("final_sha256", "must be 64 hex digits"))
        if self.sha256 and self.sha256 != digest:
            raise InvalidArgument(("final_sha256", "differs from metadata.sha256"), reason="CHECKSUM_MISMATCH")
        self.sha256 = digest

    async def accept(self, chunk: bytes) -> None:
        n = len(chunk)
        if n > MAX_CHUNK:
            raise InvalidArgument(("chunk", f"{n} bytes; a chunk is at most {MAX_CHUNK} bytes (1 MiB)"),
                                  reason="CHUNK_TOO_LARGE")
        if self.size >= 0 and self.received + n > self.size:
            raise InvalidArgument(("metadata.size_bytes", f"declared {self.size} bytes, more arrived"),
                                  reason="SIZE_MISMATCH")
        if self.failure is not None:
            raise _storage_error(self.failure)
        if not n:
            return
        self.buffer.append(chunk)
        self.buffered += n
        if self.buffered >= self.part_size:
            await self.flush()

    async def flush(self) -> None:
        data = Buffers(self.buffer)  # the received chunks as they are (views; see wire.py)
        self.buffer, self.buffered = [], 0
        number = self.next_number
        self.next_number += 1
        if number > MAX_PARTS:
            raise ResourceExhausted(f"object exceeds {MAX_PARTS} parts", reason="OBJECT_TOO_LARGE")
        hashed = self.chain.feed(data)
        if self.multipart_id is None:
            await self.start_multipart()
        await self.slots.acquire()
        try:
            await self.mgr.part_budget.acquire()  # bounds part buffers across all uploads of the process
        except BaseException:
            self.slots.release()
            raise
        task = asyncio.ensure_future(self._part(number, data, hashed))
        self.pending[number] = task
        # Bookkeeping in a callback: it runs even for a task cancelled before it started.
        task.add_done_callback(lambda t, n=number: self._part_done(n, t))

    def _part_done(self, number: int, task: asyncio.Task) -> None:
        self.pending.pop(number, None)
        self.slots.release()
        self.mgr.part_budget.release()
        if task.cancelled() and self.failure is None:
            self.failure = asyncio.CancelledError(f"part {number} was cancelled")

    async def _part(self, number: int, data: bytes, hashed: asyncio.Task) -> None:
        try:
            etag = await self.blobs.run(self.blobs.upload_part_sync, self.key, self.multipart_id, number, data)
            await hashed
            self.done[number] = (etag, len(data))
            await self._advance()
        except BaseException as exc:  # noqa: BLE001 - surfaced by accept()/finish()
            if self.failure is None:
                self.failure = exc

    async def _advance(self) -> None:
        """Move acknowledged parts, in order, into the committed prefix and record it."""
        async with self.save_lock:
            moved = False
            while (len(self.parts) + 1) in self.done:
                number = len(self.parts) + 1
                etag, size = self.done.pop(number)
                self.parts.append((number, etag, size))
                self.committed += size
                self.live.snapshots[self.committed] = self.chain.snapshots.pop(self.committed)
                moved = True
            if moved and self.has_row:
                async with self.pool.acquire() as conn:
                    await upload_rows.save_parts(conn, self.upload_id, self.parts, lease_owner=self.mgr.node)

    async def start_multipart(self) -> None:
        self.multipart_id = await self.blobs.create_multipart(self.key, self.content_type)
        async with self.pool.acquire() as conn:
            inserted = await upload_rows.insert(
                conn, upload_id=self.upload_id, dataset_id=self.dataset_id, owner=access.caller().user,
                path=self.path, kind="stream", s3_key=self.key, multipart_id=self.multipart_id, size=self.size,
                sha256=self.sha256, content_type=self.content_type, lease_owner=self.mgr.node,
                expire_seconds=STREAM_EXPIRE_SECONDS)
        if not inserted:
            await self.blobs.abort_multipart(self.key, self.multipart_id)
            self.multipart_id = None
            raise Aborted(f"upload {self.upload_id} is already in use", reason="UPLOAD_ID_TAKEN")
        self.has_row = True

    async def drain(self) -> None:
        """Wait for the parts in flight. `asyncio.wait`, not `gather`: cancelling the waiter (the
        client went away) must not cancel parts S3 is already receiving."""
        while self.pending:
            await asyncio.wait(list(self.pending.values()))

    # ---- finishing ---------------------------------------------------------------------------
    async def finish(self):
        if self.size < 0 and not self.sha256:
            raise InvalidArgument(("metadata.size_bytes", ("declare the size (or send a SHA-256) so that a cut stream "
                                                          "can never be stored as a complete object")),
                                  reason="SIZE_OR_CHECKSUM_REQUIRED")
        if self.size >= 0 and self.received != self.size:
            raise InvalidArgument(("metadata.size_bytes", (f"declared {self.size} bytes, the stream ended after "
                                                          f"{self.received}")), reason="SIZE_MISMATCH")
        if self.multipart_id is None:
            data = b"".join(self.buffer)
            self.buffer, self.buffered = [], 0
            self.chain.feed(data)
            digest = await self.chain.hexdigest()
            await self._check_digest(digest)
            try:
                await self.blobs.run(self.blobs.put_sync, self.key, data, self.content_type)
            except S3Error as exc:
                raise _storage_error(exc) from None
        else:
            if self.buffered:
                await self.flush()
            await self.drain()
            if self.failure is not None:
                raise _storage_error(self.failure)
            digest = await self.chain.hexdigest()
            await self._check_digest(digest)
            if self.committed != self.received or [n for n, _, _ in self.parts] != list(range(1, len(self.parts) + 1)):
                raise Unavailable(f"upload {self.upload_id}: parts cover {self.committed} of {self.received} bytes",
                                  reason="UPLOAD_INCOMPLETE")
            try:
                await self.blobs.complete_multipart(self.key, self.multipart_id, [(n, e) for n, e, _ in self.parts])
                stored = (await self.blobs.stat(self.key)).size
            except S3Error as exc:
                raise _storage_error(exc) from None
            if stored != self.received:  # never commit what S3 did not assemble as sent
                await self.discard()
                raise DataLoss(f"object store holds {stored} of {self.received} bytes of upload {self.upload_id}",
                               reason="STORAGE_SIZE_MISMATCH")
        obj = await committer.commit(self.pool, self.blobs, dataset_id=self.dataset_id, path=self.path,
                                     size=self.received, sha256=digest, content_type=self.content_type,
                                     s3_key=self.key, upload_id=self.upload_id, has_row=self.has_row)
        self.completed = True
        return obj

    async def _check_digest(self, digest: str) -> None:
        if not self.sha256 or self.sha256 == digest:
            return
        await self.discard()
        raise DataLoss(f"{self.path}: the bytes received hash to {digest}, not the declared {self.sha256}; "
                       "nothing was kept", reason="CHECKSUM_MISMATCH",
                       metadata={"path": self.path, "expected": self.sha256, "actual": digest})

    async def discard(self) -> None:
        await self.drain()
        if self.multipart_id is not None:
            await self.blobs.abort_multipart(self.key, self.multipart_id)
        await self.blobs.remove(self.key)  # a rebuilt upload may have completed its prefix there
        if self.has_row:
            async with self.pool.acquire() as conn:
                await upload_rows.set_state(conn, self.upload_id, "ABORTED")
        self.live.snapshots.clear()

    async def settle(self) -> None:
        """After the stream ended (any way): let in-flight parts land and give up the lease."""
        await self.drain()
        if self.has_row and not self.completed:
            async with self.pool.acquire() as conn:
                await upload_rows.release_lease(conn, self.upload_id, self.mgr.node)

    # ---- resume without hash state -----------------------------------------------------------
    async def rebuild(self) -> None:
        """Recompute the SHA-256 of the committed prefix by reading it back: complete the old
        multipart upload (the key is private to this upload), then stream it through this session
        into a fresh multipart upload, which hashes it and re-creates the parts."""
        kept = self.parts
        log.info("rebuilding upload hash state from storage",
                 extra={"upload": str(self.upload_id), "bytes": self.committed})
        await self.blobs.complete_multipart(self.key, self.multipart_id, [(n, e) for n, e, _ in kept])
        self.multipart_id = await self.blobs.create_multipart(self.key, self.content_type)
        async with self.pool.acquire() as conn:
            await upload_rows.save_parts(conn, self.upload_id, [], multipart_id=self.multipart_id,
                                         lease_owner=self.mgr.node)
        self.parts, self.committed, self.next_number = [], 0, 1
        self.chain = HashChain(self.mgr.hash_pool)
        expected = sum(p[2] for p in kept)
        size, self.size = self.size, -1
        async for block in read_blocks(self.blobs, self.key, block=MAX_CHUNK):
            await self.accept(block)
        self.size = size
        if self.received != expected:
            raise Unavailable(f"stored prefix of upload {self.upload_id} has {self.received} bytes, expected "
                              f"{expected}", reason="STORAGE_UNAVAILABLE")
        if self.buffered:  # keep the committed offset where the client will resume
            await self.flush()
        await self.drain()
        if self.failure is not None:
            raise _storage_error(self.failure)


class Uploads:
    def __init__(self, app, pool, blobs):
        self.app, self.pool, self.blobs = app, pool, blobs
        self.node = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.hash_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dmod-sha256")
        self.live: dict[uuid.UUID, Live] = {}
        self.part_budget = asyncio.Semaphore(PARTS_IN_FLIGHT_TOTAL)

    async def keep_leases(self) -> None:
        """Renew the leases of the uploads this process is writing (a stream holds `live.lock`)."""
        while True:
            await asyncio.sleep(upload_rows.LEASE_RENEW_SECONDS)
            held = [upload_id for upload_id, live in self.live.items() if live.lock.locked()]
            if not held:
                continue
            try:
                async with self.pool.acquire() as conn:
                    await upload_rows.renew_leases(conn, held, self.node)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not renew upload leases", exc_info=True)

    async def upload(self, requests, context) -> datasets_pb2.UploadObjectResponse:
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            raise InvalidArgument(("metadata", "the first message must carry the upload metadata")) from None
        if first.WhichOneof("payload") != "metadata":
            raise InvalidArgument(("metadata", "the first message must carry the upload metadata"))
        target = parse_metadata(first.metadata)
        upload_id = target.upload_id or uuid.uuid4()
        await context.send_initial_metadata(((UPLOAD_ID_HEADER, str(upload_id)),))
        live = self.live.setdefault(upload_id, Live())
        try:
            await asyncio.wait_for(live.lock.acquire(), LOCK_WAIT_SECONDS)
        except TimeoutError:
            raise Aborted(f"upload {upload_id} is being written by another stream", reason="UPLOAD_BUSY") from None
        session: Session | None = None
        handed_off = False
        try:
            session = await self._open(target, upload_id, live)
            await session.receive(requests)
            await asyncio.sleep(0)  # a client cancel can end the request stream before it is flagged
            if context.cancelled():
                raise asyncio.CancelledError()
            obj = await session.finish()
            return datasets_pb2.UploadObjectResponse(object=convert.data_object(obj), upload_id=str(upload_id),
                                                     committed_bytes=obj["size_bytes"])
        except asyncio.CancelledError:
            # The client went away: finish in the background what S3 already has in flight.
            handed_off = True
            live.settled.clear()
            self.app.spawn(self._settle(upload_id, session, live))
            raise
        finally:
            if not handed_off:
                await self._settle(upload_id, session, live)

    async def _settle(self, upload_id: uuid.UUID, session: Session | None, live: Live) -> None:
        """Ends every stream: QueryUploadStatus waits for `live.settled` so it reports what the
        last stream committed, not what it had committed when it broke."""
        live.settled.clear()
        try:
            if session is not None:
                await session.settle()
        except Exception:
            log.exception("settling upload failed", extra={"upload": str(upload_id)})
        finally:
            live.touched = time.monotonic()
            finished = session is not None and (session.completed or not session.has_row)
            if (finished or (session is None and not live.snapshots)) and self.live.get(upload_id) is live:
                self.live.pop(upload_id, None)  # nothing left to resume
            live.settled.set()
            live.lock.release()

    async def _open(self, target: Target, upload_id: uuid.UUID, live: Live) -> Session:
        principal = access.caller()
        async with self.pool.acquire() as conn:
            row = await upload_rows.get(conn, upload_id) if target.upload_id else None
            if row is None:
                if target.offset:
                    raise NotFound(f"upload {upload_id} does not exist (nothing committed); start again at offset 0",
                                   reason="UPLOAD_NOT_FOUND")
                if target.dataset_id is None or not target.path:
                    raise InvalidArgument([("metadata.parent", "required for a new upload"),
                                           ("metadata.path", "required for a new upload")])
                await committer.check_caller_may_write(conn, target.dataset_id, principal)
                live.snapshots.clear()
                return Session(self, upload_id, live, dataset_id=target.dataset_id, path=target.path,
                               size=target.size, sha256=target.sha256,
                               content_type=content_type_for(target.path, target.content_type))
            return await self._resume(conn, target, row, live, principal)

    async def _resume(self, conn, target: Target, row, live: Live, principal) -> Session:
        upload_id = row["id"]
        if row["owner"] != principal.user and not principal.is_admin:
            raise PermissionDenied(f"upload {upload_id} belongs to {row['owner']}", reason="NOT_UPLOAD_OWNER")
        mismatch = []
        if target.dataset_id is not None and target.dataset_id != row["dataset_id"]:
            mismatch.append(("metadata.parent", f"upload {upload_id} is for {names.dataset_name(row['dataset_id'])}"))
        if target.path and target.path != row["path"]:
            mismatch.append(("metadata.path", f"upload {upload_id} is for path {row['path']!r}"))
        if target.size >= 0 and row["size_bytes"] >= 0 and target.size != row["size_bytes"]:
            mismatch.append(("metadata.size_bytes", f"upload {upload_id} declared {row['size_bytes']} bytes"))
        if target.sha256 and row["expected_sha256"] and target.sha256 != row["expected_sha256"]:
            mismatch.append(("metadata.sha256", f"upload {upload_id} declared another SHA-256"))
        if mismatch:
            raise InvalidArgument(mismatch)
        if row["kind"] != "stream":
            raise FailedPrecondition(f"upload {upload_id} is a presigned upload; finish it with FinalizeUpload",
                                     reason="UPLOAD_KIND")
        if row["state"] == "COMPLETE":
            raise FailedPrecondition(f"upload {upload_id} is already complete", reason="UPLOAD_COMPLETE")
        if row["state"] != "ACTIVE":
            raise FailedPrecondition(f"upload {upload_id} was aborted; start a new upload", reason="UPLOAD_ABORTED")
        await committer.check_caller_may_write(conn, row["dataset_id"], principal)
        if not await upload_rows.take_lease(conn, upload_id, self.node):
            raise Aborted(f"upload {upload_id} is being written by another server; retry shortly",
                          reason="UPLOAD_BUSY")
        parts = upload_rows.parts_of(row)
        boundaries, total = {0: 0}, 0
        for i, (_n, _e, size) in enumerate(parts):
            total += size
            boundaries[total] = i + 1
        if target.offset not in boundaries:
            await upload_rows.release_lease(conn, upload_id, self.node)
            raise FailedPrecondition(
                f"offset {target.offset} is not a committed offset of upload {upload_id}; resume at "
                f"{total} (QueryUploadStatus.committed_bytes)", reason="OFFSET_MISMATCH",
                metadata={"committed_bytes": str(total)})
        kept = parts[:boundaries[target.offset]]
        if len(kept) != len(parts):
            await upload_rows.save_parts(conn, upload_id, kept, lease_owner=self.node)
        state = live.snapshots.get(target.offset) if target.offset else None
        size = row["size_bytes"] if row["size_bytes"] >= 0 else target.size
        session = Session(self, upload_id, live, dataset_id=row["dataset_id"], path=row["path"], size=size,
                          sha256=row["expected_sha256"] or target.sha256, content_type=row["content_type"], row=row,
                          parts=kept, state=state)
        if target.offset and state is None:
            await session.rebuild()
        return session

    async def status(self, request: datasets_pb2.QueryUploadStatusRequest) -> datasets_pb2.QueryUploadStatusResponse:
        try:
            upload_id = uuid.UUID(request.upload_id)
        except ValueError:
            raise InvalidArgument(("upload_id", "must be a UUID")) from None
        live = self.live.get(upload_id)
        if live is not None:
            try:  # a stream that just broke may still be landing its last parts
                await asyncio.wait_for(live.settled.wait(), 30)
            except TimeoutError:
                pass
        async with self.pool.acquire() as conn:
            row = await upload_rows.get(conn, upload_id)
        if row is None:
            raise NotFound(f"upload {upload_id} has nothing committed (or does not exist); start at offset 0",
                           reason="UPLOAD_NOT_FOUND")
        principal = access.caller()
        if row["owner"] != principal.user and not principal.is_admin:
            raise PermissionDenied(f"upload {upload_id} belongs to {row['owner']}", reason="NOT_UPLOAD_OWNER")
        return datasets_pb2.QueryUploadStatusResponse(
            upload_id=str(upload_id), parent=names.dataset_name(row["dataset_id"]), path=row["path"],
            committed_bytes=row["committed_bytes"], size_bytes=max(row["size_bytes"], 0),
            complete=row["state"] == "COMPLETE")

    def forget_idle(self, older_than: float = STREAM_EXPIRE_SECONDS) -> None:
        now = time.monotonic()
        for upload_id, live in list(self.live.items()):
            if not live.lock.locked() and now - live.touched > older_than:
                self.live.pop(upload_id, None)

    def close(self) -> None:
        self.hash_pool.shutdown(wait=False, cancel_futures=True)

