"""Fault injection on a running local stack: kill -9 of the services process, of a job's worker
agent and of one MPI rank; a restart of Redis and of the object store.

Recovery paths:
- services (`dmod serve all`: the jobs scheduler, the datasets service and every other service in
  one process): kill -9, then `dmod up` (`Stack.up()`), the supported way back after a crash:
  it restarts what died on the recorded ports (the report names what it restarted).
- Redis, SeaweedFS: nothing in the stack restarts them on its own; a restart here is what an
  operator (or systemd) does: the process group is killed with SIGKILL and the same command line
  is started again with the same environment, working directory and log file, while the services
  keep running (so live watches and workers see the store bounce). The new pid goes into
  `run/stack.json`, so `dmod down` stops it.
- worker agent, MPI rank: nothing is restarted by hand: the monitor sees the loss and the
  scheduler retries the attempt as designed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from dmod.local.procs import tcp_open
from dmod.local.stack import Stack, load_state


@dataclass
class Fault:
    kind: str
    at: float = 0.0  # seconds since the chaos phase began
    target: str = ""
    pids: list[int] = field(default_factory=list)
    job: str = ""
    job_state: str = ""
    recovery_seconds: float | None = None
    detail: str = ""
    skipped: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None, [])}


def _group_members(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    return [root] + root.children(recursive=True)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _wait_gone(procs: list[psutil.Process], timeout: float = 15.0) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return not alive


def sigkill_tree(pid: int, descendants: bool = True) -> list[int]:
    """SIGKILL `pid`'s process group (the stack's servers lead their own sessions) and, with
    `descendants`, every process under it (also those in sessions of their own), then wait until
    they are gone. Returns the pids killed."""
    members = _group_members(pid)
    if not descendants:
        members = [p for p in members if _pgid(p.pid) == pid]
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in members:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _wait_gone(members)
    return [p.pid for p in members]


def _stdout_target(pid: int) -> str | None:
    try:
        target = os.readlink(f"/proc/{pid}/fd/1")
    except OSError:
        return None
    return target if target.startswith("/") and os.path.isfile(target) else None


def restart_in_place(home: Path, component: str, ready, timeout: float = 60.0) -> Fault:
    """kill -9 the stack component `component` (its whole process group) and start the same
    command line again; `ready()` says when it serves again."""
    state = load_state(home)
    pid = state.pids[component]
    proc = psutil.Process(pid)
    argv, cwd, env = proc.cmdline(), proc.cwd(), proc.environ()
    log = _stdout_target(pid)
    started = time.monotonic()
    killed = sigkill_tree(pid)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        new = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True, umask=0o077)
    finally:
        if log:
            out.close()
    deadline = time.monotonic() + timeout
    while not ready():
        if new.poll() is not None:
            raise RuntimeError(f"{component} exited with {new.returncode} after its restart (log {log})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{component} not ready {timeout:.0f}s after its restart (log {log})")
        time.sleep(0.05)
    recovered = time.monotonic() - started
    state = load_state(home)
    state.pids[component] = new.pid
    Stack(home, fixed_ports=False, log=lambda *a: None)._save(state)
    return Fault(kind=f"{component}_restart", target=f"{component} pid {pid} -> {new.pid}", pids=killed,
                 recovery_seconds=round(recovered, 2))


def restart_redis(home: Path) -> Fault:
    """kill -9 Redis, then start it again with the stack's own `start_redis` (same port, config
    and password; Redis rewrites its process title, so its command line cannot be replayed)."""
    import inspect

    from dmod.local.redis import start_redis

    state = load_state(home)
    pid = state.pids["redis"]
    started = time.monotonic()
    killed = sigkill_tree(pid)
    args: list = [home / "redis", state.ports["redis"]]
    if "password" in inspect.signature(start_redis).parameters:
        args.append(state.secret("redis.password"))
    proc = start_redis(*args)  # returns once Redis answers (AUTH + PING)
    recovered = time.monotonic() - started
    state = load_state(home)
    state.pids["redis"] = proc.pid
    Stack(home, fixed_ports=False, log=lambda *a: None)._save(state)
    return Fault(kind="redis_restart", target=f"redis pid {pid} -> {proc.pid}", pids=killed,
                 recovery_seconds=round(recovered, 2))


def s3_ready(home: Path):
    state = load_state(home)
    if getattr(state, "s3_isolated", False):
        from dmod.local.s3 import _unix_http_ok, socket_path

        sock = socket_path(home / "s3")
        return lambda: _unix_http_ok(sock)
    port = state.ports["s3"]
    return lambda: tcp_open(port)


def kill_services_and_recover(home: Path, down_seconds: float = 0.0) -> Fault:
    """kill -9 every `serve all` process of the stack (its process group: not the workers it
    launched, which run in sessions of their own and outlive it), then `dmod up` (Stack.up())."""
    state = load_state(home)
    names = [n for n in state.pids if n == "services" or n.startswith("services-")]
    killed = []
    started = time.monotonic()
    for name in names:
        killed += sigkill_tree(state.pids[name], descendants=False)
    time.sleep(down_seconds)  # an outage: nobody runs `dmod up` for a while
    new = Stack(home, fixed_ports=False, log=lambda *a: None).up()
    recovered = time.monotonic() - started
    moved = {k: (state.ports.get(k), v) for k, v in new.ports.items() if state.ports.get(k) != v}
    restarted = sorted(n for n, pid in new.pids.items() if state.pids.get(n) != pid)
    detail = (f"down {down_seconds:g}s, then " if down_seconds else "") + \
        f"dmod up restarted {', '.join(restarted)}" + (f"; ports moved {moved}" if moved else "; same ports")
    return Fault(kind="services_outage" if down_seconds else "services_kill", target=f"serve all pid(s) {[state.pids[n] for n in names]}", pids=killed,
                 recovery_seconds=round(recovered, 2), detail=detail)


# ---- job processes ------------------------------------------------------------------------------

def worker_process(handle: dict | str | None) -> psutil.Process | None:
    """The live worker agent of an attempt (pid and start time from its launch handle)."""
    if not handle:
        return None
    data = json.loads(handle) if isinstance(handle, str) else handle
    info = data.get("data", {})
    try:
        proc = psutil.Process(int(info.get("pid") or data.get("id")))
        if abs(proc.create_time() - float(info.get("start_time", proc.create_time()))) > 0.05:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, ValueError, TypeError):
        return None


_LAUNCHER_NAMES = ("mpiexec", "mpirun", "hydra_pmi_proxy", "orterun", "prterun", "prted")


def rank_processes(worker: psutil.Process) -> list[psutil.Process]:
    """The model processes (ranks) under a worker: descendants that are not MPI launchers or
    the worker itself; a `/bin/sh` rank wrapper execs into the rank."""
    out = []
    for p in worker.children(recursive=True):
        try:
            name = p.name()
            cmd = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        if any(n in name or n in cmd.split(" ")[0] for n in _LAUNCHER_NAMES) or name in ("sh", "dash", "bash"):
            continue
        out.append(p)
    return out


def job_processes(job_id: str) -> list[dict]:
    """Live processes that belong to a job (cmdline or working directory names it)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status", "name"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if job_id in text:
            found.append({"pid": proc.info["pid"], "name": proc.info["name"], "cwd": proc.info["cwd"] or ""})
    return found
