"""`dmod up` / `dmod down` / `dmod status`: the whole local stack under one state dir.

The test harness uses the same class with free ports in a temp dir, so tests exercise exactly
what users run.

Other local users get nothing but the gateway (the API, which authenticates its callers):
- $DMOD_HOME is 0711 (others may pass through it to a job directory they are given, but list
  and read nothing), its files are 0600 and the stack's own dirs 0700 (run, keys, logs, data of
  each server); the services create theirs with umask 066 (files 0600, dirs 0711);
- PostgreSQL: a password (scram-sha-256) for the services' non-superuser role, peer auth on a
  0700 socket dir for the superuser (dmod.local.postgres);
- Redis: `requirepass`, from a 0600 config file (dmod.local.redis);
- the object store: SeaweedFS in a network namespace of its own, only S3 (signed requests)
  forwarded to 127.0.0.1 (dmod.local.s3);
- Envoy's admin interface on a Unix socket in the 0700 envoy dir, not on a TCP port.
Generated secrets live in $DMOD_HOME/keys (0600) and reach the services through their
environment, never a command line.

Ports are kept across restarts: `dmod up` after a crash (processes gone, state file left
behind) takes the ports recorded there again when they are free, so workers that outlived the
crash find the gateway where they left it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dmod.local.envoy import render_config, start_envoy
from dmod.local.postgres import Postgres
from dmod.local.procs import (
    SERVICES_UMASK,
    PortPicker,
    pid_alive,
    private_dir,
    read_or_create_secret,
    spawn,
    stop_pid,
    tcp_open,
    wait_for,
    write_private,
)
from dmod.local.redis import ping as redis_ping
from dmod.local.redis import start_redis
from dmod.local.s3 import (
    GRPC_OFFSET,
    S3Ports,
    isolation_supported,
    pick_weed_port,
    s3_ready,
    start_proxy,
    start_s3,
    weed_port_taken,
)
from dmod.local.web import start_web
from dmod.services.runtime.auth import ensure_keypair
from dmod.services.runtime.registry import SERVICES

DEFAULT_PORTS = {"gateway": 8780, "services": 8781, "postgres": 8782, "redis": 8783, "s3": 8784, "web": 8786}
# Dirs of $DMOD_HOME only their owner may enter; `jobs` (local workers' directories) and the
# home itself may be passed through (0711).
PRIVATE_DIRS = ("run", "keys", "logs", "redis", "s3", "envoy")
PASSABLE_DIRS = ("jobs",)
PERMS_MARK = "run/perms-v1"  # existing homes are tightened once (files 0600, dirs 0700/0711)


@dataclass
class StackState:
    home: str
    ports: dict[str, int]
    s3_ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    access_key: str = "dmod"
    secret_key: str = ""
    started_at: float = 0.0
    startup_seconds: float = 0.0
    ngen_path: str = ""  # the ngen binary the services and workers see (DMOD_NGEN_PATH or PATH at `dmod up`)
    db_user: str = "dmod"  # the services' Postgres role (dmod_app for a cluster migrated from trust auth)
    s3_isolated: bool = False  # weed in a network namespace of its own, S3 through a proxy

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports['gateway']}"

    def secret(self, name: str) -> str:
        """A generated secret of the stack ($DMOD_HOME/keys/<name>, 0600)."""
        return read_or_create_secret(Path(self.home) / "keys" / name)

    @property
    def envoy_admin_socket(self) -> Path:
        return Path(self.home) / "envoy/admin.sock"

    def service_env(self) -> dict[str, str]:
        home = Path(self.home)
        db_auth = f"{quote(self.db_user, safe='')}:{quote(self.secret('postgres.password'), safe='')}"
        return {
            "DMOD_HOME": self.home,
            "DMOD_LISTEN": f"127.0.0.1:{self.ports['services']}",
            "DMOD_GATEWAY": self.gateway,
            "DMOD_DATABASE_URL": f"postgresql://{db_auth}@127.0.0.1:{self.ports['postgres']}/dmod",
            "DMOD_REDIS_URL": f"redis://:{quote(self.secret('redis.password'), safe='')}@127.0.0.1:{self.ports['redis']}/0",
            "DMOD_EVENTS_KEY_FILE": str(home / "keys/events.key"),
            "DMOD_S3_ENDPOINT": f"127.0.0.1:{self.ports['s3']}",
            "DMOD_S3_ACCESS_KEY": self.access_key,
            "DMOD_S3_SECRET_KEY": self.secret_key,
            "DMOD_JWT_PRIVATE_KEY_FILE": str(home / "keys/jwt.key"),
            "DMOD_JWT_PUBLIC_KEY_FILE": str(home / "keys/jwt.pub"),
        }


def services_replicas() -> int:
    """Processes running `serve all` (DMOD_SERVICES_REPLICAS, default 1)."""
    try:
        return max(1, int(os.environ.get("DMOD_SERVICES_REPLICAS", "1")))
    except ValueError:
        return 1


def state_file(home: Path) -> Path:
    return home / "run/stack.json"


def load_state(home: Path) -> StackState | None:
    """The running stack's state, or None (no stack, or not ours to read: the file is 0600)."""
    path = state_file(home)
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        return None
    known = {f.name for f in dataclasses.fields(StackState)}
    return StackState(**{k: v for k, v in data.items() if k in known})


