"""The CLI never falls back to a guessed address (the issue: with no stack in $DMOD_HOME it used
127.0.0.1:8780 — someone else's stack on a shared host — and created datasets and a job there)."""
from __future__ import annotations

import pytest

from dmod.cli import entry


@pytest.mark.parametrize("command", [["dataset", "ls"], ["job", "ls"], ["dataset", "create", "x", "--format", "csv"]])
def test_no_stack_no_guess(command, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DMOD_GATEWAY", raising=False)
    monkeypatch.setenv("DMOD_HOME", str(tmp_path))
    code = entry.run(command)
    out = capsys.readouterr()
    assert code != 0
    text = " ".join((out.out + out.err).split())  # rich wraps long lines
    assert f"no DMOD stack at {tmp_path}" in text and "dmod up" in text and "DMOD_GATEWAY" in text, text
    assert "Traceback" not in text


def test_status_names_the_addresses(stack, capsys, monkeypatch):
    monkeypatch.setenv("DMOD_HOME", stack.home)
    assert entry.run(["status", "--gateway"]) == 0
    assert capsys.readouterr().out.strip() == stack.gateway
    entry.run(["status"])
    out = capsys.readouterr().out
    assert stack.gateway in out and f"http://{stack.gateway}/" in out
