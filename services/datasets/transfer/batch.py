"""UploadObjects (client stream): many small objects in one call, committed together.

Stream: `parent` first, then per object a header (path, exact size, required SHA-256, content
type) followed by its chunks (≤ 1 MiB each; none for an empty object). As soon as an object's
last byte arrives it is hashed. Small objects (≤ PACK_MAX_OBJECT) are then laid back to back in a
pack, one S3 object PUT when it reaches PACK_BYTES or the stream ends: the object store's cost is
per request, and a job's outputs are hundreds of ~30 KiB files (824 ngen outputs: 1.1 s as single
PUTs, 0.2 s as one). Larger objects are PUT on their own. Up to `PUTS_IN_FLIGHT` PUTs per call
run within a per-call byte budget while the next objects are received. When the stream ends and
every PUT has landed, one transaction under the dataset's row lock upserts every object row
(`commit.commit_batch`; a packed row records its offset in the pack). Nothing touches the
database per object.

All or nothing: bad input (a path, a size), bytes that do not hash to their declared SHA-256
(DATA_LOSS naming the object), a storage failure, or a dataset sealed
meanwhile fail the whole call, and none of its objects becomes visible. The call's S3 keys
(`datasets/{id}/{batch id}/{path}` and `datasets/{id}/{batch id}.packN`, private to the call) are
removed then; keys that cannot be
removed are queued for the janitor.

Authorization, path rules and errors are those of UploadObject: the caller must own the dataset
(or be an admin; a worker token acts as the job's owner), the dataset must be OPEN.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid

from dmod.services.datasets import convert, names
from dmod.services.datasets.transfer import commit as committer
from dmod.services.datasets.transfer import upload_rows
from dmod.services.datasets.transfer.blobs import Buffers
from dmod.services.datasets.transfer.uploads import MAX_CHUNK, content_type_for
from dmod.services.runtime.errors import DataLoss, InvalidArgument, Unavailable
from dmod.v1 import datasets_pb2

log = logging.getLogger("dmod.datasets.batch")

MAX_OBJECT_BYTES = 16 << 20  # larger objects: UploadObject (multipart, resumable)
MAX_OBJECTS = 1000  # per call
PUTS_IN_FLIGHT = 16  # per call
BYTES_IN_FLIGHT = 64 << 20  # per call: received objects not yet stored
INLINE_HASH_BYTES = 256 << 10  # smaller objects are hashed on the event loop (~0.15 ms at most)
PACK_MAX_OBJECT = INLINE_HASH_BYTES  # objects up to this size go into packs
PACK_BYTES = 8 << 20  # a pack is stored once it holds this much (held besides the byte budget)
_HEX = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_TYPE = re.compile(r"^[\x20-\x7e]*$")


def _field(path: str) -> str:
    return f"objects/{path}"


class _Budget:
    """At most `count` objects and `size` bytes held at a time (an object larger than the byte
    budget still passes, alone). One taker at a time (the receiving loop)."""

    def __init__(self, count: int, size: int):
        self.count, self.size = count, size
        self.used_count = self.used_size = 0
        self.waiter: asyncio.Future | None = None

    def _fits(self, n: int) -> bool:
        return self.used_count < self.count and (self.used_size + n <= self.size or self.used_count == 0)

    async def take(self, n: int) -> None:
        while not self._fits(n):
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        self.used_count += 1
        self.used_size += n

    def give(self, n: int) -> None:
        self.used_count -= 1
        self.used_size -= n
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class _Object:
    __slots__ = ("chunks", "content_type", "digest", "index", "key", "offset", "path", "received", "sha256", "size")

    def __init__(self, index: int, path: str, size: int, sha256: str, content_type: str, key: str):
        self.index, self.path, self.size, self.sha256, self.content_type, self.key = (
            index, path, size, sha256, content_type, key)
        self.chunks: list = []
        self.received = 0
        self.digest = ""  # set once verified AND stored
        self.offset: int | None = None  # in its pack (key = the pack's key); None: stored alone


class _Pack:
    """Verified small objects waiting to be stored together."""

    def __init__(self, key: str):
        self.key = key
        self.members: list[_Object] = []
        self.buffers: list = []
        self.size = 0


class Batch:
    """One UploadObjects call."""

    def __init__(self, pool, blobs, app):
        self.pool, self.blobs, self.app = pool, blobs, app
        self.batch_id = uuid.uuid4()
        self.dataset_id: uuid.UUID | None = None
        self.objects: list[_Object] = []
        self.paths: set[str] = set()
        self.tasks: list[asyncio.Future] = []
        self.stored: list[str] = []  # keys S3 may hold (PUT attempted)
        self.budget = _Budget(PUTS_IN_FLIGHT, BYTES_IN_FLIGHT)
        self.packs = 0
        self.pack: _Pack | None = None
        self.failure: BaseException | None = None
        self.committing: asyncio.Future | None = None

    # ---- receiving ---------------------------------------------------------------------------
    async def run(self, requests, context) -> datasets_pb2.UploadObjectsResponse:
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            raise InvalidArgument(("parent", "the first message must name the dataset")) from None
        if first.WhichOneof("payload") != "parent":
            raise InvalidArgument(("parent", "the first message must name the dataset"))
        self.dataset_id = names.parse_dataset_name(first.parent, "parent")
        async with self.pool.acquire() as conn:  # fail fast, before any byte is stored
            await committer.check_caller_may_write(conn, self.dataset_id)
        handed_off = False
        try:
            await self.receive(requests)
            await self.store_pack()
            await asyncio.sleep(0)  # a client cancel can end the request stream before it is flagged
            if context.cancelled():
                raise asyncio.CancelledError()
            await self.drain()
            self.verdict()
            # shielded: a client leaving mid-commit must not leave it undecided while the keys
            # are removed (`discard` waits for it and keeps the keys of a committed batch)
            self.committing = asyncio.ensure_future(self.commit())
            rows = await asyncio.shield(self.committing)
            by_path = {row["path"]: row for row in rows}
            return datasets_pb2.UploadObjectsResponse(
                objects=[convert.data_object(by_path[o.path]) for o in self.objects])
        except asyncio.CancelledError:
            handed_off = True  # the client went away: clean up once the PUTs in flight land
            self.app.spawn(self.discard())
            raise
        finally:
            if not handed_off:
                await self.discard()

    async def commit(self) -> list:
        objects = [(o.path, o.size, o.digest, o.content_type, o.key, o.offset) for o in self.objects]
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await committer.commit_batch(conn, dataset_id=self.dataset_id, upload_id=self.batch_id,
                                                objects=objects)
        self.stored = []  # committed: the keys are the objects now
        return rows

    async def receive(self, requests) -> None:
        current: _Object | None = None
        async for message in requests:
            kind = message.WhichOneof("payload")
            if kind == "chunk":
                chunk = message.chunk
                n = len(chunk)
                if current is None:
                    raise InvalidArgument(("chunk", "a chunk must follow the header of its object"))
                if n > MAX_CHUNK:
                    raise InvalidArgument((_field(current.path), (f"chunk of {n} bytes; a chunk is at most "
                                                                 f"{MAX_CHUNK} bytes (1 MiB)")), reason="CHUNK_TOO_LARGE")
                if current.received + n > current.size:
                    raise InvalidArgument((_field(current.path), f"declared {current.size} bytes, more arrived"),
                                          reason="SIZE_MISMATCH", metadata={"path": current.path})
                if n:
                    current.chunks.append(chunk)
                    current.received += n
                if current.received == current.size:
                    await self.store(current)
                    current = None
            elif kind == "header":
                if current is not None:
                    raise self._short(current)
                current = self.header(message.header)
                if current.size == 0:
                    await self.store(current)
                    current = None
            else:
                raise InvalidArgument(("parent", "only the first message names the dataset"))
            if self.failure is not None:
                raise self.failure
        if current is not None:
            raise self._short(current)

    @staticmethod
    def _short(obj: _Object) -> InvalidArgument:
        return InvalidArgument((_field(obj.path), (f"declared {obj.size} bytes, {obj.received} arrived before "
                                                  "the next header or the end of the stream")),
                               reason="SIZE_MISMATCH", metadata={"path": obj.path})

    def header(self, h: datasets_pb2.UploadObjectsHeader) -> _Object:
        path = h.path
        field = _field(path)
        problem = names.path_problem(path)
        if problem:
            raise InvalidArgument((field, f"object path {problem}"), reason="INVALID_OBJECT_PATH",
                                  metadata={"path": path[:1024]})
        violations = []
        if path in self.paths:
            violations.append((field, "sent twice in one call"))
        if h.size_bytes < 0:
            violations.append((field, "size_bytes must not be negative"))
        elif h.size_bytes > MAX_OBJECT_BYTES:
            violations.append((field, (f"size_bytes {h.size_bytes} exceeds {MAX_OBJECT_BYTES} bytes; upload "
                                      "larger objects with UploadObject")))
        sha = h.sha256.lower()
        if not _HEX.match(sha):
            violations.append((field, "sha256 must be 64 hex digits (it is required)"))
        if len(h.content_type) > 255 or not _CONTENT_TYPE.match(h.content_type):
            violations.append((field, "content_type must be at most 255 printable ASCII characters"))
        if len(self.objects) >= MAX_OBJECTS:
            violations.append((field, f"a call uploads at most {MAX_OBJECTS} objects"))
        if violations:
            raise InvalidArgument(violations, metadata={"path": path})
        self.paths.add(path)
        obj = _Object(len(self.objects), path, h.size_bytes, sha, content_type_for(path, h.content_type),
                      names.object_key(self.dataset_id, self.batch_id, path))
        self.objects.append(obj)
        return obj

    # ---- storing -----------------------------------------------------------------------------
    @staticmethod
    def _check(obj: _Object, actual: str) -> None:
        if actual != obj.sha256:  # damaged on the way (or changed while read): never stored
            raise DataLoss(f"{obj.path}: the bytes received hash to {actual}, not the declared {obj.sha256}; "
                           "nothing of this call was kept, send it again",
                           reason="CHECKSUM_MISMATCH", metadata={"path": obj.path, "expected": obj.sha256,
                                                                 "actual": actual})

    async def store(self, obj: _Object) -> None:
        """Hash a complete object and pack it, or PUT it alone; waits while the call's budget is
        used up (back-pressure on the stream). Small objects are hashed right here; larger ones
        in a worker thread."""
        if obj.size <= PACK_MAX_OBJECT:
            await self.add_to_pack(obj)
            return
        await self.budget.take(obj.size)
        data = Buffers(obj.chunks)
        obj.chunks = []
        self.stored.append(obj.key)

        def digest() -> str:
            h = hashlib.sha256()
            for buffer in data.buffers:
                h.update(buffer)
            return h.hexdigest()

        async def work() -> None:
            try:
                actual = digest() if obj.size <= INLINE_HASH_BYTES else await self.blobs.run(digest)
                self._check(obj, actual)
                try:
                    await self.blobs.put_buffers(obj.key, data, obj.content_type)
                except Exception as exc:
                    log.warning("object store write failed", exc_info=exc)
                    raise Unavailable(f"object store write failed for {obj.path}: {exc.__class__.__name__}",
                                      reason="STORAGE_UNAVAILABLE", metadata={"path": obj.path}) from None
                obj.digest = actual
            finally:
                self.budget.give(obj.size)

        task = asyncio.ensure_future(work())
        self.tasks.append(task)
        task.add_done_callback(self._stored)

    async def add_to_pack(self, obj: _Object) -> None:
        h = hashlib.sha256()
        for buffer in obj.chunks:
            h.update(buffer)
        self._check(obj, h.hexdigest())
        if self.pack is None:
            self.pack = _Pack(names.pack_key(self.dataset_id, self.batch_id, self.packs))
            self.packs += 1
        pack = self.pack
        obj.key, obj.offset = pack.key, pack.size
        pack.members.append(obj)
        pack.buffers.extend(obj.chunks)
        pack.size += obj.size
        obj.chunks = []
        if pack.size >= PACK_BYTES:
            await self.store_pack()

    async def store_pack(self) -> None:
        """PUT the pack being filled (if any) as one S3 object."""
        pack, self.pack = self.pack, None
        if pack is None:
            return
        await self.budget.take(pack.size)
        self.stored.append(pack.key)

        async def work() -> None:
            try:
                await self.blobs.put_buffers(pack.key, Buffers(pack.buffers), "application/octet-stream")
            except Exception as exc:
                log.warning("object store write failed", exc_info=exc)
                raise Unavailable(f"object store write failed for {len(pack.members)} objects "
                                  f"({pack.members[0].path} ...): {exc.__class__.__name__}",
                                  reason="STORAGE_UNAVAILABLE", metadata={"path": pack.members[0].path}) from None
            finally:
                self.budget.give(pack.size)
            for member in pack.members:
                member.digest = member.sha256  # verified in add_to_pack

        task = asyncio.ensure_future(work())
        self.tasks.append(task)
        task.add_done_callback(self._stored)

    def _stored(self, task: asyncio.Future) -> None:
        """Ends the stream early on the first failure (the rest is checked in `verdict`)."""
        if self.failure is None and not task.cancelled() and task.exception() is not None:
            self.failure = task.exception()

    def verdict(self) -> None:
        """After `drain`: the first failure, in the order the objects were sent."""
        for task in self.tasks:
            if task.cancelled():
                raise Unavailable("object store write was cancelled", reason="STORAGE_UNAVAILABLE")
            if task.exception() is not None:
                raise task.exception()
        missing = [o.path for o in self.objects if not o.digest]
        if missing:  # cannot happen; never commit an object that was not verified and stored
            raise Unavailable(f"{len(missing)} objects were not stored, e.g. {missing[0]}",
                              reason="STORAGE_UNAVAILABLE")

    async def drain(self) -> None:
        """Wait for every PUT. `asyncio.wait`, not `gather`: a cancelled waiter must not cancel
        writes S3 is already receiving (their keys are removed afterwards)."""
        while True:
            pending = [t for t in self.tasks if not t.done()]
            if not pending:
                return
            await asyncio.wait(pending)

    async def discard(self) -> None:
        """Remove what an uncommitted call stored (best effort; what cannot be removed now is
        queued for the janitor)."""
        if self.committing is not None:
            try:
                await asyncio.wait([self.committing])
            except asyncio.CancelledError:
                pass
            if self.committing.done() and not self.committing.cancelled():
                self.committing.exception()  # committed: nothing to discard; failed: reported already
        if not self.stored:
            return
        try:
            await self.drain()
        except asyncio.CancelledError:
            pass
        for task in self.tasks:  # their errors were reported (or superseded) already
            if task.done() and not task.cancelled():
                task.exception()
        keys, self.stored = self.stored, []
        try:
            await self.blobs.remove_many(keys)
        except Exception:
            log.warning("could not remove the keys of a rejected batch; queued for the janitor",
                        extra={"batch": str(self.batch_id), "keys": len(keys)}, exc_info=True)
            try:
                async with self.pool.acquire() as conn:
                    for key in keys:
                        await upload_rows.add_garbage(conn, key)
            except Exception:
                log.exception("could not queue the keys of a rejected batch", extra={"batch": str(self.batch_id)})
