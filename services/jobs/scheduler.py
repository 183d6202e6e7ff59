"""The scheduler: drives the jobs this instance holds a lease on through their states.

Ownership: a job belongs to one scheduler instance of its pool at a time (`lease_owner`), valid
while the instance's heartbeat row (`job_schedulers`, renewed every lease/3 s on a connection of
its own) is. CreateJob gives the new job to the instance that received it; jobs of an instance
whose heartbeat expired (it crashed) are claimed by the others, or resumed by the restarted one. Every action is
idempotent and every transition optimistic, so a takeover mid-step is safe: launching first asks
the launcher whether the attempt already runs (no double launch), dataset creation uses
request ids.

Per job, one task at a time runs `step()` for the job's current state until the job waits for
something else (QUEUED: the allocator; RUNNING: the worker/monitor). Events from any process
(Redis) wake the owner's task.

Allocation: one allocator task per instance takes the queued jobs it owns in priority order
(aging +10/hour), checks the per-user quota and the paradigm, and commits allocations for a
batch of jobs in one transaction with the pool's node rows locked (FOR UPDATE), so concurrent
allocators of the same pool never over-commit. Strict priority: a job that does not fit blocks
those behind it (no backfill, so big jobs are not starved); a job that can never fit fails in
VALIDATING.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time

import asyncpg
import grpc

from dmod.services.jobs import allocation, lifecycle, queueing, states
from dmod.services.jobs.admission import Admission
from dmod.services.jobs.datasets import DatasetError
from dmod.services.jobs.launchers.base import LaunchError, LaunchHandle, LaunchRequest, Slice
from dmod.services.jobs.preflight import Preflight, ValidationFailed
from dmod.services.jobs.runtime import JobsRuntime
from dmod.services.jobs.auto_evaluation import start_evaluation
from dmod.services.jobs.staging import StagingFailed, create_output, create_partition
from dmod.services.jobs.store import Coalescer, TransitionBatcher
from dmod.v1 import jobs_pb2

log = logging.getLogger("dmod.jobs.scheduler")

MAX_STEP_FAILURES = 8


class Transient(Exception):
    """Try the step again later."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Scheduler:
    def __init__(self, rt: JobsRuntime):
        self.rt = rt
        self.cfg = rt.cfg
        self.owned: set[str] = set()
        self.tasks: dict[str, asyncio.Task] = {}
        self.dirty: set[str] = set()
        self.known_seq: dict[str, int] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.failures: dict[str, int] = {}
        self.alloc_wake = asyncio.Event()
        self.heavy = asyncio.Semaphore(self.cfg.concurrency)
        self._alloc_timer: asyncio.TimerHandle | None = None
        self._batcher: TransitionBatcher | None = None
        self._nodes_read: asyncio.Future | None = None
        self.admission = Admission(self.kick)

    @property
    def batcher(self) -> TransitionBatcher:
        if self._batcher is None or self._batcher.store is not self.store:
            store = self.store
            self._batcher = TransitionBatcher(store, on_moved=self._moved)
            # Launch bookkeeping of the jobs launched together (an allocator batch) shares statements.
            self._attempt = Coalescer(store.attempts_batch)
            self._record_launching = Coalescer(store.record_launching_batch)
            self._allocations = Coalescer(store.allocations_batch)
            self._record_handle = Coalescer(store.record_handle_batch)
        return self._batcher

    @property
    def store(self):
        return self.rt.store

    async def start(self) -> None:
        # A heartbeat before the first CreateJob: the jobs it leases to this instance are valid
        await self.rt.leases.renew(self.rt.me, self.cfg.lease_seconds)
        await self.sync_nodes()
        self.rt.hub.listeners.append(self.on_event)
        self.loops = [self.rt.app.spawn(self._lease_loop()), self.rt.app.spawn(self._allocator_loop())]

    async def stop(self) -> None:
        """Stop driving jobs (their leases expire; another instance or a restart takes them)."""
        await self.admission.close()
        for task in getattr(self, "loops", []) + list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*getattr(self, "loops", []), *self.tasks.values(), return_exceptions=True)

    # ---- nodes --------------------------------------------------------------------------------
    async def sync_nodes(self) -> None:
        nodes = await self.rt.launcher.nodes()
        pool = self.rt.pool_name
        async with self.store.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('dmod.jobs.nodes.' || $1))", pool)
            for i, node in enumerate(nodes):
                await conn.execute(
                    """INSERT INTO job_nodes (pool, name, hostname, cpus, memory_bytes, ready, ordinal)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)
                       ON CONFLICT (pool, name) DO UPDATE SET hostname = $3, cpus = $4, memory_bytes = $5,
                           ready = $6, ordinal = $7, update_time = now()""",
                    pool, node.name, node.hostname, node.cpus, node.memory_bytes, node.ready, i)
            await conn.execute("UPDATE job_nodes SET ready = false WHERE pool = $1 AND NOT (name = ANY($2::text[]))",
                               pool, [n.name for n in nodes])
            # Rebuild the counters from the active allocations (repairs a crash mid-way, if any).
            await conn.execute("SELECT 1 FROM job_nodes WHERE pool = $1 ORDER BY name FOR UPDATE", pool)
            await conn.execute(
                """UPDATE job_nodes n SET allocated_cpus = coalesce(s.cpus, 0), allocated_memory_bytes = coalesce(s.mem, 0)
                   FROM job_nodes n2 LEFT JOIN (SELECT node, sum(cpus)::int AS cpus, sum(memory_bytes)::bigint AS mem
                                                FROM job_allocations WHERE pool = $1 AND release_time IS NULL
                                                GROUP BY node) s ON s.node = n2.name
                   WHERE n.pool = $1 AND n2.pool = $1 AND n2.name = n.name""", pool)

    async def _node_rows(self):
        """The pool's node rows; concurrent callers share one query (single flight)."""
        pending = self._nodes_read
        if pending is None or pending.done():
            pending = self._nodes_read = asyncio.ensure_future(self.store.pool.fetch(
                "SELECT * FROM job_nodes WHERE pool = $1 ORDER BY ordinal, name", self.rt.pool_name))
        return await asyncio.shield(pending)

    async def infeasible(self, spec: jobs_pb2.JobSpec) -> str | None:
        rows = await self._node_rows()
        nodes = [allocation.NodeFree(r["name"], r["hostname"], r["cpus"], r["memory_bytes"], r["ready"]) for r in rows]
        if allocation.allocate(spec.allocation_paradigm, nodes, spec.cpu_count or 1, spec.memory_bytes) is None:
            total = sum(n.free_cpus for n in nodes if n.ready)
            paradigm = jobs_pb2.AllocationParadigm.Name(spec.allocation_paradigm).removeprefix("ALLOCATION_PARADIGM_")
            return (f"{spec.cpu_count} CPUs / {spec.memory_bytes} bytes can never be allocated with {paradigm} in pool "
                    f"{self.rt.pool_name!r} ({len(nodes)} node(s), {total} CPUs)")
        return None

    # ---- ownership ----------------------------------------------------------------------------
    def own(self, job_id: str, seq: int = 0, row=None, *, new: bool = False) -> None:
        """Drive `job_id` from now on. `row`, when given, is the job as just written by this
        process (CreateJob): the task starts from it instead of reading it again (if it is stale,
        the optimistic transition fails and the task re-reads). A `new` job starts once this
        process is not busy answering calls (admission.py)."""
        self.owned.add(job_id)
        self.known_seq[job_id] = max(self.known_seq.get(job_id, 0), seq)
        if new:
            self.admission.add(job_id, row)
        else:
            self.kick(job_id, row)

    def on_event(self, event: jobs_pb2.JobEvent) -> None:
        job_id = event.job.removeprefix("jobs/")
        if job_id not in self.owned:
            return
        if event.seq <= self.known_seq.get(job_id, 0):
            return  # our own transition: the task already knows
        if event.reason == "PROGRESS":
            return
        self.kick(job_id)

    def kick(self, job_id: str, row=None) -> None:
        if job_id in self.tasks:
            self.dirty.add(job_id)
            return
        self.tasks[job_id] = asyncio.get_running_loop().create_task(self._drive(job_id, row))

    def kick_later(self, job_id: str, delay: float) -> None:
        old = self.timers.pop(job_id, None)
        if old is not None:
            old.cancel()
        self.timers[job_id] = asyncio.get_running_loop().call_later(max(0.0, delay), self._timer_fired, job_id)

    def _timer_fired(self, job_id: str) -> None:
        self.timers.pop(job_id, None)
        if job_id in self.owned:
            self.kick(job_id)

    def _forget(self, job_id: str) -> None:
        self.owned.discard(job_id)
        self.known_seq.pop(job_id, None)
        self.failures.pop(job_id, None)
        timer = self.timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    async def _lease_loop(self) -> None:
        period = max(0.2, self.cfg.lease_seconds / 3)
        while True:
            try:
                renewed = await self.rt.leases.renew(self.rt.me, self.cfg.lease_seconds)
                for job_id in self.owned - renewed:
                    if job_id not in self.tasks:
                        self._forget(job_id)
                # Leased to this instance id but not driven here: jobs of a previous life of this
                # id (a restart), or any job this process lost track of. Drive them.
                for job_id in renewed - self.owned:
                    log.info("resumed job %s", job_id)
                    self.own(job_id)
                for row in await self.rt.leases.claim(self.rt.pool_name, self.rt.me):
                    if row["id"] not in self.owned:
                        log.info("took over job %s (%s)", row["id"], states.name(row["state"]))
                        self.own(row["id"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease loop")
            await asyncio.sleep(period)

    # ---- the per-job task ---------------------------------------------------------------------
    async def _drive(self, job_id: str, row=None) -> None:
        try:
            while True:
                if row is None or job_id in self.dirty:
                    self.dirty.discard(job_id)
                    row = await self.store.get(job_id)
                result = False
                try:
                    if row is None or row["lease_owner"] != self.rt.me:
                        if row is None or states.is_terminal(row["state"]) or row["lease_owner"]:
                            self._forget(job_id)
                        return
                    result = await self.step(row)
                    self.failures.pop(job_id, None)
                except asyncio.CancelledError:
                    raise
                except (Transient, DatasetError, StagingFailed, asyncpg.PostgresError, OSError,
                        grpc.aio.AioRpcError) as exc:
                    await self._step_failed(job_id, exc, expected=True)
                except Exception as exc:  # noqa: BLE001 - never lose a job to a bug: retry, then fail it
                    await self._step_failed(job_id, exc, expected=False)
                if isinstance(result, asyncpg.Record):
                    row = result  # our own transition: continue from the row it returned
                elif result is True or job_id in self.dirty:
                    row = None  # look again
                else:
                    return
        finally:
            self.tasks.pop(job_id, None)

    async def _step_failed(self, job_id: str, exc: Exception, expected: bool) -> None:
        count = self.failures[job_id] = self.failures.get(job_id, 0) + 1
        if not expected:
            log.exception("step of job %s failed", job_id, exc_info=exc)
        else:
            log.warning("step of job %s failed (try %d): %s", job_id, count, exc)
        if count < MAX_STEP_FAILURES:
            self.kick_later(job_id, min(30.0, 0.5 * 2 ** (count - 1)))
            return
        row = await self.store.get(job_id)
        if row is None or states.is_terminal(row["state"]):
            return
        reason = getattr(exc, "reason", None) or ("INTERNAL" if not expected else "UNAVAILABLE")
        message = f"{states.name(row['state'])} failed {count} times: {exc}"
        await self.store.transition(row, states.FAILED, reason=reason, message=message[:2000])

    def _moved(self, new) -> None:
        """Our own transition, known before its event comes back through Redis (no re-read)."""
        if new["id"] in self.owned:
            self.known_seq[new["id"]] = max(self.known_seq.get(new["id"], 0), new["last_event_seq"])

    async def _transition(self, row, to: int, *, reason: str = "", message: str = "", **sets):
        # Shared with the other jobs' transitions of this loop iteration: one statement (one
        # transaction when allocations are released), one publish.
        release = (to in states.TERMINAL or to in (states.QUEUED, states.PENDING)) and row["state"] in states.ALLOCATED
        new = await self.batcher.transition(row, to, reason, message, sets, release)
        if new is not None:
            self.known_seq[row["id"]] = new["last_event_seq"]
        return new

    async def step(self, row):
        """Act on the job's state. Returns the job's new row (after a transition made here), True
        (read it again), or False (nothing to do until something else happens)."""
        state = row["state"]
        job_id = row["id"]
        if states.is_terminal(state):
            self._forget(job_id)
            return False
        if state == states.PENDING:
            return await self._transition(row, states.VALIDATING, reason="VALIDATING",
                                          message="pre-flight checks") or True
        if state == states.VALIDATING:
            return await self._validate(row)
        if state == states.STAGING:
            return await self._stage(row)
        if state == states.PARTITIONING:
            return await self._partition(row)
        if state == states.QUEUED:
            self.wake_allocator()
            return False
        if state == states.STARTING:
            return await self._launch(row)
        if state == states.RUNNING:
            return await self._running(row)
        if state == states.FINALIZING:
            return await self._finalize(row)
        if state == states.CANCELLING:
            return await self._cancel(row)
        return False

    # ---- VALIDATING / STAGING / PARTITIONING --------------------------------------------------
    async def _validate(self, row) -> bool:
        spec = jobs_pb2.JobSpec.FromString(row["spec"])
        async with self.heavy:
            pre = Preflight(self.rt.datasets(row["owner"]), self.rt.scratch, row["id"], spec, self.infeasible)
            try:
                result = await pre.run()
            except ValidationFailed as exc:
                where = f" [{exc.field}]" if exc.field else ""
                await self._transition(row, states.FAILED, reason=exc.reason, message=f"{exc}{where}"[:4000])
                return False
            except DatasetError as exc:
                if exc.transient:
                    raise
                await self._transition(row, states.FAILED, reason=exc.reason, message=str(exc)[:4000])
                return False
        inputs = ", ".join(f"{k}={v}" for k, v in sorted(result.resolved.items())) or "no inputs (noop engine)"
        message = f"inputs valid: {inputs}"
        if result.engine:
            message += f"; engine {result.engine}: {result.engine_detail}"
        if result.warnings:
            message += "; warnings: " + "; ".join(result.warnings[:3]) + (
                f" (+{len(result.warnings) - 3} more)" if len(result.warnings) > 3 else "")
        return await self._transition(row, states.STAGING, reason="VALIDATED", message=message[:4000],
                                      resolved=result.resolved, staged=result.staged, engine=result.engine,
                                      engine_detail=result.engine_detail) or True

    async def _stage(self, row) -> bool:
        spec = jobs_pb2.JobSpec.FromString(row["spec"])
        resolved = json.loads(row["resolved"]) if isinstance(row["resolved"], str) else dict(row["resolved"])
        output = row["output_dataset"]
        if spec.engine == "noop":  # a no-op job has no outputs: no output dataset (output_dataset stays empty)
            return await self._transition(row, states.QUEUED, reason="STAGED", queued_time=_now(),
                                          message=f"no output dataset (noop engine); waiting for "
                                                  f"{spec.cpu_count} CPU(s)") or True
        if not output:
            async with self.heavy:
                try:
                    output = await create_output(self.rt.datasets(row["owner"]), row["id"], spec, resolved)
                except DatasetError as exc:
                    if exc.transient:
                        raise
                    await self._transition(row, states.FAILED, reason="OUTPUT_DATASET_FAILED", message=str(exc))
                    return False
        if spec.cpu_count > 1 and "partition" not in resolved and spec.engine != "noop":
            return await self._transition(
                row, states.PARTITIONING, reason="STAGED", output_dataset=output,
                message=f"output dataset {output}; partitioning for {spec.cpu_count} ranks") or True
        staged = json.loads(row["staged"]) if isinstance(row["staged"], str) else dict(row["staged"] or {})
        note = f"; partition: {staged['partition_note']}" if "partition" in resolved and staged.get("partition_note") \
            else ""
        return await self._transition(row, states.QUEUED, reason="STAGED", output_dataset=output, queued_time=_now(),
                                      message=f"output dataset {output}{note}; waiting for {spec.cpu_count} CPU(s)"
                                      ) or True

    async def _partition(self, row) -> bool:
        spec = jobs_pb2.JobSpec.FromString(row["spec"])
        resolved = json.loads(row["resolved"]) if isinstance(row["resolved"], str) else dict(row["resolved"])
        staged = json.loads(row["staged"]) if isinstance(row["staged"], str) else dict(row["staged"])
        async with self.heavy:
            try:
                name, how = await create_partition(self.rt.channel(), self.rt.owner_metadata(row["owner"]),
                                                   self.rt.datasets(row["owner"]), self.rt.scratch, row["id"], spec,
                                                   resolved["hydrofabric"], staged)
            except StagingFailed as exc:
                if exc.transient:
                    raise
                await self._transition(row, states.FAILED, reason=exc.reason, message=str(exc))
                return False
        resolved["partition"] = name
        return await self._transition(row, states.QUEUED, reason="PARTITIONED", message=how, resolved=resolved,
                                      queued_time=_now()) or True

    # ---- QUEUED -> STARTING: the allocator ----------------------------------------------------
    def wake_allocator(self) -> None:
        self.alloc_wake.set()

    async def _allocator_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.alloc_wake.wait(), timeout=1.0)
            except TimeoutError:
                pass
            self.alloc_wake.clear()
            try:
                await self.allocate_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("allocation round failed")
                await asyncio.sleep(0.5)

    async def allocate_round(self) -> int:
        pool_name = self.rt.pool_name
        db = self.store.pool
        rows = await db.fetch("SELECT * FROM jobs WHERE lease_owner = $1 AND pool = $2 AND state = $3",
                              self.rt.me, pool_name, states.QUEUED)
        if not rows:
            return 0
        now = _now()
        ready, later = [], []
        for r in rows:
            (later if r["not_before"] and r["not_before"] > now else ready).append(r)
        if later:
            delay = min((r["not_before"] - now).total_seconds() for r in later)
            self._alloc_timer = asyncio.get_running_loop().call_later(max(0.01, delay), self.wake_allocator)
        if not ready:
            return 0
        by_id = {r["id"]: r for r in ready}
        waiting = queueing.order([queueing.Waiting(r["id"], r["owner"], r["priority"],
                                                   (r["queued_time"] or r["create_time"]).timestamp(), r["cpu_count"])
                                  for r in ready], time.time())
        started: list[tuple] = []
        async with db.acquire() as conn, conn.transaction():
            nodes = await conn.fetch("SELECT * FROM job_nodes WHERE pool = $1 ORDER BY name FOR UPDATE", pool_name)
            nodes = sorted(nodes, key=lambda n: (n["ordinal"], n["name"]))
            usage = {r["owner"]: r["cpus"] for r in await conn.fetch(
                "SELECT owner, sum(cpus)::int AS cpus FROM job_allocations WHERE pool = $1 AND release_time IS NULL "
                "GROUP BY owner", pool_name)}
            free = {n["name"]: allocation.NodeFree(n["name"], n["hostname"], n["cpus"] - n["allocated_cpus"],
                                                   n["memory_bytes"] - n["allocated_memory_bytes"], n["ready"])
                    for n in nodes}
            # Decide in memory, then commit the whole batch in three statements (transitions and
            # events; allocations; node counters), all under the node locks taken above.
            plan: list[tuple] = []
            for w in waiting[:256]:
                row = by_id[w.job_id]
                if not queueing.within_quota(usage.get(row["owner"], 0), row["cpu_count"], self.cfg.user_cpu_quota):
                    continue  # over quota: does not block other users
                spec = jobs_pb2.JobSpec.FromString(row["spec"])
                parts = allocation.allocate(spec.allocation_paradigm, list(free.values()), row["cpu_count"],
                                            row["memory_bytes"])
                if parts is None:
                    break  # strict priority: wait for resources
                for p in parts:
                    n = free[p.node]
                    free[p.node] = allocation.NodeFree(n.name, n.hostname, n.free_cpus - p.cpus,
                                                       n.free_memory - p.memory_bytes, n.ready)
                usage[row["owner"]] = usage.get(row["owner"], 0) + row["cpu_count"]
                plan.append((row, parts))
            parts_of = {row["id"]: parts for row, parts in plan}
            moved = await self.store.transition_many(
                conn, [row for row, _ in plan], states.STARTING, "ALLOCATED",
                [f"allocated {row['cpu_count']} CPU(s) on " + ", ".join(f"{p.hostname}:{p.cpus}" for p in parts)
                 for row, parts in plan])
            # Only the jobs actually moved (unchanged since read) get their allocation.
            taken: dict[str, list[int]] = {}
            records = []
            for new, event in moved:
                for i, p in enumerate(parts_of[new["id"]]):
                    records.append((new["id"], new["attempt"], pool_name, p.node, p.hostname, new["owner"], p.cpus,
                                    p.memory_bytes, i))
                    t = taken.setdefault(p.node, [0, 0])
                    t[0] += p.cpus
                    t[1] += p.memory_bytes
                started.append((new, event))
            if records:
                await conn.execute(
                    """INSERT INTO job_allocations (job_id, attempt, pool, node, hostname, owner, cpus, memory_bytes,
                                                    ordinal)
                       SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],
                                            $7::int[], $8::bigint[], $9::int[])""",
                    *[list(col) for col in zip(*records)])
            for node, (cpus, mem) in taken.items():
                await conn.execute("UPDATE job_nodes SET allocated_cpus = allocated_cpus + $3, "
                                   "allocated_memory_bytes = allocated_memory_bytes + $4, update_time = now() "
                                   "WHERE pool = $1 AND name = $2", pool_name, node, cpus, mem)
        for new, _ in started:
            self._moved(new)  # before the events come back through Redis
        await self.store.publish([e for _, e in started])
        for new, _ in started:
            self.kick(new["id"], new)
        if len(waiting) > 256 and len(plan) == 256:
            self.wake_allocator()
        return len(started)

    # ---- STARTING -> RUNNING ------------------------------------------------------------------
    async def _launch(self, row) -> bool:
        job_id, attempt = row["id"], row["attempt"]
        name = f"jobs/{job_id}"
        launcher = self.rt.launcher
        spec = jobs_pb2.JobSpec.FromString(row["spec"])
        self.batcher  # noqa: B018 - the coalescers below belong to the current store
        record = await self._attempt(job_id, attempt)
        handle = LaunchHandle.from_dict(json.loads(record["handle"]) if isinstance(record["handle"], str)
                                        else record["handle"]) if record is not None and record["handle"] else None
        how = "adopted"
        if handle is None:
            allocs = None
            if record is None:  # first try: nothing can be running yet (its allocation is read meanwhile)
                _, allocs = await asyncio.gather(self._record_launching(job_id, attempt, launcher.name),
                                                 self._allocations(job_id, attempt))
            else:  # an earlier try may have launched it and crashed before recording the handle
                handle = await launcher.find(name, attempt)
            if handle is None:
                if allocs is None:
                    allocs = await self._allocations(job_id, attempt)
                if not allocs:  # cannot happen through the allocator; recover by queueing again
                    await self._transition(row, states.QUEUED, reason="NO_ALLOCATION", queued_time=_now(),
                                           message="no allocation recorded for this attempt")
                    return True
                timeout = spec.timeout.ToNanoseconds() / 1e9 if spec.HasField("timeout") else 0
                request = LaunchRequest(
                    job=name, attempt=attempt, engine=row["engine"] or spec.engine or "auto",  # pre-flight's choice
                    server=self.rt.worker_server,
                    token=self.rt.worker_token(row, timeout),
                    slices=tuple(Slice(a["node"], a["hostname"], a["cpus"], a["memory_bytes"]) for a in allocs))
                try:
                    handle = await launcher.launch(request)
                except LaunchError as exc:
                    reason = "LAUNCH_FAILED_TRANSIENT" if exc.transient else exc.reason
                    await lifecycle.fail_or_retry(self.store, self.cfg, job_id, attempt=attempt, reason=reason,
                                                  message=str(exc), expect=frozenset({states.STARTING}))
                    return True
                how = "launched"
            await self._record_handle(job_id, attempt, handle.to_dict())
        new = await self._transition(row, states.RUNNING, reason="WORKER_STARTED",
                                     message=f"{launcher.name} worker {handle.id} {how} (attempt {attempt})",
                                     start_time=row["start_time"] or _now())
        return new if new is not None else True  # lost a race (e.g. cancelled meanwhile): look again

    async def _running(self, row) -> bool:
        spec = jobs_pb2.JobSpec.FromString(row["spec"])
        if not spec.HasField("timeout") or spec.timeout.ToNanoseconds() <= 0 or row["start_time"] is None:
            return False
        limit = spec.timeout.ToNanoseconds() / 1e9
        elapsed = (_now() - row["start_time"]).total_seconds()
        if elapsed < limit:
            self.kick_later(row["id"], limit - elapsed + 0.05)
            return False
        # Decide first, stop after: the worker's exit report (SIGTERM) then finds the job no longer
        # RUNNING and cannot turn the timeout into a failure of its own. CANCELLING keeps the
        # allocation until the worker is gone; `_cancel` ends the job FAILED(TIMEOUT).
        new = await self._transition(row, states.CANCELLING, reason="TIMEOUT",
                                     message=f"the job ran longer than its timeout of {limit:g}s "
                                             f"({elapsed:.1f}s); stopping the worker")
        return new if new is not None else True

    async def _stop_worker(self, row) -> None:
        record = await self.store.attempt(row["id"], row["attempt"])
        handle = None
        if record is not None and record["handle"]:
            raw = record["handle"]
            handle = LaunchHandle.from_dict(json.loads(raw) if isinstance(raw, str) else raw)
        elif record is not None:
            handle = await self.rt.launcher.find(f"jobs/{row['id']}", row["attempt"])
        if handle is not None:
            await self.rt.launcher.cancel(handle, grace=10.0)
            await self.store.attempt_ended(row["id"], row["attempt"], "CANCELLED", None, "STOPPED",
                                           "stopped by the scheduler")
            await self.rt.launcher.cleanup(handle)

    # ---- FINALIZING / CANCELLING --------------------------------------------------------------
    async def _finalize(self, row) -> bool:
        if not row["output_dataset"] and jobs_pb2.JobSpec.FromString(row["spec"]).engine == "noop":
            # No outputs, no output dataset: nothing to verify or seal (nor to evaluate).
            return await self._transition(row, states.SUCCEEDED, reason="SUCCEEDED",
                                          message="noop engine: no outputs") or True
        staged = json.loads(row["staged"]) if isinstance(row["staged"], str) else dict(row["staged"])
        expected = staged.get("expected_outputs") or {"count": 0, "digest": ""}
        ds = self.rt.datasets(row["owner"])
        output = row["output_dataset"]
        async with self.heavy:
            objects = await ds.objects(output)
            outputs = sorted(o.path for o in objects if "/" not in o.path and o.path.endswith(".csv"))
            import hashlib

            digest = hashlib.sha256("\n".join(outputs).encode()).hexdigest()
            unchecked = [o.path for o in objects if not o.sha256]
            if digest != expected.get("digest") or unchecked:
                problem = (f"{len(outputs)} output files, {expected.get('count')} expected" if digest != expected.get(
                    "digest") else f"objects without checksum: {', '.join(unchecked[:5])}")
                await self._transition(row, states.FAILED, reason="OUTPUT_INCOMPLETE", message=problem)
                return False
            await ds.seal(output)
        size = sum(o.size_bytes for o in objects)
        spec = jobs_pb2.JobSpec.FromString(row["spec"])
        evaluation, note = "", ""
        if spec.evaluation.observation_dataset:
            resolved = json.loads(row["resolved"]) if isinstance(row["resolved"], str) else dict(row["resolved"])
            evaluation, note = await start_evaluation(self.rt.channel(), self.rt.owner_metadata(row["owner"]),
                                                      row["id"], spec, output, resolved.get("hydrofabric", ""))
        return await self._transition(row, states.SUCCEEDED, reason="SUCCEEDED", evaluation=evaluation,
                                      message=f"{len(outputs)} output files ({size} bytes) sealed in {output}"
                                      + note) or True

    async def _cancel(self, row) -> bool:
        await self._stop_worker(row)
        if row["state_reason"] == "TIMEOUT":  # stopped by `_running`: the job failed, nobody cancelled it
            spec = jobs_pb2.JobSpec.FromString(row["spec"])
            limit = spec.timeout.ToNanoseconds() / 1e9
            new = await self._transition(row, states.FAILED, reason="TIMEOUT",
                                         message=f"the job ran longer than its timeout of {limit:g}s; worker "
                                                 f"stopped, resources released")
        else:
            new = await self._transition(row, states.CANCELLED, reason="CANCELLED",
                                         message="cancelled; worker stopped, resources released")
        return new if new is not None else True
