"""Who a local job runs as, and its private directory (stdlib only: the fork server imports it).

When the services run as root, every attempt of a job runs under a uid of its own, taken from
a reserved range (`DMOD_JOBS_UID_BASE`, default 0x70000000 = 1879048192, `DMOD_JOBS_UID_COUNT`
uids, default 65536; no passwd entries needed) with the group of the `dmod-job` system user
(`DMOD_JOBS_USER`; `scripts/setup` creates it, the launcher does when it is missing). The worker
agent, its MPI launcher, every rank and whatever model code they load run under that uid with no
supplementary groups, no capabilities (CapEff 0), `no_new_privs` (a setuid binary gains
nothing) and a process limit. A Python the job may not reach (a pyenv under /root, 0700) is
made visible to it alone in a mount namespace of its own (job_view: /root becomes an empty
tmpfs holding just that interpreter); in that namespace /tmp, /var/tmp, /dev/shm and /run/lock
are tmpfs of the job's own, so nothing it writes outside its directory reaches the host or another job. A uid per attempt rather than one shared uid: jobs of different
users cannot read each other's directories, signal or ptrace each other's processes, or read
each other's `/proc/<pid>/environ` (which holds the job token).

When the services run as an ordinary user, nothing can switch users: the job runs as that
user (its directory is still 0700, its environment still an allowlist).

Layout (services-owned parts are passable, 0711, never listable or writable by a job):

    <jobs root>/                 0711 services' user
      <job id>/                  0711 services' user
        attempt-<n>/             0711 services' user: worker.json, worker.log (0600)
          work/                  0700 the attempt's uid: the agent's --workdir, HOME, exit.json
            tmp/                 0700 the attempt's uid: TMPDIR
            run/                 inputs, model, outputs (made by the agent)

When the attempt is over the launcher kills anything still running under its uid and hands
`work/` back to the services' user (0700), so a later attempt given the same uid cannot enter.
"""
from __future__ import annotations

import ctypes
import os
import pwd
import random
import resource
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_USER = "dmod-job"
DEFAULT_UID_BASE = 0x70000000
DEFAULT_UID_COUNT = 65536
PR_SET_NO_NEW_PRIVS = 38
FALLBACK_ROOT = Path("/var/lib/dmod/jobs")


class JobUserError(OSError):
    pass


@dataclass(frozen=True)
class JobIdentity:
    uid: int
    gid: int
    name: str  # USER/LOGNAME of the job
    isolated: bool  # a uid of its own (False: the services' own user)
    max_procs: int = 0  # RLIMIT_NPROC of the attempt's uid (0: unchanged)


def isolating() -> bool:
    """Jobs get a uid of their own exactly when the services can switch users (root)."""
    return os.geteuid() == 0


def uid_range() -> tuple[int, int]:
    base = int(os.environ.get("DMOD_JOBS_UID_BASE", DEFAULT_UID_BASE))
    count = int(os.environ.get("DMOD_JOBS_UID_COUNT", DEFAULT_UID_COUNT))
    if base < 1000 or count < 1 or base + count > 0xFFFFFFFE:
        raise JobUserError(f"bad job uid range DMOD_JOBS_UID_BASE={base} DMOD_JOBS_UID_COUNT={count}")
    return base, base + count


def in_range(uid: int | None) -> bool:
    if uid is None or uid == os.geteuid() or uid == 0:
        return False
    lo, hi = uid_range()
    return lo <= uid < hi


def job_group(name: str | None = None) -> tuple[str, int]:
    """(user name, gid) of the jobs' system user, created when missing (root only)."""
    name = name or os.environ.get("DMOD_JOBS_USER") or DEFAULT_USER
    try:
        entry = pwd.getpwnam(name)
        return name, entry.pw_gid
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name]
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise JobUserError(f"the jobs' system user {name!r} does not exist and `{' '.join(cmd)}` could not run "
                           f"({exc}); create it (scripts/setup does) or set DMOD_JOBS_USER") from None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise JobUserError(f"the jobs' system user {name!r} does not exist and `{' '.join(cmd)}` failed "
                           f"(exit {out.returncode}: {(out.stderr or out.stdout).strip()[:300]}); create it "
                           f"(scripts/setup does) or set DMOD_JOBS_USER") from None
    return name, entry.pw_gid


def max_procs() -> int:
    """RLIMIT_NPROC of an attempt's uid (processes + threads): room for every rank's threads,
    a stop to a fork bomb. DMOD_JOBS_WORKER_MAX_PROCS overrides (0 = unchanged)."""
    given = os.environ.get("DMOD_JOBS_WORKER_MAX_PROCS")
    if given is not None:
        return max(0, int(given))
    return max(4096, 256 * (os.cpu_count() or 1))


def uids_in_use(lo: int, hi: int) -> set[int]:
    """uids in [lo, hi) of live processes (real, effective, saved or filesystem uid)."""
    used: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Uid:"):
                        used.update(u for u in map(int, line.split()[1:]) if lo <= u < hi)
                        break
        except OSError:
            continue
    return used


