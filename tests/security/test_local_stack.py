"""The local stack locked down: another local user reaches the gateway and nothing else.

The probe (tests/security/probe.py) runs as a real unprivileged OS user (`dmodprobe`, created
with `useradd` when absent) against the session's stack; positive controls show that the probe
does see a leak when there is one. The rest checks each measure directly: Postgres role and
authentication, Redis AUTH, the object store's namespace, Envoy's admin socket, file modes, a
cluster of an older version migrated off trust auth, and ports kept after a crash.
"""
from __future__ import annotations

import dataclasses
import http.server
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import psutil
import pytest
import redis.asyncio as aioredis

from dmod.local.postgres import Postgres, pg_bin
from dmod.local.procs import free_port, pid_alive
from dmod.local.s3 import isolation_supported
from dmod.local.stack import PRIVATE_DIRS, Stack, load_state

from .probe import ensure_user, probe_stack


@pytest.fixture(scope="module")
def probe_user() -> str:
    user = ensure_user()
    if user is None:
        pytest.skip("no unprivileged OS user to probe with: useradd is impossible here (not root, or no useradd)")
    return user


# ---- the probe ---------------------------------------------------------------------------------------
def test_another_local_user_finds_no_leak_and_reaches_the_gateway(stack, probe_user):
    report = probe_stack(stack, probe_user)
    assert report.leaks == 0, "\n" + report.table()
    assert report.gateway_reachable, "the gateway (the API) must stay reachable for other local users"
    targets = " ".join(f.target for f in report.findings)
    # The probe really tried each kind of access (a probe that tries nothing finds nothing).
    for kind in ("postgres 127.0.0.1", "redis", "seaweedfs filer http", "seaweedfs master http",
                 "seaweedfs volume", "s3 anonymous", "unix socket", "secrets on process command lines"):
        assert kind in targets, f"the probe did not try {kind}"
    assert sum(f.target.startswith("postgres") for f in report.findings) >= 8
    assert any(f.target.endswith("envoy/admin.sock") for f in report.findings), "Envoy admin socket not probed"
    assert report.files_checked > 20


def test_the_probe_sees_leaks_when_there_are_some(stack, probe_user):
    """Positive controls: a readable file, a secret on a command line and an open internal HTTP
    port are each reported."""
    home = Path(stack.home)
    leaked_file = home / "jobs" / "probe-control.txt"
    leaked_file.write_text("readable")
    os.chmod(leaked_file, 0o644)
    token = "probe-control-" + os.urandom(8).hex()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", token])

    class Open(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"open")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Open)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fake = dataclasses.replace(stack, s3_ports={**stack.s3_ports, "filer": server.server_address[1]})
        report = probe_stack(fake, probe_user, secrets=[token])
        leaked = " ".join(f.target for f in report.leaked())
        assert str(leaked_file) in leaked
        assert "secrets on process command lines" in leaked
        assert "seaweedfs filer http GET" in leaked
    finally:
        server.shutdown()
        sleeper.kill()
        sleeper.wait()
        leaked_file.unlink()


