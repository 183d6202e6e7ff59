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


async def upload_outputs(stub, metadata, dataset: str, out_dir: Path, say) -> tuple[int, int]:
    """Upload every file under `out_dir` (paths relative to it); remove objects of an earlier
    attempt that this one did not produce. Returns (files, bytes)."""
    import grpc

    from dmod.v1 import datasets_pb2

    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    sem = asyncio.Semaphore(4)
    total = 0

    async def put(path: Path) -> None:
        nonlocal total
        rel = path.relative_to(out_dir).as_posix()
        size = path.stat().st_size
        digest = await asyncio.to_thread(sha256_file, path)

        async def messages():
            yield datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
                parent=dataset, path=rel, size_bytes=size, sha256=digest, content_type="text/csv"))
            with open(path, "rb") as fh:
                while True:
                    block = fh.read(1 << 20)
                    if not block:
                        return
                    yield datasets_pb2.UploadObjectRequest(chunk=block)

        async with sem:
            for attempt in range(3):
                try:
                    reply = await stub.UploadObject(messages(), metadata=metadata, timeout=300)
                    break
                except grpc.aio.AioRpcError as exc:
                    if attempt == 2 or exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED,
                                                          grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise OutputError(f"upload of {rel} failed: {exc.code().name}: {exc.details()}",
                                          "OUTPUT_UPLOAD_FAILED") from None
                    await asyncio.sleep(0.5 * (attempt + 1))
        if reply.object.sha256 and reply.object.sha256 != digest:
            raise OutputError(f"{rel}: the server stored SHA-256 {reply.object.sha256}, expected {digest}",
                              "OUTPUT_UPLOAD_FAILED")
        total += size

    await asyncio.gather(*(put(p) for p in files))
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
