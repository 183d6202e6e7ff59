"""`make chaos`: faults against a real local stack while jobs run, then the security suites.

    .venv/bin/python -m chaos.run                 # the full run: 20 jobs, fuzz 300 messages per RPC
    .venv/bin/python -m chaos.run --short         # CI size: 6 jobs, one fault of each kind, fuzz 20

1. A local stack exactly as `dmod up` starts it (`Stack(home, fixed_ports=False).up()`, a temp
   state dir), a small synthetic domain uploaded as datasets, and N jobs on the embedded engine
   (a slowed-down pass-through model shipped in the realization dataset, so every job runs for
   ~10 s; every third job on 2 MPI ranks).
2. One live WatchJob per job for the whole run (chaos/watch.py), reconnecting with the last seq
   it saw when a fault breaks the stream.
3. Faults while the jobs run (chaos/faults.py): kill -9 of a worker agent, of one MPI rank of a
   2-rank job, Redis killed and restarted, the object store (SeaweedFS) killed and restarted,
   the services process (every gRPC service and the scheduler) killed then `dmod up` at once, and
   an outage: the services killed as jobs finish and `dmod up` only 40 s later (35 s in --short).
4. Every job audited once all are final (or the deadline passed): its state, attempts (Postgres
   `job_attempts`) and stored events against what its watch delivered.
5. The security suites of issue 16 when their modules exist (chaos/security.py): the
   descriptor-driven fuzzer, the authorization matrix, the local-user probe, the worker
   privilege check. A suite that is missing or fails to run is "not run", never 0.

Counters (bench/results/chaos.json, with the details behind each):
  jobs_lost          jobs not final by the deadline, gone (NOT_FOUND), or FAILED: every job is
                     valid and succeeds without faults, so a FAILED one lost its work to a fault;
                     also a SUCCEEDED job whose output dataset is not sealed or empty
  jobs_run_twice     jobs with two attempts that both ran to completion (exit 0 reported, or in the
                     worker's own exit record), outputs finalized / SUCCEEDED twice, or an output
                     path stored twice in the output dataset
  events_missing     seqs in 1..last_event_seq the job's watch never delivered, gaps in the stored
                     sequence, and delivered events that differ from the stored ones
  events_duplicated  seqs delivered twice to one watch (on one stream, or again after a resume)
  internal_or_unknown  fuzz replies INTERNAL or UNKNOWN
  leaks              authorization matrix + local-user probe + worker privilege leaks
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "chaos.json"
sys.path.insert(0, str(ROOT / "tests" / "jobs"))

import asyncpg
import grpc

from chaos import faults as F
from chaos.watch import TERMINAL, Watch, history, watch
from dmod.local.stack import Stack, load_state
from dmod.v1 import domain_pb2, jobs_pb2, jobs_pb2_grpc

S = jobs_pb2
TRANSIENT = {"WORKER_LOST", "LAUNCH_FAILED_TRANSIENT", "NODE_LOST", "WORKER_UNREACHABLE", "INPUTS_UNAVAILABLE",
             "RANK_KILLED", "OUTPUTS_UNAVAILABLE"}
COUNTERS = ("internal_or_unknown", "leaks", "jobs_lost", "jobs_run_twice", "events_missing", "events_duplicated")

MODEL_SOURCE = '''"""Pass-through model slowed down (chaos harness): every step sleeps, so a job runs long
enough for faults to land while it runs."""
import os
import time

from dmod.services.worker.models.passthrough import PassThrough


class Slow(PassThrough):
    def _advance(self, dt: float) -> None:
        time.sleep({sleep})
        super()._advance(dt)
'''

FULL = {"jobs": 20, "fuzz": 300, "step_sleep": 0.25, "hours": 48, "deadline": 900.0, "gap": 6.0, "outage_seconds": 40.0,
        "schedule": ["worker", "rank", "redis", "s3", "services", "outage", "worker", "rank", "redis", "s3",
                     "services"]}
SHORT = {"jobs": 6, "fuzz": 20, "step_sleep": 0.35, "hours": 48, "deadline": 240.0, "gap": 2.0, "outage_seconds": 35.0,
         "schedule": ["worker", "rank", "outage", "services", "redis", "s3"]}


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def state_name(state: int) -> str:
    return S.JobState.Name(state).removeprefix("JOB_STATE_")


class Chaos:
    def __init__(self, home: Path, cfg: dict):
        self.home = home
        self.cfg = cfg
        self.t0 = 0.0
        self.faults: list[F.Fault] = []
        self.jobs: list[str] = []
        self.cpus: dict[str, int] = {}
        self.watches: dict[str, Watch] = {}
        self.orphans: list[dict] = []
        self.timings: dict[str, float] = {}
        self._bg: set[asyncio.Task] = set()

    # ---- plumbing ---------------------------------------------------------------------------
    @property
    def state(self):
        return load_state(self.home)

    async def db(self, query: str, *args):
        """One query on a fresh connection (Postgres itself restarts with `dmod up`)."""
        for i in range(30):
            try:
                conn = await asyncpg.connect(self.state.service_env()["DMOD_DATABASE_URL"], timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                if i == 29:
                    raise
                await asyncio.sleep(1)
                continue
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()

    async def call(self, fn, request, tries: int = 60):
        """A unary call retried across restarts (UNAVAILABLE while the stack comes back)."""
        for i in range(tries):
            try:
                return await fn(request, timeout=15)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                      grpc.StatusCode.UNKNOWN) or i == tries - 1:
                    raise
                await asyncio.sleep(1.0)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    # ---- inputs and jobs --------------------------------------------------------------------
    async def upload_inputs(self, channel, workdir: Path) -> dict[str, str]:
        import helpers  # tests/jobs/helpers.py: the synthetic domain of the job tests

        domain = helpers.make_domain(workdir / "domain", catchments=4, hours=self.cfg["hours"])
        names = await helpers.upload_domain(channel, domain)
        doc = helpers.realization(end=self.end())
        params = doc["global"]["formulations"][0]["params"]
        params.update({"model_type_name": "Slow", "python_type": "chaosmodel.Slow", "init_config": ""})
        names["realization"] = await helpers.upload_dataset(
            channel, "chaos-realization", domain_pb2.DATA_CATEGORY_CONFIG, domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
            {"realization.json": json.dumps(doc).encode(),
             "chaosmodel.py": MODEL_SOURCE.format(sleep=self.cfg["step_sleep"]).encode()})
        return names

    def end(self) -> str:
        start = dt.datetime(2015, 12, 1)
        return (start + dt.timedelta(hours=self.cfg["hours"] - 1)).strftime("%Y-%m-%d %H:%M:%S")

    async def submit(self, stub, names: dict[str, str]) -> None:
        import helpers

        for i in range(self.cfg["jobs"]):
            cpus = 2 if i % 3 == 1 else 1
            spec = helpers.job_spec(names, cpus=cpus, end=self.end())
            job = (await self.call(stub.CreateJob, S.CreateJobRequest(
                spec=spec, labels={"chaos": "1", "n": str(i)}, request_id=f"chaos-{uuid.uuid4().hex}"))).job
            self.jobs.append(job.name)
            self.cpus[job.name] = cpus

    # ---- fault targets ----------------------------------------------------------------------
    async def snapshot(self, stub) -> dict[str, jobs_pb2.Job]:
        out = {}
        for name in self.jobs:
            try:
                out[name] = (await stub.GetJob(S.GetJobRequest(name=name), timeout=10)).job
            except grpc.aio.AioRpcError:
                pass
        return out

    async def worker_of(self, job: jobs_pb2.Job):
        rows = await self.db("SELECT handle FROM job_attempts WHERE job_id = $1 AND attempt = $2 AND end_time IS NULL",
                             job.name.removeprefix("jobs/"), job.attempt)
        return F.worker_process(rows[0]["handle"]) if rows else None

    async def wait_target(self, stub, want, timeout: float):
        """The first job (and its snapshot) for which `want(job)` holds, polling up to `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            snap = await self.snapshot(stub)
            for job in snap.values():
                if await want(job):
                    return job
            if all(j.state in TERMINAL for j in snap.values()) and len(snap) == len(self.jobs):
                return None
            await asyncio.sleep(0.3)
        return None

    async def kill_worker(self, stub, ranks: bool) -> F.Fault:
        kind = "rank_kill" if ranks else "worker_kill"
        found: dict = {}

        async def want(job) -> bool:
            if job.state != S.JOB_STATE_RUNNING or job.progress.step < 2:
                return False
            if ranks != (self.cpus.get(job.name, 1) > 1):
                return False
            proc = await self.worker_of(job)
            if proc is None:
                return False
            if ranks:
                members = F.rank_processes(proc)
                if len(members) < 2:
                    return False
                found["proc"] = members[-1]
            else:
                found["proc"] = proc
            return True

        job = await self.wait_target(stub, want, 90)
        if job is None:
            return F.Fault(kind=kind, at=self.now(), skipped="no running job to kill within 90 s")
        proc = found["proc"]
        try:
            what = " ".join(proc.cmdline())[:160]
            proc.kill()
        except Exception as exc:  # noqa: BLE001 - it ended meanwhile
            return F.Fault(kind=kind, at=self.now(), job=job.name, skipped=f"target ended first: {exc}")
        fault = F.Fault(kind=kind, at=self.now(), job=job.name, job_state=state_name(job.state), pids=[proc.pid],
                        target=f"attempt {job.attempt} step {job.progress.step}/{job.progress.total_steps}: {what}")
        self.spawn(self.check_orphans(job.name, job.attempt, kind))
        return fault

    async def check_orphans(self, name: str, attempt: int, after: str) -> None:
        """Processes of a killed attempt still running 20 s later (orphaned ranks keep computing
        next to the retry)."""
        await asyncio.sleep(20)
        job_id = name.removeprefix("jobs/")
        left = [p for p in F.job_processes(job_id) if f"attempt-{attempt}" in p["cwd"]]
        if left:
            self.orphans.append({"job": name, "attempt": attempt, "after": after, "processes": left})

    async def store_fault(self, stub, kind: str) -> F.Fault:
        # While work is in flight: a running job (Redis carries its events) or, for the object
        # store, a job about to upload its outputs.
        async def want(job) -> bool:
            if kind == "s3":
                return job.state == S.JOB_STATE_FINALIZING or (
                    job.state == S.JOB_STATE_RUNNING and job.progress.total_steps
                    and job.progress.step >= job.progress.total_steps - 4)
            return job.state == S.JOB_STATE_RUNNING

        job = await self.wait_target(stub, want, 60)
        at = self.now()
        if kind == "redis":
            fault = await asyncio.to_thread(F.restart_redis, self.home)
        else:
            fault = await asyncio.to_thread(F.restart_in_place, self.home, "s3", F.s3_ready(self.home))
        fault.at = at
        if job is not None:
            fault.job, fault.job_state = job.name, state_name(job.state)
        return fault

    async def services_fault(self, stub, down: float = 0.0) -> F.Fault:
        async def want(job) -> bool:
            if down:  # an outage long enough for a running job to finish while no service listens
                return job.state == S.JOB_STATE_RUNNING and job.progress.total_steps > 0 and \
                    job.progress.step >= job.progress.total_steps - 8
            return job.state == S.JOB_STATE_RUNNING

        job = await self.wait_target(stub, want, 60)
        at = self.now()
        fault = await asyncio.to_thread(F.kill_services_and_recover, self.home, down)
        fault.at = at
        if job is not None:
            fault.job, fault.job_state = job.name, state_name(job.state)
        return fault

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def inject(self, stub) -> None:
        for i, kind in enumerate(self.cfg["schedule"]):
            if i:
                await asyncio.sleep(self.cfg["gap"])
            try:
                if kind in ("worker", "rank"):
                    fault = await self.kill_worker(stub, ranks=kind == "rank")
                elif kind in ("redis", "s3"):
                    fault = await self.store_fault(stub, kind)
                elif kind == "outage":
                    fault = await self.services_fault(stub, down=self.cfg.get("outage_seconds", 40.0))
                else:
                    fault = await self.services_fault(stub)
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                fault = F.Fault(kind=kind, at=self.now(), skipped=f"injection failed: {type(exc).__name__}: {exc}")
            self.faults.append(fault)
            log("fault", json.dumps(fault.as_dict())[:300])

    # ---- audit ------------------------------------------------------------------------------
    async def audit(self, channel, stub) -> dict:
        lost, twice, missing, duplicated, failed = [], [], [], [], []
        per_job = {}
        missing_n = duplicated_n = 0
        for name in self.jobs:
            job_id = name.removeprefix("jobs/")
            w = self.watches[name]
            try:
                job = (await self.call(stub.GetJob, S.GetJobRequest(name=name))).job
            except grpc.aio.AioRpcError as exc:
                lost.append({"job": name, "why": f"GetJob {exc.code().name}"})
                continue
            attempts = await self.db(
                "SELECT attempt, state, exit_code, exit_reason, exit_message FROM job_attempts WHERE job_id = $1 "
                "ORDER BY attempt", job_id)
            stored = await history(channel, name) if job.state in TERMINAL else []
            info = {"state": state_name(job.state), "reason": job.state_reason, "attempt": job.attempt,
                    "last_event_seq": job.last_event_seq, "streams": w.streams, "watch_ended": w.ended,
                    "attempts": [dict(a) for a in attempts]}
            per_job[name] = info
            if job.state not in TERMINAL:
                lost.append({"job": name, "why": f"still {state_name(job.state)} at the deadline",
                             "reason": job.state_reason})
                continue
            # Run twice: two attempts that ran to completion (the worker's own exit record in its
            # attempt directory says 0, whether or not its report reached the services), or
            # outputs finalized twice.
            exits = self.exit_records(job_id)
            info["worker_exit_records"] = exits
            completed = sorted({a["attempt"] for a in attempts if a["exit_code"] == 0} |
                               {n for n, code in exits.items() if code == 0})
            finalized = sum(e.reason == "WORKER_SUCCEEDED" for e in stored)
            succeeded = sum(e.state == S.JOB_STATE_SUCCEEDED for e in stored)
            outputs = await self.outputs(channel, job) if job.state == S.JOB_STATE_SUCCEEDED else {}
            info["outputs"] = outputs
            doubled = sorted(p for p, n in outputs.get("paths", {}).items() if n > 1)
            if len(completed) > 1 or finalized > 1 or succeeded > 1 or doubled:
                twice.append({"job": name, "completed_attempts": completed, "worker_succeeded_events": finalized,
                              "succeeded_events": succeeded, "output_paths_twice": doubled})
            if job.state == S.JOB_STATE_SUCCEEDED and (outputs.get("state") != "DATASET_STATE_SEALED"
                                                      or not outputs.get("objects")):
                lost.append({"job": name, "why": f"SUCCEEDED but its outputs are {outputs.get('state')} with "
                                                 f"{outputs.get('objects')} objects"})
            if job.state == S.JOB_STATE_FAILED:
                entry = {"job": name, "reason": job.state_reason, "message": job.state_message[:300],
                         "attempt": job.attempt}
                max_attempts = job.spec.retry_policy.max_attempts if job.spec.HasField("retry_policy") else 3
                entry["clear"] = bool(job.state_reason) and not (
                    job.state_reason in TRANSIENT and job.attempt < max_attempts)
                failed.append(entry)
                # Every job here is valid and succeeds without faults: one that FAILED lost its
                # work to a fault (each injected fault is one DMOD is meant to recover from).
                lost.append({"job": name, "why": f"FAILED {job.state_reason}: {job.state_message[:300]}",
                             "attempts": job.attempt})
            # Events: the store's sequence, then what the live watch delivered.
            seqs = [e.seq for e in stored]
            gaps = sorted(set(range(1, job.last_event_seq + 1)) - set(seqs))
            not_delivered = w.missing(job.last_event_seq)
            by_seq = {e.seq: e for e in stored}
            differ = [s for s, e in w.events.items() if s in by_seq and (
                e.state != by_seq[s].state or e.reason != by_seq[s].reason or e.attempt != by_seq[s].attempt)]
            dups = w.duplicates()
            n_missing = len(gaps) + len(not_delivered) + len(differ)
            n_dup = len(dups["same_stream"]) + len(dups["after_resume"])
            missing_n += n_missing
            duplicated_n += n_dup
            if n_missing:
                missing.append({"job": name, "store_gaps": gaps, "not_delivered": not_delivered,
                                "differ_from_store": differ, "last_event_seq": job.last_event_seq,
                                "stream_errors": w.errors[-5:]})
            if n_dup:
                duplicated.append({"job": name, **dups, "streams": w.streams})
            info.update(events_stored=len(stored), events_delivered=len(w.delivered))
        return {"lost": lost, "twice": twice, "missing": missing, "missing_n": missing_n,
                "duplicated": duplicated, "duplicated_n": duplicated_n, "failed": failed, "jobs": per_job}

    async def outputs(self, channel, job: jobs_pb2.Job) -> dict:
        """The output dataset as stored: its state and how often each path is listed."""
        from dmod.v1 import datasets_pb2, datasets_pb2_grpc

        stub = datasets_pb2_grpc.DatasetServiceStub(channel)
        ds = (await self.call(stub.GetDataset, datasets_pb2.GetDatasetRequest(name=job.output_dataset))).dataset
        paths: dict[str, int] = {}
        token = ""
        while True:
            reply = await self.call(stub.ListObjects, datasets_pb2.ListObjectsRequest(
                parent=job.output_dataset, page_size=1000, page_token=token))
            for o in reply.objects:
                paths[o.path] = paths.get(o.path, 0) + 1
            token = reply.next_page_token
            if not token:
                break
        return {"dataset": job.output_dataset, "state": datasets_pb2.DatasetState.Name(ds.state), "objects":
                sum(paths.values()), "paths": paths}

    def exit_records(self, job_id: str) -> dict[int, int]:
        """attempt -> exit code from each attempt directory's exit.json (written by the worker
        before it reports its exit)."""
        roots = [self.home / "jobs"]
        try:
            from dmod.services.jobs.launchers.local import jobs_root

            roots.insert(0, jobs_root(self.home, os.environ.get("DMOD_JOBS_WORK_DIR", "")))
        except ImportError:
            pass
        out = {}
        for root in roots:
            for path in sorted((root / job_id).glob("attempt-*/exit.json")) + \
                    sorted((root / job_id).glob("attempt-*/work/exit.json")):
                attempt = next(p.name for p in path.parents if p.name.startswith("attempt-"))
                try:
                    out[int(attempt.removeprefix("attempt-"))] = int(json.loads(path.read_text())["exit_code"])
                except (OSError, ValueError, KeyError):
                    pass
            if out:
                break
        return out

    # ---- the run ----------------------------------------------------------------------------
    async def jobs_phase(self, workdir: Path) -> dict:
        gateway = self.state.gateway
        async with grpc.aio.insecure_channel(gateway) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            t = time.monotonic()
            names = await self.upload_inputs(channel, workdir)
            self.timings["upload_inputs_s"] = round(time.monotonic() - t, 2)
            self.t0 = time.monotonic()
            await self.submit(stub, names)
            self.timings["submit_s"] = self.now()
            log(f"submitted {len(self.jobs)} jobs")
            stop = asyncio.Event()
            watchers = []
            for name in self.jobs:
                self.watches[name] = Watch(name)
                watchers.append(asyncio.get_running_loop().create_task(watch(channel, self.watches[name], stop)))
            await self.inject(stub)
            self.timings["faults_done_s"] = self.now()
            deadline = time.monotonic() + self.cfg["deadline"]
            while time.monotonic() < deadline:
                snap = await self.snapshot(stub)
                if len(snap) == len(self.jobs) and all(j.state in TERMINAL for j in snap.values()):
                    break
                await asyncio.sleep(1.0)
            self.timings["jobs_final_s"] = self.now()
            # The watches end by themselves after each job's terminal event (give them time to).
            try:
                await asyncio.wait_for(asyncio.gather(*watchers, return_exceptions=True), 30)
            except TimeoutError:
                pass
            stop.set()
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            if self._bg:
                await asyncio.gather(*list(self._bg), return_exceptions=True)
            result = await self.audit(channel, stub)
            self.timings["audit_s"] = self.now()
            return result


def run(cfg: dict, out: Path | None = RESULTS, home: Path | None = None, security: bool = True,
        keep: bool = False) -> dict:
    """The whole harness; returns the report (also written to `out` when given)."""
    started = time.perf_counter()
    own_home = home is None
    home = Path(home or tempfile.mkdtemp(prefix="dmod-chaos-"))
    workdir = Path(tempfile.mkdtemp(prefix="dmod-chaos-work-"))
    os.environ.setdefault("DMOD_NODE_CPUS", "4")
    os.environ["DMOD_HOME"] = str(home)
    stack = Stack(home, fixed_ports=False, log=lambda *a: None)
    report: dict = {"generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "config": {k: v for k, v in cfg.items()}, "host": {"cpus": os.cpu_count()},
                    "commit": _commit()}
    try:
        t = time.perf_counter()
        state = stack.up()
        os.environ["DMOD_GATEWAY"] = state.gateway
        report["timings"] = {"stack_up_s": round(time.perf_counter() - t, 2)}
        log(f"stack up at {state.gateway} ({home})")
        chaos = Chaos(home, cfg)
        result = asyncio.run(chaos.jobs_phase(workdir))
        report["timings"].update(chaos.timings)
        sec: dict = {}
        if security:
            from chaos import security as sec_mod

            t = time.perf_counter()
            try:
                sec = sec_mod.run_all(load_state(home), cfg["fuzz"])
            except Exception as exc:  # noqa: BLE001 - recorded: the counters say "not run"
                sec = {"suites": {"error": f"{type(exc).__name__}: {exc}"}}
            report["timings"]["security_s"] = round(time.perf_counter() - t, 2)
        report.update(summarize(result, chaos, sec))
    finally:
        if not keep:
            stack.purge() if own_home else stack.down()
            shutil.rmtree(workdir, ignore_errors=True)
    report["timings"]["total_s"] = round(time.perf_counter() - started, 2)
    report["table"] = table(report).splitlines()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return report


def _commit() -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" (+ uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def summarize(result: dict, chaos: Chaos, sec: dict) -> dict:
    jobs = result["jobs"]
    states: dict[str, int] = {}
    for info in jobs.values():
        states[info["state"]] = states.get(info["state"], 0) + 1
    retried = {n: i["attempt"] for n, i in jobs.items() if i["attempt"] > 1}
    ended_by: dict[str, int] = {}  # why attempts that were retried ended
    for info in jobs.values():
        for a in info["attempts"]:
            if a["attempt"] < info["attempt"]:
                ended_by[a["exit_reason"] or a["state"]] = ended_by.get(a["exit_reason"] or a["state"], 0) + 1
    counters = {
        "internal_or_unknown": sec.get("internal_or_unknown", "not run"),
        "leaks": sec.get("leaks", "not run"),
        "jobs_lost": len(result["lost"]),
        "jobs_run_twice": len(result["twice"]),
        "events_missing": result["missing_n"],
        "events_duplicated": result["duplicated_n"],
    }
    return {
        "counters": counters,
        "jobs_failed_unclear": sum(not f["clear"] for f in result["failed"]),
        "details": {
            "jobs": {"submitted": len(chaos.jobs), "final_states": states, "retried": retried,
                     "retried_attempts_ended_by": ended_by,
                     "failed": result["failed"], "lost": result["lost"], "run_twice": result["twice"],
                     "orphan_processes": chaos.orphans,
                     "watch_streams": sum(w.streams for w in chaos.watches.values()),
                     "events_delivered": sum(len(w.delivered) for w in chaos.watches.values())},
            "events": {"missing": result["missing"], "duplicated": result["duplicated"]},
            "faults": [f.as_dict() for f in chaos.faults],
            "security": sec.get("suites", {}),
            "per_job": jobs,
        },
    }


def table(report: dict) -> str:
    c = report["counters"]
    d = report["details"]
    rows = [("counter", "value", "detail")]
    sec = d.get("security", {})
    rows.append(("internal_or_unknown", str(c["internal_or_unknown"]), sec.get("fuzz", {}).get("summary", "")))
    rows.append(("leaks", str(c["leaks"]), "; ".join(f"{k}: {v.get('summary', v.get('status', ''))}"
                                                      for k, v in sec.items() if k != "fuzz")))
    j = d["jobs"]
    rows.append(("jobs_lost", str(c["jobs_lost"]), (f"{j['submitted']} jobs: {j['final_states']}; "
                                                   f"{len(j['retried'])} retried {j['retried_attempts_ended_by']}")))
    rows.append(("jobs_run_twice", str(c["jobs_run_twice"]), f"orphaned processes: {len(j['orphan_processes'])}"))
    rows.append(("events_missing", str(c["events_missing"]), (f"{j['events_delivered']} events delivered on "
                                                             f"{j['watch_streams']} WatchJob streams")))
    rows.append(("events_duplicated", str(c["events_duplicated"]), ""))
    kinds: dict[str, int] = {}
    for f in d["faults"]:
        if not f.get("skipped"):
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    rows.append(("faults injected", str(sum(kinds.values())), ", ".join(f"{k} x{v}" for k, v in kinds.items())))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]}" for r in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--short", action="store_true", help="CI size (6 jobs, one fault of each kind, fuzz 20)")
    p.add_argument("--jobs", type=int)
    p.add_argument("--fuzz", type=int, help="fuzz messages per RPC")
    p.add_argument("--schedule", help="comma-separated faults: worker,rank,redis,s3,services,outage")
    p.add_argument("--outage", type=float, help="seconds the services stay down in an 'outage' fault (40; --short 35)")
    p.add_argument("--no-security", action="store_true", help="skip the fuzz/authz/probe/privilege suites")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--keep", action="store_true", help="leave the stack running (its home is printed)")
    args = p.parse_args(argv)
    cfg = dict(SHORT if args.short else FULL)
    if args.jobs:
        cfg["jobs"] = args.jobs
    if args.fuzz is not None:
        cfg["fuzz"] = args.fuzz
    if args.outage is not None:
        cfg["outage_seconds"] = args.outage
    if args.schedule is not None:
        cfg["schedule"] = [s for s in args.schedule.split(",") if s]
    report = run(cfg, out=args.out, security=not args.no_security, keep=args.keep)
    print(table(report))
    print(f"written: {args.out}")
    bad = [k for k in COUNTERS if report["counters"][k] != 0]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
