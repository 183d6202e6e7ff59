"""Starting, waiting for and stopping the stack's server processes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


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

    def claim(self, port: int, twin: int = 0) -> int:
        self.claimed |= {port, port + twin}
        return port


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
          user: str | None = None) -> subprocess.Popen:
    """Start a server detached from our session (it outlives `dmod up`), output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    if user:
        cmd = ["runuser", "-u", user, "--"] + cmd
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)


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