def _port(name: str, fixed: bool, picker: PortPicker, previous: dict[str, int] | None = None) -> int:
    """DMOD_<NAME>_PORT, else the port this stack had before (a restart after a crash) when it is
    free, else the default (fixed ports) when free, else any free port."""
    twin = GRPC_OFFSET if name == "s3" else 0
    env = os.environ.get(f"DMOD_{name.upper()}_PORT")
    if env:
        return picker.claim(int(env), twin)
    old = (previous or {}).get(name)
    if old and picker.available(old, twin):
        return picker.claim(old, twin)
    if fixed and name in DEFAULT_PORTS and not tcp_open(DEFAULT_PORTS[name]) and \
            picker.available(DEFAULT_PORTS[name], twin):
        return picker.claim(DEFAULT_PORTS[name], twin)
    return picker.pick(twin)


def secure_home(home: Path) -> None:
    """$DMOD_HOME 0711, the stack's dirs 0700, `jobs` 0711. A home made by an older version
    (0755 dirs, 0644 files) is tightened once: group/other lose read and write everywhere
    (directories keep their x bit: paths to job directories stay passable)."""
    private_dir(home, 0o711)
    for name in PRIVATE_DIRS:
        private_dir(home / name)
    for name in PASSABLE_DIRS:
        private_dir(home / name, 0o711)
    mark = home / PERMS_MARK
    if mark.exists():
        return
    for dirpath, dirnames, filenames in os.walk(home):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    continue
                mode = stat.S_IMODE(st.st_mode)
                tight = mode & ~0o066
                if tight != mode:
                    os.chmod(path, tight)
            except OSError:
                pass
    write_private(mark, "tightened\n")


