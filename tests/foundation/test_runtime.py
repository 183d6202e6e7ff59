"""The shared runtime: graceful drain on SIGTERM, sanitized errors, idempotent migrations."""
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dmod.errors import error_details
from dmod.services.runtime.db import apply_migrations, create_pool, migration_files
from dmod.services.runtime.registry import SERVICES

HERE = Path(__file__).parent


@pytest.fixture
def probe_server(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(HERE / "drain_server.py"), str(port_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"probe server did not start: {proc.stdout.read().decode()[-3000:]}")
        time.sleep(0.05)
    yield proc, f"127.0.0.1:{port_file.read_text()}"
    if proc.poll() is None:
        proc.kill()
    proc.wait()


async def test_sigterm_reports_not_serving_and_drains_in_flight_call(probe_server):
    proc, target = probe_server
    async with grpc.aio.insecure_channel(target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        sleep = channel.unary_unary("/dmod.test.Probe/Sleep")
        in_flight = asyncio.ensure_future(sleep(b"1.5", timeout=20))
        await asyncio.sleep(0.3)  # the call is being handled
        proc.send_signal(signal.SIGTERM)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await in_flight == b"done"  # finished although shutdown had begun
    assert await asyncio.to_thread(proc.wait, 15) == 0


async def test_unexpected_exception_is_sanitized(probe_server):
    _, target = probe_server
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/dmod.test.Probe/Boom")(b"", timeout=5)
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in error.details() and "Traceback" not in error.details()
    assert error_details(error)["ErrorInfo"].metadata["ref"]


async def test_migrations_apply_once(settings):
    pool = await create_pool(settings.database_url, 1, 2)
    try:
        folder = SERVICES["auth"].migrations
        await apply_migrations(pool, "auth", folder)  # the stack already applied them at startup
        assert await apply_migrations(pool, "auth", folder) == []
        rows = await pool.fetch("SELECT version FROM schema_migrations WHERE component = 'auth'")
        assert sorted(r["version"] for r in rows) == [v for v, _ in migration_files(folder)]
        # Concurrent starts do not race: both see the migration as applied.
        again = await asyncio.gather(*(apply_migrations(pool, "auth", folder) for _ in range(2)))
        assert again == [[], []]
    finally:
        await pool.close()
