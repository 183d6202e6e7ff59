"""`dmod dataset …` end to end against the stack (in-process CLI runner)."""
from __future__ import annotations

import json
import uuid

from typer.testing import CliRunner

from dmod.cli.main import app

runner = CliRunner()


def dmod(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["dataset", *args])
    return result.exit_code, result.output


def test_cli_round_trip(stack, tmp_path):
    src = tmp_path / "forcing"
    src.mkdir()
    for cat in ("cat-1", "cat-2", "cat-3"):
        (src / f"{cat}.csv").write_text("time,precip_rate\n" + "".join(
            f"2015-12-01 {h:02d}:00:00,0.{h}\n" for h in range(24)))
    code, out = dmod("create", f"cli-{uuid.uuid4().hex[:8]}", "--format", "csv", "--label", "k=v", "--json")
    assert code == 0, out
    name = json.loads(out)["name"]
    code, out = dmod("upload", name, str(src), "--prefix", "forcing/", "--json", "--seal")
    assert code == 0, out
    report = json.loads(out[out.index("{"):])
    assert len(report["objects"]) == 3 and report["sealed"]["state"] == "DATASET_STATE_SEALED"
    code, out = dmod("show", name, "--json")
    shown = json.loads(out)
    assert shown["domain"]["discrete"][0]["values"] == ["cat-1", "cat-2", "cat-3"]
    code, out = dmod("ls", name, "--json")
    assert [o["path"] for o in json.loads(out)] == ["forcing/cat-1.csv", "forcing/cat-2.csv", "forcing/cat-3.csv"]
    code, out = dmod("download", name, str(tmp_path / "back"), "--json")
    assert code == 0, out
    for p in src.iterdir():
        assert (tmp_path / "back" / "forcing" / p.name).read_bytes() == p.read_bytes()
    code, out = dmod("search", "--category", "forcing", "--start", "2015-12-01T00:00", "--end", "2015-12-01T12:00",
                     "--catchments", "cat-1,cat-3", "--owner", shown["owner"], "--json")
    assert json.loads(out)["best"]["name"] == name
    code, out = dmod("rm", name)  # sealed: refused, with the reason, no traceback
    assert code == 1 and "FAILED_PRECONDITION" in out and "Traceback" not in out
    code, out = dmod("upload", name, str(src / "cat-1.csv"))
    assert code == 1 and "SEALED" in out
    assert dmod("rm", name, "--force")[0] == 0
    code, out = dmod("show", "no-such-dataset-name")
    assert code == 1 and "no dataset is named" in out


def test_sync_client(gateway, tmp_path):
    from dmod.datasets_client import FORCING, SyncDatasetsClient

    with SyncDatasetsClient(gateway) as ds:
        d = ds.create_dataset(f"sync-{uuid.uuid4().hex[:8]}", FORCING)
        (tmp_path / "a.txt").write_bytes(b"sync bytes")
        obj = ds.upload_file(d.name, tmp_path / "a.txt", "dir/a.txt")
        assert ds.download_bytes(obj.name) == b"sync bytes"
        assert [o.path for o in ds.list_objects(d.name)] == ["dir/a.txt"]
        ds.delete_dataset(d.name)
