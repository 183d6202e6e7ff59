"""The local stack's port choices: no two servers may end up on one port (weed also binds each of
its http ports + 10000), and a server counts as started only when it is the one answering."""
from __future__ import annotations

import socket

import pytest

from dmod.local.procs import PortPicker
from dmod.local.web import start_web


def test_picks_are_distinct_and_twins_stay_reserved():
    picker = PortPicker()
    twinned = [picker.pick(twin=10000) for _ in range(20)]
    plain = [picker.pick() for _ in range(200)]
    everything = twinned + [p + 10000 for p in twinned] + plain
    assert len(set(everything)) == len(everything)
    assert all(p + 10000 < 65536 for p in twinned)


def test_web_start_fails_when_another_server_holds_its_port(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(RuntimeError, match="web"):
            start_web(tmp_path, port, root=tmp_path, timeout=3)
    assert "Address already in use" in (tmp_path / "web.log").read_text()