class Stack:
    """Starts and stops every component; `fixed_ports=False` (tests) picks free ports."""

    COMPONENTS = ("postgres", "redis", "s3", "s3proxy", "services", "web", "envoy")

    def __init__(self, home: Path, fixed_ports: bool = True, log=print):
        self.home = Path(home)
        self.fixed_ports = fixed_ports
        self.log = log

    def up(self, timeout: float = 60) -> StackState:
        existing = load_state(self.home)
        if existing and all(pid_alive(pid) for pid in existing.pids.values()):
            self.log(f"already up: gateway {existing.gateway}")
            return existing
        if existing and self._resumable(existing):
            return self._resume(existing, timeout)
        previous_ports: dict[str, int] = {}
        previous_s3: dict[str, int] = {}
        if existing:  # a crash (or a partial stop): stop what is left, then come back on its ports
            previous_ports, previous_s3 = dict(existing.ports), dict(existing.s3_ports)
            self.down()
        started = time.perf_counter()
        secure_home(self.home)
        picker = PortPicker()
        ports = {name: _port(name, self.fixed_ports, picker, previous_ports) for name in DEFAULT_PORTS}
        if weed_port_taken(ports["s3"]) and not os.environ.get("DMOD_S3_PORT"):
            ports["s3"] = pick_weed_port(picker)  # another stack's weed uses that number (see s3.py)
        s3_ports = S3Ports.free(picker, ports["s3"], previous_s3)
        secret = self._secret()
        state = StackState(home=str(self.home), ports=ports, s3_ports=asdict(s3_ports), secret_key=secret,
                           started_at=time.time(),
                           ngen_path=os.environ.get("DMOD_NGEN_PATH") or shutil.which("ngen") or "")
        try:
            postgres = Postgres(self.home / "postgres", ports["postgres"], password=state.secret("postgres.password"))
            postgres.start()
            state.db_user = postgres.user
            state.pids["postgres"] = int((postgres.data / "postmaster.pid").read_text().split()[0])
            self._save(state)
            state.pids["redis"] = start_redis(self.home / "redis", ports["redis"], state.secret("redis.password")).pid
            self._save(state)
            state.s3_isolated = isolation_supported()
            if not state.s3_isolated:
                self.log("warning: no network namespace here: the object store's internal ports (master, volume, "
                         "filer) are reachable by other local users")
            state.pids["s3"] = start_s3(self.home / "s3", s3_ports, state.access_key, secret,
                                        isolate=state.s3_isolated, jwt_key=state.secret("weed-jwt.key")).pid
            self._save(state)
            if state.s3_isolated:
                state.pids["s3proxy"] = start_proxy(self.home / "s3", ports["s3"]).pid
                self._save(state)
            wait_for(lambda: s3_ready(ports["s3"], state.access_key, secret), timeout, "s3 (signed requests)",
                     log=self.home / "s3/weed.out")
            ensure_keypair(self.home / "keys/jwt.key", self.home / "keys/jwt.pub")
            for key in ("jwt.key", "jwt.pub"):
                os.chmod(self.home / "keys" / key, 0o600)
            state.secret("events.key")
            services = spawn([sys.executable, "-m", "dmod.cli.main", "serve", "all"], self.home / "logs/services.log",
                             env=state.service_env(), cwd=self.home, umask=SERVICES_UMASK)
            state.pids["services"] = services.pid
            self._save(state)
            # More replicas of `serve all` (DMOD_SERVICES_REPLICAS, default 1): full instances on
            # ports of their own, each with its own scheduler (leases split the jobs between
            # them), behind the same Envoy clusters (round-robin).
            replicas = [("services", ports["services"], services)]
            for i in range(2, services_replicas() + 1):
                name = f"services-{i}"
                state.ports[name] = _port(name, False, picker, previous_ports)
                env = {**state.service_env(), "DMOD_LISTEN": f"127.0.0.1:{state.ports[name]}"}
                proc = spawn([sys.executable, "-m", "dmod.cli.main", "serve", "all"], self.home / f"logs/{name}.log",
                             env=env, cwd=self.home, umask=SERVICES_UMASK)
                state.pids[name] = proc.pid
                self._save(state)
                replicas.append((name, state.ports[name], proc))
            for name, port, proc in replicas:
                wait_for(lambda port=port: self._serving(f"127.0.0.1:{port}"), timeout, name, proc,
                         self.home / f"logs/{name}.log")
            state.pids["web"] = start_web(self.home / "logs", ports["web"]).pid
            self._save(state)
            upstreams = {name: [("127.0.0.1", port) for _, port, _ in replicas] for name in SERVICES}
            config = render_config(ports["gateway"], state.envoy_admin_socket, upstreams, web=("127.0.0.1", ports["web"]))
            state.pids["envoy"] = start_envoy(self.home / "envoy", config, ports["gateway"]).pid
            wait_for(lambda: self._serving(state.gateway), timeout, "gateway")
        except BaseException:
            self._save(state)
            self.down()
            raise
        state.startup_seconds = round(time.perf_counter() - started, 2)
        self._save(state)
        return state

    # Only the `serve all` processes (or the web UI server) died: start just those, on their
    # ports, and leave the stores and the gateway running — workers talking to the gateway see
    # UNAVAILABLE for a few seconds (and retry), never a refused connection or a new port.
    RESTARTABLE = ("services", "web")

    def _resumable(self, state: StackState) -> bool:
        dead = [n for n, pid in state.pids.items() if not pid_alive(pid)]
        needed = set(self.COMPONENTS) - ({"s3proxy"} if not state.s3_isolated else set())
        if not dead or not needed <= set(state.pids) or not all(n.startswith(self.RESTARTABLE) for n in dead):
            return False
        # A port of a process killed a moment ago can take a moment to be bindable again.
        deadline = time.monotonic() + 5
        while not all(PortPicker().available(state.ports[n]) for n in dead if n in state.ports):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _resume(self, state: StackState, timeout: float) -> StackState:
        started = time.perf_counter()
        dead = sorted(n for n, pid in state.pids.items() if not pid_alive(pid))
        self.log(f"restarting {', '.join(dead)} (the rest is still running)")
        try:
            procs = []
            for name in dead:
                if name == "web":
                    state.pids["web"] = start_web(self.home / "logs", state.ports["web"]).pid
                    continue
                env = {**state.service_env(), "DMOD_LISTEN": f"127.0.0.1:{state.ports[name]}"}
                proc = spawn([sys.executable, "-m", "dmod.cli.main", "serve", "all"], self.home / f"logs/{name}.log",
                             env=env, cwd=self.home, umask=SERVICES_UMASK)
                state.pids[name] = proc.pid
                procs.append((name, proc))
            self._save(state)
            for name, proc in procs:
                wait_for(lambda port=state.ports[name]: self._serving(f"127.0.0.1:{port}"), timeout, name, proc,
                         self.home / f"logs/{name}.log")
            wait_for(lambda: self._serving(state.gateway), timeout, "gateway")
        except BaseException:
            self._save(state)
            self.down()
            raise
        state.startup_seconds = round(time.perf_counter() - started, 2)
        self._save(state)
        return state

    def down(self) -> list[str]:
        state = load_state(self.home)
        if state is None:
            return []
        stopped = []
        replicas = sorted((n for n in state.pids if n.startswith("services-")), reverse=True)
        for name in replicas + list(reversed(self.COMPONENTS)):
            if name == "postgres" and Postgres(self.home / "postgres", state.ports["postgres"]).stop():
                stopped.append(name)
                continue
            pid = state.pids.get(name)
            if pid and stop_pid(pid, timeout=20):
                stopped.append(name)
        state_file(self.home).unlink(missing_ok=True)
        return stopped

    def purge(self) -> None:
        """down, then delete the state dir (and the Postgres cluster it links to)."""
        self.down()
        link = self.home / "postgres"
        if link.is_symlink():
            shutil.rmtree(link.resolve(), ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)

    def status(self) -> dict[str, dict]:
        state = load_state(self.home)
        if state is None:
            return {}
        report = {}
        for name in self.COMPONENTS:
            pid = state.pids.get(name)
            report[name] = {"pid": pid, "running": bool(pid and pid_alive(pid))}
        report["postgres"]["healthy"] = tcp_open(state.ports["postgres"])
        report["redis"]["healthy"] = redis_ping(state.ports["redis"], state.secret("redis.password"))
        report["s3"]["healthy"] = tcp_open(state.ports["s3"])
        if state.s3_isolated:
            report["s3proxy"]["healthy"] = tcp_open(state.ports["s3"])
        else:
            report.pop("s3proxy")
        report["envoy"]["healthy"] = tcp_open(state.ports["gateway"])
        report["web"]["healthy"] = "web" in state.ports and tcp_open(state.ports["web"])
        for info in SERVICES.values():
            report[info.full_name] = {"healthy": self._serving(state.gateway, info.full_name), "via": "gateway"}
        report["services"]["healthy"] = all(report[i.full_name]["healthy"] for i in SERVICES.values())
        for name in sorted(n for n in state.pids if n.startswith("services-")):
            pid = state.pids[name]
            report[name] = {"pid": pid, "running": bool(pid and pid_alive(pid)), "port": state.ports.get(name),
                            "healthy": self._serving(f"127.0.0.1:{state.ports.get(name)}")}
        for name, port_key in (("postgres", "postgres"), ("redis", "redis"), ("s3", "s3"), ("s3proxy", "s3"),
                               ("envoy", "gateway"),
                               ("services", "services"), ("web", "web")):
            if name in report:
                report[name]["port"] = state.ports.get(port_key)
        return report

    @staticmethod
    def _serving(target: str, service: str = "") -> bool:
        try:
            with grpc.insecure_channel(target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                                  timeout=1)
                return reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    def _secret(self) -> str:
        return read_or_create_secret(self.home / "keys/s3.secret")

    def _save(self, state: StackState) -> None:
        write_private(state_file(self.home), json.dumps(asdict(state), indent=1))
