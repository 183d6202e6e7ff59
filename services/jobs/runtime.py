"""What JobService and MonitorService share inside one process: settings, the store, the event
hub, the launcher (local workers are observed by the process that spawned them) and tokens."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc

from dmod.services.jobs.config import JobsSettings
from dmod.services.jobs.datasets import Datasets
from dmod.services.jobs.events import EventHub
from dmod.services.jobs.launchers import create_launcher
from dmod.services.jobs.launchers.base import Launcher
from dmod.services.jobs.store import JobStore
from dmod.services.runtime.app import App
from dmod.services.runtime.auth import TokenIssuer
from dmod.services.runtime.db import create_pool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# A worker token outlives its job's timeout by this much (launch, the exit report after a timeout).
WORKER_TOKEN_MARGIN_SECONDS = 900


class JobsRuntime:
    def __init__(self, app: App):
        self.app = app
        self.cfg = JobsSettings()
        self.me = self.cfg.instance_id()
        self.pool_name = self.cfg.pool
        self.launcher: Launcher = create_launcher(app.settings.launcher, app.settings)
        self.hub = EventHub(app.redis())
        self.store: JobStore | None = None
        self.leases: JobStore | None = None  # the same store on a connection of its own (leases)
        key = app.settings.jwt_private_key_file
        self.issuer = TokenIssuer(key.read_bytes(), app.settings.token_ttl_seconds) if key and key.exists() else None
        self.scratch = Path(self.cfg.scratch_dir) if self.cfg.scratch_dir else Path(app.settings.home) / "scratch/jobs"
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()
        self._ready = False
        self.db = None
        self.lease_db = None
        self._users: set[str] = set()

    async def close(self) -> None:
        await self.launcher.close()
        for pool in (self.db, self.lease_db):
            if pool is not None:
                await pool.close()
        self.db = self.lease_db = None

    def acquire(self, user: str) -> None:
        self._users.add(user)

    async def release(self, user: str) -> None:
        """A service of this process stops using the runtime; the last one closes it."""
        self._users.discard(user)
        if not self._users:
            await self.close()

    async def init(self) -> None:
        async with self._lock:
            if self._ready:
                return
            await self.app.migrate("jobs", MIGRATIONS)
            # A pool of its own: the scheduler's bursts must not starve the other services'.
            self.db = await create_pool(self.app.settings.database_url, 2, self.cfg.db_pool_max)
            self.store = JobStore(self.db, self.hub.publish_events)
            # Lease renewals never queue behind job work for a connection: a burst of jobs
            # holding every connection of the pool must not let their own leases expire.
            self.lease_db = await create_pool(self.app.settings.database_url, 1, 1)
            self.leases = JobStore(self.lease_db, self.hub.publish_events)
            self.hub.start(self.app.spawn)
            await self.hub.wait_ready()
            self._ready = True

    # ---- identities -------------------------------------------------------------------------
    def worker_token(self, row, timeout_seconds: float = 0) -> str:
        """The token of one attempt's worker (`row`: the job's row at launch).

        It names the job, the attempt, the resolved input datasets and the output dataset, and
        admits only the worker's own calls (runtime/scopes.py); JobService and DatasetService refuse
        it once the attempt is no longer the job's current one. It lives as long as the job may run
        (its timeout) plus WORKER_TOKEN_MARGIN_SECONDS for launching and the exit report; a job
        without a timeout gets DMOD_JOBS_WORKER_TOKEN_TTL_SECONDS."""
        if self.issuer is None:
            return ""
        resolved = row["resolved"]
        if isinstance(resolved, str):
            resolved = json.loads(resolved or "{}")
        inputs = sorted({name for name in (resolved or {}).values() if isinstance(name, str) and name})
        ttl = int(timeout_seconds) + WORKER_TOKEN_MARGIN_SECONDS if timeout_seconds > 0 \
            else self.cfg.worker_token_ttl_seconds
        token, _ = self.issuer.issue(row["owner"], job=f"jobs/{row['id']}", ttl_seconds=ttl,
                                     extra={"attempt": int(row["attempt"]), "inputs": inputs,
                                            "output": row["output_dataset"] or ""})
        return token

    def owner_metadata(self, owner: str) -> tuple:
        """Metadata for calls the scheduler makes on behalf of a job's owner."""
        if self.issuer is None:
            return ()
        cached = self._tokens.get(owner)
        if cached is None or cached[1] < time.time() + 60:
            token, exp = self.issuer.issue(owner, ttl_seconds=900)
            cached = self._tokens[owner] = (token, exp)
        return (("authorization", f"Bearer {cached[0]}"),)

    def datasets(self, owner: str) -> Datasets:
        return Datasets(self.app.channel(), self.owner_metadata(owner))

    def channel(self) -> grpc.aio.Channel:
        return self.app.channel()

    @property
    def worker_server(self) -> str:
        """Where workers report: the gateway (any JobService instance behind it will do)."""
        return self.app.settings.gateway or self.app.address


def get_runtime(app: App, user: str) -> JobsRuntime:
    runtime = getattr(app, "_jobs_runtime", None)
    if runtime is None:
        runtime = JobsRuntime(app)
        app._jobs_runtime = runtime
    runtime.acquire(user)
    return runtime
