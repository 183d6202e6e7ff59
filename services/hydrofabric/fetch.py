"""Hydrofabric datasets as local files and loaded networks, for the services that need them.

Objects are cached by SHA-256 (content-addressed, so a cached file is never stale) and the
loaded `Network` by the files' hashes, so repeated subsets/partitions of one hydrofabric skip
both the download and the parse.
"""
from __future__ import annotations

import asyncio
import posixpath
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from .network import Network


@dataclass(frozen=True)
class HydrofabricFiles:
    catchments: Path
    nexuses: Path  # the same file for a GeoPackage
    key: str  # sha256 of the catchment file (+ nexus file)


def pick_files(paths: list[str]) -> tuple[str, str]:
    """(catchment file, nexus file) among a hydrofabric dataset's object paths."""
    gpkg = sorted(p for p in paths if p.lower().endswith(".gpkg"))
    if gpkg:
        return gpkg[0], gpkg[0]
    geo = sorted(p for p in paths if p.lower().endswith((".geojson", ".json")))
    cats = [p for p in geo if any(k in posixpath.basename(p).lower() for k in ("catchment", "divide"))]
    nexs = [p for p in geo if "nex" in posixpath.basename(p).lower()]
    if cats and nexs:
        return cats[0], nexs[0]
    raise ValueError("needs a GeoPackage (*.gpkg) or a catchment and a nexus GeoJSON file")


async def fetch_files(datasets, dataset: str, cache: Path) -> HydrofabricFiles:
    """Download (or reuse) the hydrofabric files of `dataset` via a DatasetsClient."""
    objects = {o.path: o for o in await datasets.list_objects(dataset)}
    cat_path, nex_path = pick_files(list(objects))
    local = []
    for path in dict.fromkeys((cat_path, nex_path)):
        obj = objects[path]
        dest = cache / obj.sha256 / posixpath.basename(path)
        if not dest.exists():
            await datasets.download_file(obj.name, dest)
        local.append(dest)
    key = "+".join(objects[p].sha256 for p in dict.fromkeys((cat_path, nex_path)))
    return HydrofabricFiles(local[0], local[-1], key)


class NetworkCache:
    """A few recently loaded networks, keyed by content."""

    def __init__(self, size: int = 4):
        self._size = size
        self._items: OrderedDict[str, Network] = OrderedDict()
        self._lock = asyncio.Lock()

    async def load(self, files: HydrofabricFiles) -> Network:
        async with self._lock:
            if files.key in self._items:
                self._items.move_to_end(files.key)
                return self._items[files.key]
            from .readers import load_network  # GDAL only when a network is really loaded

            net = await asyncio.to_thread(load_network, str(files.catchments), str(files.nexuses))
            self._items[files.key] = net
            while len(self._items) > self._size:
                self._items.popitem(last=False)
            return net
