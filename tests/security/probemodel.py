"""A Python BMI model shipped in a user's realization dataset that acts as an attacker: on
initialize it tries to read the stack's secrets and state, another job's directory, process
environment and signals, to write outside its own job directory and to regain root, and writes
what it saw to `probe-report.json` in its working directory (rank 0). Then it runs like the
pass-through model, slowly, so that its processes can be inspected.

The targets come from `probe-targets.json` next to it (written into the dataset by the test);
it also finds other jobs by itself, as an attacker would: every `--workdir` on a command line in
/proc."""
import json
import os
import time
from pathlib import Path

from dmod.services.worker.models.passthrough import PassThrough

_DONE = False


def _try(kind: str, what: str, target: str, fn) -> dict:
    try:
        got = fn()
        return {"kind": kind, "what": what, "target": target, "ok": True, "got": str(got)[:80]}
    except Exception as exc:  # noqa: BLE001 - any failure is the expected outcome
        return {"kind": kind, "what": what, "target": target, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}


def _read(path: str):
    with open(path, "rb") as f:
        return len(f.read(1 << 20))


def _write(path: str):
    with open(path, "xb") as f:
        f.write(b"probe")
    os.unlink(path)
    return "written"


def _other_workdirs(own: str) -> dict[str, int]:
    """Job directories named on other processes' command lines (MPI launchers and ranks carry
    their job's paths), as {work dir: pid}."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        for arg in argv:
            if "/attempt-" in arg and "/work" in arg:
                d = arg[:arg.index("/work", arg.index("/attempt-")) + len("/work")]
                if os.path.realpath(d) != os.path.realpath(own):
                    found.setdefault(d, int(entry.name))
    return found


def _daemon() -> int:
    """A process that leaves the job's session and its pipes and would live on for 10 minutes."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.setsid()
            pid = os.fork()
            if pid == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, 65536)
                time.sleep(600)
                os._exit(0)
            os.write(w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(middle, 0)
    pid = int(os.read(r, 32) or 0)
    os.close(r)
    return pid


def probe(targets: dict) -> dict:
    own = os.environ.get("HOME", "")
    attempts = []
    for path in targets.get("read", []):
        attempts.append(_try("read", "stack file", path, lambda p=path: _read(p)))
    for path in targets.get("list", []):
        attempts.append(_try("list", "stack directory", path, lambda p=path: os.listdir(p)))
    mine = [str(Path(own).parent / "probe"), str(Path(own).parent.parent / "probe")]  # its attempt's and job's dirs
    for path in [*targets.get("write", []), *mine]:
        attempts.append(_try("write", "outside the job directory", path, lambda p=path: _write(p)))
    victims = dict(_other_workdirs(own))
    for d, pid in targets.get("victims", {}).items():
        victims.setdefault(d, pid)
    for d, pid in victims.items():
        attempts.append(_try("list", "another job's directory", d, lambda d=d: os.listdir(d)))
        attempts.append(_try("read", "another job's file", f"{d}/run/realization.json",
                             lambda d=d: _read(f"{d}/run/realization.json")))
        attempts.append(_try("write", "another job's directory", f"{d}/probe", lambda d=d: _write(f"{d}/probe")))
        attempts.append(_try("read", "another job's environment (its token)", f"/proc/{pid}/environ",
                             lambda pid=pid: _read(f"/proc/{pid}/environ")))
        attempts.append(_try("signal", "another job's process", str(pid), lambda pid=pid: os.kill(pid, 0)))
    attempts.append(_try("escalate", "setuid(0)", "0", lambda: os.setuid(0)))
    attempts.append(_try("escalate", "setgid(0)", "0", lambda: os.setgid(0)))
    controls = [  # what the job must be able to do (else the attempts above prove nothing)
        _try("write", "own job directory", "probe-own", lambda: _write("probe-own")),
        _try("write", "own TMPDIR", os.environ.get("TMPDIR", ""),
             lambda: _write(os.path.join(os.environ["TMPDIR"], "probe-own"))),
        _try("read", "own inputs", "realization.json", lambda: _read("realization.json")),
    ]
    scratch = [  # world-writable dirs: a write may work, but must not reach the host (a private tmpfs)
        _try("scratch", "world-writable directory", f"{d}/dmod-probe-{os.getpid()}",
             lambda d=d: Path(f"{d}/dmod-probe-{os.getpid()}").write_text("probe"))
        for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")]
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"):
            status[key] = value.strip()
    return {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "cwd": os.getcwd(), "home": own, "tmpdir": os.environ.get("TMPDIR", ""), "status": status,
            "victims": victims, "attempts": attempts, "controls": controls, "scratch": scratch,
            "env_keys": sorted(k for k in os.environ if k.startswith("DMOD_")), "daemon_pid": _daemon()}


class Probe(PassThrough):
    def _configure(self, configs: list[dict]) -> None:
        global _DONE
        super()._configure(configs)
        if _DONE or os.environ.get("PMI_RANK", "0") != "0":
            return
        _DONE = True
        here = Path(__file__).resolve().parent
        targets = json.loads((here / "probe-targets.json").read_text())
        report = probe(targets)
        tmp = Path("probe-report.json.tmp")
        tmp.write_text(json.dumps(report))
        tmp.rename("probe-report.json")
        print(f"[probe] {sum(a['ok'] for a in report['attempts'])} of {len(report['attempts'])} attempts got through",
              flush=True)

    def _advance(self, dt: float) -> None:
        time.sleep(0.25)
        super()._advance(dt)
