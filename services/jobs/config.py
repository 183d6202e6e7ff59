"""Scheduler settings (`DMOD_JOBS_*` environment variables) on top of the shared runtime settings."""
from __future__ import annotations

import os
import socket
import uuid

from pydantic_settings import BaseSettings, SettingsConfigDict


class JobsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DMOD_JOBS_", extra="ignore")

    # A pool is a set of nodes and the schedulers that drive its jobs (local: this host). Jobs
    # created through a scheduler belong to its pool; only schedulers of that pool drive them.
    pool: str = "default"
    # Identity of this scheduler instance in job leases; empty = random per process. A stable
    # id lets a restarted instance take its jobs back at once instead of after the lease TTL.
    instance: str = ""
    lease_seconds: float = 6.0
    # CPUs of the local node = DMOD_NODE_CPUS (or os.cpu_count()) x oversubscribe.
    oversubscribe: float = 1.0
    # Per-user limit of concurrently allocated CPUs (0 = unlimited).
    user_cpu_quota: int = 0
    # Jobs driven concurrently through VALIDATING/STAGING/PARTITIONING/FINALIZING per instance.
    concurrency: int = 32
    # A worker silent for this long (no heartbeat, no event) is lost.
    heartbeat_timeout_seconds: float = 30.0
    # After a worker process ended without reporting its exit, wait this long for the report.
    exit_report_grace_seconds: float = 3.0
    # Scratch space for pre-flight validation (default <DMOD_HOME>/scratch/jobs).
    scratch_dir: str = ""
    # Where local workers keep their job directories (default <DMOD_HOME>/jobs).
    work_dir: str = ""
    # Default retry policy (a job's spec.retry_policy overrides it).
    default_max_attempts: int = 3
    default_initial_backoff_seconds: float = 1.0
    default_backoff_multiplier: float = 2.0
    # Local workers run this much "nicer" (lower CPU priority) than the control plane, so a
    # busy host still answers API calls and schedules promptly (0 = same priority).
    worker_nice: int = 10
    # ... and, on Linux, under SCHED_IDLE: they get the CPU the control plane leaves. A nice
    # value alone is not enough: CPU shares are per process, and ten jobs' workers at nice 10
    # outweighed the API server (watch streams lagged by 0.5 s while jobs wrote their outputs).
    worker_sched_idle: bool = True
    # Progress events are recorded at most this often per worker (the final step always).
    progress_interval_seconds: float = 0.5
    # Connections of the scheduler's own Postgres pool.
    db_pool_max: int = 20
    # Worker token lifetime.
    worker_token_ttl_seconds: int = 86_400

    def instance_id(self) -> str:
        if not self.instance:
            self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        return self.instance
