"""Which MPI a model binary links, the launcher that matches it, and the rank guard.

A binary built against Open MPI run under MPICH's Hydra (or the other way round) does not fail:
every process comes up as an MPI singleton and simulates the whole domain, N times over. So:

- `binary_mpi(path)` reads the binary's ELF `DT_NEEDED` entries (`dmod.services.runtime.elf`):
  `libmpi.so.40` (and .20/.1/.0, `libopen-rte`, `libopen-pal`) is Open MPI, `libmpi.so.12` or
  `libmpich*` is MPICH (ABI-compatible: Intel MPI, MVAPICH, Cray). When the binary does not
  name an MPI library itself, `ldd` (what the dynamic loader resolves) decides.
- `choose_launcher(mpi, ranks)` picks the launcher of that family: `DMOD_MPIEXEC` when set;
  Open MPI: `mpirun.openmpi`, `mpiexec.openmpi`, `orterun`, then any `mpirun`/`mpiexec` whose
  `--version` says "Open MPI"; MPICH: the venv's Hydra `mpiexec`, `mpiexec.hydra`,
  `mpiexec.mpich`, `mpirun.mpich`, then any `mpiexec`/`mpirun` that says HYDRA/MPICH.
  A single rank runs without a launcher (`launch_argv` returns the model argv alone).
- `rank_wrapper(model, family, nice)`: every rank runs through one `/bin/sh -c` that prints
  `[dmod] rank R of N (<family>)` from the variables the binary's MPI library reads
  (Open MPI: OMPI_COMM_WORLD_RANK/SIZE; MPICH: PMI_RANK/PMI_SIZE; absent: a singleton,
  `rank 0 of 1`), then execs the model. `RankGuard` collects those lines: a rank of the wrong
  size or a rank seen twice means the launcher and the binary do not speak the same MPI.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

OPENMPI, MPICH = "Open MPI", "MPICH"
# Variables each family's library reads to learn its rank and the world size.
RANK_VARS = {OPENMPI: ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), MPICH: ("PMI_RANK", "PMI_SIZE")}
# What the launchers print when a rank died of SIGKILL: MPICH Hydra "...EXIT STRING: Killed (signal
# 9)", Open MPI "...exited on signal 9 (Killed)".
RANK_SIGKILLED = re.compile(r"EXIT STRING: Killed \(signal 9\)|exited on signal 9 \(Killed\)")
RANK_LINE = re.compile(r"^\[dmod\] rank (\d+) of (\d+) \(([^)]*)\)\s*$")

_OPENMPI_SONAME = re.compile(r"^(libmpi\.so\.(40|20|1|0)(\.|$)|libopen-(rte|pal)\.so|libmpi_cxx\.so\.(40|20|1|0))")
_MPICH_SONAME = re.compile(r"^(libmpi\.so\.12(\.|$)|libmpich|libmpicxx\.so\.12|libmpl\.so)")


@dataclass(frozen=True)
class BinaryMpi:
    """The MPI a binary links: `family` is OPENMPI, MPICH, "" (no MPI) or "unknown"."""
    family: str
    library: str = ""  # the soname (or resolved path) that decided it
    how: str = ""  # "DT_NEEDED", "ldd", or why nothing was found

    def describe(self) -> str:
        if not self.family:
            return "no MPI library"
        return f"{self.family} ({self.library}, {self.how})" if self.library else self.family


def family_of_library(name: str) -> str:
    base = os.path.basename(name)
    if _OPENMPI_SONAME.match(base):
        return OPENMPI
    if _MPICH_SONAME.match(base):
        return MPICH
    if base.startswith("libmpi.so"):
        low = name.lower()
        return OPENMPI if "openmpi" in low else MPICH if "mpich" in low else "unknown"
    return ""


def _ldd(path: str) -> list[tuple[str, str]]:
    """(soname, resolved path) pairs the dynamic loader would use ([] when ldd is unavailable)."""
    tool = shutil.which("ldd")
    if not tool:
        return []
    try:
        out = subprocess.run([tool, path], check=False, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    pairs = []
    for line in out.splitlines():
        m = re.match(r"^\s*(\S+)\s+=>\s+(\S+)", line)
        if m:
            pairs.append((m.group(1), m.group(2)))
    return pairs


@functools.lru_cache(maxsize=32)
def _binary_mpi(path: str, _stamp: tuple) -> BinaryMpi:
    from dmod.services.runtime.elf import ElfError, read_elf_file

    try:
        needed = read_elf_file(path, symbols=False).needed
    except (OSError, ElfError) as exc:
        return BinaryMpi("unknown", how=str(exc))
    for name in sorted(needed, key=lambda n: not n.startswith("libmpi.so")):  # libmpi itself names it best
        fam = family_of_library(name)
        if fam:
            return BinaryMpi(fam, name, "DT_NEEDED")
    # Not named by the binary itself: maybe through one of its libraries.
    for name, resolved in _ldd(path):
        fam = family_of_library(name) or (family_of_library(resolved) if resolved.startswith("/") else "")
        if fam:
            return BinaryMpi(fam, f"{name} => {resolved}", "ldd")
    return BinaryMpi("", how="DT_NEEDED and ldd name no MPI library")


def binary_mpi(path: str | os.PathLike) -> BinaryMpi:
    """The MPI family `path` links (cached per file version)."""
    p = os.path.realpath(os.fspath(path))
    try:
        st = os.stat(p)
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = ()
    return _binary_mpi(p, stamp)


@functools.lru_cache(maxsize=32)
def launcher_family(launcher: str) -> str:
    """OPENMPI, MPICH or "" from `launcher --version`."""
    try:
        out = subprocess.run([launcher, "--version"], check=False, capture_output=True, text=True, timeout=20,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    text = out.stdout + out.stderr
    if "Open MPI" in text or "OpenRTE" in text:
        return OPENMPI
    if "HYDRA" in text or "MPICH" in text or "Intel(R) MPI" in text:
        return MPICH
    return ""


@dataclass(frozen=True)
class Launcher:
    path: str
    family: str  # of the launcher (its --version), OPENMPI / MPICH / ""
    how: str  # "DMOD_MPIEXEC", "found", ...


def _search_path() -> list[str]:
    dirs = [str(Path(sys.executable).parent)] + os.environ.get("PATH", "").split(os.pathsep)
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        if d not in dirs:
            dirs.append(d)
    return [d for d in dict.fromkeys(dirs) if d]


def _which(name: str, dirs: list[str]) -> list[str]:
    found = []
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK) and p not in found:
            found.append(p)
    return found


class LauncherNotFound(FileNotFoundError):
    pass


def choose_launcher(mpi: BinaryMpi, env: dict | None = None) -> Launcher:
    """The launcher for a binary linking `mpi` (see the module doc)."""
    env = os.environ if env is None else env
    given = env.get("DMOD_MPIEXEC")
    if given:
        path = given if os.sep in given else (shutil.which(given) or given)
        return Launcher(path, launcher_family(path), "DMOD_MPIEXEC")
    dirs = _search_path()
    if mpi.family == OPENMPI:
        named = ["mpirun.openmpi", "mpiexec.openmpi", "orterun"]
        generic = ["mpirun", "mpiexec"]
        prefix = _prefix_bin(mpi)
    elif mpi.family == MPICH:
        venv = Path(sys.executable).parent / "mpiexec"
        named = []
        if venv.exists() and launcher_family(str(venv)) == MPICH:
            return Launcher(str(venv), MPICH, "the venv's Hydra")
        named = ["mpiexec.hydra", "mpiexec.mpich", "mpirun.mpich"]
        generic = ["mpiexec", "mpirun"]
        prefix = _prefix_bin(mpi)
    elif mpi.family == "unknown":
        from dmod.services.worker.agent.run import mpiexec

        path = mpiexec()
        return Launcher(path, launcher_family(path), "default (the binary's MPI is not recognised)")
    else:
        raise LauncherNotFound(f"the model binary links {mpi.describe()}: no launcher can run it on several ranks")
    for d in prefix:  # next to the MPI library the loader resolves (…/lib/libmpi.so → …/bin/mpirun)
        for name in named + generic:
            for p in _which(name, [d]):
                if launcher_family(p) == mpi.family:
                    return Launcher(p, mpi.family, f"next to {mpi.library}")
    for name in named:
        for p in _which(name, dirs):
            if launcher_family(p) in (mpi.family, ""):
                return Launcher(p, mpi.family, "found")
    for name in generic:
        for p in _which(name, dirs):
            if launcher_family(p) == mpi.family:
                return Launcher(p, mpi.family, "found (--version)")
    raise LauncherNotFound(f"no {mpi.family} launcher found for a binary linking {mpi.describe()} "
                           f"(looked for {', '.join(named + generic)} in {os.pathsep.join(dirs)}; set DMOD_MPIEXEC)")


def _prefix_bin(mpi: BinaryMpi) -> list[str]:
    if "=>" not in mpi.library:
        return []
    resolved = mpi.library.split("=>", 1)[1].strip()
    lib = Path(resolved).parent
    return [str(lib.parent / "bin")] if lib.name.startswith("lib") else []


def local_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def launch_argv(launcher: Launcher | None, ranks: int, hostfile: Path | None = None,
                cores: int | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv prefix before the rank command, extra environment) to start `ranks` ranks."""
    if launcher is None:
        return [], {}
    argv, env = [launcher.path, "-n", str(ranks)], {}
    if launcher.family == OPENMPI:
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        if hostfile is None and ranks > (cores or local_cores()):
            argv.append("--oversubscribe")
        if hostfile is not None:
            argv += ["--hostfile", str(openmpi_hostfile(hostfile))]
    elif hostfile is not None:
        argv += ["-f", str(hostfile)]
    return argv, env


