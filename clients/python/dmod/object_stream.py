"""Reading a DownloadObjects stream: (object, its bytes) pairs, each checked against the size and
SHA-256 its DataObject states before it is handed on — a caller never sees unverified bytes."""
from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator


class DamagedObject(Exception):
    """Bytes received for an object do not match its stated size and SHA-256."""


async def verified_objects(replies) -> AsyncIterator[tuple[object, bytes]]:
    obj, chunks = None, []

    def finish():
        data = b"".join(chunks)
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != obj.size_bytes or digest != obj.sha256:
            raise DamagedObject(f"{obj.name}: received {len(data)} bytes hashing to {digest}, expected "
                                f"{obj.size_bytes} bytes {obj.sha256}")
        return obj, data

    async for reply in replies:
        if reply.WhichOneof("payload") == "object":
            if obj is not None:
                yield finish()
            obj, chunks = reply.object, []
        elif obj is None:
            raise DamagedObject("the stream sent bytes before naming their object")
        else:
            chunks.append(reply.chunk)
    if obj is not None:
        yield finish()
