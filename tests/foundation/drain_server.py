"""A DMOD runtime server with two test methods, run as a subprocess by test_runtime.py.

/dmod.test.Probe/Sleep sleeps the number of seconds in the request (ASCII) and answers b"done";
/dmod.test.Probe/Boom raises an unexpected exception.
"""
import asyncio
import sys

import grpc

from dmod.services.runtime import server as runtime_server
from dmod.services.runtime.settings import Settings


async def sleep(request: bytes, context) -> bytes:
    await asyncio.sleep(float(request.decode()))
    return b"done"


async def boom(request: bytes, context) -> bytes:
    raise RuntimeError("secret internals /etc/passwd line 42")


def add_probe(server) -> None:
    handlers = {"Sleep": grpc.unary_unary_rpc_method_handler(sleep),
                "Boom": grpc.unary_unary_rpc_method_handler(boom)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("dmod.test.Probe", handlers),))


async def main() -> None:
    settings = Settings(listen="127.0.0.1:0", port_file=sys.argv[1], shutdown_grace_seconds=10, log_json=True)
    # No DMOD service, only the probe: the runtime alone is under test.
    server = runtime_server.Server([], settings, extra_handlers=[("dmod.test.Probe", add_probe)])
    await server.start()
    import signal

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(server.shutdown()))
    await server.wait()


if __name__ == "__main__":
    asyncio.run(main())
