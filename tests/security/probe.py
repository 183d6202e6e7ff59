"""Another local user against the local stack: what can a non-root account on the same machine
reach without knowing any secret?

`probe_stack(state)` runs, as a real unprivileged OS user (`dmodprobe`, created with `useradd` when
absent), every attempt below and returns a `ProbeReport`; `leaks(state)` is its count of leaks,
for `make chaos`. A *leak* is any attempt that works:

- PostgreSQL without a password: TCP as `dmod`, `postgres`, `root`, the probe user, the stack's
  roles, on databases `dmod` and `postgres`, and through every Unix socket dir the cluster uses;
- Redis without AUTH (`PING`, `INFO`);
- SeaweedFS: the filer (list, read, write), the master (`/dir/assign` hands out write tokens,
  status, lookups), the volume server, the admin server, each one's gRPC port (unauthenticated
  gRPC is full access), its Unix sockets; S3 anonymous list/read/write of the bucket;
- the Envoy admin interface (TCP port if one is recorded, its Unix socket; read-only calls only);
- reading any file or listing any directory under $DMOD_HOME and the Postgres cluster dir;
- a secret (database/Redis password, S3 secret key) on any process's command line (`ps`).

The gateway must stay reachable (it is the API): `ProbeReport.gateway_reachable`.

The probing itself runs in a child (`/usr/bin/python3 probe.py --child`, standard library only,
plus the Debian `psql`) started with `runuser -u dmodprobe`; the parent gathers the targets (as
root) and passes them on stdin.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROBE_USER = "dmodprobe"
GRPC_OFFSET = 10000
MAX_FILES = 20000


# ---- as root: users, targets, report ------------------------------------------------------------------
def ensure_user(name: str = PROBE_USER) -> str | None:
    """The probe's OS user: an existing account, else one created with `useradd` (a system user
    without home or login shell). None when it cannot exist (not root and absent, no useradd)."""
    try:
        pwd.getpwnam(name)
        return name
    except KeyError:
        pass
    if os.geteuid() != 0:
        return None
    try:
        result = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                                check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode not in (0, 9):  # 9: exists (a concurrent creation)
        return None
    try:
        pwd.getpwnam(name)
        return name
    except KeyError:
        return None


@dataclass
class Finding:
    target: str
    leaked: bool
    detail: str


@dataclass
class ProbeReport:
    user: str
    findings: list[Finding] = field(default_factory=list)
    gateway_reachable: bool = False
    files_checked: int = 0

    @property
    def leaks(self) -> int:
        return sum(f.leaked for f in self.findings)

    def leaked(self) -> list[Finding]:
        return [f for f in self.findings if f.leaked]

    def table(self) -> str:
        rows = [f"{'LEAK' if f.leaked else 'ok  '}  {f.target:<58} {f.detail}" for f in self.findings]
        gateway = "reachable" if self.gateway_reachable else "NOT reachable"
        summary = f"{self.leaks} leak(s); {self.files_checked} files/dirs checked; gateway {gateway}"
        return "\n".join([*rows, summary])


def _psql() -> str:
    import glob
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), reverse=True) + ["/usr/bin/psql"]:
        if os.access(candidate, os.X_OK):
            return candidate
    return ""


def _paths_under(roots: list[Path]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
                if name not in seen and not os.path.islink(name):
                    seen.add(name)
                    out.append(name)
            if len(out) > MAX_FILES:
                return out
    return out


def targets(state, secrets: list[str] | None = None) -> dict:
    """What the probe tries, from the stack's state file (as root)."""
    home = Path(state.home)
    ports = dict(state.ports)
    s3 = dict(state.s3_ports)
    env = state.service_env()
    db = urlsplit(env["DMOD_DATABASE_URL"])
    roles = sorted({"dmod", "postgres", "root", PROBE_USER, db.username or "dmod"})
    pg_link = home / "postgres"
    pg_root = pg_link.resolve() if pg_link.exists() else pg_link
    socket_dirs = sorted({str(pg_root), "/var/run/postgresql", "/tmp"})
    unix_sockets = []
    for pattern_root in (home, Path("/tmp")):
        try:
            for dirpath, _dirs, files in os.walk(pattern_root):
                for f in files:
                    path = os.path.join(dirpath, f)
                    if (f.endswith(".sock") or f.startswith(".s.PGSQL")) and \
                            (pattern_root == home or "seaweedfs" in f or f.startswith(".s.PGSQL")):
                        unix_sockets.append(path)
                if pattern_root == Path("/tmp"):
                    break  # only /tmp itself (weed's default socket paths)
        except OSError:
            pass
    if pg_root.exists():
        unix_sockets += [str(p) for p in pg_root.glob(".s.PGSQL.*") if not str(p).endswith(".lock")]
    internal = {k: v for k, v in s3.items() if k != "s3"}
    http = []
    for name, port in internal.items():
        paths = {"master": ["/dir/assign", "/dir/status", "/cluster/status", "/vol/status",
                            "/dir/lookup?volumeId=1"],
                 "volume": ["/status", "/1,01637037d6"],
                 "filer": ["/?pretty=y", "/buckets/", "/buckets/dmod/", "/buckets/dmod/?limit=10"],
                 "admin": ["/", "/api/cluster/topology"]}.get(name, ["/"])
        http += [{"name": f"seaweedfs {name} http", "port": port, "method": "GET", "path": p} for p in paths]
        if name == "filer":
            http.append({"name": "seaweedfs filer http", "port": port, "method": "PUT",
                         "path": "/buckets/dmod/probe-write.txt", "body": "probe"})
            http.append({"name": "seaweedfs filer http", "port": port, "method": "POST",
                         "path": "/probe-write/", "body": "probe"})
        if name == "master":
            http.append({"name": "seaweedfs master http", "port": port, "method": "POST", "path": "/vol/grow?count=1"})
    bucket = env.get("DMOD_S3_BUCKET", "dmod")
    http += [{"name": "s3 anonymous", "port": ports["s3"], "method": "GET", "path": f"/{bucket}/"},
             {"name": "s3 anonymous", "port": ports["s3"], "method": "GET", "path": "/"},
             {"name": "s3 anonymous", "port": ports["s3"], "method": "PUT", "path": f"/{bucket}/probe-write.txt",
              "body": "probe"}]
    if "envoy_admin" in ports:
        http += [{"name": "envoy admin", "port": ports["envoy_admin"], "method": "GET", "path": p}
                 for p in ("/server_info", "/config_dump", "/stats")]
    grpc_ports = {f"seaweedfs {name} grpc": port + GRPC_OFFSET for name, port in s3.items()}
    grpc_ports.update({f"seaweedfs {name} http (tcp)": port for name, port in internal.items()})
    redis_url = urlsplit(env["DMOD_REDIS_URL"])
    if secrets is None:
        secrets = [s for s in (db.password, redis_url.password, env.get("DMOD_S3_SECRET_KEY")) if s]
    return {
        "postgres": {"psql": _psql(), "port": ports["postgres"], "roles": roles, "databases": ["dmod", "postgres"],
                     "socket_dirs": socket_dirs},
        "redis": {"port": ports["redis"]},
        "http": http,
        "tcp": grpc_ports,
        "unix_sockets": sorted(set(unix_sockets)),
        "paths": _paths_under([home, pg_root]),
        "secrets": secrets,
        "gateway": ports["gateway"],
    }


