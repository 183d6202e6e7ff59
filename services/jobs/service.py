"""JobService: the scheduler's API (jobs, watch, logs, nodes, worker reports)."""
from __future__ import annotations

import logging

from dmod.services.jobs import convert, pagination, states
from dmod.services.jobs.reports import WorkerReports
from dmod.services.jobs.runtime import JobsRuntime, get_runtime
from dmod.services.jobs.scheduler import Scheduler
from dmod.services.jobs.validation import normalized, validate_create
from dmod.services.jobs.watch import stream_logs, watch_job
from dmod.services.runtime import scopes
from dmod.services.runtime.app import App
from dmod.services.runtime.auth import Principal, current_principal, require_job_scope
from dmod.services.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    quote,
)
from dmod.v1 import jobs_pb2, jobs_pb2_grpc

log = logging.getLogger("dmod.jobs")

MAX_PAGE = 500


def parse_name(name: str, field: str = "name") -> str:
    job_id = name.removeprefix("jobs/")
    if not name.startswith("jobs/") or not job_id or "/" in job_id or len(job_id) > 64:
        raise InvalidArgument((field, f"must look like jobs/{{id}}, got {quote(name)}"))
    return job_id


def can_read(principal: Principal, row) -> bool:
    if principal.job is not None:
        return principal.job == convert.job_name(row["id"])
    return principal.is_admin or principal.user == row["owner"]


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, app: App, rt: JobsRuntime):
        self.app = app
        self.rt = rt
        self.scheduler = Scheduler(rt)
        self.reports = WorkerReports(rt)

    async def start(self) -> None:
        await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.rt.release("jobs")

    async def _row(self, name: str, field: str = "name", write: bool = False):
        job_id = parse_name(name, field)
        row = await self.rt.store.get(job_id)
        principal = current_principal()
        if row is None or not can_read(principal, row):
            raise NotFound(f"{name} not found", reason="JOB_NOT_FOUND")
        if write and principal.job is not None:
            raise PermissionDenied("a worker token cannot change jobs", reason="TOKEN_SCOPE")
        scopes.require_current_attempt(principal, row["attempt"])
        return row

    async def _job(self, row) -> jobs_pb2.Job:
        if row["state"] in (states.PENDING, states.VALIDATING, states.STAGING, states.PARTITIONING):
            return convert.job_message(row)  # no allocation before QUEUED
        return convert.job_message(row, await self.rt.store.allocations(row["id"], row["attempt"]))

    # ---- CRUD ---------------------------------------------------------------------------------
    async def CreateJob(self, request, context):
        principal = current_principal()
        if principal.job is not None:
            raise PermissionDenied("a worker token cannot create jobs", reason="TOKEN_SCOPE")
        violations = validate_create(request)
        if violations:
            raise InvalidArgument(violations)
        spec = normalized(request.spec)
        row, created = await self.rt.store.create(
            owner=principal.user, request_id=request.request_id, spec=spec, labels=dict(request.labels),
            pool=self.rt.pool_name, launcher=self.rt.launcher.name, lease_owner=self.rt.me,
            lease_seconds=self.rt.cfg.lease_seconds)
        if created:
            self.scheduler.own(row["id"], seq=row["last_event_seq"], row=row, new=True)
        return jobs_pb2.CreateJobResponse(job=await self._job(row))

    async def GetJob(self, request, context):
        return jobs_pb2.GetJobResponse(job=await self._job(await self._row(request.name)))

    async def ListJobs(self, request, context):
        principal = current_principal()
        if request.page_size < 0:
            raise InvalidArgument(("page_size", "must not be negative"))
        size = min(request.page_size or 50, MAX_PAGE)
        owner = request.owner
        if principal.job is not None:
            raise PermissionDenied("a worker token cannot list jobs", reason="TOKEN_SCOPE")
        if not principal.is_admin:
            if owner and owner != principal.user:
                raise PermissionDenied("only admins list other users' jobs", reason="NOT_JOB_OWNER")
            owner = principal.user
        wanted = sorted(set(request.states))
        for s in wanted:
            if s not in jobs_pb2.JobState.values() or s == jobs_pb2.JOB_STATE_UNSPECIFIED:
                raise InvalidArgument(("states", f"unknown state {s}"))
        digest = pagination.filter_digest(owner, wanted, sorted(request.labels.items()))
        after = pagination.decode(request.page_token, digest)
        rows = await self.rt.store.list(owner=owner or None, states_=wanted, labels=dict(request.labels), after=after,
                                        limit=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        allocs = await self.rt.store.allocations_for(rows)
        token = pagination.encode(rows[-1]["create_time"], rows[-1]["id"], digest) if more else ""
        return jobs_pb2.ListJobsResponse(jobs=[convert.job_message(r, allocs.get(r["id"], ())) for r in rows],
                                         next_page_token=token)

    # ---- transitions --------------------------------------------------------------------------
    async def CancelJob(self, request, context):
        row = await self._row(request.name, write=True)
        for _ in range(10):
            state = row["state"]
            if state in (states.CANCELLING, states.CANCELLED):
                break
            if not states.cancellable(state):
                raise FailedPrecondition(f"{request.name} is {states.name(state)}: it cannot be cancelled",
                                         reason="JOB_NOT_CANCELLABLE")
            new = await self.rt.store.transition(row, states.CANCELLING, reason="CANCEL_REQUESTED",
                                                 message=f"cancelled by {current_principal().user}")
            if new is not None:
                row = new
                if row["lease_owner"] == self.rt.me:
                    self.scheduler.kick(row["id"])
                break
            row = await self.rt.store.get(row["id"])
        return jobs_pb2.CancelJobResponse(job=await self._job(row))

    async def RetryJob(self, request, context):
        row = await self._row(request.name, write=True)
        for _ in range(10):
            if not states.retryable(row["state"]):
                raise FailedPrecondition(f"{request.name} is {states.name(row['state'])}: only FAILED or CANCELLED "
                                         f"jobs can be retried", reason="JOB_NOT_RETRYABLE")
            attempt = row["attempt"] + 1
            new = await self.rt.store.transition(
                row, states.PENDING, reason="RETRY_REQUESTED",
                message=f"attempt {attempt} requested by {current_principal().user}", attempt=attempt,
                progress_step=0, progress_total=0, end_time=None, not_before=None, lease_owner=self.rt.me,
                lease_expires=convert_now_plus(self.rt.cfg.lease_seconds))
            if new is not None:
                self.scheduler.own(new["id"], seq=new["last_event_seq"])
                return jobs_pb2.RetryJobResponse(job=await self._job(new))
            row = await self.rt.store.get(row["id"])
        raise FailedPrecondition(f"{request.name} keeps changing; try again", reason="CONCURRENT_UPDATE")

    # ---- streams ------------------------------------------------------------------------------
    async def WatchJob(self, request, context):
        job_id = parse_name(request.name)
        principal = current_principal()

        def check(row) -> None:
            if row is None or not can_read(principal, row):
                raise NotFound(f"{request.name} not found", reason="JOB_NOT_FOUND")
            if request.after_seq < 0:
                raise InvalidArgument(("after_seq", "must not be negative"))

        async for item in watch_job(self.rt, job_id, request.after_seq, self._job, check):
            yield item

    async def StreamJobLogs(self, request, context):
        row = await self._row(request.name)
        if request.after_seq < 0:
            raise InvalidArgument(("after_seq", "must not be negative"))
        async for item in stream_logs(self.rt, row, request.after_seq, request.follow):
            yield item

    async def ListNodes(self, request, context):
        rows = await self.rt.store.pool.fetch("SELECT * FROM job_nodes WHERE pool = $1 ORDER BY ordinal, name",
                                              self.rt.pool_name)
        return jobs_pb2.ListNodesResponse(nodes=[jobs_pb2.Node(
            name=f"nodes/{r['name']}", hostname=r["hostname"], cpus=r["cpus"], memory_bytes=r["memory_bytes"],
            allocated_cpus=r["allocated_cpus"], allocated_memory_bytes=r["allocated_memory_bytes"], ready=r["ready"])
            for r in rows])

    async def ReportWorkerEvents(self, request_iterator, context):
        principal = current_principal()
        # Workers report with their job's token; an admin may (the worker of a stack without a
        # signing key calls as the local default user). A job's owner may not forge its events.
        if principal.job is None and not principal.is_admin:
            raise PermissionDenied("only a job's worker (its per-job token) reports worker events",
                                   reason="TOKEN_SCOPE")
        if principal.job is not None:
            request_iterator = _own_attempt_only(request_iterator, principal)
        await self.reports.handle(request_iterator, principal, self._check_report_scope)
        return jobs_pb2.ReportWorkerEventsResponse()

    async def _check_report_scope(self, principal: Principal, name: str):
        job_id = parse_name(name, "job")
        require_job_scope(principal, name)
        row = await self.rt.store.get(job_id)
        if row is None or not can_read(principal, row):
            raise NotFound(f"{name} not found", reason="JOB_NOT_FOUND")
        scopes.require_current_attempt(principal, row["attempt"])
        return row


async def _own_attempt_only(requests, principal: Principal):
    """A worker token reports for its own attempt only (never another attempt of its job)."""
    mine = scopes.attempt_of(principal)
    async for req in requests:
        if req.attempt and req.attempt != mine:
            raise PermissionDenied(f"this worker token is for attempt {mine}, not {req.attempt}",
                                   reason="TOKEN_SCOPE")
        yield req


def convert_now_plus(seconds: float):
    import datetime as dt

    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


async def create_servicer(app: App) -> JobServicer:
    rt = get_runtime(app, "jobs")
    await rt.init()
    return JobServicer(app, rt)

