"""What a job-scoped (worker) token may do, decided in one place.

A worker token (`Principal.job` set, issued by JobsRuntime.worker_token) carries the job, its
attempt, the job's resolved input datasets and its output dataset. It may call only the methods a
worker agent calls (services/worker/agent: GetJob of its job, ReportWorkerEvents for its job,
ListObjects/DownloadObject of its inputs and output, UploadObject(s)/DeleteObject into its
output); every other method is PERMISSION_DENIED (reason TOKEN_SCOPE) before any service code
runs. The services then check the resource (which job, which dataset) and that the token's attempt
is still the job's current attempt (`require_current_attempt`), so a token stops working as soon as
its attempt is over, whatever its expiry.
"""
from __future__ import annotations

from dmod.services.runtime.auth import Principal
from dmod.services.runtime.errors import PermissionDenied

# Exactly what services/worker/agent calls with its token.
WORKER_METHODS = frozenset({
    "/dmod.v1.JobService/GetJob",
    "/dmod.v1.JobService/ReportWorkerEvents",
    "/dmod.v1.DatasetService/ListObjects",
    "/dmod.v1.DatasetService/DownloadObject",
    "/dmod.v1.DatasetService/DownloadObjects",
    "/dmod.v1.DatasetService/UploadObject",
    "/dmod.v1.DatasetService/UploadObjects",
    "/dmod.v1.DatasetService/DeleteObject",
})

# Job states in which the attempt's worker may still move data (it has been launched and has not
# been reaped): STARTING, RUNNING, CANCELLING (dmod.v1.JobState numbers; the jobs table's values).
WORKER_DATA_STATES = frozenset({6, 7, 11})


def check(method: str, principal: Principal | None) -> None:
    """Central gate, called by the interceptor for every authenticated call."""
    if principal is not None and principal.job is not None and method not in WORKER_METHODS:
        raise PermissionDenied(f"a worker token (scoped to {principal.job}) may not call {method}",
                               reason="TOKEN_SCOPE")


def attempt_of(principal: Principal) -> int | None:
    value = principal.claims.get("attempt")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def inputs_of(principal: Principal) -> frozenset[str]:
    value = principal.claims.get("inputs")
    return frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list) else frozenset()


def output_of(principal: Principal) -> str:
    value = principal.claims.get("output")
    return value if isinstance(value, str) else ""


def require_current_attempt(principal: Principal, attempt: int, state: int | None = None) -> None:
    """A worker token acts only for the job's current attempt (and, for data, while it runs)."""
    if principal.job is None:
        return
    mine = attempt_of(principal)
    if mine is None or mine != attempt:
        raise PermissionDenied(f"this worker token is for attempt {mine} of {principal.job}; the current attempt is "
                               f"{attempt}", reason="TOKEN_SCOPE")
    if state is not None and state not in WORKER_DATA_STATES:
        raise PermissionDenied(f"{principal.job} no longer runs a worker; its token cannot move data",
                               reason="TOKEN_SCOPE")


async def require_live_worker(conn, principal: Principal) -> None:
    """Datasets side of require_current_attempt: reads the job's row (the jobs table shares the
    database). A job that does not exist (or a database without jobs) admits no worker token."""
    if principal.job is None:
        return
    import asyncpg

    try:
        row = await conn.fetchrow("SELECT attempt, state, owner FROM jobs WHERE id = $1",
                                  principal.job.removeprefix("jobs/"))
    except asyncpg.UndefinedTableError:
        row = None
    if row is None or row["owner"] != principal.user:
        raise PermissionDenied(f"{principal.job} is not a job this token can act for", reason="TOKEN_SCOPE")
    require_current_attempt(principal, row["attempt"], row["state"])
