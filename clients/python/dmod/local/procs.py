"""Starting, waiting for and stopping the stack's server processes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

# Servers of the local stack create their files readable by their owner only (logs, data,
# SeaweedFS volumes, sockets): 0600 files, 0700 directories.
PRIVATE_UMASK = 0o077
# The services' own umask: files 0600, directories 0711 (others may pass through to a job
# directory they are given, but list and read nothing).
SERVICES_UMASK = 0o066


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` (and parents) and set its mode (existing dirs from older versions too)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner may read (0600 from the start, no window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def new_secret() -> str:
    return os.urandom(24).hex()


def read_or_create_secret(path: Path) -> str:
    """A generated secret kept in a 0600 file (the same one across restarts)."""
    if path.exists():
        os.chmod(path, 0o600)
        value = path.read_text().strip()
        if value:
            return value
    value = new_secret()
    write_private(path, value)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortPicker:
    """Distinct free ports for one stack. A server that also binds a derived port (weed: gRPC on
    http + 10000) is given a port whose twin is free and claimed too, so no later pick lands on it."""

    def __init__(self) -> None:
        self.claimed: set[int] = set()

    def pick(self, twin: int = 0) -> int:
        while True:
            port = free_port()
            pair = {port, port + twin}
            if max(pair) < 65536 and not pair & self.claimed and not (twin and tcp_open(port + twin)):
                return self.claim(port, twin)

    def available(self, port: int, twin: int = 0) -> bool:
        """`port` (and its twin) unclaimed by this stack and free to bind on 127.0.0.1."""
        pair = {port, port + twin}
        return max(pair) < 65536 and not pair & self.claimed and all(bindable(p) for p in pair)

    def claim(self, port: int, twin: int = 0) -> int:
        self.claimed |= {port, port + twin}
        return port


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    state = f"exited with {proc.returncode}" if proc is not None and proc.poll() is not None else "not ready"
    raise RuntimeError(f"{what} {state} after {timeout:.0f}s\n{tail}")


def spawn(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None,
          user: str | None = None, umask: int = PRIVATE_UMASK) -> subprocess.Popen:
    """Start a server detached from our session (it outlives `dmod up`), output appended to `log`
    (0600), with `umask` (default: files 0600, directories 0700)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    if user:
        cmd = ["runuser", "-u", user, "--"] + cmd
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.chmod(log, 0o600)
    with open(fd, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True, umask=umask)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop_pid(pid: int, timeout: float = 15.0, sig: int = signal.SIGTERM) -> bool:
    """Signal the process group, wait, then SIGKILL. True if it had been running."""
    if not pid_alive(pid):
        return False
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True
