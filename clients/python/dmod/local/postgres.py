"""PostgreSQL from the Debian packages: initdb once, pg_ctl start/stop, TCP on 127.0.0.1.

Postgres refuses to run as root, so as root the cluster runs as the `postgres` OS user.

Who may connect (pg_hba.conf, rewritten at every start):
- the services: role `dmod` (not a superuser; it owns the `dmod` database and nothing else), over
  TCP with its password (scram-sha-256; generated once, $DMOD_HOME/keys/postgres.password, 0600),
  to database `dmod` only;
- the cluster's superuser: the OS user the cluster runs as (`postgres` as root, else yourself),
  by peer authentication on the Unix socket, which lives in the 0700 cluster dir: no other local
  user can even reach it. `dmod up` uses it to create and maintain the role and the database.
Nothing else: no trust, no other role, no other database over TCP.

Clusters made by older versions (trust authentication, the services connecting as the bootstrap
superuser `dmod`) are migrated on the first start: the superuser role of the OS user is added,
the database is dumped, re-created owned by a new non-superuser role `dmod_app` and restored into
it (so every table belongs to the services' role), and the trust lines go.
"""
from __future__ import annotations

import getpass
import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from dmod.local.procs import tcp_open, wait_for

HBA_MARK = "# dmod: generated at every start (dmod.local.postgres)"
LEGACY_APP_ROLE = "dmod_app"


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
    # Others may pass through /var/lib/dmod (its cluster dirs are 0700), not list it.
    Path("/var/lib/dmod").chmod(0o711)
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    root.symlink_to(target)
    return target


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Postgres:
    def __init__(self, root: Path, port: int, user: str = "dmod", database: str = "dmod", password: str = ""):
        self.os_user = "postgres" if os.geteuid() == 0 else None
        self.superuser = self.os_user or getpass.getuser()
        self.link = root
        self.root = root.resolve() if root.is_symlink() else root
        self.data = self.root / "data"
        self.port = port
        self.database = database
        self.password = password
        self.user = self._roles().get("app", user)

    # ---- names -----------------------------------------------------------------------------------
    def _roles_file(self) -> Path:
        return self.root / "dmod-roles.json"

    def _roles(self) -> dict:
        try:
            return json.loads(self._roles_file().read_text())
        except (OSError, ValueError):
            return {}

    @property
    def url(self) -> str:
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}" if self.password else quote(self.user)
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{self.database}"

    # ---- commands ----------------------------------------------------------------------------------
    def _run(self, cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        if self.os_user:
            cmd = ["runuser", "-u", self.os_user, "--"] + cmd
        return subprocess.run(cmd, check=False, capture_output=True, text=True, cwd="/", input=stdin,
                              env={**os.environ, "PGPASSWORD": "", "PGSSLMODE": "disable"})

    def _psql(self, sql: str, role: str | None = None, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket (peer). SQL goes on stdin, never on the
        command line (a password in it would show in `ps`)."""
        result = self._run([pg_bin("psql"), "-h", str(self.root), "-p", str(self.port), "-U", role or self.superuser,
                            "-d", database, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-q"], stdin=sql)
        if result.returncode:
            raise RuntimeError(f"psql failed: {result.stderr.strip()[-2000:]}")
        return result.stdout

    # ---- cluster -----------------------------------------------------------------------------------
    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.root = _cluster_dir(self.link, self.os_user)
        self.data = self.root / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        if self.os_user:
            shutil.chown(self.root, self.os_user)
        os.chmod(self.root, 0o700)
        result = self._run([pg_bin("initdb"), "-D", str(self.data), "-U", self.superuser, "--auth-local=peer",
                            "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
        if result.returncode:
            raise RuntimeError(f"initdb failed: {result.stderr}")
        self._save_roles({"superuser": self.superuser, "app": self.user})

    def _save_roles(self, roles: dict) -> None:
        path = self._roles_file()
        path.write_text(json.dumps(roles))
        os.chmod(path, 0o600)
        if self.os_user:
            shutil.chown(path, self.os_user)

    def _hba(self) -> str:
        return "\n".join([
            HBA_MARK,
            "# the cluster's OS user, over the Unix socket in the 0700 cluster dir",
            f"local   all             {_ident(self.superuser)}    peer",
            "# the services: their own role, database and password, over TCP on 127.0.0.1",
            f"host    {_ident(self.database)}    {_ident(self.user)}    127.0.0.1/32    scram-sha-256",
        ]) + "\n"

    def _write_hba(self) -> None:
        path = self.data / "pg_hba.conf"
        path.write_text(self._hba())
        os.chmod(path, 0o600)
        if self.os_user:
            shutil.chown(path, self.os_user)

    def _legacy(self) -> bool:
        """A cluster of an older `dmod up`: trust authentication, services as superuser `dmod`."""
        try:
            text = (self.data / "pg_hba.conf").read_text()
        except OSError:
            return False
        return HBA_MARK not in text and any(line.split()[-1:] == ["trust"] for line in text.splitlines()
                                            if line.strip() and not line.lstrip().startswith("#"))

    def start(self, timeout: float = 30) -> None:
        self.init()
        os.chmod(self.root, 0o700)
        log = self.root / "postgres.log"
        if not log.exists():
            log.touch()
        os.chmod(log, 0o600)
        if self.os_user:
            shutil.chown(log, self.os_user)
        legacy = self._legacy()
        if not legacy:
            self._write_hba()
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c unix_socket_permissions=0700 "
                "-c password_encryption=scram-sha-256 -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=300")
        result = self._run([pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(log), "-o", opts, "-w", "start"])
        if result.returncode:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{log.read_text()[-2000:]}")
        wait_for(lambda: tcp_open(self.port), timeout, "postgres")
        if legacy:
            self._migrate_legacy()
            self._write_hba()
            reload = self._run([pg_bin("pg_ctl"), "-D", str(self.data), "reload"])
            if reload.returncode:
                raise RuntimeError(f"pg_ctl reload failed: {reload.stderr}")
        self._ensure_roles()

    def _ensure_roles(self) -> None:
        """The services' role (login, password, no superuser/createdb/createrole) owning the
        database; PUBLIC may not connect to the other databases."""
        user, db = self.user, self.database
        if user == self.superuser:
            raise RuntimeError(f"the services' role must not be the cluster's superuser ({user})")
        password = f" PASSWORD {_literal(self.password)}" if self.password else ""
        self._psql(f"""
            SELECT format('CREATE ROLE %I', {_literal(user)})
             WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_literal(user)}) \\gexec
            ALTER ROLE {_ident(user)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS{password};
            SELECT format('CREATE DATABASE %I OWNER %I', {_literal(db)}, {_literal(user)})
             WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = {_literal(db)}) \\gexec
            ALTER DATABASE {_ident(db)} OWNER TO {_ident(user)};
            REVOKE ALL ON DATABASE postgres FROM PUBLIC;
            REVOKE ALL ON DATABASE template1 FROM PUBLIC;
        """)

    def _migrate_legacy(self) -> None:
        """trust + superuser `dmod` -> the layout above, keeping the data (see the module doc)."""
        old = "dmod"
        su = self.superuser
        self._psql(f"""
            SELECT format('CREATE ROLE %I SUPERUSER LOGIN', {_literal(su)})
             WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_literal(su)}) \\gexec
        """, role=old)
        self.user = LEGACY_APP_ROLE
        self._psql(f"""
            SELECT format('CREATE ROLE %I LOGIN', {_literal(self.user)})
             WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_literal(self.user)}) \\gexec
        """, role=su)
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = {_literal(self.database)}", role=su).strip()
        if exists:
            dump = self.root / "legacy.dump"
            result = self._run([pg_bin("pg_dump"), "-h", str(self.root), "-p", str(self.port), "-U", su, "-Fc",
                                "--no-owner", "--no-acl", "-f", str(dump), self.database])
            if result.returncode:
                raise RuntimeError(f"pg_dump of the legacy database failed: {result.stderr}")
            aside = f"{self.database}_legacy_{int(time.time())}"
            self._psql(f"ALTER DATABASE {_ident(self.database)} RENAME TO {_ident(aside)};"
                       f"CREATE DATABASE {_ident(self.database)} OWNER {_ident(self.user)};", role=su)
            result = self._run([pg_bin("pg_restore"), "-h", str(self.root), "-p", str(self.port), "-U", su,
                                "--no-owner", "--no-acl", f"--role={self.user}", "-d", self.database, str(dump)])
            if result.returncode:
                raise RuntimeError(f"restoring the legacy database failed (kept as {aside}): {result.stderr}")
            self._psql(f"DROP DATABASE {_ident(aside)};", role=su)
            dump.unlink(missing_ok=True)
        self._save_roles({"superuser": su, "app": self.user, "migrated_from": old})

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and tcp_open(self.port)

    def stop(self) -> bool:
        if not (self.data / "postmaster.pid").exists():
            return False
        return self._run([pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]).returncode == 0
