"""Build the job directory from the job's datasets (SHA-256 verified), see layout.py."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path

from dmod.services.worker.agent import layout


# A dataset call that failed transiently (UNAVAILABLE, DEADLINE_EXCEEDED, ...: a datasets service
# restarting, a dropped connection) is tried again after these pauses (~64 s in all: a services
# outage of up to a minute costs no attempt, as for the outputs); still failing, the attempt ends
# INPUTS_UNAVAILABLE, which the scheduler retries as a new attempt.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0) + (8.0,) * 7


# Objects up to this size come many per DownloadObjects call (one S3 read per pack of them).
MANY_MAX_OBJECT = 4 << 20
MANY_PER_CALL = 250


async def _retrying(call):
    from dmod.services.jobs.datasets import DatasetError

    for delay in (*RETRY_DELAYS, None):
        try:
            return await call()
        except DatasetError as exc:
            if not exc.transient or delay is None:
                raise
            await asyncio.sleep(delay)


def _failure(exc, what: str) -> "PrepareError":
    if exc.reason == "CHECKSUM_MISMATCH":
        return PrepareError(f"{what}: {exc}", "CHECKSUM_MISMATCH")
    if exc.transient:
        return PrepareError(f"{what}: {exc} (still failing after {len(RETRY_DELAYS)} retries over "
                            f"{sum(RETRY_DELAYS):.0f}s)", "INPUTS_UNAVAILABLE")
    return PrepareError(f"{what}: {exc}")


class PrepareError(Exception):
    def __init__(self, message: str, reason: str = "INPUT_DOWNLOAD_FAILED"):
        super().__init__(message)
        self.reason = reason


@dataclass
class Prepared:
    root: Path
    catchments: str  # relative to root
    nexuses: str
    realization: str
    partition: str | None
    doc: dict  # the rewritten realization
    subset: tuple[str, ...] | None = None  # catchments to run (serial runs)


def _safe(rel: str) -> str:
    norm = posixpath.normpath(rel)
    if norm.startswith("../") or norm == ".." or posixpath.isabs(norm):
        raise PrepareError(f"object path {rel!r} escapes the job directory", "INPUT_INVALID")
    return norm


def _dest(root: Path, role: str, path: str) -> Path:
    sub = layout.ROLE_DIR.get(role, role)
    return root / sub / _safe(path) if sub else root / _safe(path)


async def download_inputs(ds, resolved: dict[str, str], root: Path, say) -> dict[str, list[str]]:
    """Download every input dataset into `root`; returns role -> object paths."""
    from dmod.services.jobs.datasets import DatasetError

    listing: dict[str, list] = {}
    for role, name in resolved.items():
        try:
            listing[role] = await _retrying(lambda name=name: ds.objects(name))
        except DatasetError as exc:
            raise _failure(exc, f"cannot list {name}") from None
    sem = asyncio.Semaphore(8)
    total = sum(len(v) for v in listing.values())
    done = 0

    def dest_of(role: str, obj) -> Path:
        if role == "partition":
            return root / ("inputs/partition/" + _safe(obj.path))
        return _dest(root, role, obj.path)

    def landed(role: str, objs: list) -> None:
        nonlocal done
        for obj in objs:
            if role in layout.EXECUTABLE_ROLES:
                os.chmod(dest_of(role, obj), 0o755)
        before, done = done, done + len(objs)
        if done == total or done // 200 != before // 200:
            say(f"downloaded {done}/{total} input objects")

    async def fetch(role: str, obj) -> None:
        dest = dest_of(role, obj)
        async with sem:
            try:
                await _retrying(lambda: ds.download(obj, dest))
            except DatasetError as exc:
                raise _failure(exc, f"cannot download {obj.name}") from None
        landed(role, [obj])

    async def fetch_many(role: str, objs: list) -> None:  # small files (per-catchment forcing, configs)
        async with sem:
            try:
                await _retrying(lambda: ds.download_many(resolved[role], objs, lambda o: dest_of(role, o)))
            except DatasetError as exc:
                raise _failure(exc, f"cannot download {len(objs)} objects of {resolved[role]}") from None
        landed(role, objs)

    calls = []
    for role, objs in listing.items():
        for obj in objs:
            dest_of(role, obj)  # every path checked before anything is written
        small = [o for o in objs if o.size_bytes <= MANY_MAX_OBJECT]
        calls += [fetch(role, o) for o in objs if o.size_bytes > MANY_MAX_OBJECT]
        calls += [fetch_many(role, small[i:i + MANY_PER_CALL]) for i in range(0, len(small), MANY_PER_CALL)]
    await asyncio.gather(*calls)
    return {role: [o.path for o in objs] for role, objs in listing.items()}


def lay_out(root: Path, paths: dict[str, list[str]], start: dt.datetime | None, end: dt.datetime | None,
            ranks: int) -> Prepared:
    try:
        cat, nex = layout.pick_hydrofabric(paths.get("hydrofabric", []))
        real_path = layout.pick_json(paths.get("realization", []), layout.REALIZATION_FILE, "realization")
    except layout.LayoutError as exc:
        raise PrepareError(str(exc), "INPUT_INVALID") from None
    raw = json.loads((root / real_path).read_text())
    doc = layout.rewrite_realization(raw, forcing_paths=paths.get("forcing", []), start=start, end=end)
    (root / layout.REALIZATION_FILE).write_text(json.dumps(doc, indent=1))
    partition = None
    if ranks > 1:
        if "partition" not in paths:
            raise PrepareError(f"{ranks} ranks need a partition dataset", "INPUT_INVALID")
        part = layout.pick_json(paths["partition"], layout.PARTITION_FILE, "partition")
        shutil.copyfile(root / "inputs/partition" / part, root / layout.PARTITION_FILE)
        partition = layout.PARTITION_FILE
    (root / layout.OUTPUT_DIR).mkdir(exist_ok=True)
    return Prepared(root=root, catchments=f"hydrofabric/{cat}", nexuses=f"hydrofabric/{nex}",
                    realization=layout.REALIZATION_FILE, partition=partition, doc=doc)


def from_local(spec: dict, root: Path) -> dict[str, list[str]]:
    """--spec mode: copy local input files/folders into the layout; role -> paths."""
    paths: dict[str, list[str]] = {}
    for role, src in (spec.get("inputs") or {}).items():
        src = Path(src)
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        # Files keep their name; a folder for a role laid out at the root keeps its own name too
        # (a BMI config folder `config/` stays `config/...`), other folders give their content.
        base = src.parent if src.is_file() or layout.ROLE_DIR.get(role) == "" else src
        rels = []
        for f in files:
            rel = f.relative_to(base).as_posix()
            dest = root / ("inputs/partition/" + rel) if role == "partition" else _dest(root, role, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
            if role in layout.EXECUTABLE_ROLES:
                os.chmod(dest, 0o755)
            rels.append(rel)
        paths[role] = rels
    return paths
