"""A fork server for local workers: one warm process that has the worker agent (grpc, protobuf,
asyncio) imported and forks a fresh child per job attempt.

A worker started with `python -m dmod.services.worker` spends ~0.25 CPU-s importing before it
does anything; forked from here it starts in a few milliseconds. Each child is still its own
process in its own session (it outlives the scheduler and this server), runs exactly what
`python -m dmod.services.worker run ...` runs, and writes its output to the attempt's log.

Protocol (JSON lines): stdin `{"id", "argv", "env", "cwd", "log", "uid", "gid", "nproc"}` -> stdout
`{"id", "pid", "start_time"}` or `{"id", "error"}`; when a child ends: `{"exit": pid, "code": n}` (negative:
killed by that signal). grpc's core is never initialised here (no channel, no thread), so
forking is safe. The server exits when its stdin closes (the scheduler went away); its children
keep running.

The server runs as the services' user; a child switches to the job's uid/gid (`uid`, `gid`:
jobuser.become: the runtime made reachable, no_new_privs, RLIMIT_NPROC `nproc`, no supplementary groups) after
opening its log and before it imports or runs anything of the job. A child that cannot drop
exits with code 5 and says why in its log.
"""
from __future__ import annotations

import json
import os
import select
import sys
import traceback

from dmod.services.jobs.launchers.jobuser import become
from dmod.services.jobs.launchers.priority import lower_priority


def _warm() -> None:
    import asyncio  # noqa: F401

    import grpc  # noqa: F401

    from dmod.services.worker.agent import agent, cli, prepare, reporter, run  # noqa: F401
    from dmod.v1 import datasets_pb2_grpc, jobs_pb2_grpc  # noqa: F401


def _child(req: dict) -> None:
    code = 5
    try:
        os.setsid()
        if req.get("sched_idle"):
            lower_priority(0, 0, idle=True)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        os.environ.clear()
        os.environ.update(req["env"])
        if req.get("uid") is not None:  # into the job's directory only as the job's user
            become(int(req["uid"]), int(req["gid"]), int(req.get("nproc") or 0), req["env"], req["cwd"])
        os.chdir(req["cwd"])
        sys.argv = ["dmod-worker", *req["argv"]]
        from dmod.services.worker.agent.cli import main

        code = main(req["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 5
    except BaseException:  # noqa: BLE001 - the child must always leave through os._exit
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


_BOOT_TIME: float | None = None
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _start_time(pid: int) -> float:
    """The process's start time as psutil computes it (boot time + start ticks), without
    psutil's per-call overhead: the boot time is read once."""
    global _BOOT_TIME
    try:
        if _BOOT_TIME is None:
            import psutil

            _BOOT_TIME = psutil.boot_time()
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        return _BOOT_TIME + int(fields[19]) / _TICKS
    except Exception:  # noqa: BLE001
        try:
            import psutil

            return psutil.Process(pid).create_time()
        except Exception:  # noqa: BLE001
            return 0.0


def main() -> None:
    _warm()
    import gc

    gc.freeze()  # the warm imports stay shared with the children (their GC does not copy those pages)
    out = os.fdopen(os.dup(1), "w", buffering=1)

    replies: list[str] = []

    def say(obj: dict) -> None:  # written out together, once per batch of requests
        replies.append(json.dumps(obj) + "\n")

    def flush() -> None:
        if replies:
            out.write("".join(replies))
            replies.clear()

    buffer = b""
    say({"ready": os.getpid()})
    flush()
    while True:
        while True:  # reap ended children
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            say({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
        flush()
        readable, _, _ = select.select([0], [], [], 0.05)
        if not readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if not line.strip():
                continue
            req: dict = {}
            try:
                req = json.loads(line)
                pid = os.fork()
            except (ValueError, OSError) as exc:
                say({"id": req.get("id"), "error": str(exc)})
                continue
            if pid == 0:
                replies.clear()
                out.close()
                _child(req)
            say({"id": req["id"], "pid": pid, "start_time": _start_time(pid)})
        flush()


if __name__ == "__main__":
    main()
