"""grpc.aio server bootstrap shared by every DMOD service process.

Start: apply migrations, create servicers, bind, then report SERVING.
SIGTERM/SIGINT: report NOT_SERVING, stop accepting calls, let in-flight calls finish
(up to DMOD_SHUTDOWN_GRACE_SECONDS), stop background work, close pools.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dmod.services.runtime.app import App
from dmod.services.runtime.auth import TokenVerifier
from dmod.services.runtime.interceptor import ServiceInterceptor
from dmod.services.runtime.logs import configure_logging
from dmod.services.runtime.metrics import serve_metrics
from dmod.services.runtime.registry import ServiceInfo, resolve
from dmod.services.runtime.settings import Settings, get_settings

log = logging.getLogger("dmod.server")

SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),  # a port clash must fail loudly, not split traffic
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_concurrent_streams", 2_000),
    # A large initial HTTP/2 receive window, so bulk client streams (dataset uploads) are not
    # throttled by window updates when the host is busy (BDP probing still adapts it).
    ("grpc.http2.lookahead_bytes", 16 << 20),
    # Accept DATA frames of up to 1 MiB (HTTP/2's default is 16 KiB): bulk streams are then
    # relayed and parsed a message at a time, not in 64 pieces per 1 MiB chunk.
    ("grpc.http2.max_frame_size", 1 << 20),
]


class Server:
    def __init__(self, names: list[str], settings: Settings | None = None, extra_handlers=()):
        self.settings = settings or get_settings()
        self.infos: list[ServiceInfo] = resolve(names)
        self.app = App(self.settings)
        self.health = health.aio.HealthServicer()
        self.servicers: list[object] = []
        self.extra_handlers = list(extra_handlers)  # (full service name, add_fn(server)) pairs, e.g. tests
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> int:
        started = time.perf_counter()
        public_key = None
        if self.settings.jwt_public_key_file and self.settings.jwt_public_key_file.exists():
            public_key = self.settings.jwt_public_key_file.read_bytes()
        verifier = TokenVerifier(public_key, self.settings.auth_required, self.settings.default_user)
        interceptor = ServiceInterceptor(verifier)
        server = grpc.aio.server(interceptors=[interceptor], options=SERVER_OPTIONS)
        self.port = server.add_insecure_port(self.settings.listen)
        if not self.port:
            raise RuntimeError(f"cannot listen on {self.settings.listen}")
        host = self.settings.listen.rsplit(":", 1)[0]
        self.app.address = f"{host}:{self.port}"

        names = []
        for info in self.infos:
            impl = info.implementation()
            if impl is None:
                servicer = info.unimplemented_servicer()
            else:
                if info.migrations.is_dir():
                    await self.app.migrate(info.name, info.migrations)
                servicer = await impl.create_servicer(self.app)
            info.add_to_server(servicer, server)
            for method, parse in getattr(servicer, "request_parsers", {}).items():
                interceptor.request_parsers[f"/{info.full_name}/{method}"] = parse
            self.servicers.append(servicer)
            names.append(info.full_name)
        for full_name, add in self.extra_handlers:
            add(server)
            names.append(full_name)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            names + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
        await server.start()
        self._server = server
        for servicer in self.servicers:
            if hasattr(servicer, "start"):
                await servicer.start()
        for name in names + [""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.settings.port_file:
            self.settings.port_file.write_text(str(self.port))
        log.info("serving", extra={"services": names, "address": self.app.address,
                                   "startup_seconds": round(time.perf_counter() - started, 3)})
        return self.port

    async def shutdown(self) -> None:
        if self._server is None or self._stopped.is_set():
            return
        log.info("shutting down: NOT_SERVING, draining in-flight calls")
        await self.health.enter_graceful_shutdown()
        for servicer in self.servicers:
            if hasattr(servicer, "stop"):
                await servicer.stop()
        await self._server.stop(self.settings.shutdown_grace_seconds)
        await self.app.close()
        self._stopped.set()

    async def wait(self) -> None:
        await self._stopped.wait()


async def serve(names: list[str], settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    serve_metrics(settings.metrics_port)
    server = Server(names, settings)
    await server.start()
    # Everything loaded so far (modules, descriptors, pools) lives as long as the process: keep it
    # out of the cyclic GC, whose full collections otherwise walk it all and stall every stream.
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.shutdown()))
    await server.wait()


def main(names: list[str]) -> None:
    asyncio.run(serve(names))
