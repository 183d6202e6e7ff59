"""Opaque page tokens: the position after the last row, bound to the filter that produced it."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

from dmod.services.runtime.errors import InvalidArgument


def filter_digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(create_time: dt.datetime, job_id: str, digest: str) -> str:
    raw = json.dumps({"t": create_time.isoformat(), "i": job_id, "f": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, digest: str) -> tuple[dt.datetime, str] | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
        position = dt.datetime.fromisoformat(value["t"]), str(value["i"])
        same_filter = value["f"] == digest
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(("page_token", "malformed page token")) from None
    if not same_filter:
        raise InvalidArgument(("page_token", "the page token belongs to a different filter"))
    return position
