"""Run the model under `mpiexec -n N` in the job directory and stream its output.

The MPI run gets its own process group; `stop()` sends it SIGTERM, then SIGKILL after the
grace period, so nothing of the run survives a cancellation.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from pathlib import Path

RUNNING = re.compile(r"^Running timestep (\d+) of (\d+)$")
FINISHED = re.compile(r"^Finished (\d+) timesteps\.$")


def mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if not found:
        raise FileNotFoundError("no mpiexec found (install MPICH/OpenMPI or use the venv's)")
    return found


def model_command(engine: str, prepared, ranks: int = 1) -> tuple[list[str], str]:
    """(argv prefix, engine used). A job's worker gets the engine its pre-flight chose ("ngen" or
    "embedded"); "auto" (standalone `--spec` runs) chooses as pre-flight does: ngen only when the
    installed binary can run every formulation of the realization, else the embedded engine."""
    from dmod.services.worker.engine_caps import (
        EngineUnsupported,
        choose_engine,
        find_ngen,
        needs_of,
        ngen_capabilities,
    )

    ngen = find_ngen()
    if engine == "auto":
        needs = needs_of(prepared.doc, ranks, prepared.catchments.endswith("gpkg"))
        try:
            engine = choose_engine("auto", needs, ngen_capabilities(ngen) if ngen else None).name
        except EngineUnsupported as exc:
            raise FileNotFoundError(str(exc)) from None
    if engine == "ngen":
        if not ngen:
            raise FileNotFoundError("engine 'ngen' requested but no ngen binary (DMOD_NGEN_PATH or PATH)")
        return [ngen], "ngen"
    return [sys.executable, "-m", "dmod.services.worker.engine"], "embedded"


def session_nice() -> int:
    """This process's session (autogroup) nice value; 0 without autogroups."""
    try:
        return int(Path("/proc/self/autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return 0


def at_session_nice(model: list[str], nice: int) -> list[str]:
    """`model` started at session nice `nice`. MPI launchers put every rank in a session of its
    own, and sessions share the CPU as equals whatever their processes' nice values (autogroup
    scheduling): a rank that should yield to the control plane sets its session's nice itself."""
    if nice <= 0 or not Path("/bin/sh").exists():
        return model
    return ["/bin/sh", "-c", f'echo {nice} > /proc/self/autogroup 2>/dev/null; exec "$@"', "dmod-rank", *model]


def hostfile(root: Path, slices: list[tuple[str, int]]) -> Path | None:
    """`host:slots` lines when the allocation spans several hosts."""
    given = os.environ.get("DMOD_MPI_HOSTFILE")  # the swarm replica entry's (container addresses, rank 0 first)
    if given:
        return Path(given)
    hosts = {h for h, _ in slices}
    if len(hosts) <= 1:
        return None
    path = root / "hostfile"
    path.write_text("".join(f"{h}:{n}\n" for h, n in slices))
    return path


class MpiRun:
    def __init__(self, argv: list[str], cwd: Path, on_line, on_progress, env: dict[str, str] | None = None):
        self.argv = argv
        self.env = env  # the run's environment (default: this process's)
        self.cwd = cwd
        self.on_line = on_line  # (text, stream)
        self.on_progress = on_progress  # (step, total)
        self.proc: asyncio.subprocess.Process | None = None

    async def run(self) -> int:
        env = {**(os.environ if self.env is None else self.env), "PYTHONUNBUFFERED": "1"}
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=str(self.cwd), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True, limit=1 << 20)
        await asyncio.gather(self._pump(self.proc.stdout, "stdout"), self._pump(self.proc.stderr, "stderr"))
        return await self.proc.wait()

    async def _pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line longer than the limit: take what is there
                raw = await reader.read(1 << 20)
            if not raw:
                return
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if stream == "stdout":
                m = RUNNING.match(text)
                if m:
                    self.on_progress(int(m.group(1)), int(m.group(2)))
                else:
                    m = FINISHED.match(text)
                    if m:
                        self.on_progress(int(m.group(1)), int(m.group(1)))
            self.on_line(text, stream)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the run's process group (and every descendant, in case a launcher proxy
        moved to a group of its own), SIGKILL after `grace` seconds."""
        import psutil

        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            family = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        self._signal(proc.pid, family, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            pass
        self._signal(proc.pid, family, signal.SIGKILL)  # whatever is left (e.g. ranks ignoring TERM)
        await proc.wait()

    @staticmethod
    def _signal(pgid: int, family, sig: int) -> None:
        import psutil

        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        for p in family:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