def openmpi_hostfile(path: Path) -> Path:
    """Open MPI reads `host slots=N`; DMOD writes Hydra's `host:N`. Converted next to it."""
    lines = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        host, sep, slots = line.rpartition(":")
        lines.append(f"{host} slots={slots}" if sep and slots.isdigit() else line)
    out = path.with_name(path.name + ".openmpi")
    out.write_text("\n".join(lines) + "\n")
    return out


def rank_wrapper(model: list[str], family: str, nice: int = 0) -> list[str]:
    """`model` behind one `/bin/sh -c` that (optionally) sets the session nice (see
    run.at_session_nice) and prints `[dmod] rank R of N (<family>)` to stderr from the
    variables the binary's MPI library reads, then execs the model."""
    if not Path("/bin/sh").exists():
        return model
    if family in RANK_VARS:
        rank_var, size_var = RANK_VARS[family]
        rank, size = f"${{{rank_var}:-0}}", f"${{{size_var}:-1}}"
    else:  # not known: whichever family's variables are there
        (ro, so), (rm, sm) = RANK_VARS[OPENMPI], RANK_VARS[MPICH]
        rank, size = f"${{{ro}:-${{{rm}:-0}}}}", f"${{{so}:-${{{sm}:-1}}}}"
    label = family or "no MPI"
    script = (f"echo {nice} > /proc/self/autogroup 2>/dev/null; " if nice > 0 else "") + \
        f'echo "[dmod] rank {rank} of {size} ({label})" >&2; exec "$@"'
    return ["/bin/sh", "-c", script, "dmod-rank", *model]