def allocate(taken: set[int]) -> JobIdentity:
    """A fresh identity for one attempt: root picks an unused uid of the range, anyone else
    runs jobs as itself."""
    if not isolating():
        entry = _pwent(os.geteuid())
        return JobIdentity(os.geteuid(), os.getegid(), entry or os.environ.get("USER", ""), False)
    name, gid = job_group()
    lo, hi = uid_range()
    busy = taken | uids_in_use(lo, hi)
    if len(busy) >= hi - lo:
        raise JobUserError(f"every job uid of {lo}..{hi - 1} is in use")
    while True:
        uid = random.randrange(lo, hi)  # random: two schedulers on one host do not pick alike
        if uid not in busy:
            return JobIdentity(uid, gid, name, True, max_procs())


def _pwent(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


def _mode_lets(st: os.stat_result, uid: int, gid: int, bit_user: int, bit_group: int, bit_other: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & bit_user)
    if st.st_gid == gid:
        return bool(st.st_mode & bit_group)
    return bool(st.st_mode & bit_other)


def passable(path: Path, uid: int, gid: int) -> bool:
    """Whether `uid` (group `gid`, no other groups) may pass through every directory above and
    including `path` (the parts that exist)."""
    path = Path(os.path.abspath(path))
    for part in [*reversed(path.parents), path]:
        try:
            st = os.stat(part)
        except FileNotFoundError:
            return True  # made by us below a passable parent (0711)
        if not _mode_lets(st, uid, gid, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return False
    return True


def passable_dir(path: Path) -> None:
    """`path` and its missing parents as directories of the services' user, 0711 (others may
    pass through, never list or write)."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o711)
        except FileExistsError:
            pass
    for d in [*missing, Path(path)]:
        st = os.lstat(d)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise JobUserError(f"{d} is not a directory")
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o711:
            os.chmod(d, 0o711)


def own_dir(path: Path, uid: int, gid: int, mode: int = 0o700) -> None:
    """`path` (its parent is the services') a directory owned by uid:gid with `mode`; never
    follows a symlink planted there."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def drop_privileges(uid: int, gid: int, nproc: int = 0) -> None:
    """In a child about to run job code: no new privileges, a process limit, then uid:gid with
    no supplementary groups. Raises unless the switch is complete and irreversible."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
    if os.geteuid() == uid and os.getegid() == gid:
        return  # the services' own user: nothing to switch
    if nproc > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups() not in ([], [gid]):
        raise OSError(f"privileges not dropped: uid {os.getresuid()} gid {os.getresgid()} groups {os.getgroups()}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise OSError("privileges not dropped: setuid(0) succeeded")


CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18


def runtime_paths(extra: list[str] = ()) -> list[str]:
    """What a worker must be able to read and run: the interpreter, the venv, every import
    path of the services' Python, and `extra` (the ngen binary's folder, MPI launchers)."""
    seen = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, os.path.dirname(sys.executable),
            *[p for p in sys.path if p], *extra]
    out: list[str] = []
    for p in seen:
        try:
            real = os.path.realpath(p)
        except OSError:
            continue
        if os.path.exists(real) and real not in out:
            out.append(real)
    return out


def hidden_runtime(paths: list[str], uid: int, gid: int) -> dict[str, list[str]]:
    """{topmost directory `uid` may not pass: [runtime paths below it]} (e.g. a pyenv Python
    under /root, 0700)."""
    blocked: dict[str, list[str]] = {}
    for p in paths:
        for part in [*reversed(Path(p).parents), Path(p)]:
            try:
                st = os.stat(part)
            except OSError:
                break
            if stat.S_ISDIR(st.st_mode) and not _mode_lets(st, uid, gid, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
                if str(part) != p:
                    blocked.setdefault(str(part), []).append(p)
                break
    return blocked


def _libc_call(name: str, *args) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # writable by anyone: each job gets its own
SCRATCH_OPTIONS = {"/tmp": "mode=1777,size=256m", "/var/tmp": "mode=1777,size=256m", "/dev/shm": "mode=1777",
                   "/run/lock": "mode=1777,size=1m"}


def _under(p: str, top: str) -> bool:
    return p == top or p.startswith(top.rstrip(os.sep) + os.sep)


def private_mounts(covers: dict[str, tuple[str, list[str]]]) -> None:
    """In a mount namespace of this process (and its children) alone: each directory of
    `covers` is covered by an empty tmpfs (its options) into which the paths listed with it are
    bind-mounted back at the same place (directories above them made 0711)."""
    if not covers:
        return
    keep: dict[str, int] = {}
    _libc_call("unshare", CLONE_NEWNS)
    _libc_call("mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    try:
        for top, (_, paths) in covers.items():
            for p in paths:  # opened (in this namespace) before the tmpfs hides them
                if p not in keep and not any(p != q and _under(p, q) for q in paths):
                    keep[p] = os.open(p, os.O_PATH | os.O_CLOEXEC)
        for top, (options, paths) in covers.items():
            _libc_call("mount", b"tmpfs", top.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode())
            for p in sorted({p for p in paths if p in keep}, key=len):
                cur = top
                for piece in os.path.relpath(p, top).split(os.sep):
                    cur = os.path.join(cur, piece)
                    if not os.path.lexists(cur):
                        if cur != p or os.path.isdir(f"/proc/self/fd/{keep[p]}"):
                            os.mkdir(cur, 0o711)
                        else:
                            open(cur, "x").close()
                _libc_call("mount", f"/proc/self/fd/{keep[p]}".encode(), p.encode(), None, MS_BIND | MS_REC, None)
    finally:
        for fd in keep.values():
            os.close(fd)


def job_view(uid: int, gid: int, runtime: list[str], workdir: str) -> dict[str, tuple[str, list[str]]]:
    """What private_mounts covers for a job: every directory the job may not pass that hides a
    runtime path (a pyenv Python under /root: the job sees an empty /root with just that
    Python), and the world-writable scratch dirs (a private /tmp, /var/tmp, /dev/shm each:
    nothing the job writes there reaches the host or another job), with the job's own
    directory and the runtime bound back where they lie below them."""
    covers: dict[str, tuple[str, list[str]]] = {}
    for top, paths in hidden_runtime(runtime, uid, gid).items():
        covers[top] = ("mode=0711,size=64k", paths)
    for top in SCRATCH_DIRS:
        if not os.path.isdir(top) or os.path.islink(top) or any(_under(top, c) for c in covers):
            continue
        keep = [p for p in runtime + [workdir] if _under(p, top) and p != top]
        covers[top] = (SCRATCH_OPTIONS[top], keep)
    return covers


def sweep(uid: int, grace: float = 2.0) -> int:
    """Kill every process of a job uid (a model that daemonized itself out of its session too):
    SIGTERM, SIGKILL after `grace`. Returns how many processes were found. Refuses any uid
    outside the job range."""
    if not in_range(uid):
        return 0
    found = victims = uids_pids(uid)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in victims:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while victims and time.monotonic() < deadline:
            time.sleep(0.05)
            victims = uids_pids(uid)
        if not victims:
            break
    return len(found)


def uids_pids(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as f:
                data = f.read()
        except OSError:
            continue
        state = uids = None
        for line in data.split(b"\n"):
            if line.startswith(b"State:"):
                state = line.split()[1:2]
            elif line.startswith(b"Uid:"):
                uids = [int(u) for u in line.split()[1:]]
                break
        if uids and uid in uids and state != [b"Z"]:
            pids.append(int(entry.name))
    return pids


def lock(path: Path) -> None:
    """Hand a finished attempt's directory back to the services' user (0700)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        os.fchown(fd, os.geteuid(), os.getegid())
        os.fchmod(fd, 0o700)
    except OSError:
        pass
    finally:
        os.close(fd)


def become(uid: int, gid: int, nproc: int = 0, env: dict | None = None, workdir: str = "") -> None:
    """Turn this (single-threaded, root) child into the job: its own view of the file system
    (job_view) and then drop_privileges. Changes into `workdir` (default: the cwd) again in the
    new view."""
    workdir = os.path.realpath(workdir or os.getcwd())
    os.chdir("/")  # nothing of the job's is in use while the mounts change
    if (uid, gid) != (os.geteuid(), os.getegid()):
        env = os.environ if env is None else env
        extra = [os.path.dirname(os.path.realpath(v)) for v in (env.get("DMOD_NGEN_PATH"), env.get("DMOD_MPIEXEC"))
                 if v and os.sep in v]
        covers = job_view(uid, gid, runtime_paths(extra), workdir)
        try:
            private_mounts(covers)
        except OSError as exc:
            hidden = [top for top, (options, _) in covers.items() if top not in SCRATCH_DIRS]
            if hidden:
                raise OSError(exc.errno, f"the job's uid cannot reach the Python runtime under {', '.join(hidden)} and "
                                         f"no mount namespace could be made to show it ({exc}); install DMOD where "
                                         f"other users may read it") from None
            # e.g. root in a container without CAP_SYS_ADMIN: the uid switch still applies
            print(f"[dmod-worker] no private /tmp, /var/tmp, /dev/shm for this job: {exc}", file=sys.stderr, flush=True)
    drop_privileges(uid, gid, nproc)
    os.chdir(workdir)  # as the job: its own directory must let it in


def _exec_main(argv: list[str]) -> None:
    """`python -m dmod.services.jobs.launchers.jobuser UID GID NPROC -- CMD...`: the launcher's
    fallback when the fork server is unavailable (drop, then exec)."""
    uid, gid, nproc = int(argv[0]), int(argv[1]), int(argv[2])
    if argv[3] != "--" or len(argv) < 5:
        raise SystemExit("usage: jobuser UID GID NPROC -- CMD...")
    become(uid, gid, nproc)
    os.execvp(argv[4], argv[4:])


if __name__ == "__main__":
    _exec_main(sys.argv[1:])
