"""Queue order: priority with aging (+10 per full idle hour) and the per-user CPU quota."""
from __future__ import annotations

import math
from dataclasses import dataclass

AGING_PER_HOUR = 10


def effective_priority(priority: int, queued_seconds: float) -> int:
    """A job's priority grows by 10 for every full hour it has waited in the queue."""
    return priority + AGING_PER_HOUR * max(0, math.floor(queued_seconds / 3600.0))


@dataclass(frozen=True)
class Waiting:
    job_id: str
    owner: str
    priority: int
    queued_at: float  # epoch seconds
    cpus: int


def order(jobs: list[Waiting], now: float) -> list[Waiting]:
    """Highest effective priority first; ties: longest waiting first, then id."""
    return sorted(jobs, key=lambda j: (-effective_priority(j.priority, now - j.queued_at), j.queued_at, j.job_id))


def within_quota(allocated: int, requested: int, quota: int) -> bool:
    """quota 0 = unlimited; otherwise the user's allocated CPUs may not exceed it."""
    return quota <= 0 or allocated + requested <= quota
