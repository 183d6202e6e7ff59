"""One attempt of a job, start to finish:

started -> download inputs (SHA-256 verified) -> lay out the job directory -> run the model under
`mpiexec -n N` (ngen if installed, else the embedded engine), streaming log lines and progress ->
check every expected output exists -> upload outputs into the output dataset -> exit report.

Exit codes: 0 ok, 1 model failed, 2 bad model input, 3 input download failed, 4 outputs
incomplete or upload failed, 5 worker misconfigured, 143 stopped by SIGTERM.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("dmod.worker")

EXIT_OK, EXIT_MODEL, EXIT_CONFIG, EXIT_INPUT, EXIT_OUTPUT, EXIT_SETUP, EXIT_TERM = 0, 1, 2, 3, 4, 5, 143


@dataclass
class Options:
    job: str = ""
    attempt: int = 0
    ranks: int = 0
    engine: str = "auto"
    server: str = ""
    workdir: Path = Path(".")
    spec_file: Path | None = None
    token: str = ""
    heartbeat_seconds: float = 5.0
    slices: list = field(default_factory=list)


class Failure(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


class Agent:
    def __init__(self, opts: Options):
        self.opts = opts
        self.reporter = None
        self.run = None
        self.cancelled = False
        self.channel = None

    def say(self, text: str) -> None:
        self.reporter.log(f"[dmod-worker] {text}", "stderr")

    async def main(self) -> int:
        from dmod.services.worker.agent.reporter import Reporter

        opts = self.opts
        metadata = (("authorization", f"Bearer {opts.token}"),) if opts.token else ()
        if opts.spec_file is None:
            import grpc

            self.channel = grpc.aio.insecure_channel(opts.server, options=[
                ("grpc.max_receive_message_length", 8 << 20), ("grpc.keepalive_time_ms", 20_000)])
            self.reporter = Reporter(self.channel, opts.job, opts.attempt, metadata, opts.heartbeat_seconds)
        else:
            self.reporter = Reporter(None, opts.job or "local", opts.attempt or 1, echo=lambda s: print(s, flush=True))
        self.metadata = metadata
        self.reporter.start()
        self.reporter.started()
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        loop.add_signal_handler(signal.SIGTERM, self._terminate, main_task)
        loop.add_signal_handler(signal.SIGINT, self._terminate, main_task)
        code, reason, message = EXIT_OK, "", ""
        try:
            message = await self._attempt()
        except Failure as exc:
            code, reason, message = exc.code, exc.reason, exc.message
        except asyncio.CancelledError:
            code, reason, message = EXIT_TERM, "CANCELLED", "stopped by SIGTERM"
            if self.run is not None:
                await self.run.stop(grace=5.0)
        except Exception as exc:
            log.exception("worker failed")
            code, reason, message = EXIT_SETUP, "WORKER_ERROR", f"{type(exc).__name__}: {exc}"
        (opts.workdir / "exit.json").write_text(json.dumps({"exit_code": code, "reason": reason, "message": message,
                                                            "time": time.time()}))
        acknowledged = await self.reporter.exit(code, reason, message)
        if not acknowledged:
            log.error("exit report not acknowledged by JobService")
        if self.channel is not None:
            await self.channel.close()
        return code

    def _terminate(self, task: asyncio.Task) -> None:
        if not self.cancelled:
            self.cancelled = True
            task.cancel()

    async def _attempt(self) -> str:
        opts = self.opts
        if opts.engine == "noop":
            self.reporter.progress(1, 1)
            return "noop engine: nothing to run"
        if opts.spec_file is not None:
            return await self._from_spec()
        return await self._from_job()

    async def _from_job(self) -> str:
        import grpc

        from dmod.services.jobs.datasets import Datasets
        from dmod.services.worker.agent.prepare import RETRY_DELAYS, PrepareError, download_inputs, lay_out
        from dmod.v1 import datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc

        opts = self.opts
        stub = jobs_pb2_grpc.JobServiceStub(self.channel)
        # The services restarting (`dmod up` after a crash) is not a reason to give up the
        # attempt: UNAVAILABLE is tried again over ~64 s, as the input downloads are.
        for delay in (*RETRY_DELAYS, None):
            try:
                job = (await stub.GetJob(jobs_pb2.GetJobRequest(name=opts.job), metadata=self.metadata,
                                         timeout=30)).job
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and delay is not None:
                    await asyncio.sleep(delay)
                    continue
                raise Failure(EXIT_SETUP, "WORKER_UNREACHABLE" if exc.code() == grpc.StatusCode.UNAVAILABLE else
                              "WORKER_ERROR", f"GetJob {opts.job}: {exc.code().name}: {exc.details()}") from None
        spec = job.spec
        ranks = opts.ranks or spec.cpu_count or 1
        ds = Datasets(self.channel, self.metadata)
        root = opts.workdir / "run"
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        try:
            paths = await download_inputs(ds, dict(job.resolved_datasets), root, self.say)
            start = spec.start_time.ToDatetime(tzinfo=dt.UTC) if spec.HasField("start_time") else None
            end = spec.end_time.ToDatetime(tzinfo=dt.UTC) if spec.HasField("end_time") else None
            prepared = lay_out(root, paths, start, end, ranks)
        except PrepareError as exc:
            raise Failure(EXIT_INPUT, exc.reason, str(exc)) from None
        prepared.subset = tuple(spec.catchment_ids) or None
        self.say(f"inputs ready in {time.monotonic() - t0:.1f}s")
        await self._run_model(prepared, ranks, [(a.node, a.cpus) for a in job.allocations])
        if not job.output_dataset:
            raise Failure(EXIT_OUTPUT, "OUTPUT_UPLOAD_FAILED", "the job has no output dataset")
        from dmod.services.worker.agent.outputs import OutputError, upload_outputs

        try:
            files, size = await upload_outputs(datasets_pb2_grpc.DatasetServiceStub(self.channel), self.metadata,
                                               job.output_dataset, root / "output", self.say)
        except OutputError as exc:
            raise Failure(EXIT_OUTPUT, exc.reason, str(exc)) from None
        except grpc.aio.AioRpcError as exc:
            raise Failure(EXIT_OUTPUT, "OUTPUT_UPLOAD_FAILED", f"{exc.code().name}: {exc.details()}") from None
        return f"{files} output files ({size} bytes) uploaded to {job.output_dataset}"

    async def _from_spec(self) -> str:
        from dmod.services.worker.agent.prepare import from_local, lay_out

        opts = self.opts
        spec = json.loads(opts.spec_file.read_text())
        ranks = opts.ranks or int(spec.get("ranks", 1))
        root = opts.workdir / "run"
        root.mkdir(parents=True, exist_ok=True)
        paths = from_local(spec, root)

        def when(key):
            value = spec.get(key)
            return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC) if value else None

        prepared = lay_out(root, paths, when("start_time"), when("end_time"), ranks)
        prepared.subset = tuple(spec.get("catchment_ids") or ()) or None
        await self._run_model(prepared, ranks, [])
        return f"outputs in {root / 'output'}"

    async def _run_model(self, prepared, ranks: int, slices) -> None:
        from dmod.services.worker.agent import mpi
        from dmod.services.worker.agent.outputs import OutputError, check_complete, expected_files
        from dmod.services.worker.agent.run import MpiRun, hostfile, model_command, mpiexec, session_nice

        try:
            model, used = model_command(self.opts.engine, prepared, ranks)
            if used == "ngen":
                # The binary's own MPI decides the launcher; one rank needs none.
                linked = mpi.binary_mpi(model[0])
                launcher = mpi.choose_launcher(linked) if ranks > 1 else None
                family, binary = linked.family, f"{model[0]} links {linked.describe()}"
            else:  # the embedded engine: mpi4py under the venv's MPICH mpiexec, as always
                path = mpiexec()
                launcher = mpi.Launcher(path, mpi.launcher_family(path) or mpi.MPICH, "embedded engine")
                family, binary = launcher.family, f"the embedded engine (mpi4py, {launcher.family})"
        except FileNotFoundError as exc:
            raise Failure(EXIT_SETUP, "ENGINE_UNAVAILABLE" if not isinstance(exc, mpi.LauncherNotFound)
                          else "MPI_MISMATCH", str(exc)) from None
        subset = ",".join(prepared.subset) if prepared.subset and not prepared.partition else "all"
        hosts = hostfile(prepared.root, slices) if launcher is not None else None
        if used == "ngen":
            argv, extra_env = mpi.launch_argv(launcher, ranks, hosts)
            env = {**(os.environ if launcher is not None else mpi.scrubbed_env()), **extra_env}
        else:  # exactly today's command line
            argv, env = [launcher.path, "-n", str(ranks)] + (["-f", str(hosts)] if hosts is not None else []), None
        # Every rank says which rank of how many its MPI library will see (and yields to the
        # control plane as this agent does).
        argv += mpi.rank_wrapper(model, family, session_nice())
        argv += [prepared.catchments, subset, prepared.nexuses, "all", prepared.realization]
        if prepared.partition:
            argv.append(prepared.partition)
        how = (f"with {launcher.path} ({launcher.family or 'unknown MPI'}, {launcher.how})" if launcher is not None
               else "directly (one rank, no launcher)")
        self.say(f"running {used} on {ranks} rank(s) {how}; {binary}: {' '.join(argv)}")
        guard = mpi.RankGuard(ranks, launcher.path if launcher is not None else "none (direct start)", binary)
        stopping: list[asyncio.Task] = []

        killed: list[str] = []  # launcher lines saying a rank was killed by SIGKILL (not by this agent)

        def on_line(text: str, stream: str) -> None:
            self.reporter.log(text, stream)
            if mpi.RANK_SIGKILLED.search(text):
                killed.append(text.strip())
            if guard.feed(text) and guard.problem and not stopping:
                self.say(f"MPI mismatch: {guard.problem}; stopping the run")
                stopping.append(asyncio.get_running_loop().create_task(self.run.stop(grace=2.0)))

        self.run = MpiRun(argv, prepared.root, on_line, self.reporter.progress, env=env)
        # The expected file names need the hydrofabric read again: done while the model runs.
        expecting = asyncio.create_task(asyncio.to_thread(expected_files, prepared))
        t0 = time.monotonic()
        try:
            code = await self.run.run()
            if stopping:
                await stopping[0]
            if guard.problem:
                raise Failure(EXIT_SETUP, "MPI_MISMATCH", guard.problem)
            if code == 0 and "dmod-rank" in argv:  # wrapped: every rank must have reported
                missing = guard.missing()
                if missing:
                    raise Failure(EXIT_SETUP, "MPI_MISMATCH", (
                        f"rank(s) {', '.join(map(str, missing[:10]))} of {ranks} never reported: the launcher "
                        f"{guard.launcher} did not start one world of the binary's MPI ({binary})"))
            if code != 0 and not stopping and (killed or code == -9):
                # SIGKILL comes from outside the model (the OOM killer, an operator): the
                # attempt is lost like a killed worker, and retried (RANK_KILLED is transient).
                raise Failure(EXIT_MODEL, "RANK_KILLED",
                              f"a rank of {used} was killed by SIGKILL after {time.monotonic() - t0:.1f}s "
                              f"({killed[0] if killed else 'exit code -9'})")
            if code != 0:
                tag = "MODEL_CONFIG_INVALID" if code == 2 and used == "embedded" else "MODEL_FAILED"
                raise Failure(EXIT_CONFIG if tag == "MODEL_CONFIG_INVALID" else EXIT_MODEL, tag,
                              f"{used} exited with code {code} after {time.monotonic() - t0:.1f}s")
        except BaseException:  # failed or cancelled: the names are not needed
            expecting.cancel()
            raise
        self.say(f"{used} finished in {time.monotonic() - t0:.1f}s")
        try:
            expected = await expecting
            check_complete(prepared.root / "output", expected)
        except OutputError as exc:
            raise Failure(EXIT_OUTPUT, exc.reason, str(exc)) from None
        self.say(f"all {len(expected)} expected output files present")


def run(opts: Options) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts.workdir.mkdir(parents=True, exist_ok=True)
    opts.token = opts.token or os.environ.get("DMOD_TOKEN", "")
    return asyncio.run(Agent(opts).main())
