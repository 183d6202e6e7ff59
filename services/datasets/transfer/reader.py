"""Reading an S3 object (or a byte range) as async blocks, fetched ahead by a worker thread and
optionally hashed there, so the event loop only hands blocks on."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


async def read_blocks(blobs, key: str, offset: int = 0, length: int = 0, *, block: int = 1 << 20,
                      hasher=None, ahead: int = 16) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    slots = threading.Semaphore(ahead)

    def post(item) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # loop closed: the consumer is gone
            stop.set()

    def produce() -> None:
        try:
            for data in blobs.read_sync(key, offset, length, block):
                while not slots.acquire(timeout=0.5):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                if hasher is not None:
                    hasher.update(data)
                post(data)
            post(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            post(_Failure(exc))

    loop.run_in_executor(blobs.pool, produce)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            slots.release()
            yield item
    finally:
        stop.set()
        slots.release()
