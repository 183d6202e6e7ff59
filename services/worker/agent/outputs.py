"""After the run: check that every expected output file exists, then upload the outputs into
the output dataset (SHA-256 sent with each object; the server verifies it)."""
from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from dmod.services.worker.agent import layout


class OutputError(Exception):
    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def expected_files(prepared) -> list[str]:
    from dmod.services.hydrofabric import load_network
    from dmod.services.worker.engine.realization import parse_output

    root = prepared.root
    network = load_network(str(root / prepared.catchments), str(root / prepared.nexuses))
    output = parse_output(prepared.doc)  # whichever engine runs it, only the output settings matter
    simulated = None
    if prepared.partition:
        simulated = layout.partition_catchments(json.loads((root / prepared.partition).read_text()))
    elif prepared.subset:
        simulated = list(prepared.subset)
    return layout.expected_outputs(network, simulated, output.catchment_enabled)


def check_complete(out_dir: Path, expected: list[str]) -> None:
    present = {p.name for p in out_dir.iterdir() if p.is_file()} if out_dir.is_dir() else set()
    missing = [name for name in expected if name not in present]
    if missing:
        raise OutputError(f"{len(missing)} of {len(expected)} expected output files missing: "
                          f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}", "OUTPUT_INCOMPLETE")
    empty = [name for name in expected if (out_dir / name).stat().st_size == 0]
    if empty:
        raise OutputError(f"{len(empty)} output files are empty: {', '.join(empty[:10])}", "OUTPUT_INCOMPLETE")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Small files go many per UploadObjects call (one commit per batch); larger ones one per UploadObject.
BATCH_BYTES = 8 << 20
BATCH_FILES = 500
BATCH_MAX_FILE = 4 << 20
BATCHES_IN_FLIGHT = 3
SINGLES_IN_FLIGHT = 4
_CHUNK = 1 << 20
_UPLOAD_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0) + (8.0,) * 7  # ~64 s
_RETRY_CODES = ("UNAVAILABLE", "ABORTED", "DEADLINE_EXCEEDED", "DATA_LOSS")  # DATA_LOSS: damaged in transit


