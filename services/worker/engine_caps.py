"""What an engine can run: a real `ngen` binary (read from `ngen --info` and its ELF DT_NEEDED
entries) or the embedded engine; and which engine a realization goes to.

    find_ngen() -> str | None                 DMOD_NGEN_PATH, else `ngen` on PATH (as the worker)
    ngen_capabilities(path) -> EngineCaps      cached per (path, mtime, size) in this process
    EMBEDDED: EngineCaps
    choose_engine(requested, needs, ngen) -> EngineCaps   or raises EngineUnsupported

Imported by the scheduler's pre-flight and by the worker; depends on nothing of either.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field

NATIVE_TYPES = ("bmi_c", "bmi_c++", "bmi_fortran")
# Formulation type -> the `ngen --info` flag it needs (None: always built in).
NGEN_FLAG_FOR = {"bmi_c": "NGEN_WITH_BMI_C", "bmi_c++": None, "bmi_fortran": "NGEN_WITH_BMI_FORTRAN",
                 "bmi_python": "NGEN_WITH_PYTHON", "bmi_multi": None}
INFO_TIMEOUT = 20.0

_FLAG = re.compile(r"^\s*(NGEN_[A-Z0-9_]+):\s*(ON|OFF|TRUE|FALSE|YES|NO|1|0)\s*$", re.IGNORECASE | re.MULTILINE)
_VERSION = re.compile(r"^\s*NGen version:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_COMMIT = re.compile(r"^\s*Git Commit ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_MPI_BLOCK = re.compile(r"^\s*MPI[^\n]*:\s*\n\s*Version:\s*(\S+)\s*\n\s*Library:\s*([^\n]*)", re.IGNORECASE | re.MULTILINE)


class EngineUnsupported(Exception):
    """No engine (of those allowed) can run the job: names the formulation/field and capability."""

    def __init__(self, message: str, field: str = "", reason: str = "ENGINE_UNSUPPORTED"):
        super().__init__(message)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class EngineCaps:
    name: str  # "ngen" | "embedded"
    formulations: frozenset[str]
    path: str = ""
    version: str = ""
    commit: str = ""
    mpi: bool = True
    mpi_library: str = ""  # "Open MPI" | "MPICH" | "" (unknown / no MPI)
    python: bool = True
    netcdf: bool = True
    sqlite: bool = True
    routing: bool = False
    fortran: bool = False
    bmi_c: bool = False
    flags: dict[str, bool] = field(default_factory=dict, compare=False)
    error: str = ""  # why the capabilities could not be read (then nothing is assumed)

    def missing(self, formulation_type: str) -> str | None:
        """The capability this engine lacks to run a formulation type (None: it can)."""
        if formulation_type in self.formulations:
            return None
        if self.name == "embedded":
            if formulation_type in NATIVE_TYPES:
                return "compiled BMI libraries (only the ngen binary loads them)"
            return f"formulation type {formulation_type!r}"
        flag = NGEN_FLAG_FOR.get(formulation_type)
        return f"{flag}=ON" if flag else f"formulation type {formulation_type!r}"

    def describe(self) -> str:
        if self.name == "embedded":
            return "embedded engine (bmi_python, bmi_multi of bmi_python modules; mpi4py)"
        if self.error:
            return f"ngen at {self.path} (capabilities unknown: {self.error})"
        parts = [f"ngen {self.version or '?'}"]
        parts.append(f"MPI {self.mpi_library or 'on'}" if self.mpi else "no MPI")
        parts.append(", ".join(sorted(self.formulations - {"bmi_multi"})))
        extras = [n for n, on in (("NetCDF", self.netcdf), ("SQLite", self.sqlite), ("routing", self.routing)) if on]
        if extras:
            parts.append(", ".join(extras))
        return "; ".join(parts) + f" ({self.path})"


EMBEDDED = EngineCaps(name="embedded", formulations=frozenset({"bmi_python", "bmi_multi"}), mpi=True,
                      mpi_library="mpi4py", python=True, netcdf=True, sqlite=True)


# ---- ngen --info ------------------------------------------------------------------------------
def _on(value: str) -> bool:
    return value.upper() in ("ON", "TRUE", "YES", "1")


def mpi_flavor(libraries) -> str:
    """"Open MPI" / "MPICH" from library paths or sonames ('' when none says)."""
    from dmod.services.worker.agent.mpi import family_of_library

    families = {family_of_library(lib.strip()) for lib in libraries} - {"", "unknown"}
    return families.pop() if len(families) == 1 else ""


def parse_info(text: str, path: str = "", needed: tuple[str, ...] = ()) -> EngineCaps:
    """Capabilities from `ngen --info` output (and the binary's DT_NEEDED entries, if read)."""
    flags = {m.group(1).upper(): _on(m.group(2)) for m in _FLAG.finditer(text)}
    version = (_VERSION.search(text) or [None, ""])[1]
    commit = (_COMMIT.search(text) or [None, ""])[1]
    if not flags and not version:
        return EngineCaps(name="ngen", formulations=frozenset(), path=path,
                          error="`ngen --info` printed no build summary")
    mpi = flags.get("NGEN_WITH_MPI", False)
    library = ""
    if mpi:
        block = _MPI_BLOCK.search(text)
        library = mpi_flavor(re.split(r"[,\s]+", block.group(2))) if block else ""
        if not library:
            library = mpi_flavor(needed)
    forms = {t for t, flag in NGEN_FLAG_FOR.items() if flag is None or flags.get(flag, False)}
    return EngineCaps(
        name="ngen", formulations=frozenset(forms), path=path, version=version, commit=commit, mpi=mpi,
        mpi_library=library, python=flags.get("NGEN_WITH_PYTHON", False), netcdf=flags.get("NGEN_WITH_NETCDF", False),
        sqlite=flags.get("NGEN_WITH_SQLITE", False), routing=flags.get("NGEN_WITH_ROUTING", False),
        fortran=flags.get("NGEN_WITH_BMI_FORTRAN", False), bmi_c=flags.get("NGEN_WITH_BMI_C", False), flags=flags)


def find_ngen() -> str | None:
    """The ngen binary the worker would run: DMOD_NGEN_PATH, else `ngen` on PATH."""
    given = os.environ.get("DMOD_NGEN_PATH")
    if given:
        return given
    return shutil.which("ngen")


_cache: dict[tuple[str, int, int], EngineCaps] = {}
_lock = threading.Lock()


def ngen_capabilities(path: str) -> EngineCaps:
    """What the ngen binary at `path` can run (blocking: runs `ngen --info` once per binary
    version; call it in a thread from async code)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return EngineCaps(name="ngen", formulations=frozenset(), path=path, error=f"cannot stat: {exc.strerror}")
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    if not os.access(path, os.X_OK):
        return EngineCaps(name="ngen", formulations=frozenset(), path=path, error="not executable")
    needed: tuple[str, ...] = ()
    try:
        from dmod.services.runtime.elf import ElfError, read_elf_file

        needed = read_elf_file(path, symbols=False).needed
    except (ElfError, OSError):
        pass
    try:
        done = subprocess.run([path, "--info"], check=False, capture_output=True, text=True,
                              timeout=INFO_TIMEOUT,
                              stdin=subprocess.DEVNULL, errors="replace")
        caps = parse_info(done.stdout + "\n" + done.stderr, path, needed)
    except (OSError, subprocess.TimeoutExpired) as exc:
        caps = EngineCaps(name="ngen", formulations=frozenset(), path=path,
                          error=f"`ngen --info` failed: {exc.__class__.__name__}: {exc}")
    with _lock:
        _cache[key] = caps
    return caps


# ---- engine choice ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Needs:
    """What a job asks of its engine."""
    formulations: dict[str, str]  # formulation type -> field of its first use
    ranks: int = 1
    netcdf_forcing: str = ""  # field using NetCDF forcing, if any
    geopackage: bool = False


def _lacks(caps: EngineCaps, needs: Needs) -> tuple[str, str] | None:
    """(message, field of the first problem) of what `caps` cannot do for `needs`; None: all."""
    if caps.error:
        return f"{caps.describe()}", ""
    problems: list[tuple[str, str]] = []
    for kind, where in needs.formulations.items():
        missing = caps.missing(kind)
        if missing:
            problems.append((f"formulation {kind} ({where}) needs {missing}", where))
    if caps.name == "ngen":
        if needs.ranks > 1 and not caps.mpi:
            problems.append((f"{needs.ranks} ranks need NGEN_WITH_MPI=ON", "spec.cpu_count"))
        if needs.netcdf_forcing and not caps.netcdf:
            problems.append(("NetCDF forcing needs NGEN_WITH_NETCDF=ON", needs.netcdf_forcing))
        if needs.geopackage and not caps.sqlite:
            problems.append(("a GeoPackage hydrofabric needs NGEN_WITH_SQLITE=ON", "spec.hydrofabric_dataset"))
    if not problems:
        return None
    return ", ".join(m for m, _ in problems), problems[0][1]


def needs_of(doc: dict, ranks: int, geopackage: bool) -> Needs:
    """What running realization `doc` on `ranks` ranks asks of an engine (fields name the
    realization's parts)."""
    from dmod.services.worker.engine.realization import formulation_types

    netcdf = ""
    glob = doc.get("global") if isinstance(doc.get("global"), dict) else {}
    blocks = [("global.forcing", glob.get("forcing"))]
    if isinstance(doc.get("catchments"), dict):
        blocks += [(f"catchments.{c}.forcing", b.get("forcing")) for c, b in doc["catchments"].items()
                   if isinstance(b, dict)]
    for where, block in blocks:
        if isinstance(block, dict) and block.get("provider") == "NetCDF":
            netcdf = f"realization.{where}.provider"
            break
    return Needs({k: f"realization.{w}" for k, w in formulation_types(doc).items()}, ranks=ranks,
                 netcdf_forcing=netcdf, geopackage=geopackage)


def choose_engine(requested: str, needs: Needs, ngen: EngineCaps | None) -> EngineCaps:
    """The engine a job runs on. `requested`: auto | ngen | embedded; `ngen`: the capabilities
    of the installed binary (None: none installed). auto = ngen when it can run everything, else
    the embedded engine when it can, else EngineUnsupported naming formulation and capability."""
    requested = requested or "auto"
    if requested == "embedded":
        lack = _lacks(EMBEDDED, needs)
        if lack:
            raise EngineUnsupported(f"the embedded engine cannot run this job: {lack[0]}", lack[1])
        return EMBEDDED
    if requested == "ngen":
        if ngen is None:
            raise EngineUnsupported("engine 'ngen' requested but no ngen binary is installed (DMOD_NGEN_PATH or "
                                    "PATH)", "spec.engine", reason="ENGINE_UNAVAILABLE")
        lack = _lacks(ngen, needs)
        if lack:
            raise EngineUnsupported(f"ngen cannot run this job: {lack[0]} [{ngen.describe()}]", lack[1])
        return ngen
    why_not_ngen = "no ngen binary installed (DMOD_NGEN_PATH or PATH)"
    if ngen is not None:
        lack = _lacks(ngen, needs)
        if lack is None:
            return ngen
        why_not_ngen = f"ngen: {lack[0]}"
    lack = _lacks(EMBEDDED, needs)
    if lack is None:
        return EMBEDDED
    raise EngineUnsupported(f"no engine can run this job: {why_not_ngen}; embedded engine: {lack[0]}", lack[1])
