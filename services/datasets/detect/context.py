"""What a detector sees of a dataset: its object list, and ways to read objects (whole to a temp
file, or just the first/last bytes with ranged reads). Synchronous: detection runs in a thread."""
from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dmod.services.datasets import store


class BadFile(Exception):
    """A file that cannot be read as the format being detected."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


DATASET = "(dataset)"  # BadFile path for problems of the dataset as a whole


@dataclass(frozen=True)
class Obj:
    path: str
    size: int
    sha256: str
    s3_key: str
    pack_offset: int | None = None

    @property
    def suffix(self) -> str:
        return Path(self.path).suffix.lower()

    @property
    def stem(self) -> str:
        return Path(self.path).name.rsplit(".", 1)[0]


class DetectionContext:
    def __init__(self, blobs, objects):
        self.blobs = blobs
        self.objects = [o if isinstance(o, Obj) else Obj(o["path"], o["size_bytes"], o["sha256"], o["s3_key"],
                                                                      o["pack_offset"])
                        for o in objects]
        self._tmp: str | None = None
        self.current: str | None = None  # the object last read: named when a reader fails unexpectedly

    def with_suffix(self, *suffixes: str) -> list[Obj]:
        return [o for o in self.objects if o.suffix in suffixes]

    # ---- reading -------------------------------------------------------------------------------
    def read(self, obj: Obj, offset: int = 0, length: int = 0) -> bytes:
        self.current = obj.path
        if obj.size == 0 or (length and offset >= obj.size):
            return b""
        key, offset, length = store.stored_range(obj.s3_key, obj.pack_offset, obj.size, offset, length)
        response = self.blobs.client.get_object(self.blobs.bucket, key, offset=offset, length=length)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def head(self, obj: Obj, nbytes: int = 64 << 10) -> bytes:
        return self.read(obj, 0, min(nbytes, obj.size) if obj.size else nbytes)

    def tail(self, obj: Obj, nbytes: int = 64 << 10) -> bytes:
        start = max(0, obj.size - nbytes)
        return self.read(obj, start, obj.size - start)

    def fetch(self, obj: Obj) -> Path:
        """The object as a local file (kept until `close`), named like the object."""
        self.current = obj.path
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="dmod-detect-")
        local = Path(self._tmp) / obj.path
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            if obj.pack_offset is None:
                self.blobs.client.fget_object(self.blobs.bucket, obj.s3_key, str(local))
            else:
                local.write_bytes(self.read(obj))
        return local

    def map(self, fn, items, threads: int = 16) -> list:
        """fn over items with parallel reads; results in order."""
        items = list(items)
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
            return list(pool.map(fn, items))

    def close(self) -> None:
        if self._tmp and os.path.isdir(self._tmp):
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None
