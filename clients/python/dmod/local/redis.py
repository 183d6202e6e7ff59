"""Redis from the Debian package, memory only (Postgres is the system of record)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dmod.local.procs import spawn, tcp_open, wait_for


def start_redis(root: Path, port: int, timeout: float = 15) -> subprocess.Popen:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise RuntimeError("redis-server not found: apt-get install -y redis-server")
    root.mkdir(parents=True, exist_ok=True)
    proc = spawn([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", str(root), "--maxclients", "10000"], root / "redis.log")
    wait_for(lambda: tcp_open(port), timeout, "redis", proc, root / "redis.log")
    return proc
