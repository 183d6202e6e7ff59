"""Content hash of hydrofabric files, the `hydrofabric_id` that datasets and jobs match on.

Hashing a 1 GB GeoPackage takes seconds, so digests are cached per (path, size, mtime_ns).
"""
from __future__ import annotations

import hashlib
import os
import threading

_CACHE: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    p = os.path.realpath(os.fspath(path))
    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit:
        return hit
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    digest = h.hexdigest()
    with _LOCK:
        _CACHE[key] = digest
    return digest


def hydrofabric_id(*paths: str | os.PathLike | None) -> str:
    """One file → its sha256; a catchment/nexus pair → sha256 over both digests (the same
    file named twice counts once)."""
    uniq: list[str] = []
    for p in paths:
        if p is None:
            continue
        rp = os.path.realpath(os.fspath(p))
        if rp not in uniq:
            uniq.append(rp)
    digests = [file_sha256(p) for p in uniq]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()
