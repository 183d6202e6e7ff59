"""Decisions shared by the scheduler, the monitor and the worker-report handler: fail a job or
retry it (only for transient, infrastructure reasons, within the retry policy, with exponential
backoff), always via optimistic transitions that re-read on a lost race."""
from __future__ import annotations

import datetime as dt
import logging

from dmod.services.jobs import states
from dmod.services.jobs.config import JobsSettings
from dmod.services.jobs.store import JobStore
from dmod.v1 import jobs_pb2

log = logging.getLogger("dmod.jobs.lifecycle")


def retry_policy(spec: jobs_pb2.JobSpec, cfg: JobsSettings) -> tuple[int, float, float]:
    """(max attempts, initial backoff seconds, multiplier)."""
    if spec.HasField("retry_policy"):
        rp = spec.retry_policy
        return (rp.max_attempts or 1, rp.initial_backoff.ToNanoseconds() / 1e9 if rp.HasField("initial_backoff")
                else cfg.default_initial_backoff_seconds, rp.backoff_multiplier or cfg.default_backoff_multiplier)
    return cfg.default_max_attempts, cfg.default_initial_backoff_seconds, cfg.default_backoff_multiplier


def backoff_seconds(attempt: int, initial: float, multiplier: float, cap: float = 300.0) -> float:
    """Delay before attempt `attempt + 1` after attempt `attempt` failed (attempt counts from 1)."""
    return min(cap, initial * multiplier ** max(0, attempt - 1))


async def fail_or_retry(store: JobStore, cfg: JobsSettings, job_id: str, *, attempt: int, reason: str,
                        message: str, expect: frozenset[int] = states.WORKER_STATES, tries: int = 5):
    """Attempt `attempt` of the job failed with `reason`. Retry (back to QUEUED, next attempt) when
    the reason is transient and attempts remain, else FAILED. No-op if the job moved on (another
    attempt, cancelled, finished). Returns the new row or None."""
    for _ in range(tries):
        row = await store.get(job_id)
        if row is None or row["attempt"] != attempt or row["state"] not in expect:
            return None
        spec = jobs_pb2.JobSpec.FromString(row["spec"])
        max_attempts, initial, multiplier = retry_policy(spec, cfg)
        if reason in states.TRANSIENT_REASONS and attempt < max_attempts:
            delay = backoff_seconds(attempt, initial, multiplier)
            now = dt.datetime.now(dt.UTC)
            new = await store.transition(
                row, states.QUEUED, reason=reason,
                message=f"attempt {attempt} failed ({message}); retry {attempt + 1} of {max_attempts} in {delay:.1f}s",
                attempt=attempt + 1, not_before=now + dt.timedelta(seconds=delay), queued_time=now,
                progress_step=0, progress_total=0)
        else:
            if reason in states.TRANSIENT_REASONS and max_attempts > 1:
                message = f"{message} (attempt {attempt} of {max_attempts}, no retries left)"
            new = await store.transition(row, states.FAILED, reason=reason, message=message)
        if new is not None:
            return new
    log.warning("could not record failure of %s after %d tries", job_id, tries)
    return None
