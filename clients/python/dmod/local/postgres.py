"""PostgreSQL from the Debian packages: initdb once, pg_ctl start/stop, TCP on 127.0.0.1.

Postgres refuses to run as root, so as root the cluster runs as the `postgres` OS user.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from dmod.local.procs import tcp_open, wait_for


def pg_bin(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install -y postgresql")
    return found


def _cluster_dir(root: Path, os_user: str | None) -> Path:
    """Where the cluster lives. As root, the state dir (e.g. under /root) is usually not reachable
    by the `postgres` user, so the cluster goes to /var/lib/dmod/ and the state dir links to it."""
    if not os_user:
        return root
    if root.is_symlink():
        return root.resolve()
    target = Path("/var/lib/dmod") / f"postgres-{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]}"
    target.mkdir(parents=True, exist_ok=True)
    Path("/var/lib/dmod").chmod(0o755)
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    root.symlink_to(target)
    return target


class Postgres:
    def __init__(self, root: Path, port: int, user: str = "dmod", database: str = "dmod"):
        self.os_user = "postgres" if os.geteuid() == 0 else None
        self.link = root
        self.root = root.resolve() if root.is_symlink() else root
        self.data = self.root / "data"
        self.port = port
        self.user = user
        self.database = database

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess:
        if self.os_user:
            cmd = ["runuser", "-u", self.os_user, "--"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, cwd="/")

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.root = _cluster_dir(self.link, self.os_user)
        self.data = self.root / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        if self.os_user:
            shutil.chown(self.root, self.os_user)
            os.chmod(self.root, 0o700)
        result = self._run([pg_bin("initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
                            "--no-sync"])
        if result.returncode:
            raise RuntimeError(f"initdb failed: {result.stderr}")

    def start(self, timeout: float = 30) -> None:
        self.init()
        log = self.root / "postgres.log"
        if self.os_user and not log.exists():
            log.touch()
            shutil.chown(log, self.os_user)
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        result = self._run([pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(log), "-o", opts, "-w", "start"])
        if result.returncode:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{log.read_text()[-2000:]}")
        wait_for(lambda: tcp_open(self.port), timeout, "postgres")
        if self.database not in self._run([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                                            "-d", "postgres", "-Atc", "SELECT datname FROM pg_database"]).stdout.split():
            result = self._run([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database])
            if result.returncode:
                raise RuntimeError(f"createdb failed: {result.stderr}")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and tcp_open(self.port)

    def stop(self) -> bool:
        if not (self.data / "postmaster.pid").exists():
            return False
        return self._run([pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]).returncode == 0
