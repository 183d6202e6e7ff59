"""Opaque page tokens: the position after the last row, bound to the filter that produced it.

Fully validated before any part reaches the query: exactly the keys t/i/f, `t` an ISO time within
0001..9999 (as UTC), `i` a job id (text without NUL, at most 256 characters), `f` the digest of the
caller's filter. Anything else is INVALID_ARGUMENT on `page_token`.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json

from dmod.services.runtime.errors import InvalidArgument

MAX_TOKEN_LENGTH = 1024
MAX_ID_LENGTH = 256


def filter_digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(create_time: dt.datetime, job_id: str, digest: str) -> str:
    raw = json.dumps({"t": create_time.isoformat(), "i": job_id, "f": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(value: dict) -> tuple[dt.datetime, str]:
    when, job_id = value["t"], value["i"]
    if not isinstance(when, str) or len(when) > 64:
        raise TypeError("t")
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_ID_LENGTH or "\x00" in job_id:
        raise TypeError("i")
    position = dt.datetime.fromisoformat(when)
    if position.tzinfo is None:
        position = position.replace(tzinfo=dt.UTC)
    return position.astimezone(dt.UTC) if position.utcoffset() else position, job_id


def decode(token: str, digest: str) -> tuple[dt.datetime, str] | None:
    if not token:
        return None
    try:
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
        if not isinstance(value, dict) or set(value) != {"t", "i", "f"} or not isinstance(value["f"], str):
            raise TypeError("shape")
        same_filter = value["f"] == digest
        position = _position(value)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError, binascii.Error):
        raise InvalidArgument(("page_token", "malformed page token")) from None
    if not same_filter:
        raise InvalidArgument(("page_token", "the page token belongs to a different filter"))
    return position
