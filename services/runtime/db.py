"""PostgreSQL: an asyncpg pool and versioned SQL migrations applied exactly once.

Each component keeps `NNNN_name.sql` files in its `migrations/` folder; applied versions are
recorded in `schema_migrations`, and an advisory lock makes concurrent starts safe.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import asyncpg

log = logging.getLogger("dmod.db")

_MIGRATION_LOCK = 0x646D6F64  # "dmod"
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Connection reset on release to the pool. asyncpg still rolls back an open transaction and
    drops listeners first; the default reset query (`RESET ALL`, `UNLISTEN *`, `CLOSE ALL`,
    `pg_advisory_unlock_all()`) is one more round trip per release, for session state DMOD never
    creates (no SET, LISTEN, cursors outside transactions or session advisory locks: locks are
    transaction-scoped, `pg_advisory_xact_lock`)."""


async def create_pool(url: str, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, command_timeout=60,
                                     reset=_keep_session)


def migration_files(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(folder.glob("*.sql")) if folder.is_dir() else []:
        match = _FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path}")
        found.append((int(match.group(1)), path))
    return found


async def apply_migrations(pool: asyncpg.Pool, component: str, folder: Path) -> list[int]:
    """Apply pending migrations of one component; returns the versions applied now."""
    applied_now = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            component text NOT NULL, version int NOT NULL, name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))""")
        done = {r["version"] for r in await conn.fetch(
            "SELECT version FROM schema_migrations WHERE component = $1", component)}
        for version, path in migration_files(folder):
            if version in done:
                continue
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                               component, version, path.name)
            applied_now.append(version)
            log.info("migration applied", extra={"component": component, "migration": path.name})
    return applied_now