# ---- each measure ------------------------------------------------------------------------------------
async def test_services_use_a_non_superuser_role_with_a_password(stack):
    url = stack.service_env()["DMOD_DATABASE_URL"]
    parts = urlsplit(url)
    assert parts.password and len(parts.password) >= 32
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
                                  "FROM pg_roles WHERE rolname = current_user")
        assert not any(row.values()), dict(row)
        owned = await conn.fetch("SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                                 "WHERE r.rolname = current_user")
        assert [r["datname"] for r in owned] == ["dmod"]
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                                   "AND tableowner <> current_user") == 0
    finally:
        await conn.close()
    for bad in (url.replace(parts.password, "wrong"), url.replace(f":{parts.password}@", "@"),
                url.rsplit("/", 1)[0] + "/postgres"):
        with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError,
                            asyncpg.ClientConfigurationError)):
            await asyncpg.connect(bad, timeout=5)
    hba = (Path(stack.home) / "postgres" / "data" / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert rules and all(rule[-1] in ("scram-sha-256", "peer") for rule in rules), rules
    assert [rule[:4] for rule in rules if rule[0] == "host"] == [["host", '"dmod"', f'"{stack.db_user}"', "127.0.0.1/32"]]


async def test_redis_requires_its_password_which_no_command_line_shows(stack):
    url = stack.service_env()["DMOD_REDIS_URL"]
    password = urlsplit(url).password
    assert password and len(password) >= 32
    anonymous = aioredis.from_url(f"redis://127.0.0.1:{stack.ports['redis']}/0")
    try:
        with pytest.raises(Exception, match="(?i)auth"):
            await anonymous.ping()
    finally:
        await anonymous.aclose()
    client = aioredis.from_url(url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    # the server listening now (other tests restart Redis, so the pid recorded at start may be gone)
    import psutil

    (pid,) = {c.pid for c in psutil.net_connections("tcp")
              if c.status == psutil.CONN_LISTEN and c.laddr.port == stack.ports["redis"] and c.pid}
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert password.encode() not in cmdline and b"requirepass" not in cmdline
    conf = Path(stack.home) / "redis" / "redis.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600


def test_object_store_ports_exist_only_in_its_own_network_namespace(stack):
    if not isolation_supported():
        pytest.skip("this machine cannot create network namespaces (then dmod up warns)")
    assert stack.s3_isolated
    weed = stack.pids["s3"]
    assert os.readlink(f"/proc/{weed}/ns/net") != os.readlink("/proc/self/ns/net")
    for name, port in stack.s3_ports.items():
        if name == "s3":
            continue
        for p in (port, port + 10000):
            with socket.socket() as sock:
                sock.settimeout(0.5)
                assert sock.connect_ex(("127.0.0.1", p)) != 0, f"weed {name} port {p} reachable on the host"
    # S3 itself works through the proxy, with signatures.
    from minio import Minio

    env = stack.service_env()
    client = Minio(env["DMOD_S3_ENDPOINT"], access_key=env["DMOD_S3_ACCESS_KEY"], secret_key=env["DMOD_S3_SECRET_KEY"],
                   secure=False)
    assert env.get("DMOD_S3_BUCKET", "dmod") in [b.name for b in client.list_buckets()]


def test_envoy_admin_is_a_private_unix_socket(stack):
    sock_path = stack.envoy_admin_socket
    assert stat.S_ISSOCK(sock_path.stat().st_mode)
    assert stat.S_IMODE(sock_path.parent.stat().st_mode) == 0o700
    with socket.socket(socket.AF_UNIX) as sock:  # the owner can still use it (readiness, drain)
        sock.settimeout(2)
        sock.connect(str(sock_path))
        sock.sendall(b"GET /ready HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        assert b"LIVE" in sock.recv(4096)
    supervisor = psutil.Process(stack.pids["envoy"])
    listening = {c.laddr.port for p in [supervisor, *supervisor.children(recursive=True)]
                 for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    assert listening == {stack.ports["gateway"]}, listening


def test_state_dir_modes(stack):
    import io

    from minio import Minio

    env = stack.service_env()
    client = Minio(env["DMOD_S3_ENDPOINT"], access_key=env["DMOD_S3_ACCESS_KEY"], secret_key=env["DMOD_S3_SECRET_KEY"],
                   secure=False)
    bucket = env.get("DMOD_S3_BUCKET", "dmod")
    client.put_object(bucket, "tests/modes.bin", io.BytesIO(os.urandom(100_000)), 100_000)  # volume files exist
    home = Path(stack.home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o711
    for name in PRIVATE_DIRS:
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o700, name
    assert stat.S_IMODE((home / "jobs").stat().st_mode) == 0o711
    volumes = []
    for dirpath, dirnames, filenames in os.walk(home):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode & 0o066:
                # Only where nobody else can reach it: some dir on the way is closed to group and
                # others (weed's volume info files, which it chmods 0644 itself; what a job writes in
                # its private 0700 work dir).
                closed = any(not stat.S_IMODE(parent.stat().st_mode) & 0o011
                             for parent in path.parents if home in (parent, *parent.parents))
                assert closed, f"{path} is {oct(mode)}: group/others may read or write it"
            if name.endswith((".dat", ".idx")):
                volumes.append(path)
                assert mode == 0o600, f"{path} is {oct(mode)}"
    assert volumes, "no S3 volume files found"
    client.remove_object(bucket, "tests/modes.bin")
    pg_root = (home / "postgres").resolve()
    assert stat.S_IMODE(pg_root.stat().st_mode) == 0o700


# ---- an older cluster, a crash -------------------------------------------------------------------------
async def test_a_trust_cluster_of_an_older_version_is_migrated_keeping_its_data(tmp_path):
    """initdb as older versions did (trust, superuser `dmod`), a table with a row; the next start
    moves the data to a non-superuser role and drops trust."""
    root = tmp_path / "pg"
    port = free_port()
    old = Postgres(root, port)
    from dmod.local import postgres as pgmod

    old.root = pgmod._cluster_dir(root, old.os_user)
    old.data = old.root / "data"
    if old.os_user:
        import shutil

        shutil.chown(old.root, old.os_user)
    result = old._run([pg_bin("initdb"), "-D", str(old.data), "-U", "dmod", "-A", "trust", "-E", "UTF8", "--no-sync"])
    assert result.returncode == 0, result.stderr
    result = old._run([pg_bin("pg_ctl"), "-D", str(old.data), "-o", f"-p {port} -k {old.root} -c listen_addresses=127.0.0.1",
                       "-l", str(old.root / "old.log"), "-w", "start"])
    assert result.returncode == 0, result.stderr
    try:
        conn = await asyncpg.connect(f"postgresql://dmod@127.0.0.1:{port}/postgres")
        await conn.execute("CREATE DATABASE dmod")
        await conn.close()
        conn = await asyncpg.connect(f"postgresql://dmod@127.0.0.1:{port}/dmod")
        await conn.execute("CREATE TABLE things (id serial PRIMARY KEY, name text); INSERT INTO things (name) VALUES ('kept')")
        await conn.close()
    finally:
        old._run([pg_bin("pg_ctl"), "-D", str(old.data), "-m", "fast", "-w", "stop"])
    password = os.urandom(16).hex()
    new = Postgres(root, port, password=password)
    new.start()
    try:
        assert new.user == "dmod_app"
        conn = await asyncpg.connect(new.url)
        try:
            assert await conn.fetchval("SELECT name FROM things") == "kept"
            assert await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'things'") == "dmod_app"
            assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            await conn.execute("INSERT INTO things (name) VALUES ('new')")  # the sequence came along
        finally:
            await conn.close()
        with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
            await asyncpg.connect(f"postgresql://dmod@127.0.0.1:{port}/dmod", timeout=5)
        assert Postgres(root, port, password=password).user == "dmod_app"  # remembered
    finally:
        new.stop()
        import shutil

        shutil.rmtree(new.root, ignore_errors=True)


def _kill_everything(state) -> None:
    procs = []
    for pid in state.pids.values():
        try:
            proc = psutil.Process(pid)
            procs += [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def test_up_after_a_crash_comes_back_on_the_recorded_ports():
    home = Path(tempfile.mkdtemp(prefix="dmod-crash-"))
    stack = Stack(home, fixed_ports=False, log=lambda *a: None)
    try:
        first = stack.up()
        _kill_everything(first)
        assert not any(pid_alive(p) for p in first.pids.values())
        assert load_state(home) is not None  # the state file is left behind
        time.sleep(0.5)
        second = stack.up()
        assert second.pids != first.pids
        assert {k: v for k, v in second.ports.items()} == first.ports
        assert second.s3_ports == first.s3_ports
        assert Stack._serving(second.gateway)
        # Only the services die: just they come back (same port); the stores and the gateway
        # keep running, so the gateway never refuses a connection meanwhile.
        os.killpg(second.pids["services"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(second.pids["services"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        third = stack.up()
        assert third.ports == first.ports
        assert third.pids["services"] != second.pids["services"]
        assert {k: v for k, v in third.pids.items() if k != "services"} == \
            {k: v for k, v in second.pids.items() if k != "services"}
        assert Stack._serving(third.gateway)
    finally:
        stack.purge()