def probe_stack(state, user: str | None = None, secrets: list[str] | None = None, timeout: float = 180) -> ProbeReport:
    """Run the probe as `user` (default: `dmodprobe`, created when absent). Raises RuntimeError
    when no unprivileged user can be had (callers decide whether that is a skip)."""
    user = user or ensure_user()
    if not user:
        raise RuntimeError(f"no unprivileged user to probe with (cannot create {PROBE_USER!r}: need root and useradd)")
    spec = targets(state, secrets)
    cmd = [sys.executable if not Path("/usr/bin/python3").exists() else "/usr/bin/python3", "-I", "-S",
           str(Path(__file__).resolve()), "--child"]
    if os.geteuid() == 0:
        cmd = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--"] + cmd
    elif pwd.getpwuid(os.geteuid()).pw_name != user:
        raise RuntimeError(f"probing as {user!r} needs root (runuser)")
    result = subprocess.run(cmd, input=json.dumps(spec), check=False, capture_output=True, text=True, timeout=timeout, cwd="/",
                            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    if result.returncode:
        raise RuntimeError(f"probe child failed ({result.returncode}): {result.stderr[-2000:]}")
    data = json.loads(result.stdout)
    return ProbeReport(user=user, findings=[Finding(**f) for f in data["findings"]],
                       gateway_reachable=data["gateway_reachable"], files_checked=len(spec["paths"]))


def leaks(state, user: str | None = None) -> int:
    """The number of leaks a local non-root user finds in the running stack (for `make chaos`)."""
    return probe_stack(state, user).leaks


# ---- as the probe user: the attempts (standard library only) -------------------------------------------
def _http(port: int, method: str, path: str, body: str | None = None, timeout: float = 3.0) -> tuple[int | None, str]:
    import http.client
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request(method, path, body=body.encode() if body is not None else None,
                     headers={"Content-Type": "text/plain"} if body is not None else {})
        resp = conn.getresponse()
        data = resp.read(300)
        conn.close()
        return resp.status, data[:120].decode(errors="replace").replace("\n", " ")
    except (OSError, http.client.HTTPException) as exc:
        return None, type(exc).__name__ + ": " + str(exc)[:80]


def _tcp(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _redis(port: int, command: bytes) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(command)
            return sock.recv(200).decode(errors="replace")
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def _child(spec: dict) -> dict:
    findings: list[dict] = []

    def add(target: str, leaked: bool, detail: str) -> None:
        findings.append({"target": target, "leaked": bool(leaked), "detail": detail[:160]})

    # PostgreSQL without a password.
    pg = spec["postgres"]
    if pg["psql"]:
        hosts = ["127.0.0.1"] + [d for d in pg["socket_dirs"]]
        for host in hosts:
            for role in pg["roles"]:
                for database in pg["databases"]:
                    conninfo = f"host={host} port={pg['port']} user={role} dbname={database} connect_timeout=3"
                    try:
                        r = subprocess.run([pg["psql"], "-w", "-X", "-At", "-d", conninfo, "-c", "SELECT current_user"],
                                           check=False, capture_output=True, text=True, timeout=10,
                                           env={"PATH": "/usr/bin:/bin", "PGPASSWORD": "", "PGSSLMODE": "disable"})
                        ok, detail = r.returncode == 0, (r.stdout or r.stderr).strip().splitlines()[-1:] or [""]
                    except subprocess.TimeoutExpired:
                        ok, detail = False, ["timeout"]
                    if ok or host == "127.0.0.1":  # socket dirs that do not exist only add noise
                        add(f"postgres {host}:{pg['port']} {role}@{database}", ok, detail[0])
    else:
        add("postgres", False, "psql not installed: not probed")

    # Redis without AUTH.
    for command in (b"PING\r\n", b"INFO server\r\n"):
        reply = _redis(spec["redis"]["port"], command)
        add(f"redis 127.0.0.1:{spec['redis']['port']} {command.split()[0].decode()}",
            reply.startswith(("+PONG", "$")), reply.strip().splitlines()[0] if reply.strip() else "no reply")

    # HTTP endpoints (SeaweedFS internals, S3 anonymous, Envoy admin).
    for target in spec["http"]:
        status, detail = _http(target["port"], target["method"], target["path"], target.get("body"))
        leaked = status is not None and 200 <= status < 400
        add(f"{target['name']} {target['method']} :{target['port']}{target['path']}", leaked,
            f"HTTP {status} {detail}" if status is not None else detail)

    # Raw TCP ports that must not be reachable at all (unauthenticated gRPC, internal HTTP).
    for name, port in spec["tcp"].items():
        opened = _tcp(port)
        add(f"{name} tcp :{port}", opened, "connected" if opened else "refused")

    # Unix sockets.
    for path in spec["unix_sockets"]:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1.0)
                sock.connect(path)
            add(f"unix socket {path}", True, "connected")
        except OSError as exc:
            add(f"unix socket {path}", False, f"{type(exc).__name__}")

    # Files and directories.
    readable = []
    for path in spec["paths"]:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                with open(path, "rb") as f:
                    f.read(1)
            readable.append(path)
        except OSError:
            pass
    for path in readable:
        add(f"read {path}", True, "readable by another user")
    # A summary line (each readable path above is a leak of its own).
    add(f"{len(spec['paths'])} files and dirs under the state dirs", False,
        f"{len(readable)} readable" if readable else "none readable")

    # Secrets on command lines.
    exposed = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        for secret in spec["secrets"]:
            if secret and secret in cmdline:
                exposed.append(pid)
    add("secrets on process command lines", bool(exposed), f"pids {exposed[:5]}" if exposed else "none")

    status, detail = _http(spec["gateway"], "GET", "/")
    return {"findings": findings, "gateway_reachable": status is not None}


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    print(json.dumps(_child(json.loads(sys.stdin.read()))))
