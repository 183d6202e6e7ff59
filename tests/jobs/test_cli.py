"""`dmod job ...` against the stack."""
from __future__ import annotations

import json
import subprocess
import sys


def dmod(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dmod.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_submit_wait_show_ls_logs(stack):
    done = dmod("job", "submit", "--engine", "noop", "--label", "cli=yes", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCEEDED" in done.stdout
    name = next(w for w in done.stdout.split() if w.startswith("jobs/"))
    shown = dmod("job", "show", name, "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["state"] == "JOB_STATE_SUCCEEDED"
    assert [e["state"] for e in doc["events"]][-1] == "JOB_STATE_SUCCEEDED"
    listed = dmod("job", "ls", "--label", "cli=yes", "--json")
    assert [j["name"] for j in json.loads(listed.stdout)] == [name]
    logs = dmod("job", "logs", name)
    assert logs.returncode == 0


def test_submit_wait_fails_for_an_impossible_job(stack):
    done = dmod("job", "submit", "--engine", "noop", "--cpus", "4096", "--paradigm", "single-node", "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "UNSATISFIABLE_ALLOCATION" in done.stdout


def test_bad_input_is_one_readable_line(stack):
    done = dmod("job", "submit", "--engine", "noop", "--cpus", "-3")
    assert done.returncode == 1
    assert "INVALID_ARGUMENT" in done.stderr and "spec.cpu_count" in done.stderr
    assert "Traceback" not in done.stderr
    missing = dmod("job", "cancel", "jobs/nope")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
