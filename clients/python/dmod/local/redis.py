"""Redis from the Debian package, memory only (Postgres is the system of record).

It requires a password (`requirepass`, generated once and kept in $DMOD_HOME/keys/redis.password,
0600). The settings go to a 0600 config file, never to the command line, where `ps` would show
them to every local user.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from dmod.local.procs import PRIVATE_UMASK, private_dir, spawn, tcp_open, wait_for, write_private


def config_text(root: Path, port: int, password: str) -> str:
    if any(c in password for c in ' \t\r\n"\''):
        raise ValueError("the Redis password must be one word")
    return "\n".join([
        f"port {port}", "bind 127.0.0.1", "protected-mode yes", f"requirepass {password}",
        'save ""', "appendonly no", f"dir {root}", "maxclients 10000",
    ]).strip() + "\n"


def ping(port: int, password: str, timeout: float = 1.0) -> bool:
    """AUTH + PING answered (the server is up and the password is right)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = sock.recv(64)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"+OK\r\n+PONG")
    except OSError:
        return False


def start_redis(root: Path, port: int, password: str, timeout: float = 15) -> subprocess.Popen:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise RuntimeError("redis-server not found: apt-get install -y redis-server")
    private_dir(root)
    conf = root / "redis.conf"
    write_private(conf, config_text(root, port, password))
    proc = spawn([binary, str(conf)], root / "redis.log", umask=PRIVATE_UMASK)
    wait_for(lambda: tcp_open(port) and ping(port, password), timeout, "redis", proc, root / "redis.log")
    return proc
