"""A TCP relay so that containers can reach a DMOD gateway that listens on 127.0.0.1.

On a developer machine and in the tests the whole stack binds 127.0.0.1, which a container's
loopback is not. Every Swarm container on an overlay network also has an interface on the
node's gateway bridge (`docker_gwbridge`) whose gateway address is this host: the relay listens
on <gateway address>:<port> and forwards to 127.0.0.1:<port>, and workers are given
`<gateway address>:<port>` as their server. In production the gateway is a stack service (Envoy
on the `mpi` network) and no relay runs.

The relay lives in the launcher's process (the scheduler); when several scheduler processes
share a host, the first one that binds the address relays for all.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging

log = logging.getLogger("dmod.jobs.launcher.swarm.relay")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


class Relay:
    def __init__(self, listen_host: str, port: int, target_host: str = "127.0.0.1", target_port: int | None = None):
        self.listen_host = listen_host
        self.port = port
        self.target = (target_host, target_port or port)
        self.server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task] = set()

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    async def start(self) -> bool:
        """True when this process relays; False when another one already holds the address."""
        try:
            self.server = await asyncio.start_server(self._serve, self.listen_host, self.port, reuse_address=True)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                log.info("relay %s already served by another process", self.address)
                return False
            raise
        log.info("relaying %s -> %s:%s", self.address, *self.target)
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conns.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self._conns.discard(task)
            return
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
            self._conns.discard(task)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self.server.wait_closed()
            self.server = None


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass
