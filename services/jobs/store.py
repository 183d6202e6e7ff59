"""Postgres access for jobs: creation (idempotent), state transitions (optimistic concurrency on
`version`, one event per transition with a per-job increasing `seq`), attempts, leases, logs.

Every transition is one SQL statement that updates the job row *only if its version is the one
the caller read* and inserts the event with the job's next seq; a lost race returns None and the
caller re-reads and decides again. Events are handed to `publish` after the commit.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable

import asyncpg

from dmod.services.jobs import convert, states
from dmod.services.runtime.errors import AlreadyExists, quote
from dmod.v1 import jobs_pb2

Publish = Callable[[list[jobs_pb2.JobEvent]], Awaitable[None]]

log = logging.getLogger("dmod.jobs.store")

# Columns a transition may set besides state/reason/message.
_SETTABLE = {"attempt", "progress_step", "progress_total", "output_dataset", "resolved", "staged", "start_time",
             "end_time", "queued_time", "not_before", "lease_owner", "lease_expires", "evaluation", "engine",
             "engine_detail"}
_JSON = {"resolved", "staged"}
# Postgres array types of the settable columns, for batched transitions (jsonb goes as text).
_ARRAY_TYPE = {"attempt": "int[]", "progress_step": "bigint[]", "progress_total": "bigint[]",
               "output_dataset": "text[]", "resolved": "text[]", "staged": "text[]", "start_time": "timestamptz[]",
               "end_time": "timestamptz[]", "queued_time": "timestamptz[]", "not_before": "timestamptz[]",
               "lease_owner": "text[]", "lease_expires": "timestamptz[]", "evaluation": "text[]",
               "engine": "text[]", "engine_detail": "text[]"}

_INSERT_JOB = """INSERT INTO jobs (id, owner, request_id, spec, labels, priority, cpu_count, memory_bytes, state,
                                   launcher, pool, last_event_seq, lease_owner, lease_expires)
                 SELECT $1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, 1, $12,
                        CASE WHEN $12::text IS NULL THEN NULL ELSE now() + make_interval(secs => $13) END
                 {where} RETURNING *"""
_INSERT_EVENT = """INSERT INTO job_events (job_id, seq, state, reason, message, attempt)
                   SELECT id, 1, state, 'CREATED', 'job created', attempt FROM j RETURNING time"""
# Foreign keys are checked at the end of the statement, so the key may name the job inserted
# by the same statement.
_CREATE = f"""WITH j AS ({_INSERT_JOB.format(where="")}), e AS ({_INSERT_EVENT})
              SELECT j.*, e.time AS event_time FROM j, e"""
_CREATE_KEYED = f"""WITH k AS (INSERT INTO job_request_keys (owner, request_id, request_hash, job_id)
                               VALUES ($2, $3, $14, $1) ON CONFLICT DO NOTHING RETURNING job_id),
                         j AS ({_INSERT_JOB.format(where="WHERE EXISTS (SELECT 1 FROM k)")}),
                         e AS ({_INSERT_EVENT})
                    SELECT j.*, e.time AS event_time FROM j, e"""


def request_hash(spec: jobs_pb2.JobSpec, labels: dict[str, str]) -> str:
    h = hashlib.sha256(spec.SerializeToString(deterministic=True))
    h.update(json.dumps(sorted(labels.items())).encode())
    return h.hexdigest()


class JobStore:
    def __init__(self, pool: asyncpg.Pool, publish: Publish):
        self.pool = pool
        self._publish = publish

    # ---- creation ----------------------------------------------------------------------------
    async def create(self, *, owner: str, request_id: str, spec: jobs_pb2.JobSpec, labels: dict[str, str],
                     pool: str, launcher: str, lease_owner: str | None, lease_seconds: float):
        """Insert a PENDING job (event seq 1). With a request_id, the same (owner, request_id) and
        request returns the existing job; a different request with that id is ALREADY_EXISTS.

        One statement (one round trip, atomic): the idempotency key claims (owner, request_id)
        with ON CONFLICT DO NOTHING, and the job row and its first event are inserted only if the
        key was claimed. A concurrent create with the same key waits for the winner's commit and
        then reads the winner's job."""
        digest = request_hash(spec, labels)
        job_id = uuid.uuid4().hex
        args = (job_id, owner, request_id, spec.SerializeToString(), json.dumps(labels), spec.priority,
                spec.cpu_count, spec.memory_bytes, states.PENDING, launcher, pool, lease_owner, lease_seconds)
        for _ in range(3):
            if request_id:
                row = await self.pool.fetchrow(_CREATE_KEYED, *args, digest)
            else:
                row = await self.pool.fetchrow(_CREATE, *args)
            if row is not None:
                event = jobs_pb2.JobEvent(job=convert.job_name(job_id), seq=1, state=states.PENDING, reason="CREATED",
                                          message="job created", attempt=row["attempt"], progress=jobs_pb2.Progress())
                event.time.CopyFrom(convert.ts(row["event_time"]))
                await self._publish([event])
                return row, True
            key = await self.pool.fetchrow("SELECT job_id, request_hash FROM job_request_keys "
                                           "WHERE owner = $1 AND request_id = $2", owner, request_id)
            if key is None:
                continue  # the key's job was deleted meanwhile: try again
            if key["request_hash"] != digest:
                raise AlreadyExists(
                    f"request_id {quote(request_id)} was used for a different job ({convert.job_name(key['job_id'])})",
                    reason="REQUEST_ID_REUSED", metadata={"job": convert.job_name(key["job_id"])})
            existing = await self.pool.fetchrow("SELECT * FROM jobs WHERE id = $1", key["job_id"])
            if existing is not None:
                return existing, False
        raise AlreadyExists(f"request_id {quote(request_id)} is being used concurrently", reason="REQUEST_ID_CONFLICT")

    # ---- reads -------------------------------------------------------------------------------
    async def get(self, job_id: str, conn=None):
        return await (conn or self.pool).fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)

    async def allocations(self, job_id: str, attempt: int, conn=None):
        return await (conn or self.pool).fetch(
            "SELECT * FROM job_allocations WHERE job_id = $1 AND attempt = $2 ORDER BY ordinal", job_id, attempt)

    async def allocations_for(self, rows) -> dict[str, list]:
        if not rows:
            return {}
        found = await self.pool.fetch(
            "SELECT a.* FROM job_allocations a JOIN unnest($1::text[], $2::int[]) AS k(id, attempt) "
            "ON a.job_id = k.id AND a.attempt = k.attempt ORDER BY a.ordinal",
            [r["id"] for r in rows], [r["attempt"] for r in rows])
        out: dict[str, list] = {}
        for a in found:
            out.setdefault(a["job_id"], []).append(a)
        return out

    async def events_after(self, job_id: str, after_seq: int, limit: int = 1000, conn=None):
        return await (conn or self.pool).fetch(
            "SELECT * FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3", job_id, after_seq, limit)

    async def list(self, *, owner: str | None, states_: list[int], labels: dict[str, str],
                   after: tuple[dt.datetime, str] | None, limit: int):
        where, args = [], []

        def arg(value) -> str:
            args.append(value)
            return f"${len(args)}"

        if owner:
            where.append(f"owner = {arg(owner)}")
        if states_:
            where.append(f"state = ANY({arg(states_)}::smallint[])")
        if labels:
            where.append(f"labels @> {arg(json.dumps(labels))}::jsonb")
        if after is not None:
            where.append(f"(create_time, id) < ({arg(after[0])}, {arg(after[1])})")
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY create_time DESC, id DESC LIMIT {arg(limit)}"
        return await self.pool.fetch(sql, *args)

    # ---- transitions -------------------------------------------------------------------------
    async def transition(self, row, to: int, *, reason: str = "", message: str = "", conn=None,
                         release: bool | None = None, **sets):
        """Move `row` (as read, with its version) to state `to` with one event. Returns the new
        row, or None when the job changed meanwhile (re-read and decide again). Allocations are
        released when the job leaves the allocated states (terminal, or back to QUEUED/PENDING)."""
        if not states.allowed(row["state"], to):
            raise ValueError(f"illegal transition {states.name(row['state'])} -> {states.name(to)}")
        if release is None:  # only jobs that may hold an allocation have one to give back
            release = (to in states.TERMINAL or to in (states.QUEUED, states.PENDING)) and \
                row["state"] in states.ALLOCATED
        if conn is None and not release:  # one statement, one round trip
            new, event = await self._transition(self.pool, row, to, reason, message, False, sets)
        elif conn is None:
            async with self.pool.acquire() as own, own.transaction():
                new, event = await self._transition(own, row, to, reason, message, release, sets)
        else:
            new, event = await self._transition(conn, row, to, reason, message, release, sets)
        if new is not None and conn is None:
            await self._publish([event])
        return (new, event) if conn is not None else new

    async def _transition(self, conn, row, to, reason, message, release, sets):
        if release:  # lock order: node rows before job rows (as the allocator does)
            await conn.execute(
                "SELECT 1 FROM job_nodes WHERE (pool, name) IN (SELECT pool, node FROM job_allocations "
                "WHERE job_id = $1 AND release_time IS NULL) ORDER BY pool, name FOR UPDATE", row["id"])
        cols, args = [], [row["id"], row["version"], to, reason, message]
        for key, value in sets.items():
            if key not in _SETTABLE:
                raise ValueError(f"cannot set {key}")
            args.append(json.dumps(value) if key in _JSON else value)
            cols.append(f"{key} = ${len(args)}" + ("::jsonb" if key in _JSON else ""))
        if to in states.TERMINAL:
            cols.append("end_time = coalesce(end_time, now())")
            cols.append("lease_owner = NULL, lease_expires = NULL")
        extra = (", " + ", ".join(cols)) if cols else ""
        # The job row (only if unchanged since read) and its event, in one atomic statement.
        new = await conn.fetchrow(
            f"""WITH j AS (UPDATE jobs SET state = $3, state_reason = $4, state_message = $5, version = version + 1,
                               last_event_seq = last_event_seq + 1, update_time = now(){extra}
                           WHERE id = $1 AND version = $2 RETURNING *),
                     e AS (INSERT INTO job_events (job_id, seq, state, reason, message, progress_step,
                                                   progress_total, attempt)
                           SELECT id, last_event_seq, state, $4, $5, progress_step, progress_total, attempt FROM j
                           RETURNING time)
                SELECT j.*, e.time AS event_time FROM j, e""", *args)
        if new is None:
            return None, None
        if release:
            await release_allocations(conn, row["id"])
        event = jobs_pb2.JobEvent(job=convert.job_name(new["id"]), seq=new["last_event_seq"], state=to, reason=reason,
                                  message=message, attempt=new["attempt"],
                                  progress=jobs_pb2.Progress(step=new["progress_step"],
                                                             total_steps=new["progress_total"]))
        event.time.CopyFrom(convert.ts(new["event_time"]))
        return new, event

    async def transition_many(self, conn, rows, to: int, reason: str, messages: list[str]):
        """Move many jobs (as read, with their versions) to `to`, one event each, in ONE statement
        on `conn` (the caller's transaction; nothing released, nothing published). Jobs changed
        since read are skipped. Returns [(new row, event)] for the jobs moved."""
        if not rows:
            return []
        for row in rows:
            if not states.allowed(row["state"], to):
                raise ValueError(f"illegal transition {states.name(row['state'])} -> {states.name(to)}")
        found = await conn.fetch(
            """WITH u AS (SELECT * FROM unnest($1::text[], $2::bigint[], $5::text[]) AS u(id, version, message)),
                    j AS (UPDATE jobs SET state = $3, state_reason = $4, state_message = u.message,
                                          version = jobs.version + 1, last_event_seq = last_event_seq + 1,
                                          update_time = now()
                          FROM u WHERE jobs.id = u.id AND jobs.version = u.version RETURNING jobs.*),
                    e AS (INSERT INTO job_events (job_id, seq, state, reason, message, progress_step,
                                                  progress_total, attempt)
                          SELECT id, last_event_seq, state, $4, state_message, progress_step, progress_total, attempt
                          FROM j RETURNING job_id, time)
               SELECT j.*, e.time AS event_time FROM j JOIN e ON e.job_id = j.id""",
            [r["id"] for r in rows], [r["version"] for r in rows], to, reason, messages)
        return _with_events(found, to, reason)

    async def transition_batch(self, conn, rows, to: int, reason: str, messages: list[str],
                               sets: list[dict] | None = None):
        """Like `transition_many`, with per-job column values (`sets[i]` for `rows[i]`; every dict
        has the same keys). No allocation is released. Terminal states end the lease as
        `transition` does. Returns [(new row, event)] for the jobs moved (unchanged since read)."""
        if not rows:
            return []
        keys = sorted(sets[0]) if sets else []
        for key in keys:
            if key not in _SETTABLE:
                raise ValueError(f"cannot set {key}")
        for row in rows:
            if not states.allowed(row["state"], to):
                raise ValueError(f"illegal transition {states.name(row['state'])} -> {states.name(to)}")
        args: list = [[r["id"] for r in rows], [r["version"] for r in rows], to, reason, messages]
        unnest, cols = ["$1::text[]", "$2::bigint[]", "$5::text[]"], []
        for i, key in enumerate(keys):
            values = [s[key] for s in sets]
            args.append([json.dumps(v) for v in values] if key in _JSON else values)
            unnest.append(f"${len(args)}::{_ARRAY_TYPE[key]}")
            cols.append(f"{key} = u.c{i}" + ("::jsonb" if key in _JSON else ""))
        if to in states.TERMINAL:
            cols.append("end_time = coalesce(jobs.end_time, now())")
            cols.append("lease_owner = NULL, lease_expires = NULL")
        extra = (", " + ", ".join(cols)) if cols else ""
        names = ", ".join(["id", "version", "message"] + [f"c{i}" for i in range(len(keys))])
        found = await conn.fetch(
            f"""WITH u AS (SELECT * FROM unnest({", ".join(unnest)}) AS u({names})),
                    j AS (UPDATE jobs SET state = $3, state_reason = $4, state_message = u.message,
                                          version = jobs.version + 1, last_event_seq = last_event_seq + 1,
                                          update_time = now(){extra}
                          FROM u WHERE jobs.id = u.id AND jobs.version = u.version RETURNING jobs.*),
                    e AS (INSERT INTO job_events (job_id, seq, state, reason, message, progress_step,
                                                  progress_total, attempt)
                          SELECT id, last_event_seq, state, $4, state_message, progress_step, progress_total, attempt
                          FROM j RETURNING job_id, time)
               SELECT j.*, e.time AS event_time FROM j JOIN e ON e.job_id = j.id""", *args)
        return _with_events(found, to, reason)

    async def progress(self, job_id: str, attempt: int, step: int, total: int, message: str = ""):
        """A same-state event carrying progress, if the job is still RUNNING this attempt."""
        new = await self.pool.fetchrow(
            """WITH j AS (UPDATE jobs SET progress_step = $3, progress_total = $4, version = version + 1,
                              last_event_seq = last_event_seq + 1, update_time = now()
                          WHERE id = $1 AND attempt = $2 AND state = $5 RETURNING *),
                    e AS (INSERT INTO job_events (job_id, seq, state, reason, message, progress_step,
                                                  progress_total, attempt)
                          SELECT id, last_event_seq, state, 'PROGRESS', $6, $3, $4, $2 FROM j RETURNING time)
               SELECT j.*, e.time AS event_time FROM j, e""",
            job_id, attempt, step, total, states.RUNNING, message)
        if new is None:
            return None
        event = jobs_pb2.JobEvent(job=convert.job_name(job_id), seq=new["last_event_seq"], state=states.RUNNING,
                                  reason="PROGRESS", message=message, attempt=attempt,
                                  progress=jobs_pb2.Progress(step=step, total_steps=total))
        event.time.CopyFrom(convert.ts(new["event_time"]))
        await self._publish([event])
        return new

    async def progress_batch(self, items: list[tuple[str, int, int, int, str]]) -> list:
        """`progress` for many jobs: one statement, one publish. A job given twice keeps its last."""
        last: dict[str, tuple] = {}
        for item in items:
            last[item[0]] = item
        chosen = list(last.values())
        found = await self.pool.fetch(
            """WITH u AS (SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::text[])
                          AS u(id, attempt, step, total, message)),
                    j AS (UPDATE jobs SET progress_step = u.step, progress_total = u.total, version = jobs.version + 1,
                                          last_event_seq = last_event_seq + 1, update_time = now()
                          FROM u WHERE jobs.id = u.id AND jobs.attempt = u.attempt AND jobs.state = $6
                          RETURNING jobs.*, u.message AS progress_message),
                    e AS (INSERT INTO job_events (job_id, seq, state, reason, message, progress_step,
                                                  progress_total, attempt)
                          SELECT id, last_event_seq, state, 'PROGRESS', progress_message, progress_step,
                                 progress_total, attempt FROM j RETURNING job_id, time)
               SELECT j.*, e.time AS event_time FROM j JOIN e ON e.job_id = j.id""",
            [i[0] for i in chosen], [i[1] for i in chosen], [i[2] for i in chosen], [i[3] for i in chosen],
            [i[4] for i in chosen], states.RUNNING)
        events, by_id = [], {}
        for new in found:
            event = jobs_pb2.JobEvent(job=convert.job_name(new["id"]), seq=new["last_event_seq"], state=states.RUNNING,
                                      reason="PROGRESS", message=new["progress_message"], attempt=new["attempt"],
                                      progress=jobs_pb2.Progress(step=new["progress_step"],
                                                                 total_steps=new["progress_total"]))
            event.time.CopyFrom(convert.ts(new["event_time"]))
            events.append(event)
            by_id[new["id"]] = new
        await self._publish(events)
        return [by_id.get(i[0]) for i in items]

    async def get_batch(self, ids: list[tuple[str]]) -> list:
        found = await self.pool.fetch("SELECT * FROM jobs WHERE id = ANY($1::text[])", [i[0] for i in ids])
        by_id = {r["id"]: r for r in found}
        return [by_id.get(i[0]) for i in ids]

    async def worker_started_batch(self, items: list[tuple[str, int]]) -> list:
        await self.pool.execute(
            "UPDATE job_attempts a SET started_time = coalesce(a.started_time, now()), last_heartbeat = now() "
            "FROM unnest($1::text[], $2::int[]) AS u(id, attempt) WHERE a.job_id = u.id AND a.attempt = u.attempt",
            [i[0] for i in items], [i[1] for i in items])
        return [None] * len(items)

    async def attempt_ended_batch(self, items: list[tuple[str, int, str, int | None, str, str]]) -> list:
        """`attempt_ended` for many attempts (first writer wins); True for each one this recorded."""
        first: dict[tuple, tuple] = {}
        for item in items:
            first.setdefault((item[0], item[1]), item)
        chosen = list(first.values())
        found = await self.pool.fetch(
            """UPDATE job_attempts a SET state = u.state, exit_code = u.code, exit_reason = u.reason,
                   exit_message = u.message, end_time = now()
               FROM unnest($1::text[], $2::int[], $3::text[], $4::int[], $5::text[], $6::text[])
                    AS u(id, attempt, state, code, reason, message)
               WHERE a.job_id = u.id AND a.attempt = u.attempt AND a.end_time IS NULL
               RETURNING a.job_id, a.attempt""",
            [i[0] for i in chosen], [i[1] for i in chosen], [i[2] for i in chosen], [i[3] for i in chosen],
            [i[4] for i in chosen], [i[5][:4000] for i in chosen])
        done = {(r["job_id"], r["attempt"]) for r in found}
        return [(i[0], i[1]) in done and first[(i[0], i[1])] is i for i in items]

    async def publish(self, events: list[jobs_pb2.JobEvent]) -> None:
        await self._publish(events)

    # ---- attempts ----------------------------------------------------------------------------
    async def attempt(self, job_id: str, attempt: int, conn=None):
        return await (conn or self.pool).fetchrow("SELECT * FROM job_attempts WHERE job_id = $1 AND attempt = $2",
                                                  job_id, attempt)

    async def record_launching(self, job_id: str, attempt: int, launcher: str) -> None:
        await self.pool.execute("INSERT INTO job_attempts (job_id, attempt, launcher) VALUES ($1, $2, $3) "
                                "ON CONFLICT DO NOTHING", job_id, attempt, launcher)

    # Batched forms (many jobs, one statement; see `Coalescer`). Each takes a list of argument
    # tuples and returns one result per tuple, in order.
    async def attempts_batch(self, keys: list[tuple[str, int]]) -> list:
        found = await self.pool.fetch(
            "SELECT a.* FROM job_attempts a JOIN unnest($1::text[], $2::int[]) AS k(id, attempt) "
            "ON a.job_id = k.id AND a.attempt = k.attempt", [k[0] for k in keys], [k[1] for k in keys])
        by_key = {(r["job_id"], r["attempt"]): r for r in found}
        return [by_key.get((k[0], k[1])) for k in keys]

    async def record_launching_batch(self, items: list[tuple[str, int, str]]) -> list:
        await self.pool.execute(
            "INSERT INTO job_attempts (job_id, attempt, launcher) "
            "SELECT * FROM unnest($1::text[], $2::int[], $3::text[]) ON CONFLICT DO NOTHING",
            [i[0] for i in items], [i[1] for i in items], [i[2] for i in items])
        return [None] * len(items)

    async def allocations_batch(self, keys: list[tuple[str, int]]) -> list:
        found = await self.pool.fetch(
            "SELECT a.* FROM job_allocations a JOIN unnest($1::text[], $2::int[]) AS k(id, attempt) "
            "ON a.job_id = k.id AND a.attempt = k.attempt ORDER BY a.ordinal",
            [k[0] for k in keys], [k[1] for k in keys])
        out: dict[tuple, list] = {}
        for a in found:
            out.setdefault((a["job_id"], a["attempt"]), []).append(a)
        return [out.get((k[0], k[1]), []) for k in keys]

    async def record_handle_batch(self, items: list[tuple[str, int, dict]]) -> list:
        await self.pool.execute(
            "UPDATE job_attempts a SET handle = u.handle::jsonb, state = CASE WHEN a.state = 'LAUNCHING' "
            "THEN 'RUNNING' ELSE a.state END, last_heartbeat = coalesce(a.last_heartbeat, now()) "
            "FROM unnest($1::text[], $2::int[], $3::text[]) AS u(id, attempt, handle) "
            "WHERE a.job_id = u.id AND a.attempt = u.attempt",
            [i[0] for i in items], [i[1] for i in items], [json.dumps(i[2]) for i in items])
        return [None] * len(items)

    async def record_handle(self, job_id: str, attempt: int, handle: dict) -> None:
        await self.pool.execute(
            "UPDATE job_attempts SET handle = $3::jsonb, state = CASE WHEN state = 'LAUNCHING' THEN 'RUNNING' "
            "ELSE state END, last_heartbeat = coalesce(last_heartbeat, now()) WHERE job_id = $1 AND attempt = $2",
            job_id, attempt, json.dumps(handle))

    async def worker_started(self, job_id: str, attempt: int) -> None:
        await self.pool.execute("UPDATE job_attempts SET started_time = coalesce(started_time, now()), "
                                "last_heartbeat = now() WHERE job_id = $1 AND attempt = $2", job_id, attempt)

    async def heartbeat(self, job_id: str, attempt: int) -> None:
        await self.pool.execute("UPDATE job_attempts SET last_heartbeat = now() WHERE job_id = $1 AND attempt = $2",
                                job_id, attempt)

    async def attempt_ended(self, job_id: str, attempt: int, state: str, exit_code: int | None, reason: str,
                            message: str) -> bool:
        """Record how an attempt ended (first writer wins); True if this call recorded it."""
        done = await self.pool.fetchval(
            """UPDATE job_attempts SET state = $3, exit_code = $4, exit_reason = $5, exit_message = $6,
                   end_time = now() WHERE job_id = $1 AND attempt = $2 AND end_time IS NULL RETURNING 1""",
            job_id, attempt, state, exit_code, reason, message[:4000])
        return bool(done)

    async def active_attempts(self, pool: str | None):
        """Attempts of jobs in STARTING/RUNNING/CANCELLING (their workers may be alive)."""
        return await self.pool.fetch(
            """SELECT a.*, j.state AS job_state, j.owner, j.pool, j.lease_owner, j.version
               FROM job_attempts a JOIN jobs j ON j.id = a.job_id AND j.attempt = a.attempt
               WHERE j.state = ANY($1::smallint[]) AND ($2::text IS NULL OR j.pool = $2)""",
            [states.STARTING, states.RUNNING, states.CANCELLING], pool)

    # ---- leases ------------------------------------------------------------------------------
    async def claim(self, pool: str, me: str, limit: int = 500):
        """Take over non-terminal jobs of the pool that no live scheduler drives: unowned, or
        owned by an instance whose heartbeat expired (this instance's own jobs are `renew`ed)."""
        return await self.pool.fetch(
            """UPDATE jobs SET lease_owner = $2
               WHERE id IN (SELECT j.id FROM jobs j WHERE j.pool = $1 AND j.state <> ALL($3::smallint[])
                              AND (j.lease_owner IS NULL OR NOT EXISTS (
                                   SELECT 1 FROM job_schedulers s WHERE s.instance = j.lease_owner
                                   AND s.expires > now()))
                            ORDER BY j.create_time LIMIT $4 FOR UPDATE SKIP LOCKED)
               RETURNING *""", pool, me, list(states.TERMINAL), limit)

    async def renew(self, me: str, seconds: float) -> set[str]:
        """Extend every lease of this instance at once (its heartbeat); returns the jobs it holds."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO job_schedulers (instance, expires) VALUES ($1, now() + make_interval(secs => $2))
                   ON CONFLICT (instance) DO UPDATE SET expires = EXCLUDED.expires""", me, seconds)
            rows = await conn.fetch("SELECT id FROM jobs WHERE lease_owner = $1", me)
        return {r["id"] for r in rows}

    # ---- logs --------------------------------------------------------------------------------
    async def append_logs(self, job_id: str, attempt: int, lines: Iterable[jobs_pb2.LogLine]) -> int:
        lines = list(lines)
        if not lines:
            return 0
        result = await self.pool.execute(
            """INSERT INTO job_logs (job_id, attempt, line_no, time, stream, rank, text)
               SELECT $1, $2, l, t, s, r, x FROM unnest($3::bigint[], $4::timestamptz[], $5::text[], $6::int[],
                                                          $7::text[]) AS u(l, t, s, r, x)
               ON CONFLICT (job_id, attempt, line_no) DO NOTHING""",
            job_id, attempt, [ln.seq for ln in lines],
            [ln.time.ToDatetime(tzinfo=dt.UTC) if ln.HasField("time") else dt.datetime.now(dt.UTC)
             for ln in lines],
            [ln.stream or "stdout" for ln in lines], [ln.rank for ln in lines],
            [ln.text.replace("\x00", "")[:8192] for ln in lines])
        return int(result.split()[-1])

    async def logs_after(self, job_id: str, after_seq: int, limit: int = 500):
        return await self.pool.fetch("SELECT * FROM job_logs WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                                     job_id, after_seq, limit)


async def release_allocations(conn, job_id: str | list[str]) -> int:
    """Release the job's (or jobs') active allocations and give their CPUs/memory back to the nodes."""
    ids = [job_id] if isinstance(job_id, str) else list(job_id)
    result = await conn.fetch(
        """WITH r AS (UPDATE job_allocations SET release_time = clock_timestamp()
                      WHERE job_id = ANY($1::text[]) AND release_time IS NULL RETURNING pool, node, cpus, memory_bytes),
                s AS (SELECT pool, node, sum(cpus)::int AS cpus, sum(memory_bytes)::bigint AS mem FROM r
                      GROUP BY pool, node)
           UPDATE job_nodes n SET allocated_cpus = n.allocated_cpus - s.cpus,
                                  allocated_memory_bytes = n.allocated_memory_bytes - s.mem, update_time = now()
           FROM s WHERE n.pool = s.pool AND n.name = s.node RETURNING n.name""", ids)
    return len(result)


class TransitionBatcher:
    """Coalesces the transitions requested in one event-loop iteration into one statement per
    (target state, reason, columns set) and one Redis publish per batch.

    Each caller still gets its own result (the new row, or None when its job changed since read),
    so the optimistic, per-job semantics of `JobStore.transition` are unchanged; only the round
    trips are shared. Transitions that release allocations are not batched (they lock node rows
    first) — callers use `JobStore.transition` for those."""

    def __init__(self, store: JobStore, max_batch: int = 500, on_moved=None):
        self.store = store
        self.max_batch = max_batch
        self.on_moved = on_moved  # called with each new row before its event is published
        self._groups: dict[tuple, Coalescer] = {}  # (to, reason, columns set, release) -> its batcher

    def transition(self, row, to: int, reason: str, message: str, sets: dict, release: bool = False) -> asyncio.Future:
        if not states.allowed(row["state"], to):
            raise ValueError(f"illegal transition {states.name(row['state'])} -> {states.name(to)}")
        for key in sets:
            if key not in _SETTABLE:
                raise ValueError(f"cannot set {key}")
        group = (to, reason, tuple(sorted(sets)), release)
        if group not in self._groups:
            self._groups[group] = Coalescer(functools.partial(self._run, to, reason, release), self.max_batch)
        return self._groups[group](row, message, sets)

    async def _run(self, to: int, reason: str, release: bool, items: list[tuple]) -> list:
        rows, messages, sets = [i[0] for i in items], [i[1] for i in items], [i[2] for i in items]
        if not release:
            moved = await self.store.transition_batch(self.store.pool, rows, to, reason, messages, sets)
        else:  # as `JobStore.transition`: node rows locked first, allocations given back in the same commit
            async with self.store.pool.acquire() as conn, conn.transaction():
                ids = [r["id"] for r in rows]
                await conn.execute(
                    "SELECT 1 FROM job_nodes WHERE (pool, name) IN (SELECT pool, node FROM job_allocations "
                    "WHERE job_id = ANY($1::text[]) AND release_time IS NULL) ORDER BY pool, name FOR UPDATE", ids)
                moved = await self.store.transition_batch(conn, rows, to, reason, messages, sets)
                if moved:
                    await release_allocations(conn, [new["id"] for new, _ in moved])
        if self.on_moved is not None:
            for new, _ in moved:
                self.on_moved(new)
        await self.store._publish([e for _, e in moved])
        by_id = {new["id"]: new for new, _ in moved}
        return [by_id.get(r["id"]) for r in rows]


class Coalescer:
    """Calls made in one event-loop iteration share one call of `run_batch(list of argument
    tuples) -> list of results` (one SQL statement instead of one per job). Each caller awaits
    its own result; a failure of the batch is every caller's failure."""

    def __init__(self, run_batch, max_batch: int = 500):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self._pending: list[tuple[tuple, asyncio.Future]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()

    def __call__(self, *args) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return future

    def _start(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        for i in range(0, len(batch), self.max_batch):
            task = asyncio.get_running_loop().create_task(self._run(batch[i:i + self.max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, items) -> None:
        try:
            results = await self.run_batch([args for args, _ in items])
            for (_, future), result in zip(items, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except BaseException as exc:
            for _, future in items:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise


def _with_events(found, to: int, reason: str) -> list:
    """(new row, its JobEvent) for rows a batched transition returned (with `event_time`)."""
    out = []
    for new in found:
        event = jobs_pb2.JobEvent(job=convert.job_name(new["id"]), seq=new["last_event_seq"], state=to,
                                  reason=reason, message=new["state_message"], attempt=new["attempt"],
                                  progress=jobs_pb2.Progress(step=new["progress_step"],
                                                             total_steps=new["progress_total"]))
        event.time.CopyFrom(convert.ts(new["event_time"]))
        out.append((new, event))
    return out
