"""The private engine harness leaves the host as it found it (runs before the session engine)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from dmod.local.docker import PrivateDocker

from .conftest import _require_docker, host_leftovers

pytestmark = pytest.mark.docker


def test_private_swarm_starts_and_leaves_no_trace():
    _require_docker()
    engine = PrivateDocker()
    try:
        engine.start().swarm_init()
        net = engine.ensure_network("mpi")
        assert engine.running() and engine.swarm_active() and net
        assert Path(f"/sys/class/net/{engine.state.bridge}").exists()  # our gateway bridge, not docker_gwbridge
        assert not Path("/sys/class/net/docker_gwbridge").exists() and not Path("/sys/class/net/docker0").exists()
        pid = engine.state.pid
    finally:
        engine.stop()
    assert host_leftovers(engine) == []
    assert not Path(f"/proc/{pid}").exists() or b"dockerd" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert not os.path.exists(engine.state.socket)
