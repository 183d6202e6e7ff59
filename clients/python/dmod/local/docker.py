"""A private Docker engine and one-node Swarm, for the Swarm tests and for a developer machine.

`PrivateDocker(root)` runs its own `dockerd` with every path under `root` (socket, data root, exec
root, pid file), so it never disturbs another engine on the machine, and `stop()` leaves the host
as it was found: it leaves the swarm, stops dockerd and the containerd/shims it started, unmounts
what is left under `root`, deletes the bridge it created and the few host paths dockerd creates
outside its roots (only those that did not exist before), and removes `root`.

Host-level choices (see deploy/swarm/README-swarm.md):
- `--iptables=false --ip-forward=false --bridge=none`: no host firewall rules, no `docker0`.
- The Swarm's gateway bridge (`docker_gwbridge`, which `swarm init` would create and leave behind)
  is created by us first with a unique Linux bridge name (`dmodgw<hex>`) and a free subnet.
- Swarm ports: the manager and data-path (VXLAN) ports are free ports; the gossip port 7946 is
  fixed in this Docker version, so two private swarms cannot run on one host at once:
  `swarm_init` waits for 7946 to be free (serialising concurrent test sessions).
- Containers reach host services through the gateway bridge address (`gateway_ip`).

CLI for a developer machine: `python -m dmod.local.docker up|down|env [--root DIR]`.
"""
from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

GOSSIP_PORT = 7946
# Host paths dockerd/containerd create outside their roots (hard-coded in this Docker version).
HOST_PATHS = ("/var/lib/docker/network/files", "/var/lib/docker/network", "/var/lib/docker",
              "/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd")
GWBRIDGE_POOL = ipaddress.ip_network("10.231.0.0/16")
OVERLAY_POOL = "10.232.0.0/16"


class DockerError(RuntimeError):
    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class EngineAPI:
    """The few Docker Engine API calls the harness needs, synchronous, over the unix socket."""

    def __init__(self, socket_path: str, timeout: float = 120):
        self.socket_path = socket_path
        self.timeout = timeout

    def _open(self, method: str, path: str, body=None, params: dict | None = None,
              headers: dict | None = None, timeout: float | None = None):
        conn = _UnixHTTPConnection(self.socket_path, timeout or self.timeout)
        url = path + ("?" + urlencode({k: v for k, v in params.items() if v is not None}) if params else "")
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        chunked = body is not None and not isinstance(body, (bytes, str))
        conn.request(method, url, body=body, headers=headers, encode_chunked=chunked)
        return conn, conn.getresponse()

    def call(self, method: str, path: str, body=None, params: dict | None = None, headers: dict | None = None,
             timeout: float | None = None):
        conn, resp = self._open(method, path, body, params, headers, timeout)
        try:
            data = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data.decode(errors="replace")
            raise DockerError(f"{method} {path}: {resp.status} {message}", resp.status)
        if data and resp.getheader("Content-Type", "").startswith("application/json"):
            return json.loads(data)
        return data

    def stream(self, method: str, path: str, body=None, params: dict | None = None, headers: dict | None = None,
               timeout: float | None = None):
        """Yields decoded JSON messages of a streaming endpoint (build, load, import)."""
        conn, resp = self._open(method, path, body, params, headers, timeout)
        try:
            if resp.status >= 400:
                raise DockerError(f"{method} {path}: {resp.status} {resp.read().decode(errors='replace')}",
                                  resp.status)
            decoder = json.JSONDecoder()
            buffer = ""
            for line in resp:
                buffer += line.decode(errors="replace")
                while buffer.strip():
                    try:
                        message, end = decoder.raw_decode(buffer.lstrip())
                    except ValueError:
                        break
                    buffer = buffer.lstrip()[end:]
                    if "error" in message:
                        raise DockerError(str(message.get("error")))
                    yield message
        finally:
            conn.close()

    def download(self, path: str, out: Path) -> None:
        conn, resp = self._open("GET", path)
        try:
            if resp.status >= 400:
                raise DockerError(f"GET {path}: {resp.status}", resp.status)
            with open(out, "wb") as f:
                shutil.copyfileobj(resp, f, 1 << 20)
        finally:
            conn.close()

    def ping(self) -> bool:
        try:
            return self.call("GET", "/_ping", timeout=2) == b"OK"
        except (OSError, DockerError, http.client.HTTPException):
            return False


@dataclass
class EngineState:
    root: str
    pid: int = 0
    storage_driver: str = "overlay2"
    bridge: str = ""  # Linux name of the Swarm gateway bridge we created
    subnet: str = ""
    gateway_ip: str = ""
    swarm_port: int = 0
    data_path_port: int = 0
    created_host_paths: list[str] = field(default_factory=list)
    started_at: float = 0.0

    @property
    def socket(self) -> str:
        return str(Path(self.root) / "docker.sock")

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    while True:
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if 1024 < port < 49151:  # Swarm's data path port must be below 49152
            return port


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _host_routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        first = line.split()[0] if line.split() else ""
        try:
            nets.append(ipaddress.ip_network(first if first != "default" else "0.0.0.0/32", strict=False))
        except ValueError:
            continue
    return nets


