"""The `dmod` console script never shows a Python traceback: errors a user can meet are one line
and an exit code; anything unexpected is logged to $DMOD_HOME/cli-errors.log."""
from __future__ import annotations

import asyncio
import io
import os
import uuid

from dmod.cli import entry
from dmod.v1 import domain_pb2

from .test_transfer import MiB


def run(capsys, *args: str) -> tuple[int, str]:
    code = entry.run(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


async def test_corrupted_large_object_by_url_is_one_clear_line(ds, s3, capsys, tmp_path):
    """The issue: a corrupted object of ≥ 32 MiB fetched by presigned URL ended in a traceback."""
    dataset = await ds.create_dataset(f"cli-err-{uuid.uuid4().hex[:8]}", domain_pb2.DATA_CATEGORY_CONFIG,
                                      domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG)
    data = os.urandom(33 * MiB)
    obj = await ds.upload_bytes(dataset.name, "big.bin", data)
    key = next(o.object_name for o in s3.list_objects("dmod", prefix=dataset.name + "/", recursive=True))
    damaged = bytearray(data)
    damaged[12345] ^= 0xFF
    s3.put_object("dmod", key, io.BytesIO(bytes(damaged)), len(damaged))

    code = await asyncio.to_thread(entry.run, ["dataset", "download", obj.name, str(tmp_path / "big.bin"), "--via", "url"])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 1, out
    assert "Traceback" not in out and "SHA-256" in out, out
    assert not (tmp_path / "big.bin").exists()  # nothing damaged is kept


def test_unexpected_errors_are_logged_not_shown(capsys, monkeypatch, tmp_path):
    from dmod.cli import main

    def boom():
        raise RuntimeError("something nobody expected")

    monkeypatch.setenv("DMOD_HOME", str(tmp_path))
    monkeypatch.delenv("DMOD_DEBUG", raising=False)
    monkeypatch.setattr(main.app, "registered_commands", main.app.registered_commands + [])
    main.app.command("boom-for-test")(boom)
    try:
        code, out = run(capsys, "boom-for-test")
    finally:
        main.app.registered_commands = [c for c in main.app.registered_commands if c.name != "boom-for-test"]
    assert code == 1 and "Traceback" not in out and "something nobody expected" in out, out
    assert "RuntimeError: something nobody expected" in (tmp_path / "cli-errors.log").read_text()


def test_usage_errors_keep_their_exit_code(capsys):
    code, out = run(capsys, "dataset", "download")
    assert code == 2 and "Traceback" not in out
