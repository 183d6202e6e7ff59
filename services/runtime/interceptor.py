"""One server interceptor for every DMOD service: input, identity, deadline, metrics and error mapping.

Input first: every handler is registered without a request deserializer, so that the interceptor
parses each message itself (the generated parser, or a servicer's `request_parsers`) and runs the
request guard (runtime/request_guard.py) on it. An undecodable body or a value no service may see
is INVALID_ARGUMENT with a google.rpc.BadRequest, on unary, server-streaming and client-streaming
RPCs alike (each message of a client stream, when the servicer reads it), never grpc's
"UNKNOWN: Unexpected DecodeError" or an INTERNAL from deep inside a service.

Domain errors become their gRPC code with google.rpc details (grpc-status-details-bin); an
unwrapped error of a downstream DMOD call keeps its meaning (errors.from_downstream); anything
unexpected is logged with a reference id and reaches the client as a sanitized INTERNAL status,
never a traceback.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid

import grpc

from dmod.services.runtime import auth, deadlines, inflight, request_guard, scopes
from dmod.services.runtime.errors import (
    DmodError,
    InvalidArgument,
    from_downstream,
    from_store,
    internal_status,
)
from dmod.services.runtime.metrics import RPC_SECONDS, RPC_TOTAL, split_method

log = logging.getLogger("dmod.rpc")

# Infrastructure services answer without a caller identity.
_PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.", "/dmod.v1.AuthService/Login",
                    "/dmod.v1.AuthService/GetJwks")


_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


async def _abort(context: grpc.aio.ServicerContext, status) -> None:
    await context.abort(_BY_NUMBER[status.code], status.message,
                        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),))


def _decoder(parse, method: str):
    """raw bytes -> a checked request message; INVALID_ARGUMENT when it is neither."""

    def decode(raw):
        if parse is None:
            return raw
        try:
            message = parse(raw)
        except Exception:  # noqa: BLE001 - DecodeError, or whatever a custom parser raises
            raise InvalidArgument(("request", f"the body is not a valid request message for {method}"),
                                  reason="MALFORMED_REQUEST") from None
        request_guard.check(message)
        return message

    return decode


# Before a client stream is answered with an error, what the client is still sending is read and
# dropped (at most this long and this much): grpc clients that are still writing when the status
# arrives lose it and report "INTERNAL: Internal error from Core" instead.
DRAIN_SECONDS = 2.0
DRAIN_BYTES = 64 << 20


class _Decoded:
    """A client stream's request iterator yielding decoded, checked messages."""

    __slots__ = ("_decode", "_ended", "_reading", "_requests")

    def __init__(self, requests, decode):
        self._requests, self._decode = requests.__aiter__(), decode
        self._reading = self._ended = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._ended or self._reading:  # the stream is over, or being drained after an error
            raise StopAsyncIteration
        self._reading = True
        try:
            raw = await self._requests.__anext__()
        except StopAsyncIteration:
            self._ended = True
            raise
        finally:
            self._reading = False
        try:
            return self._decode(raw)
        except DmodError:
            await self.drain()
            raise

    async def drain(self) -> None:
        """Read and drop the rest of the stream (bounded), unless someone is reading it."""
        if self._reading or self._ended:
            return
        self._reading = True
        deadline, budget = time.monotonic() + DRAIN_SECONDS, DRAIN_BYTES
        try:
            while budget > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                raw = await asyncio.wait_for(self._requests.__anext__(), left)
                budget -= len(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else 0
        except (StopAsyncIteration, TimeoutError, grpc.aio.AioRpcError, grpc.RpcError):
            pass
        finally:
            self._reading, self._ended = False, True  # what was not read is not for the servicer


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, verifier: auth.TokenVerifier):
        self._verifier = verifier
        # "/pkg.Service/Method" -> request deserializer replacing the generated one (a servicer's
        # `request_parsers`, e.g. DatasetService's zero-copy upload chunks).
        self.request_parsers: dict = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        decode = _decoder(self.request_parsers.get(method, handler.request_deserializer), method)
        streaming_requests = bool(handler.stream_unary or handler.stream_stream)
        public = method.startswith(_PUBLIC_PREFIXES)
        service, name = split_method(method)

        def prepare(context) -> None:
            deadlines.set_deadline(context.time_remaining())
            if public:
                auth.set_principal(None)
                return
            authorization = dict(context.invocation_metadata() or ()).get("authorization")
            auth.set_principal(principal := self._verifier.verify(authorization), authorization)
            scopes.check(method, principal)  # worker tokens: only the worker's methods

        async def on_error(exc: BaseException, context, requests=None) -> None:
            if isinstance(requests, _Decoded):
                await requests.drain()  # the client then reads our status, not a lost one
            if isinstance(exc, NotImplementedError):
                # The generated base servicer: a service (or method) not built yet.
                RPC_TOTAL.labels(service, name, "UNIMPLEMENTED").inc()
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
            if isinstance(exc, grpc.aio.AioRpcError):
                # A call to another DMOD service that the servicer did not wrap: NOT_FOUND & co.
                # keep their code, the rest means the other service is unwell (UNAVAILABLE).
                exc = from_downstream(exc)
            if isinstance(exc, DmodError):
                RPC_TOTAL.labels(service, name, exc.code.name).inc()
                await _abort(context, exc.to_status())
            ref = uuid.uuid4().hex[:12]
            mapped = from_store(exc, ref) if isinstance(exc, Exception) else None
            if mapped is not None:  # a store's outage, or a value it refuses: not INTERNAL
                log.warning("store error in %s: %s", method, type(exc).__name__, exc_info=exc,
                            extra={"ref": ref, "method": method})
                RPC_TOTAL.labels(service, name, mapped.code.name).inc()
                await _abort(context, mapped.to_status())
            log.exception("unhandled error in %s", method, extra={"ref": ref, "method": method})
            RPC_TOTAL.labels(service, name, "INTERNAL").inc()
            await _abort(context, internal_status(ref))

        def done(start: float, context) -> None:
            RPC_SECONDS.labels(service, name).observe(time.perf_counter() - start)
            code = context.code() if hasattr(context, "code") else None
            RPC_TOTAL.labels(service, name, getattr(code, "name", None) or "OK").inc()

        if handler.unary_unary or handler.stream_unary:
            behavior = handler.unary_unary or handler.stream_unary

            async def unary_response(request, context):
                start = time.perf_counter()
                inflight.enter()
                try:
                    request = _Decoded(request, decode) if streaming_requests else decode(request)
                    prepare(context)
                    result = behavior(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except BaseException as exc:  # noqa: BLE001 - mapped, never leaked
                    await on_error(exc, context, request)
                finally:
                    inflight.leave()
                done(start, context)
                return result

            factory = grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.stream_unary_rpc_method_handler
            return factory(unary_response, request_deserializer=None,
                           response_serializer=handler.response_serializer)

        behavior = handler.unary_stream or handler.stream_stream

        async def stream_response(request, context):
            start = time.perf_counter()
            try:
                request = _Decoded(request, decode) if streaming_requests else decode(request)
                prepare(context)
                if inspect.isasyncgenfunction(behavior):
                    async for item in behavior(request, context):
                        yield item
                else:
                    result = behavior(request, context)
                    if inspect.isawaitable(result):
                        await result
            except (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit):
                raise
            except BaseException as exc:  # noqa: BLE001
                await on_error(exc, context, request)
            done(start, context)

        factory = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        return factory(stream_response, request_deserializer=None,
                       response_serializer=handler.response_serializer)
