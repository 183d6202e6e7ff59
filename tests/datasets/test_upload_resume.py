"""Uploads survive their client being killed and their server restarting.

- `dmod dataset upload` killed with SIGKILL mid-file: rerun, it resumes the same upload at the
  server's committed offset (one upload row, COMPLETE; nothing sent twice from byte 0).
- A server holding an upload's lease renews it while the stream lives; a crashed holder's lease
  is short, so a restarted server takes the resume over within seconds (it was 120 s).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dmod.services.datasets.transfer import upload_rows
from dmod.v1 import datasets_pb2

from .test_transfer import MiB

DMOD = str(Path(sys.executable).parent / "dmod")


async def test_cli_upload_resumes_after_kill(ds, dataset, db, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:  # 240 MiB: ~15 parts of 16 MiB
        for _ in range(240):
            fh.write(os.urandom(MiB))
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    dataset_id = dataset.name.split("/")[1]

    cli = subprocess.Popen([DMOD, "dataset", "upload", dataset.name, str(big)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    committed, deadline = 0, time.monotonic() + 120
    while committed < 32 * MiB and time.monotonic() < deadline and cli.poll() is None:
        committed = await db.fetchval("SELECT max(committed_bytes) FROM dataset_uploads WHERE dataset_id = $1::uuid",
                                      dataset_id) or 0
        await asyncio.sleep(0.01)
    assert cli.poll() is None, f"the upload finished before it could be killed: {cli.stdout.read()!r}"
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    journal = list((Path(os.environ["DMOD_HOME"]) / "uploads").glob("*"))
    assert any(dataset.name in p.read_text() for p in journal), "no journal entry for the killed upload"
    await asyncio.sleep(0.5)  # the server settles the broken stream
    first = await db.fetchrow("SELECT id, committed_bytes FROM dataset_uploads WHERE dataset_id = $1::uuid",
                              dataset_id)
    assert first["committed_bytes"] >= 16 * MiB

    rerun = await asyncio.to_thread(subprocess.run, [DMOD, "dataset", "upload", dataset.name, str(big)],
                                    capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    rows = await db.fetch("SELECT id, state, committed_bytes FROM dataset_uploads WHERE dataset_id = $1::uuid",
                          dataset_id)
    assert [(r["id"], r["state"]) for r in rows] == [(first["id"], "COMPLETE")]  # the same upload, resumed
    (obj,) = await ds.list_objects(dataset.name)
    assert (obj.size_bytes, obj.sha256) == (240 * MiB, expected)
    assert not any(dataset.name in p.read_text() for p in
                   (Path(os.environ["DMOD_HOME"]) / "uploads").glob("*")), "journal entry left behind"


async def test_a_live_lease_is_renewed_and_a_dead_one_is_short(ds, dataset, db):
    hold = asyncio.Event()
    data = os.urandom(17 * MiB)  # one full part (16 MiB) makes the upload durable, then the stream waits

    async def messages():
        yield datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
            parent=dataset.name, path="held.bin", size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest()))
        for i in range(0, len(data), MiB):
            yield datasets_pb2.UploadObjectRequest(chunk=data[i:i + MiB])
        await hold.wait()

    call = ds.stub.UploadObject(messages())
    dataset_id = dataset.name.split("/")[1]
    row = None
    for _ in range(500):
        row = await db.fetchrow("SELECT id, lease_owner, lease_until - now() AS left FROM dataset_uploads "
                                "WHERE dataset_id = $1::uuid", dataset_id)
        if row is not None and row["lease_owner"]:
            break
        await asyncio.sleep(0.02)
    assert row is not None and row["lease_owner"], "the upload never became durable"
    assert row["left"].total_seconds() <= upload_rows.LEASE_SECONDS + 1  # short: a crash frees it soon
    until = await db.fetchval("SELECT lease_until FROM dataset_uploads WHERE id = $1", row["id"])
    await asyncio.sleep(upload_rows.LEASE_RENEW_SECONDS * 2 + 1)
    renewed = await db.fetchval("SELECT lease_until FROM dataset_uploads WHERE id = $1", row["id"])
    assert renewed > until, "the holder did not renew its lease while the stream lived"
    call.cancel()
    hold.set()