def _free_subnet() -> ipaddress.IPv4Network:
    used = _host_routes()
    candidates = list(GWBRIDGE_POOL.subnets(new_prefix=24))
    start = secrets.randbelow(len(candidates))
    for net in candidates[start:] + candidates[:start]:
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise DockerError(f"no free /24 left in {GWBRIDGE_POOL}")


class PrivateDocker:
    """One private dockerd (+ optional one-node Swarm) under `root`."""

    def __init__(self, root: Path | None = None, storage_driver: str | None = None, log=lambda *a: None):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="dmod-docker-"))
        self.log = log
        state = self._load()
        self.state = state or EngineState(
            root=str(self.root), storage_driver=storage_driver or os.environ.get("DMOD_DOCKER_STORAGE_DRIVER",
                                                                                  "overlay2"))
        self.api = EngineAPI(self.state.socket)

    # -- state -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.state.url

    @property
    def gateway_ip(self) -> str:
        return self.state.gateway_ip

    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.url}

    def _state_file(self) -> Path:
        return self.root / "engine.json"

    def _load(self) -> EngineState | None:
        path = self._state_file()
        return EngineState(**json.loads(path.read_text())) if path.exists() else None

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._state_file().write_text(json.dumps(asdict(self.state), indent=1))

    def running(self) -> bool:
        return bool(self.state.pid) and _pid_alive(self.state.pid) and self.api.ping()

    # -- engine ----------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> PrivateDocker:
        if self.running():
            return self
        if shutil.which("dockerd") is None:
            raise DockerError("dockerd not found: apt-get install -y docker.io (scripts/setup does)")
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.state.created_host_paths:
            self.state.created_host_paths = [p for p in HOST_PATHS if not os.path.lexists(p)]
        for sub in ("data", "exec"):
            (self.root / sub).mkdir(exist_ok=True)
        command = ["dockerd", f"--storage-driver={self.state.storage_driver}", "--iptables=false",
                   "--ip-forward=false", "--ip-masq=false", "--bridge=none", "--shutdown-timeout=5",
                   f"--data-root={self.root / 'data'}", f"--exec-root={self.root / 'exec'}",
                   f"--pidfile={self.root / 'docker.pid'}", "-H", self.url]
        log = open(self.root / "dockerd.log", "ab")
        with log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.state.pid = proc.pid
        self.state.started_at = time.time()
        self._save()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
                self.stop()
                raise DockerError(f"dockerd exited with {proc.returncode}:\n{tail}")
            if self.api.ping():
                self.log(f"dockerd {proc.pid} ready at {self.url}")
                return self
            time.sleep(0.1)
        self.stop()
        raise DockerError(f"dockerd not ready after {timeout:.0f}s")

    # -- swarm -----------------------------------------------------------------------------------
    def swarm_active(self) -> bool:
        try:
            return self.api.call("GET", "/info").get("Swarm", {}).get("LocalNodeState") == "active"
        except (OSError, DockerError):
            return False

    def swarm_init(self, wait_for_gossip_port: float = 600) -> PrivateDocker:
        """One-node Swarm on 127.0.0.1 with our own gateway bridge."""
        if self.swarm_active():
            return self
        deadline = time.monotonic() + wait_for_gossip_port
        while not _port_free(GOSSIP_PORT):
            if time.monotonic() > deadline:
                raise DockerError(f"port {GOSSIP_PORT} stays busy: another Docker Swarm runs on this host")
            time.sleep(1)
        subnet = _free_subnet()
        gateway = str(subnet.network_address + 1)
        bridge = "dmodgw" + secrets.token_hex(4)
        self.state.bridge, self.state.subnet, self.state.gateway_ip = bridge, str(subnet), gateway
        self._save()
        self.api.call("POST", "/networks/create", {
            "Name": "docker_gwbridge", "Driver": "bridge", "CheckDuplicate": True,
            "IPAM": {"Config": [{"Subnet": str(subnet), "Gateway": gateway}]},
            "Options": {"com.docker.network.bridge.name": bridge,
                        "com.docker.network.bridge.enable_ip_masquerade": "false",
                        "com.docker.network.bridge.enable_icc": "true"}})
        self.state.swarm_port = _free_port()
        self.state.data_path_port = _free_port(socket.SOCK_DGRAM)
        self._save()
        self.api.call("POST", "/swarm/init", {
            "ListenAddr": f"127.0.0.1:{self.state.swarm_port}",
            "AdvertiseAddr": f"127.0.0.1:{self.state.swarm_port}",
            "DataPathPort": self.state.data_path_port,
            "DefaultAddrPool": [OVERLAY_POOL], "SubnetSize": 24,
            "Spec": {"Orchestration": {"TaskHistoryRetentionLimit": 2}}})
        end = time.monotonic() + 30
        while time.monotonic() < end:
            nodes = self.api.call("GET", "/nodes")
            if nodes and all(n["Status"]["State"] == "ready" for n in nodes):
                self.log(f"swarm ready: node {nodes[0]['ID']}, gateway bridge {bridge} {subnet}")
                return self
            time.sleep(0.2)
        raise DockerError("swarm node not ready after 30s")

    def ensure_network(self, name: str, attachable: bool = True) -> str:
        """An overlay network (created if missing); returns its id."""
        found = self.api.call("GET", "/networks", params={"filters": json.dumps({"name": [name]})})
        for net in found:
            if net["Name"] == name:
                return net["Id"]
        created = self.api.call("POST", "/networks/create", {"Name": name, "Driver": "overlay",
                                                            "Attachable": attachable, "CheckDuplicate": True})
        return created["Id"]

    # -- teardown --------------------------------------------------------------------------------
    def _our_processes(self) -> list[int]:
        """dockerd, its containerd and the shims: every process whose command line names our root."""
        mine = []
        marker = str(self.root)
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid() and marker in _cmdline(int(entry)):
                mine.append(int(entry))
        return mine

    def _overlay_network_ids(self) -> list[str]:
        try:
            return [n["Id"] for n in self.api.call("GET", "/networks", timeout=10) if n.get("Driver") == "overlay"]
        except (OSError, DockerError, http.client.HTTPException):
            return []

    def stop(self) -> None:
        """Leave the swarm, stop dockerd, and leave the host as it was found. Idempotent."""
        net_ids: list[str] = []
        if self.state.pid and _pid_alive(self.state.pid) and self.api.ping():
            net_ids = self._overlay_network_ids()
            try:
                self.api.call("POST", "/swarm/leave", params={"force": "true"}, timeout=60)
            except (OSError, DockerError, http.client.HTTPException) as exc:
                if getattr(exc, "status", 0) != 503:  # 503: not part of a swarm
                    self.log(f"swarm leave: {exc}")
            try:
                for c in self.api.call("GET", "/containers/json", params={"all": "1"}, timeout=10):
                    self.api.call("DELETE", f"/containers/{c['Id']}", params={"force": "1", "v": "1"}, timeout=30)
            except (OSError, DockerError, http.client.HTTPException) as exc:
                self.log(f"removing containers: {exc}")
        if self.state.pid and _pid_alive(self.state.pid):
            self._signal_and_wait([self.state.pid], signal.SIGTERM, 30)
        leftovers = self._our_processes()
        if leftovers:
            self._signal_and_wait(leftovers, signal.SIGTERM, 5)
            self._signal_and_wait(self._our_processes(), signal.SIGKILL, 5)
        self._unmount_under_root()
        for link in filter(None, [self.state.bridge]):
            if _link_exists(link):
                subprocess.run(["ip", "link", "delete", link], capture_output=True)
        for net_id in net_ids:  # libnetwork's load-balancer sandbox files of our overlay networks
            shutil.rmtree(f"/var/lib/docker/network/files/lb_{net_id[:25]}", ignore_errors=True)
        for path in self.state.created_host_paths:  # listed deepest first
            try:
                os.rmdir(path)
            except OSError:
                pass
        self.state.pid = 0
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _signal_and_wait(pids: list[int], sig: int, timeout: float) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
            for pid in pids:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            time.sleep(0.1)
        if sig != signal.SIGKILL:
            for pid in pids:
                if _pid_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def _unmount_under_root(self) -> None:
        root = str(self.root.resolve())
        mounts = []
        try:
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    point = line.split()[4].encode().decode("unicode_escape")
                    if point == root or point.startswith(root + "/"):
                        mounts.append(point)
        except OSError:
            return
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)

    def __enter__(self) -> PrivateDocker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def default_root() -> Path:
    home = Path(os.environ.get("DMOD_HOME") or Path.home() / ".local/share/dmod")
    return home / "docker"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmod.local.docker",
                                     description="A private dockerd + one-node Swarm for DMOD's swarm launcher.")
    parser.add_argument("action", choices=["up", "down", "env", "status"])
    parser.add_argument("--root", type=Path, default=None, help="state dir (default $DMOD_HOME/docker)")
    parser.add_argument("--network", default="mpi", help="attachable overlay network to create on up")
    args = parser.parse_args(argv)
    engine = PrivateDocker(args.root or default_root(), log=lambda m: print(m, file=sys.stderr))
    if args.action == "up":
        engine.start().swarm_init()
        engine.ensure_network(args.network)
        print(f"export DOCKER_HOST={engine.url} DMOD_DOCKER_URL={engine.url} DMOD_SWARM_GATEWAY_IP={engine.gateway_ip}")
    elif args.action == "down":
        engine.stop()
    elif args.action == "env":
        print(f"export DOCKER_HOST={engine.url} DMOD_DOCKER_URL={engine.url} DMOD_SWARM_GATEWAY_IP={engine.gateway_ip}")
    else:
        print(json.dumps({"running": engine.running(), **asdict(engine.state)}, indent=1))
        return 0 if engine.running() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