def plan_batches(sizes: list[tuple[Path, int]], lanes: int = BATCHES_IN_FLIGHT) -> list[list[tuple[Path, int]]]:
    """Split small files into batches of at most BATCH_FILES files / BATCH_BYTES bytes, and into at
    least `lanes` batches when there are enough files for each to be worth a call (≥ 64)."""
    if not sizes:
        return []
    total = sum(n for _, n in sizes)
    count = max(-(-total // BATCH_BYTES), -(-len(sizes) // BATCH_FILES), min(lanes, len(sizes) // 64), 1)
    # even shares, with one file of slack so that rounding does not leave a tiny last batch
    per_bytes = min(BATCH_BYTES, -(-total // count) + max(n for _, n in sizes))
    per_files = min(BATCH_FILES, -(-len(sizes) // count))
    batches: list[list[tuple[Path, int]]] = [[]]
    used = 0
    for item in sizes:
        batch = batches[-1]
        if batch and (len(batch) >= per_files or used + item[1] > per_bytes):
            batches.append([])
            batch, used = batches[-1], 0
        batch.append(item)
        used += item[1]
    return batches


def _read_batch(out_dir: Path, batch: list[tuple[Path, int]]) -> list[tuple[str, bytes, str]]:
    out = []
    for path, _ in batch:
        data = path.read_bytes()
        out.append((path.relative_to(out_dir).as_posix(), data, hashlib.sha256(data).hexdigest()))
    return out


async def upload_outputs(stub, metadata, dataset: str, out_dir: Path, say) -> tuple[int, int]:
    """Upload every file under `out_dir` (paths relative to it); remove objects of an earlier
    attempt that this one did not produce. Returns (files, bytes).

    Files up to BATCH_MAX_FILE go in UploadObjects calls (a few batches at a time; a failed batch
    is retried as a whole: nothing of it is visible after a failure); larger files, or all files
    when the server has no UploadObjects, go one per UploadObject stream."""
    import grpc

    from dmod.v1 import datasets_pb2

    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    sized = [(p, p.stat().st_size) for p in files]
    small = [(p, n) for p, n in sized if n <= BATCH_MAX_FILE]
    large = [p for p, n in sized if n > BATCH_MAX_FILE]
    total = 0

    async def call(what: str, send):
        # The model's whole run is at stake: a transient error (the services restarting, ~6-8 s
        # for `dmod up` after a crash, or down longer) is tried again over ~64 s; still failing, the attempt ends
        # OUTPUTS_UNAVAILABLE, which the scheduler retries (a new attempt), never a FAILED job.
        for delay in (*_UPLOAD_RETRY_DELAYS, None):
            try:
                return await send()
            except grpc.aio.AioRpcError as exc:
                transient = exc.code().name in _RETRY_CODES
                if delay is None or not transient:
                    raise OutputError(f"upload of {what} failed: {exc.code().name}: {exc.details()}",
                                      "OUTPUTS_UNAVAILABLE" if transient else "OUTPUT_UPLOAD_FAILED") from exc
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def check(path: str, stored: str, digest: str) -> None:
        if stored != digest:
            raise OutputError(f"{path}: the server stored SHA-256 {stored}, expected {digest}", "OUTPUT_UPLOAD_FAILED")

    async def put_batch(batch: list[tuple[Path, int]]) -> None:
        nonlocal total
        items = await asyncio.to_thread(_read_batch, out_dir, batch)

        async def messages():
            yield datasets_pb2.UploadObjectsRequest(parent=dataset)
            for rel, data, digest in items:
                yield datasets_pb2.UploadObjectsRequest(header=datasets_pb2.UploadObjectsHeader(
                    path=rel, size_bytes=len(data), sha256=digest))  # content type: from the name
                view = memoryview(data)
                for i in range(0, len(data), _CHUNK):
                    yield datasets_pb2.UploadObjectsRequest(chunk=view[i:i + _CHUNK].tobytes())

        what = f"{len(items)} files ({items[0][0]} ...)"
        reply = await call(what, lambda: stub.UploadObjects(messages(), metadata=metadata, timeout=300))
        if len(reply.objects) != len(items):
            raise OutputError(f"upload of {what}: the server stored {len(reply.objects)} objects",
                              "OUTPUT_UPLOAD_FAILED")
        for (rel, data, digest), obj in zip(items, reply.objects, strict=True):
            check(rel, obj.sha256, digest)
            total += len(data)

    async def put_one(path: Path) -> None:
        nonlocal total
        rel = path.relative_to(out_dir).as_posix()
        size = path.stat().st_size
        digest = await asyncio.to_thread(sha256_file, path)

        async def messages():
            yield datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
                parent=dataset, path=rel, size_bytes=size, sha256=digest))
            fh = await asyncio.to_thread(path.open, "rb")
            try:
                while block := await asyncio.to_thread(fh.read, _CHUNK):
                    yield datasets_pb2.UploadObjectRequest(chunk=block)
            finally:
                fh.close()

        reply = await call(rel, lambda: stub.UploadObject(messages(), metadata=metadata, timeout=300))
        check(rel, reply.object.sha256, digest)
        total += size

    async def bounded(n: int, jobs) -> None:
        sem = asyncio.Semaphore(n)

        async def run(job):
            async with sem:
                await job

        await asyncio.gather(*(run(j) for j in jobs))

    singles = asyncio.Semaphore(SINGLES_IN_FLIGHT)

    async def put_single(path: Path) -> None:
        async with singles:
            await put_one(path)

    async def put_batch_or_singles(batch: list[tuple[Path, int]]) -> None:
        try:
            await put_batch(batch)
        except OutputError as exc:  # a server without UploadObjects: one stream per file
            if not (isinstance(exc.__cause__, grpc.aio.AioRpcError)
                    and exc.__cause__.code() == grpc.StatusCode.UNIMPLEMENTED):
                raise
            await asyncio.gather(*(put_single(p) for p, _ in batch))

    await asyncio.gather(bounded(BATCHES_IN_FLIGHT, [put_batch_or_singles(b) for b in plan_batches(small)]),
                         *(put_single(p) for p in large))
    produced = {p.relative_to(out_dir).as_posix() for p in files}
    token = ""
    stale = []
    while True:
        reply = await stub.ListObjects(datasets_pb2.ListObjectsRequest(parent=dataset, page_size=1000,
                                                                       page_token=token), metadata=metadata)
        stale += [o.name for o in reply.objects if o.path not in produced]
        token = reply.next_page_token
        if not token:
            break
    for name in stale:
        await stub.DeleteObject(datasets_pb2.DeleteObjectRequest(name=name), metadata=metadata)
    say(f"uploaded {len(files)} output files ({total} bytes) to {dataset}")
    return len(files), total
