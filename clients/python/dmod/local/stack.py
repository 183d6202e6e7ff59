"""`dmod up` / `dmod down` / `dmod status`: the whole local stack under one state dir.

The test harness uses the same class with free ports in a temp dir, so tests exercise exactly
what users run.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dmod.local.envoy import render_config, start_envoy
from dmod.local.postgres import Postgres
from dmod.local.procs import PortPicker, pid_alive, spawn, stop_pid, tcp_open, wait_for
from dmod.local.redis import start_redis
from dmod.local.s3 import GRPC_OFFSET, S3Ports, start_s3
from dmod.local.web import start_web
from dmod.services.runtime.auth import ensure_keypair
from dmod.services.runtime.registry import SERVICES

DEFAULT_PORTS = {"gateway": 8780, "services": 8781, "postgres": 8782, "redis": 8783, "s3": 8784, "envoy_admin": 8785,
                 "web": 8786}


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

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports['gateway']}"

    def service_env(self) -> dict[str, str]:
        home = Path(self.home)
        return {
            "DMOD_HOME": self.home,
            "DMOD_LISTEN": f"127.0.0.1:{self.ports['services']}",
            "DMOD_GATEWAY": self.gateway,
            "DMOD_DATABASE_URL": f"postgresql://dmod@127.0.0.1:{self.ports['postgres']}/dmod",
            "DMOD_REDIS_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
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
    path = state_file(home)
    if not path.exists():
        return None
    return StackState(**json.loads(path.read_text()))


def _port(name: str, fixed: bool, picker: PortPicker) -> int:
    twin = GRPC_OFFSET if name == "s3" else 0
    env = os.environ.get(f"DMOD_{name.upper()}_PORT")
    if env:
        return picker.claim(int(env), twin)
    if fixed and not tcp_open(DEFAULT_PORTS[name]):
        return picker.claim(DEFAULT_PORTS[name], twin)
    return picker.pick(twin)


class Stack:
    """Starts and stops every component; `fixed_ports=False` (tests) picks free ports."""

    COMPONENTS = ("postgres", "redis", "s3", "services", "web", "envoy")

    def __init__(self, home: Path, fixed_ports: bool = True, log=print):
        self.home = Path(home)
        self.fixed_ports = fixed_ports
        self.log = log

    def up(self, timeout: float = 60) -> StackState:
        existing = load_state(self.home)
        if existing and all(pid_alive(pid) for pid in existing.pids.values()):
            self.log(f"already up: gateway {existing.gateway}")
            return existing
        if existing:
            self.down()
        started = time.perf_counter()
        picker = PortPicker()
        ports = {name: _port(name, self.fixed_ports, picker) for name in DEFAULT_PORTS}
        s3_ports = S3Ports.free(picker, ports["s3"])
        secret = self._secret()
        state = StackState(home=str(self.home), ports=ports, s3_ports=asdict(s3_ports), secret_key=secret,
                           started_at=time.time(),
                           ngen_path=os.environ.get("DMOD_NGEN_PATH") or shutil.which("ngen") or "")
        (self.home / "run").mkdir(parents=True, exist_ok=True)
        try:
            postgres = Postgres(self.home / "postgres", ports["postgres"])
            postgres.start()
            state.pids["postgres"] = int((postgres.data / "postmaster.pid").read_text().split()[0])
            self._save(state)
            state.pids["redis"] = start_redis(self.home / "redis", ports["redis"]).pid
            self._save(state)
            state.pids["s3"] = start_s3(self.home / "s3", s3_ports, state.access_key, secret).pid
            self._save(state)
            ensure_keypair(self.home / "keys/jwt.key", self.home / "keys/jwt.pub")
            services = spawn([sys.executable, "-m", "dmod.cli.main", "serve", "all"], self.home / "logs/services.log",
                             env=state.service_env(), cwd=self.home)
            state.pids["services"] = services.pid
            self._save(state)
            # More replicas of `serve all` (DMOD_SERVICES_REPLICAS, default 1): full instances on
            # ports of their own, each with its own scheduler (leases split the jobs between
            # them), behind the same Envoy clusters (round-robin).
            replicas = [("services", ports["services"], services)]
            for i in range(2, services_replicas() + 1):
                name = f"services-{i}"
                state.ports[name] = _port(name, False, picker)
                env = {**state.service_env(), "DMOD_LISTEN": f"127.0.0.1:{state.ports[name]}"}
                proc = spawn([sys.executable, "-m", "dmod.cli.main", "serve", "all"], self.home / f"logs/{name}.log",
                             env=env, cwd=self.home)
                state.pids[name] = proc.pid
                self._save(state)
                replicas.append((name, state.ports[name], proc))
            for name, port, proc in replicas:
                wait_for(lambda port=port: self._serving(f"127.0.0.1:{port}"), timeout, name, proc,
                         self.home / f"logs/{name}.log")
            state.pids["web"] = start_web(self.home / "logs", ports["web"]).pid
            self._save(state)
            upstreams = {name: [("127.0.0.1", port) for _, port, _ in replicas] for name in SERVICES}
            config = render_config(ports["gateway"], ports["envoy_admin"], upstreams, web=("127.0.0.1", ports["web"]))
            state.pids["envoy"] = start_envoy(self.home / "envoy", config, ports["gateway"]).pid
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
        report["redis"]["healthy"] = _redis_ping(state.ports["redis"])
        report["s3"]["healthy"] = tcp_open(state.ports["s3"])
        report["envoy"]["healthy"] = tcp_open(state.ports["gateway"])
        report["web"]["healthy"] = "web" in state.ports and tcp_open(state.ports["web"])
        for info in SERVICES.values():
            report[info.full_name] = {"healthy": self._serving(state.gateway, info.full_name), "via": "gateway"}
        report["services"]["healthy"] = all(report[i.full_name]["healthy"] for i in SERVICES.values())
        for name in sorted(n for n in state.pids if n.startswith("services-")):
            pid = state.pids[name]
            report[name] = {"pid": pid, "running": bool(pid and pid_alive(pid)), "port": state.ports.get(name),
                            "healthy": self._serving(f"127.0.0.1:{state.ports.get(name)}")}
        for name, port_key in (("postgres", "postgres"), ("redis", "redis"), ("s3", "s3"), ("envoy", "gateway"),
                               ("services", "services"), ("web", "web")):
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
        path = self.home / "keys/s3.secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(os.urandom(18).hex())
            path.chmod(0o600)
        return path.read_text().strip()

    def _save(self, state: StackState) -> None:
        path = state_file(self.home)
        path.write_text(json.dumps(asdict(state), indent=1))
        path.chmod(0o600)


def _redis_ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
