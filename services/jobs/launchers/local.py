"""`local` launcher: the worker agent as a subprocess of this host.

`python -m dmod.services.worker run --job jobs/<id> --attempt <n> ...` starts in its own session
(so it outlives a crashed scheduler) and runs `mpiexec -n N` itself. The handle records the pid
and the process start time (a recycled pid is never taken for the worker); the attempt
directory holds `worker.json` (the handle, for `find` after a crash between launch and record)
and the worker's `exit.json` (its exit code, for `inspect` by a process that is not its parent).

Who the worker runs as and where (jobuser.py): services running as root start each attempt
under a uid of its own with no capabilities, in `<attempt>/work` (0700, owned by that uid; also
its HOME and, under `tmp/`, its TMPDIR); services running as an ordinary user start it as that
user (no other isolation is possible without root) in the same 0700 layout.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import psutil

from dmod.services.jobs.config import JobsSettings
from dmod.services.jobs.launchers import jobuser
from dmod.services.jobs.launchers.base import (
    EventKind,
    Inspection,
    Launcher,
    LauncherEvent,
    LaunchError,
    LaunchHandle,
    LaunchRequest,
    NodeSpec,
    WorkerState,
)
from dmod.services.jobs.launchers.priority import lower_priority

log = logging.getLogger("dmod.jobs.launcher.local")

NAME = "local"


def attempt_dir(root: Path, job: str, attempt: int) -> Path:
    return root / job.removeprefix("jobs/") / f"attempt-{attempt}"


WORK = "work"  # the attempt's own directory inside attempt_dir (the worker's --workdir)


def jobs_root(home: str | os.PathLike, work_dir: str = "") -> Path:
    """Where local workers' job directories go: DMOD_JOBS_WORK_DIR, else <DMOD_HOME>/jobs. When
    jobs run under uids of their own, every directory above must let them pass (0711); when one
    does not (root's default home is under /root, 0700), /var/lib/dmod/jobs/<hash of the home>."""
    root = Path(work_dir) if work_dir else Path(home) / "jobs"
    if jobuser.isolating():
        lo, _ = jobuser.uid_range()
        if not jobuser.passable(root, lo, -1):
            digest = hashlib.sha256(os.path.abspath(home if not work_dir else work_dir).encode()).hexdigest()[:16]
            return jobuser.FALLBACK_ROOT / digest
    return root


def work_dir_of(handle: LaunchHandle, root: Path) -> Path:
    """The attempt's workdir (handles of earlier versions: the attempt directory itself)."""
    if handle.data.get("workdir"):
        return Path(handle.data["workdir"])
    if handle.data.get("dir"):
        return Path(handle.data["dir"])
    return attempt_dir(root, handle.job, handle.attempt) / WORK


def _read_exit(folder: Path) -> int | None:
    try:  # the file is the job's: never follow a link it planted there
        fd = os.open(folder / "exit.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not os.fstat(fd).st_size <= 1 << 16:
            return None
        return int(json.loads(os.read(fd, 1 << 16))["exit_code"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(fd)


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _alive(handle: LaunchHandle) -> psutil.Process | None:
    """The worker process of `handle` if it still runs (same pid *and* start time)."""
    try:
        proc = psutil.Process(int(handle.id))
        if abs(proc.create_time() - float(handle.data.get("start_time", 0))) > 0.05:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None



# A worker runs the user's model code: it gets what it needs to run and to reach the gateway with
# its job token, never the services' own settings (database URL, S3 and JWT keys, ...).
_WORKER_VARS = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
                          "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "DMOD_NGEN_PATH", "DMOD_MPIEXEC",
                          "DMOD_WORKER_HEARTBEAT_SECONDS"})
_WORKER_PREFIXES = ("LC_", "DMOD_ENGINE_", "OMPI_MCA_", "UCX_", "MPIR_CVAR_", "HYDRA_", "I_MPI_")


def worker_environment(services_env) -> dict[str, str]:
    """The part of the services' environment a local worker inherits (an allowlist)."""
    return {k: v for k, v in services_env.items() if k in _WORKER_VARS or k.startswith(_WORKER_PREFIXES)}


class ForkServer:
    """Client of forkserver.py: launches workers by forking a warm process (milliseconds instead
    of a fresh interpreter's import time). Child exits are reported back as events."""

    def __init__(self, on_exit, nice: int = 0, sched_idle: bool = False):
        self.nice = nice  # the server's niceness; forked workers inherit it
        self.sched_idle = sched_idle  # set by each child (the server itself must stay responsive)
        self.proc: asyncio.subprocess.Process | None = None
        self.pending: dict[str, asyncio.Future] = {}
        self.on_exit = on_exit  # callable(pid, code)
        self.children: set[int] = set()
        self._reader: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._seq = 0

    async def ensure(self) -> bool:
        async with self._lock:
            if self.proc is not None and self.proc.returncode is None:
                return True
            # Its children are forked, not exec'd: their /proc/<pid>/environ is this process's
            # initial environment, so it starts with the workers' allowlist only.
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "dmod.services.jobs.launchers.forkserver", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, start_new_session=True, limit=1 << 20,
                env=worker_environment(os.environ))
            lower_priority(self.proc.pid, self.nice)
            ready = await asyncio.wait_for(self.proc.stdout.readline(), 60)
            if not ready or "ready" not in json.loads(ready):
                raise OSError("fork server did not start")
            self._reader = asyncio.get_running_loop().create_task(self._read(self.proc))
            return True

    async def _read(self, proc) -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            if "exit" in msg:
                self.children.discard(msg["exit"])
                self.on_exit(msg["exit"], msg["code"])
                continue
            future = self.pending.pop(msg.get("id"), None)
            if future is not None and not future.done():
                future.set_result(msg)
        for future in self.pending.values():  # the server died: callers fall back
            if not future.done():
                future.set_exception(OSError("fork server exited"))
        self.pending.clear()
        orphans, self.children = set(self.children), set()
        for pid in orphans:  # nobody reaps them for us any more: watch them by polling
            self.on_exit(pid, None)

    async def spawn(self, argv: list[str], env: dict, cwd: str, log: str,
                    ident: jobuser.JobIdentity | None = None) -> tuple[int, float]:
        await self.ensure()
        self._seq += 1
        key = str(self._seq)
        future = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        request = {"id": key, "argv": argv, "env": env, "cwd": cwd, "log": log, "sched_idle": self.sched_idle}
        if ident is not None and ident.isolated:
            request.update(uid=ident.uid, gid=ident.gid, nproc=ident.max_procs)
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise OSError(reply["error"])
        self.children.add(reply["pid"])
        return reply["pid"], reply["start_time"]

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.stdin.close()  # it exits; its children keep running
        if self._reader is not None:
            self._reader.cancel()


class LocalLauncher(Launcher):
    name = NAME

    def __init__(self, settings, cfg: JobsSettings | None = None):
        self.settings = settings
        self.cfg = cfg or JobsSettings()
        self.root = jobs_root(settings.home, self.cfg.work_dir)
        self._uids: set[int] = set()  # job uids handed out and not yet swept
        self._children: dict[tuple[str, int], asyncio.subprocess.Process] = {}
        self._watched: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task] = set()
        self._events: asyncio.Queue[LauncherEvent] = asyncio.Queue()
        self._by_pid: dict[int, LaunchHandle] = {}
        self._exits: dict[tuple[str, int], int] = {}
        self.forkserver = (ForkServer(self._forked_exit, self.cfg.worker_nice, self.cfg.worker_sched_idle)
                           if os.environ.get("DMOD_JOBS_FORKSERVER", "1") != "0" else None)

    # ---- pool ---------------------------------------------------------------------------------
    async def nodes(self) -> list[NodeSpec]:
        cpus = self.settings.node_cpus or os.cpu_count() or 1
        memory = self.settings.node_memory_bytes or psutil.virtual_memory().total
        factor = max(1.0, self.cfg.oversubscribe)
        return [NodeSpec(name="local", hostname=socket.gethostname(), cpus=int(cpus * factor),
                         memory_bytes=int(memory * factor))]

    # ---- launch -------------------------------------------------------------------------------
    async def launch(self, request: LaunchRequest) -> LaunchHandle:
        """Start the worker. Callers that may have launched this attempt before (a crash between
        launch and recording the handle) call `find()` first; this only guards this process."""
        if (request.job, request.attempt) in self._children:
            return await self.find(request.job, request.attempt)
        try:
            ident = await asyncio.to_thread(jobuser.allocate, set(self._uids))
        except (jobuser.JobUserError, OSError, ValueError) as exc:
            raise LaunchError(f"cannot run the job under an unprivileged user: {exc}", transient=False) from exc
        folder = attempt_dir(self.root, request.job, request.attempt)
        work = folder / WORK
        try:
            self._prepare_dirs(folder, work, ident)
        except OSError as exc:
            raise LaunchError(f"cannot make the job directory {work}: {exc}", transient=False) from exc
        self._uids.add(ident.uid)
        args = ["run", "--job", request.job, "--attempt", str(request.attempt), "--ranks", str(request.ranks),
                "--engine", request.engine, "--server", request.server, "--workdir", str(work)]
        env = {**worker_environment(os.environ), **request.env, "DMOD_TOKEN": request.token,
               "DMOD_GATEWAY": request.server, "PYTHONUNBUFFERED": "1",
               "HOME": str(work), "TMPDIR": str(work / "tmp")}
        if ident.name:
            env.update(USER=ident.name, LOGNAME=ident.name)
        data = {"host": socket.gethostname(), "dir": str(folder), "workdir": str(work), "uid": ident.uid,
                "gid": ident.gid}
        key = (request.job, request.attempt)
        if self.forkserver is not None:
            try:
                pid, started = await self.forkserver.spawn(args, env, str(work), str(folder / "worker.log"), ident)
            except (TimeoutError, OSError, ValueError) as exc:
                log.warning("fork server unavailable (%s); starting the worker directly", exc)
            else:
                handle = LaunchHandle(backend=NAME, job=request.job, attempt=request.attempt, id=str(pid),
                                      data={"pid": pid, "start_time": started or _start_time(pid) or time.time(),
                                            **data})
                self._record(folder, handle)
                self._by_pid[pid] = handle
                self._watched.add(key)
                self._emit(LauncherEvent(handle, EventKind.WORKER_STARTED, message=f"worker pid {pid}"))
                return handle
        cmd = [sys.executable, "-m", "dmod.services.worker", *args]
        if ident.isolated:  # a fresh interpreter drops to the job's uid, then becomes the worker
            cmd = [sys.executable, "-m", "dmod.services.jobs.launchers.jobuser", str(ident.uid), str(ident.gid),
                   str(ident.max_procs), "--", *cmd]
        try:
            out = os.open(folder / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            try:
                proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                                                            stderr=asyncio.subprocess.STDOUT, env=env,
                                                            cwd=str(work), start_new_session=True)
            finally:
                os.close(out)
        except OSError as exc:
            self._uids.discard(ident.uid)
            raise LaunchError(f"cannot start the worker: {exc}", transient=False) from exc
        lower_priority(proc.pid, self.cfg.worker_nice, self.cfg.worker_sched_idle)
        started = _start_time(proc.pid) or time.time()
        handle = LaunchHandle(backend=NAME, job=request.job, attempt=request.attempt, id=str(proc.pid),
                              data={"pid": proc.pid, "start_time": started, **data})
        self._record(folder, handle)
        self._children[key] = proc
        self._watched.add(key)
        self._emit(LauncherEvent(handle, EventKind.WORKER_STARTED, message=f"worker pid {proc.pid}"))
        self._spawn(self._wait_child(handle, proc))
        return handle

    @staticmethod
    def _prepare_dirs(folder: Path, work: Path, ident: jobuser.JobIdentity) -> None:
        """<root>/<job>/attempt-N (the services', 0711) and its work/ and work/tmp (the job's,
        0700). A work/ left by an earlier launch of this attempt (another uid) is moved aside.
        The jobs root and the job's dir are made 0711 too (a home of an older version had 0755:
        a job could list the other jobs)."""
        for d in (folder.parent.parent, folder.parent, folder):
            jobuser.passable_dir(d)
        try:
            st = os.lstat(work)
        except FileNotFoundError:
            pass
        else:
            if st.st_uid != ident.uid or not os.path.isdir(work) or os.path.islink(work):
                aside = folder / f"{WORK}.{int(time.time() * 1000)}"
                os.rename(work, aside)
                jobuser.lock(aside)
        jobuser.own_dir(work, ident.uid, ident.gid)
        jobuser.own_dir(work / "tmp", ident.uid, ident.gid)
        try:
            os.unlink(work / "exit.json")
        except FileNotFoundError:
            pass

    @staticmethod
    def _record(folder: Path, handle: LaunchHandle) -> None:
        fd = os.open(folder / "worker.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(handle.to_dict()))

    async def find(self, job: str, attempt: int) -> LaunchHandle | None:
        key = (job, attempt)
        if key in self._children:
            proc = self._children[key]
            return LaunchHandle(NAME, job, attempt, str(proc.pid), {"pid": proc.pid,
                                                                    "start_time": _start_time(proc.pid) or 0})
        for handle in self._by_pid.values():
            if handle.job == job and handle.attempt == attempt:
                return handle
        record = attempt_dir(self.root, job, attempt) / "worker.json"
        if record.exists():
            try:
                return LaunchHandle.from_dict(json.loads(record.read_text()))
            except (ValueError, KeyError):
                pass
        # Crashed between spawning and writing worker.json: look for the process itself.
        for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
            cmdline = proc.info.get("cmdline") or []
            if "dmod.services.worker" in cmdline and job in cmdline and "--attempt" in cmdline:
                i = cmdline.index("--attempt")
                if i + 1 < len(cmdline) and cmdline[i + 1] == str(attempt):
                    return LaunchHandle(NAME, job, attempt, str(proc.info["pid"]),
                                        {"pid": proc.info["pid"], "start_time": proc.info["create_time"]})
        return None

    # ---- observe ------------------------------------------------------------------------------
    def _exit_record(self, handle: LaunchHandle) -> int | None:
        return _read_exit(work_dir_of(handle, self.root))

    async def inspect(self, handle: LaunchHandle) -> Inspection:
        proc = self._children.get((handle.job, handle.attempt))
        if proc is not None and proc.returncode is not None:
            return Inspection(WorkerState.EXITED, proc.returncode, _describe(proc.returncode))
        code = self._exits.get((handle.job, handle.attempt))
        if code is not None:
            return Inspection(WorkerState.EXITED, code, _describe(code))
        if proc is not None or _alive(handle) is not None:
            return Inspection(WorkerState.RUNNING)
        code = self._exit_record(handle)
        if code is not None:
            return Inspection(WorkerState.EXITED, code, _describe(code))
        return Inspection(WorkerState.GONE, None, f"worker pid {handle.id} is gone without an exit record")

    async def adopt(self, handle: LaunchHandle) -> None:
        key = (handle.job, handle.attempt)
        if key in self._watched:
            return
        self._watched.add(key)
        self._spawn(self._poll(handle))

    def watching(self, job: str, attempt: int) -> bool:
        return (job, attempt) in self._watched

    async def events(self):
        while True:
            yield await self._events.get()

    # ---- stop ---------------------------------------------------------------------------------
    async def cancel(self, handle: LaunchHandle, grace: float = 10.0) -> None:
        root = _alive(handle)
        if root is None:
            return
        try:
            family = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            family = [root]
        pgid = None
        try:
            pgid = os.getpgid(root.pid)
        except ProcessLookupError:
            pass
        self._signal(family, pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not any(_running(p) for p in family):
                return
            await asyncio.sleep(0.1)
        try:  # anything started meanwhile
            family += [c for c in root.children(recursive=True) if c not in family]
        except psutil.NoSuchProcess:
            pass
        self._signal(family, pgid, signal.SIGKILL)
        for _ in range(50):
            if not any(_running(p) for p in family):
                return
            await asyncio.sleep(0.1)
        log.error("processes of %s attempt %s survive SIGKILL", handle.job, handle.attempt)

    async def _finish(self, handle: LaunchHandle) -> None:
        """The attempt is over: nothing of it may keep running under its uid (a model that left
        its session), and its directory goes back to the services' user (a later attempt given
        the same uid cannot enter it). Outputs and exit.json stay readable by the services."""
        uid = handle.data.get("uid")
        if not isinstance(uid, int) or not jobuser.in_range(uid):
            return
        try:
            left = await asyncio.to_thread(jobuser.sweep, uid, 1.0)
            if left:
                log.info("%s attempt %s: stopped %d process(es) left under uid %d", handle.job, handle.attempt,
                         left, uid)
            await asyncio.to_thread(jobuser.lock, work_dir_of(handle, self.root))
        finally:
            self._uids.discard(uid)

    @staticmethod
    def _signal(family: list[psutil.Process], pgid: int | None, sig: int) -> None:
        if pgid is not None and pgid != os.getpgid(0):
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in family:
            try:
                proc.send_signal(sig)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass

    async def cleanup(self, handle: LaunchHandle) -> None:
        self._children.pop((handle.job, handle.attempt), None)
        self._exits.pop((handle.job, handle.attempt), None)
        if _alive(handle) is None:
            await self._finish(handle)

    def _forked_exit(self, pid: int, code: int | None) -> None:
        handle = self._by_pid.pop(pid, None)
        if handle is None:
            return
        key = (handle.job, handle.attempt)
        if code is None:  # the fork server died before its child: poll the child from now on
            self._watched.discard(key)
            self._spawn(self.adopt(handle))
            return
        self._exits[key] = code
        self._watched.discard(key)
        self._emit(LauncherEvent(handle, EventKind.WORKER_EXITED, exit_code=code, message=_describe(code)))
        self._spawn(self._finish(handle))

    async def close(self) -> None:
        if self.forkserver is not None:
            await self.forkserver.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- internals ----------------------------------------------------------------------------
    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, event: LauncherEvent) -> None:
        self._events.put_nowait(event)

    async def _wait_child(self, handle: LaunchHandle, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self._watched.discard((handle.job, handle.attempt))
        self._emit(LauncherEvent(handle, EventKind.WORKER_EXITED, exit_code=code, message=_describe(code)))
        await self._finish(handle)

    async def _poll(self, handle: LaunchHandle) -> None:
        try:
            while True:
                seen = await self.inspect(handle)
                if seen.state is WorkerState.EXITED:
                    self._emit(LauncherEvent(handle, EventKind.WORKER_EXITED, exit_code=seen.exit_code,
                                             message=seen.message))
                    await self._finish(handle)
                    return
                if seen.state is WorkerState.GONE:
                    self._emit(LauncherEvent(handle, EventKind.WORKER_LOST, message=seen.message))
                    await self._finish(handle)
                    return
                await asyncio.sleep(0.5)
        finally:
            self._watched.discard((handle.job, handle.attempt))


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def create(settings) -> LocalLauncher:
    return LocalLauncher(settings)