def scrubbed_env() -> dict[str, str]:
    """This process's environment without inherited MPI rank variables (a launcher sets its own;
    a directly started single rank must not believe it belongs to someone else's job)."""
    drop = ("OMPI_COMM_WORLD_", "PMI_", "PMIX_", "OMPI_MCA_ess", "HYDI_", "MPI_LOCAL")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@dataclass
class RankGuard:
    """Collects `[dmod] rank R of N` lines; `problem` is set at the first sign that the ranks do
    not form one world of `expected` ranks."""
    expected: int
    launcher: str
    binary: str  # the binary's MPI, described
    seen: dict[int, int] = field(default_factory=dict)  # rank -> reported size
    problem: str = ""

    def feed(self, text: str) -> bool:
        """True when `text` is a rank line (consumed or not); sets `problem` on a mismatch."""
        m = RANK_LINE.match(text)
        if not m:
            return False
        rank, size = int(m.group(1)), int(m.group(2))
        if self.problem:
            return True
        if size != self.expected:
            what = "an MPI singleton" if size == 1 else f"one of {size}"
            self.problem = (f"a rank came up as rank {rank} of {size} ({what}), expected {self.expected} ranks: the "
                            f"launcher {self.launcher} does not start ranks of the binary's MPI ({self.binary})")
        elif rank in self.seen:
            self.problem = (f"rank {rank} reported twice: the launcher {self.launcher} does not start one world of "
                            f"the binary's MPI ({self.binary})")
        elif not 0 <= rank < size:
            self.problem = f"rank {rank} of {size} is out of range (launcher {self.launcher}, binary {self.binary})"
        self.seen[rank] = size
        return True

    def missing(self) -> list[int]:
        return [r for r in range(self.expected) if r not in self.seen]
