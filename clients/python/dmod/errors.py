"""Reading DMOD's rich errors on the client: google.rpc ErrorInfo and BadRequest details."""
from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

_KINDS = (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest)


def error_details(error: grpc.RpcError) -> dict[str, object]:
    """{'ErrorInfo': ErrorInfo, 'BadRequest': BadRequest} present on an RPC error."""
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    raw = dict(metadata or ()).get("grpc-status-details-bin")
    found: dict[str, object] = {}
    if raw:
        for detail in status_pb2.Status.FromString(raw).details:
            for kind in _KINDS:
                if detail.Is(kind.DESCRIPTOR):
                    message = kind()
                    detail.Unpack(message)
                    found[kind.__name__] = message
    return found


def describe(error: grpc.RpcError) -> str:
    """One readable line (plus field violations) for the CLI."""
    details = error_details(error)
    text = f"{error.code().name}: {error.details()}"
    bad = details.get("BadRequest")
    if bad is not None:
        text += "".join(f"\n  - {v.field}: {v.description}" for v in bad.field_violations)
    return text
