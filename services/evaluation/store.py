"""Evaluations in Postgres: the record, its progress and results; Redis announces changes."""
from __future__ import annotations

import json
import uuid

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from dmod.services.runtime import page_tokens
from dmod.services.runtime.errors import AlreadyExists, InvalidArgument, NotFound, quote
from dmod.v1 import evaluation_pb2

PENDING, RUNNING = evaluation_pb2.EVALUATION_STATE_PENDING, evaluation_pb2.EVALUATION_STATE_RUNNING
SUCCEEDED, FAILED = evaluation_pb2.EVALUATION_STATE_SUCCEEDED, evaluation_pb2.EVALUATION_STATE_FAILED
LEASE_SECONDS = 60


def channel_name(evaluation_id: str) -> str:
    return f"dmod:evaluation:{evaluation_id}"


def parse_name(name: str, field: str = "name") -> uuid.UUID:
    prefix, _, raw = name.partition("/")
    try:
        if prefix != "evaluations":
            raise ValueError
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument((field, f"{quote(name)} is not an evaluation name (evaluations/{{id}})")) from None


def _ts(value) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def to_message(row) -> evaluation_pb2.Evaluation:
    results = json.loads(row["results"]) if row["results"] else {}
    message = evaluation_pb2.Evaluation(
        name=f"evaluations/{row['id']}", owner=row["owner"], spec=evaluation_pb2.EvaluationSpec.FromString(row["spec"]),
        state=row["state"], state_message=row["state_message"], locations_done=row["locations_done"],
        locations_total=row["locations_total"], result_dataset=row["result_dataset"], job=row["job"],
        request_id=row["request_id"] or "", create_time=_ts(row["create_time"]), update_time=_ts(row["update_time"]))
    for loc in results.get("locations", []):
        message.locations.append(evaluation_pb2.LocationResult(
            gage_id=loc["gage_id"], nexus_id=loc["nexus_id"], pair_count=loc.get("n_pairs") or 0,
            error=loc.get("error") or "", metrics={k: v for k, v in (loc.get("metrics") or {}).items() if v is not None}))
    message.aggregate.update({k: v for k, v in results.get("aggregate", {}).get("mean", {}).items() if v is not None})
    return message


class EvaluationStore:
    def __init__(self, pool: asyncpg.Pool, redis):
        self.pool = pool
        self.redis = redis

    async def create(self, owner: str, spec: evaluation_pb2.EvaluationSpec, request_id: str, job: str = ""):
        """Insert (idempotent on owner + request_id); returns (row, created)."""
        data = spec.SerializeToString(deterministic=True)
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "INSERT INTO evaluations (id, owner, request_id, spec, state, job) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (owner, request_id) DO NOTHING RETURNING *",
                uuid.uuid4(), owner, request_id or None, data, PENDING, job)
            if row is not None:
                return row, True
            row = await conn.fetchrow("SELECT * FROM evaluations WHERE owner = $1 AND request_id = $2", owner,
                                      request_id)
        if bytes(row["spec"]) != data:
            raise AlreadyExists(f"request_id {quote(request_id)} was used for a different evaluation "
                                f"(evaluations/{row['id']})", reason="REQUEST_ID_REUSED")
        return row, False

    async def get(self, evaluation_id: uuid.UUID, owner: str | None = None):
        row = await self.pool.fetchrow("SELECT * FROM evaluations WHERE id = $1", evaluation_id)
        if row is None or (owner is not None and row["owner"] != owner):
            raise NotFound(f"evaluations/{evaluation_id} not found")
        return row

    async def list(self, owner: str | None, job: str, page_size: int, page_token: str):
        page_size = min(max(page_size or 50, 1), 500)
        args: list = []
        where = []
        if owner is not None:
            args.append(owner)
            where.append(f"owner = ${len(args)}")
        if job:
            args.append(job)
            where.append(f"job = ${len(args)}")
        # The token is the last row's exact (create_time, id), bound to the filter (owner, job) and
        # fully validated (runtime/page_tokens.py): a crafted position is INVALID_ARGUMENT, never a
        # database error. (A float epoch, as before, repeated rows sharing a create time forever.)
        filters = {"owner": owner, "job": job}
        key = page_tokens.decode(page_token, filters, schema=(page_tokens.timestamp, page_tokens.uuid_value))
        if key is not None:
            args += key
            where.append(f"(create_time, id) < (${len(args) - 1}, ${len(args)})")
        args.append(page_size + 1)
        sql = ("SELECT * FROM evaluations"
               + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY create_time DESC, id DESC LIMIT ${len(args)}")
        rows = await self.pool.fetch(sql, *args)
        token = ""
        if len(rows) > page_size:
            rows = rows[:page_size]
            last = rows[-1]
            token = page_tokens.encode([last["create_time"].isoformat(), str(last["id"])], filters)
        return rows, token

    async def claim(self, evaluation_id: uuid.UUID | None = None) -> list:
        """Take the lease of runnable evaluations (one, or all orphaned ones after a restart)."""
        sql = ("UPDATE evaluations SET state = $1, lease_until = now() + make_interval(secs => $2), update_time = now() "
               "WHERE state IN ($3, $1) AND (lease_until IS NULL OR lease_until < now())")
        args = [RUNNING, LEASE_SECONDS, PENDING]
        if evaluation_id is not None:
            sql += " AND id = $4"
            args.append(evaluation_id)
        return await self.pool.fetch(sql + " RETURNING *", *args)

    async def progress(self, evaluation_id: uuid.UUID, done: int, total: int, message: str = "") -> None:
        await self.pool.execute(
            "UPDATE evaluations SET locations_done = $2, locations_total = $3, state_message = $4, "
            "lease_until = now() + make_interval(secs => $5), update_time = now() WHERE id = $1",
            evaluation_id, done, total, message, LEASE_SECONDS)
        await self.announce(evaluation_id)

    async def finish(self, evaluation_id: uuid.UUID, state: int, message: str, results: dict | None = None,
                     result_dataset: str = "") -> None:
        await self.pool.execute(
            "UPDATE evaluations SET state = $2, state_message = $3, results = $4, result_dataset = $5, "
            "lease_until = NULL, update_time = now() WHERE id = $1",
            evaluation_id, state, message, json.dumps(results) if results is not None else None, result_dataset)
        await self.announce(evaluation_id)

    async def announce(self, evaluation_id: uuid.UUID) -> None:
        await self.redis.publish(channel_name(str(evaluation_id)), b"changed")
