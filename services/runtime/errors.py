"""Domain errors and their gRPC form.

Service code raises these; the error interceptor turns them into a status with
`google.rpc.ErrorInfo` (UPPER_SNAKE reason) and, for bad input, `google.rpc.BadRequest`.
"""
from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "dmod.v1"

# Error text is bounded, whatever a service put in it: a client's 1 MiB value must never come back
# as 1 MiB of trailing metadata (Envoy then drops the upstream connection and unrelated calls fail).
# Input echoed in a message goes through `quote` (at most ECHO_LIMIT bytes of it); the limits below
# are the backstop for everything else. Cut text ends with "…".
ECHO_LIMIT = 64
FIELD_LIMIT = 100
DESCRIPTION_LIMIT = 240
MESSAGE_LIMIT = 1024
METADATA_VALUE_LIMIT = 100
METADATA_ENTRIES = 16
MAX_VIOLATIONS = 20


def bounded(text: object, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (at a character boundary) plus "…" when it was longer."""
    text = text if isinstance(text, str) else str(text)
    if len(text) <= limit // 4 or len(raw := text.encode("utf-8", "surrogatepass")) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore") + "…"


def quote(value: object, limit: int = ECHO_LIMIT) -> str:
    """A client's value for an error message: repr() of at most `limit` bytes of it (NUL and control
    characters escaped)."""
    text = value if isinstance(value, str) else str(value)
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        return repr(bounded(text, limit)[:-1]) + "…"
    return repr(text)


def _bounded_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    items = list((metadata or {}).items())[:METADATA_ENTRIES]
    return {bounded(k, 64): bounded(v, METADATA_VALUE_LIMIT) for k, v in items}


class DmodError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        message = bounded(message, MESSAGE_LIMIT)
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = _bounded_metadata(metadata)

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=self.details())


class InvalidArgument(DmodError):
    """Bad input; `violations` are (field, description) pairs."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[tuple[str, str]] | tuple[str, str], *, reason: str | None = None,
                 metadata: dict[str, str] | None = None):
        if isinstance(violations, tuple):
            violations = [violations]
        violations = list(violations)
        more = len(violations) - MAX_VIOLATIONS
        self.violations = [(bounded(f, FIELD_LIMIT), bounded(d, DESCRIPTION_LIMIT))
                           for f, d in violations[:MAX_VIOLATIONS]]
        if more > 0:
            self.violations.append(("request", f"and {more} more violations"))
        message = "; ".join(f"{field}: {desc}" for field, desc in self.violations) or "invalid argument"
        super().__init__(message, reason=reason, metadata=metadata)

    def details(self) -> list[any_pb2.Any]:
        bad = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in self.violations])
        packed = any_pb2.Any()
        packed.Pack(bad)
        return super().details() + [packed]


class NotFound(DmodError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DmodError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DmodError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(DmodError):
    """Concurrent modification lost a race; the client may retry."""

    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class PermissionDenied(DmodError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DmodError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class ResourceExhausted(DmodError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class DataLoss(DmodError):
    code = grpc.StatusCode.DATA_LOSS
    default_reason = "DATA_LOSS"


class Unavailable(DmodError):
    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


def internal_status(ref: str) -> status_pb2.Status:
    """What a client sees for an unexpected failure: no traceback, a reference to the server log."""
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN, metadata={"ref": ref})
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error (ref {ref})", details=[packed])


def require(condition: bool, field: str, description: str) -> None:
    if not condition:
        raise InvalidArgument((field, description))


_PASS_THROUGH = {grpc.StatusCode.NOT_FOUND: NotFound, grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
                 grpc.StatusCode.PERMISSION_DENIED: PermissionDenied, grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
                 grpc.StatusCode.UNAUTHENTICATED: Unauthenticated, grpc.StatusCode.DATA_LOSS: DataLoss,
                 grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted}


def from_downstream(error: grpc.RpcError, field: str = "") -> DmodError:
    """Map a downstream service's error to ours, naming the request field it concerns.

    The caller's own request was the problem for NOT_FOUND & co., so those keep their code;
    a downstream INVALID_ARGUMENT is reported against `field`; anything else means the other
    service is unwell: UNAVAILABLE (retryable), never INTERNAL.
    """
    code, text = error.code(), bounded(error.details() or "", DESCRIPTION_LIMIT)
    prefix = f"{field}: " if field else ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument((field or "request", text))
    if code in _PASS_THROUGH:
        return _PASS_THROUGH[code](prefix + text)
    return Unavailable(f"{prefix}downstream call failed ({code.name}): {text}", reason="DOWNSTREAM_UNAVAILABLE")


def _store_exceptions() -> tuple[tuple, tuple, tuple]:
    """(outage, bad value, S3) exception classes of the stores the services call."""
    import asyncpg
    import minio.error
    import redis.exceptions
    import urllib3.exceptions

    outage = (asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
              asyncpg.exceptions.InsufficientResourcesError, redis.exceptions.ConnectionError,
              redis.exceptions.TimeoutError, urllib3.exceptions.HTTPError, minio.error.ServerError, ConnectionError)
    return outage, (asyncpg.exceptions.DataError,), (minio.error.S3Error,)


_STORES: tuple | None = None


def from_store(exc: BaseException, ref: str) -> DmodError | None:
    """A backing store's failure that escaped a service, as the client should see it (None: a bug).

    Store outages (PostgreSQL, Redis, S3 unreachable, restarting or answering 5xx) are UNAVAILABLE
    (retryable); a value PostgreSQL refuses (SQLSTATE class 22: out of range, bad encoding, a
    parameter asyncpg cannot encode) is the caller's INVALID_ARGUMENT. `ref` points at the log.
    """
    global _STORES
    if _STORES is None:
        _STORES = _store_exceptions()
    outage, bad_value, s3 = _STORES
    if isinstance(exc, bad_value):
        return InvalidArgument(("request", f"a value cannot be stored (ref {ref})"), reason="VALUE_NOT_STORABLE")
    if isinstance(exc, s3) and getattr(getattr(exc, "response", None), "status", 0) >= 500:
        return Unavailable(f"the object store failed (ref {ref}); retry", reason="STORE_UNAVAILABLE")
    if isinstance(exc, outage):
        return Unavailable(f"a backing store is unavailable (ref {ref}); retry", reason="STORE_UNAVAILABLE")
    return None
