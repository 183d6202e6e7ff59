"""Whole-object downloads straight from S3 through a presigned URL that DatasetService issues.

The bytes skip Envoy and the service: the service checks access, signs the URL and states the
recorded size and SHA-256; this module checks both before the caller renames the file into
place. One thread receives into a few reusable 4 MiB buffers; a second hashes them and a third
writes them, in order, each buffer reused once both are done with it. Hashing (the dearest step,
~0.8 s per GiB) then overlaps both the transfer and the disk writes (all three release the GIL).
"""
from __future__ import annotations

import hashlib
import http.client
import queue
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

BLOCK = 4 << 20
BUFFERS = 8
TIMEOUT = 120.0  # seconds without a byte before giving up


class UrlFetchFailed(OSError):
    """The URL could not be fetched completely (unreachable, refused, cut off); the caller may
    fall back to streaming the object through the service."""


def fetch(url: str, dest: Path, size: int, progress: Callable[[int, int], None] | None = None) -> str:
    """GET `url` into `dest` (created/truncated); returns the SHA-256 of what was received.
    Raises UrlFetchFailed unless exactly `size` bytes arrived."""
    response, conn = _open(url)
    free: queue.Queue = queue.Queue()
    for _ in range(BUFFERS):
        free.put(bytearray(BLOCK))
    to_hash: queue.Queue = queue.Queue()
    to_write: queue.Queue = queue.Queue()
    hasher = hashlib.sha256()
    failure: list[BaseException] = []
    lock = threading.Lock()

    def release(item: list) -> None:
        """A consumer is done with a block; the second one recycles its buffer."""
        with lock:
            item[2] -= 1
            last = item[2] == 0
        if last:
            free.put(item[0])

    def hash_all() -> None:
        while (item := to_hash.get()) is not None:
            hasher.update(memoryview(item[0])[:item[1]])
            release(item)

    def write_all() -> None:
        with open(dest, "wb", buffering=0) as fh:
            while (item := to_write.get()) is not None:
                if not failure:
                    try:
                        view = memoryview(item[0])[:item[1]]
                        while view:
                            view = view[fh.write(view):]
                    except OSError as exc:  # disk full, …: stop writing, keep recycling buffers
                        failure.append(exc)
                release(item)

    workers = [threading.Thread(target=hash_all, name="dmod-url-hash", daemon=True),
               threading.Thread(target=write_all, name="dmod-url-write", daemon=True)]
    for worker in workers:
        worker.start()
    received = 0
    try:
        while not failure:
            buf = free.get()
            n = response.readinto(buf)
            if not n:
                free.put(buf)
                break
            item = [buf, n, 2]  # buffer, bytes in it, consumers still to finish with it
            to_hash.put(item)
            to_write.put(item)
            received += n
            if progress:
                progress(received, size)
    except (OSError, http.client.HTTPException) as exc:
        raise UrlFetchFailed(f"transfer cut off after {received} bytes: {exc}") from None
    finally:
        to_hash.put(None)
        to_write.put(None)
        for worker in workers:
            worker.join()
        conn.close()
    if failure:
        raise failure[0]
    if received != size:
        raise UrlFetchFailed(f"received {received} bytes, expected {size}")
    return hasher.hexdigest()


def _open(url: str) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    parts = urllib.parse.urlsplit(url)
    kind = {"http": http.client.HTTPConnection, "https": http.client.HTTPSConnection}.get(parts.scheme)
    if kind is None or not parts.hostname:
        raise UrlFetchFailed(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
    conn = kind(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise UrlFetchFailed(f"{parts.hostname}:{parts.port}: {exc}") from None
    if response.status != 200:
        conn.close()
        raise UrlFetchFailed(f"{parts.hostname}:{parts.port} answered HTTP {response.status} {response.reason}")
    return response, conn
