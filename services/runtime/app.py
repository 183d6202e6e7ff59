"""Shared resources of one server process, created on first use and closed on shutdown."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import grpc

from dmod.services.runtime.auth import TokenIssuer
from dmod.services.runtime.db import apply_migrations, create_pool
from dmod.services.runtime.redis_client import create_redis
from dmod.services.runtime.settings import Settings


class App:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.address = ""  # host:port this process listens on (set by the server)
        self._pool: asyncpg.Pool | None = None
        self._redis = None
        self._channel: grpc.aio.Channel | None = None
        self._lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()
        self._issuer: TokenIssuer | None = None
        self._tokens: dict[str, tuple[str, int]] = {}

    async def db(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                s = self.settings
                self._pool = await create_pool(s.database_url, s.db_pool_min, s.db_pool_max)
        return self._pool

    async def migrate(self, component: str, folder: Path) -> list[int]:
        return await apply_migrations(await self.db(), component, folder)

    def redis(self):
        if self._redis is None:
            self._redis = create_redis(self.settings.redis_url)
        return self._redis

    def channel(self) -> grpc.aio.Channel:
        """Channel for calls to other DMOD services (this process in the one-process local stack)."""
        if self._channel is None:
            target = self.settings.services_target or self.address
            self._channel = grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 8 << 20)])
        return self._channel

    def on_behalf_of(self, owner: str) -> tuple[tuple[str, str], ...]:
        """Metadata for background calls made for `owner` (no caller token to forward): a short-lived
        token signed with this deployment's key; none needed when auth is off and no key exists."""
        key = self.settings.jwt_private_key_file
        if not key or not key.exists():
            return ()
        cached = self._tokens.get(owner)
        if cached is None or cached[1] < time.time() + 60:
            if self._issuer is None:
                self._issuer = TokenIssuer(key.read_bytes(), self.settings.token_ttl_seconds)
            cached = self._tokens[owner] = self._issuer.issue(owner, ttl_seconds=900)
        return (("authorization", f"Bearer {cached[0]}"),)

    def spawn(self, coro) -> asyncio.Task:
        """Background task owned by the process; cancelled on shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()
        if self._redis is not None:
            await self._redis.aclose()
        if self._pool is not None:
            await self._pool.close()
